//! Request/reply: typed replies reach the instance that asked; handler errors
//! come back as errors; timeouts leave nothing behind and late replies are
//! dropped and counted.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::{header, Context, Error, ErrorKind, Headers, RawMessage, Topic};

use crate::harness::{eventually, guard, skip, Gate, Harness, Log, Net, Setup};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.square", response = SquareReply)]
pub struct Square {
    id: u64,
    n: i64,
    label: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.square.reply")]
pub struct SquareReply {
    id: u64,
    square: i64,
    label: String,
    served_by: usize,
    detail: Option<Detail>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Detail {
    Negative { was: i64 },
    Tags(Vec<String>),
}

/// What a responder saw of a request: (id, correlation id present, tenant header).
type Asked = (u64, bool, Option<String>);

/// A request answered with a [`SquareReply`]; each case has its own topic.
pub trait SquareRequest: topicbus::Request<Response = SquareReply> + Clone {
    fn parts(&self) -> (u64, i64, &str);
}

/// Same closure type for every instance: one default group of responders.
fn squarer<T: SquareRequest>(
    member: usize,
    log: Arc<Log<Asked>>,
) -> impl Fn(T, Context) -> futures::future::Ready<Result<SquareReply, Infallible>> + Send + Sync + 'static
{
    move |request: T, ctx: Context| {
        let (id, n, label) = request.parts();
        log.push((
            id,
            ctx.correlation_id().is_some(),
            ctx.headers().get_str("tenant").map(str::to_owned),
        ));
        futures::future::ready(Ok(SquareReply {
            id,
            square: n * n,
            label: label.chars().rev().collect(),
            served_by: member,
            detail: Some(if n < 0 {
                Detail::Negative { was: n }
            } else {
                Detail::Tags(vec![label.to_owned(), "ok".to_owned()])
            }),
        }))
    }
}

impl SquareRequest for Square {
    fn parts(&self) -> (u64, i64, &str) {
        (self.id, self.n, &self.label)
    }
}

/// [`Square`] on a topic of its own, for the load case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.bulk_square", response = SquareReply)]
pub struct BulkSquare {
    id: u64,
    n: i64,
    label: String,
}

impl SquareRequest for BulkSquare {
    fn parts(&self) -> (u64, i64, &str) {
        (self.id, self.n, &self.label)
    }
}

fn expected(request: &impl SquareRequest) -> (u64, i64, String) {
    let (id, n, label) = request.parts();
    (id, n * n, label.chars().rev().collect())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.sum", codec = "postcard", response = SumReply)]
pub struct Sum {
    terms: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.sum.reply", codec = "postcard")]
pub struct SumReply {
    total: i64,
    count: u32,
}

/// A request gets its typed reply (JSON and postcard topics); the responder
/// sees a correlation id and the request's headers.
pub async fn request_reply_round_trip_is_typed<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let responder = net.bus("math").await;
    let asked = Log::new();
    responder
        .group(net.group("request_reply.squarer-square"))
        .serve(squarer::<Square>(0, Arc::clone(&asked)))
        .await
        .expect("serve square");
    responder
        .group(net.group("request_reply.sum"))
        .serve(|request: Sum| async move {
            Ok::<_, Infallible>(SumReply {
                total: request.terms.iter().map(|&t| i64::from(t)).sum(),
                count: request.terms.len() as u32,
            })
        })
        .await
        .expect("serve sum");
    let client = net.bus("client").await;

    let request = Square {
        id: 7,
        n: -12,
        label: "négatif".to_owned(),
    };
    let mut headers = Headers::new();
    headers.insert("tenant", "acme");
    let reply: SquareReply = guard("square request", client.request(&request).headers(headers))
        .await
        .expect("square reply");
    assert_eq!(
        reply,
        SquareReply {
            id: 7,
            square: 144,
            label: "fitagén".to_owned(),
            served_by: 0,
            detail: Some(Detail::Negative { was: -12 }),
        }
    );
    let sum: SumReply = guard(
        "sum request",
        client.request(&Sum {
            terms: vec![i32::MAX, i32::MAX, -3],
        }),
    )
    .await
    .expect("sum reply");
    assert_eq!(
        sum,
        SumReply {
            total: 2 * i64::from(i32::MAX) - 3,
            count: 3
        }
    );
    assert_eq!(client.stats().pending_requests, 0);
    net.close().await;
    assert_eq!(
        asked.snapshot(),
        vec![(7, true, Some("acme".to_owned()))],
        "the responder saw the request once, with a correlation id and its headers"
    );
}

/// 1000 requests at once from two instances of one service to two
/// responders: each gets the reply to its own request, each request is
/// served once, both responders work, nothing stays pending.
pub async fn thousand_concurrent_requests_each_get_their_own_reply<H: Harness>(harness: H) {
    const N: u64 = 1000;
    let net = Net::new(&harness, Setup::default()).await;
    let asked = Log::new();
    for (i, responder) in net.buses("math", 2).await.iter().enumerate() {
        responder
            .group(net.group("request_reply.squarer-bulksquare"))
            .serve(squarer::<BulkSquare>(i, Arc::clone(&asked)))
            .await
            .expect("serve");
    }
    let clients = net.buses("client", 2).await;
    let requests: Vec<BulkSquare> = (0..N)
        .map(|id| BulkSquare {
            id,
            n: id as i64 - 500,
            label: format!("req-{id}"),
        })
        .collect();
    let calls = requests
        .iter()
        .enumerate()
        .map(|(i, request)| clients[i % 2].request(request).into_future());
    let replies = guard("1000 requests", futures::future::join_all(calls)).await;

    let mut served_by: BTreeMap<usize, usize> = BTreeMap::new();
    for (request, reply) in requests.iter().zip(replies) {
        let reply = reply.unwrap_or_else(|e| panic!("request {}: {e}", request.parts().0));
        assert_eq!(
            (reply.id, reply.square, reply.label.clone()),
            expected(request),
            "the reply answers its own request"
        );
        *served_by.entry(reply.served_by).or_default() += 1;
    }
    // Where commits do not survive rebalances (Kafka's mock cluster), a
    // late rebalance round can hand a request to the other responder
    // again: its second reply arrives late and is dropped and counted.
    let exactly_once = harness.commits_survive_rebalances();
    for client in &clients {
        assert_eq!(client.stats().pending_requests, 0, "nothing pending");
        if exactly_once {
            assert_eq!(client.stats().late_replies, 0, "no late replies");
        }
    }
    net.close().await;
    assert_eq!(served_by.len(), 2, "both responders worked: {served_by:?}");
    let mut ids: Vec<u64> = asked.snapshot().iter().map(|a| a.0).collect();
    ids.sort_unstable();
    if exactly_once {
        assert_eq!(ids, (0..N).collect::<Vec<_>>(), "each request served once");
    } else {
        let served = ids.len();
        ids.dedup();
        assert_eq!(ids, (0..N).collect::<Vec<_>>(), "each request served");
        println!(
            "{}: {N} requests answered, {} served again after rebalances",
            harness.name(),
            served - ids.len()
        );
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.divide", response = Quotient)]
pub struct Divide {
    a: i64,
    b: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.quotient")]
pub struct Quotient {
    q: i64,
}

/// A responder's error comes back as `Error::Remote` with its message —
/// promptly, not as a timeout — and the responder keeps answering.
pub async fn handler_error_comes_back_as_remote_error<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let responder = net.bus("divider").await;
    let calls = Log::new();
    let sink = Arc::clone(&calls);
    responder
        .group(net.group("request_reply.divide"))
        .serve(move |request: Divide| {
            sink.push((request.a, request.b));
            futures::future::ready(if request.b == 0 {
                Err(format!("cannot divide {} by zero", request.a))
            } else {
                Ok(Quotient {
                    q: request.a / request.b,
                })
            })
        })
        .retries(0)
        .await
        .expect("serve");
    let client = net.bus("client").await;

    let failed = guard("failing request", client.request(&Divide { a: 42, b: 0 })).await;
    match &failed {
        Err(Error::Remote { topic, message }) => {
            assert_eq!(topic, Divide::NAME);
            assert!(
                message.contains("cannot divide 42 by zero"),
                "the handler's message: {message:?}"
            );
        }
        other => panic!("expected Error::Remote, got {other:?}"),
    }
    assert_eq!(failed.unwrap_err().kind(), ErrorKind::Remote);

    let ok = guard("next request", client.request(&Divide { a: 42, b: 5 }))
        .await
        .expect("the responder still answers");
    assert_eq!(ok, Quotient { q: 8 });
    assert_eq!(client.stats().pending_requests, 0);
    net.close().await;
    assert_eq!(
        calls.snapshot(),
        vec![(42, 0), (42, 5)],
        "a request handler with retries(0) is called once"
    );
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.fragile", response = Quotient)]
pub struct Fragile {
    explode: bool,
}

/// A responder that panics answers with `Error::Remote`; it keeps answering.
pub async fn panicking_responder_comes_back_as_remote_error<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let responder = net.bus("fragile").await;
    responder
        .group(net.group("request_reply.fragile"))
        .serve(|request: Fragile| async move {
            if request.explode {
                panic!("deliberate responder panic (expected by the conformance suite)");
            }
            Ok::<_, Infallible>(Quotient { q: 1 })
        })
        .await
        .expect("serve");
    let client = net.bus("client").await;
    match guard(
        "panicking request",
        client.request(&Fragile { explode: true }),
    )
    .await
    {
        Err(Error::Remote { message, .. }) => assert!(
            message.contains("deliberate responder panic"),
            "the panic message comes back: {message:?}"
        ),
        other => panic!("expected Error::Remote, got {other:?}"),
    }
    let ok = guard("next request", client.request(&Fragile { explode: false }))
        .await
        .expect("the responder still answers");
    assert_eq!(ok, Quotient { q: 1 });
    net.close().await;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.slow", response = Quotient)]
pub struct Slow {
    id: u64,
}

/// A request to a responder that does not answer in time fails with
/// `Error::Timeout` after its per-call `.timeout(..)`, leaving nothing
/// pending; the reply that comes later is dropped and counted; later
/// requests work.
pub async fn slow_responder_times_out_and_late_reply_is_dropped<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let responder = net.bus("sloth").await;
    let gate = Gate::new();
    let started = Log::new();
    let (gate_in, started_in) = (gate.clone(), Arc::clone(&started));
    responder
        .group(net.group("request_reply.slow"))
        .serve(move |request: Slow| {
            let (gate, started) = (gate_in.clone(), Arc::clone(&started_in));
            async move {
                started.push(request.id);
                gate.wait().await;
                Ok::<_, Infallible>(Quotient {
                    q: request.id as i64,
                })
            }
        })
        .await
        .expect("serve");
    let client = net.bus("client").await;

    let limit = Duration::from_millis(100);
    let outcome = guard(
        "request with a short timeout",
        client.request(&Slow { id: 1 }).timeout(limit),
    )
    .await;
    match outcome {
        Err(Error::Timeout { topic, after }) => {
            assert_eq!(topic, Slow::NAME);
            assert_eq!(after, limit, "the per-call timeout applies");
        }
        other => panic!("expected Error::Timeout, got {other:?}"),
    }
    assert_eq!(
        client.stats().pending_requests,
        0,
        "no pending entry outlives its timeout"
    );
    assert_eq!(client.stats().late_replies, 0);

    started.wait_for(1, "the responder got the request").await;
    gate.open();
    eventually("the late reply is counted", || {
        client.stats().late_replies == 1
    })
    .await;
    assert_eq!(client.stats().pending_requests, 0);

    let reply = guard(
        "a request after the timeout",
        client.request(&Slow { id: 2 }),
    )
    .await
    .expect("answered");
    assert_eq!(
        reply,
        Quotient { q: 2 },
        "the reply to this request, not the late one"
    );
    let stats = client.stats();
    assert_eq!((stats.pending_requests, stats.late_replies), (0, 1));
    net.close().await;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.lonely", response = Quotient)]
pub struct Lonely {
    id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.bystander")]
pub struct Bystander {
    id: u64,
}

/// A request to a topic nobody serves fails with `Error::NoResponders`
/// (not a timeout), even when other topics have consumers.
pub async fn request_without_responders_fails_with_no_responders<H: Harness>(harness: H) {
    if !harness.knows_responders() {
        return skip(
            &harness,
            "the transport cannot tell that nobody serves a topic; such a request times out",
        );
    }
    let setup = Setup {
        // Were the transport unable to tell, the case fails soon, not hangs.
        request_timeout: Duration::from_secs(10),
        ..Setup::default()
    };
    let net = Net::new(&harness, setup).await;
    let other = net.bus("bystander").await;
    other
        .group(net.group("request_reply.bystander"))
        .subscribe(|_: Bystander| async { Ok::<(), Infallible>(()) })
        .await
        .expect("subscribe elsewhere");
    let client = net.bus("client").await;
    match guard("unanswerable request", client.request(&Lonely { id: 1 })).await {
        Err(error @ Error::NoResponders { .. }) => {
            assert_eq!(error.kind(), ErrorKind::NoResponders);
            let Error::NoResponders { topic } = error else {
                unreachable!()
            };
            assert_eq!(topic, Lonely::NAME);
        }
        other => panic!("expected Error::NoResponders, got {other:?}"),
    }
    assert_eq!(client.stats().pending_requests, 0);
    net.close().await;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.ledger", response = Quotient)]
pub struct Ledger {
    n: i64,
}

/// Where a hostile request aims its reply: a business topic the responder
/// may write to, but that is no reply topic.
const FORBIDDEN_REPLY_TOPIC: &str = "conformance.rpc.billing.invoices";

/// Records every message of `topic` (through `bus`, in a group of its own).
async fn record_raw(net: &Net, bus: &topicbus::Bus, topic: &str) -> Arc<Log<RawMessage>> {
    let log = Log::new();
    let sink = Arc::clone(&log);
    bus.group(net.group(&format!("request_reply.watch.{topic}")))
        .subscribe_raw(topic, move |raw: RawMessage, _ctx: Context| {
            sink.push(raw);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .unwrap_or_else(|e| panic!("subscribe to `{topic}`: {e}"));
    log
}

/// A request as another client writes it: JSON, with a correlation id
/// and, if given, a `reply_to`.
fn ledger_request(n: i64, correlation_id: &str, reply_to: Option<&str>) -> RawMessage {
    let mut request = RawMessage::new(Ledger::NAME, format!(r#"{{"n":{n}}}"#).into_bytes());
    request.headers.insert("content-type", "application/json");
    request.headers.insert("correlation_id", correlation_id);
    if let Some(reply_to) = reply_to {
        request.headers.insert("reply_to", reply_to);
    }
    request
}

/// A request whose `reply_to` names a topic outside the reply topics (not
/// under the reply topic prefix, not `{topic}.response`, not allowed by the
/// configuration) is dead-lettered with a reason naming the topic and the
/// setting, neither handled nor answered: nothing reaches that topic. The
/// requests behind it are answered, on the requester's reply topic and, for
/// a request without `reply_to` (the Go bus's), on `{topic}.response`.
pub async fn reply_to_outside_the_reply_topics_is_dead_lettered<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let responder = net.bus("ledger").await;
    let handled = Log::new();
    let sink = Arc::clone(&handled);
    responder
        .group(net.group("request_reply.ledger"))
        .serve(move |request: Ledger| {
            sink.push(request.n);
            futures::future::ready(Ok::<_, Infallible>(Quotient { q: request.n * 10 }))
        })
        .await
        .expect("serve");
    let watcher = net.bus("watcher").await;
    let dead = record_raw(&net, &watcher, &format!("{}.dlq", Ledger::NAME)).await;
    let forbidden = record_raw(&net, &watcher, FORBIDDEN_REPLY_TOPIC).await;
    let responses = record_raw(&net, &watcher, &format!("{}.response", Ledger::NAME)).await;
    let client = net.bus("client").await;

    let hostile_id = uuid_text(1);
    guard(
        "publish the hostile request",
        client.publish_raw(ledger_request(
            666,
            &hostile_id,
            Some(FORBIDDEN_REPLY_TOPIC),
        )),
    )
    .await
    .expect("publish");
    for n in [1, 2] {
        let reply = guard("a valid request", client.request(&Ledger { n }))
            .await
            .expect("a valid request behind the hostile one is answered");
        assert_eq!(reply, Quotient { q: n * 10 });
    }
    let go_style_id = uuid_text(2);
    guard(
        "publish a request without reply_to",
        client.publish_raw(ledger_request(3, &go_style_id, None)),
    )
    .await
    .expect("publish");
    let answered = responses
        .wait_for(1, "the answer on {topic}.response")
        .await;
    assert_eq!(answered[0].payload, br#"{"q":30}"#);
    assert_eq!(
        answered[0].headers.get_str("correlation_id"),
        Some(go_style_id.as_str())
    );

    // The watcher reads the topic; the handler count below shows that the
    // responder handled (and so answered) nothing else.
    let mut sentinel = RawMessage::new(FORBIDDEN_REPLY_TOPIC, b"sentinel".to_vec());
    sentinel.headers.insert("content-type", "text/plain");
    guard("publish the sentinel", client.publish_raw(sentinel))
        .await
        .expect("publish");
    let seen = forbidden
        .wait_until("the sentinel", |seen| {
            seen.iter().any(|m| m.payload == b"sentinel")
        })
        .await;
    assert_eq!(
        seen.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(),
        vec![b"sentinel".to_vec()],
        "nothing but the sentinel reached `{FORBIDDEN_REPLY_TOPIC}`"
    );
    let dead = dead
        .wait_for(1, "the hostile request is dead-lettered")
        .await;
    let letter = &dead[0];
    assert_eq!(
        letter.headers.get_str("correlation_id"),
        Some(hostile_id.as_str())
    );
    assert_eq!(letter.headers.get_str(header::ERROR_KIND), Some("header"));
    let reason = letter.headers.get_str(header::ERROR).unwrap_or_default();
    assert!(
        reason.contains(FORBIDDEN_REPLY_TOPIC) && reason.contains("allowed_reply_topics"),
        "the reason names the topic and the setting: {reason}"
    );

    assert_eq!(client.stats().pending_requests, 0);
    net.close().await;
    assert_eq!(
        handled.snapshot(),
        vec![1, 2, 3],
        "the hostile request was not handled"
    );
    assert_eq!(dead.len(), 1);
}

/// A UUID's text, different per call and per run.
fn uuid_text(n: u64) -> String {
    format!(
        "00000000-0000-4000-8000-{:012x}",
        (crate::harness::unique() << 8) | n
    )
}
