//! Failures: a failing handler is retried with backoff; after the last
//! attempt the message goes to `{topic}.dlq` with the reason; undecodable
//! messages go there at once; panics and hangs are failures like errors;
//! nothing is dropped silently.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::codec::Codec;
use topicbus::{handler, header, Bus, Context, Headers, RawMessage, Topic};

use crate::harness::{unique, Harness, Log, Net, Setup};

/// Records every message dead-lettered from `topic` (through `bus`).
async fn dead_letters_of(bus: &Bus, topic: &str) -> Arc<Log<RawMessage>> {
    let log = Log::new();
    let sink = Arc::clone(&log);
    bus.group(format!("{}.dead-letters", bus.service()))
        .subscribe_raw(
            format!("{topic}.dlq"),
            move |raw: RawMessage, _ctx: Context| {
                sink.push(raw);
                futures::future::ready(Ok::<(), Infallible>(()))
            },
        )
        .await
        .expect("subscribe to the dead-letter topic");
    log
}

/// A header of a dead letter, which must be there and be text.
fn header_of<'a>(raw: &'a RawMessage, name: &str) -> &'a str {
    raw.headers
        .get_str(name)
        .unwrap_or_else(|| panic!("dead letter lacks header `{name}`: {:?}", raw.headers))
}

/// The payload of a dead letter, decoded with the codec of topic `T`.
fn decode<T: Topic>(raw: &RawMessage) -> T {
    <T::Codec as Codec>::decode(&raw.payload)
        .unwrap_or_else(|e| panic!("dead-letter payload does not decode as `{}`: {e}", T::NAME))
}

// ------------------------------------------------------------ redelivery

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.failures.flaky")]
pub struct Flaky {
    run: u64,
    n: u64,
}

/// (run, n, attempt, succeeded) of one call of [`flaky`].
type FlakyCall = (u64, u64, u32, bool);

/// Every call of [`flaky`], of all runs (a `#[handler]` fn has no state).
fn flaky_calls() -> &'static Arc<Log<FlakyCall>> {
    static CALLS: OnceLock<Arc<Log<FlakyCall>>> = OnceLock::new();
    CALLS.get_or_init(Log::new)
}

/// Fails its first two attempts, succeeds on the third.
#[handler(retries = 3, backoff = "1ms")]
async fn flaky(message: Flaky, ctx: Context) -> Result<(), String> {
    let succeeded = ctx.attempt() >= 3;
    flaky_calls().push((message.run, message.n, ctx.attempt(), succeeded));
    if succeeded {
        Ok(())
    } else {
        Err(format!("not yet (attempt {})", ctx.attempt()))
    }
}

/// A handler (a `#[handler]` fn whose `retries` override the bus default of
/// none) that fails its first two attempts is called again with increasing
/// `ctx.attempt()` until it succeeds; no message is lost or dead-lettered.
pub async fn handler_error_is_redelivered_until_it_succeeds<H: Harness>(harness: H) {
    const N: u64 = 10;
    let setup = Setup {
        retries: 0,
        ..Setup::default()
    };
    let net = Net::new(&harness, setup).await;
    let worker = net.bus("flaky-worker").await;
    worker.subscribe(flaky).await.expect("subscribe");
    let dead = dead_letters_of(&net.bus("ops").await, Flaky::NAME).await;

    let run = unique();
    let publisher = net.bus("flaky-source").await;
    for n in 0..N {
        publisher.publish(&Flaky { run, n }).await.expect("publish");
    }
    let mine = |calls: &[FlakyCall]| -> Vec<(u64, u32, bool)> {
        calls
            .iter()
            .filter(|c| c.0 == run)
            .map(|&(_, n, attempt, ok)| (n, attempt, ok))
            .collect()
    };
    flaky_calls()
        .wait_until("every flaky message succeeded", |calls| {
            mine(calls).iter().filter(|c| c.2).count() >= N as usize
        })
        .await;
    net.close().await;

    let calls = mine(&flaky_calls().snapshot());
    let mut attempts: BTreeMap<u64, Vec<(u32, bool)>> = BTreeMap::new();
    for (n, attempt, ok) in calls {
        attempts.entry(n).or_default().push((attempt, ok));
    }
    assert_eq!(attempts.len(), N as usize, "every message was handled");
    for (n, tries) in attempts {
        assert_eq!(
            tries,
            vec![(1, false), (2, false), (3, true)],
            "message {n}: attempts 1, 2 fail, 3 succeeds, nothing after"
        );
    }
    assert_eq!(
        dead.len(),
        0,
        "nothing dead-lettered: {:?}",
        dead.snapshot()
    );
}

// ------------------------------------------------------------ dead letters

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.failures.doomed", key = id)]
pub struct Doomed {
    id: String,
    body: Vec<u32>,
}

/// A handler that always fails, with `.retries(2)`: called three times per
/// message, then the message is on `{topic}.dlq` with the error, its kind,
/// the attempts, the original topic and group, its key, its application
/// headers and a payload that decodes to the original.
pub async fn exhausted_retries_dead_letter_with_the_reason<H: Harness>(harness: H) {
    const N: usize = 5;
    let net = Net::new(&harness, Setup::default()).await;
    let worker = net.bus("doomed-worker").await;
    let group = net.group("doomed-group");
    let calls = Log::new();
    let sink = Arc::clone(&calls);
    worker
        .group(group.clone())
        .subscribe(move |message: Doomed, ctx: Context| {
            sink.push((message.id.clone(), ctx.attempt()));
            futures::future::ready(Err::<(), _>(format!("boom on {}", message.id)))
        })
        .retries(2)
        .backoff(Duration::from_millis(1))
        .await
        .expect("subscribe");
    let dead = dead_letters_of(&net.bus("ops").await, Doomed::NAME).await;

    let publisher = net.bus("doomed-source").await;
    let messages: Vec<Doomed> = (0..N)
        .map(|i| Doomed {
            id: format!("d-{i}"),
            body: vec![i as u32, 7, u32::MAX],
        })
        .collect();
    for message in &messages {
        let mut headers = Headers::new();
        headers.insert("tenant", format!("tenant-of-{}", message.id));
        publisher
            .publish_with(message, headers)
            .await
            .expect("publish");
    }
    dead.wait_for(N, "every doomed message dead-lettered").await;
    net.close().await;

    let mut per_message: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (id, attempt) in calls.snapshot() {
        per_message.entry(id).or_default().push(attempt);
    }
    for message in &messages {
        assert_eq!(
            per_message.get(&message.id),
            Some(&vec![1, 2, 3]),
            "{}: one try and two retries",
            message.id
        );
    }
    let letters = dead.snapshot();
    assert_eq!(letters.len(), N, "each message dead-lettered once");
    let mut got = Vec::new();
    for raw in &letters {
        let original: Doomed = decode(raw);
        assert_eq!(raw.topic, format!("{}.dlq", Doomed::NAME));
        assert!(
            header_of(raw, header::ERROR).contains(&format!("boom on {}", original.id)),
            "the reason is the handler's error: {:?}",
            raw.headers
        );
        assert_eq!(header_of(raw, header::ERROR_KIND), "handler");
        assert_eq!(header_of(raw, header::ATTEMPTS), "3");
        assert_eq!(header_of(raw, header::ORIGINAL_TOPIC), Doomed::NAME);
        assert_eq!(
            header_of(raw, "ce_type"),
            Doomed::NAME,
            "a dead letter keeps its type"
        );
        assert_eq!(header_of(raw, header::GROUP), group);
        assert_eq!(raw.key.as_deref(), Some(original.id.as_bytes()), "key kept");
        assert_eq!(
            raw.headers.get_str("tenant"),
            Some(format!("tenant-of-{}", original.id).as_str()),
            "application headers kept"
        );
        got.push(original);
    }
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, messages, "the dead letters are the original messages");
}

// ------------------------------------------------------------ panics

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.failures.volatile")]
pub struct Volatile {
    n: u64,
    poison: Poison,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Poison {
    None,
    /// Panics while the handler's future runs.
    InFuture,
    /// Panics in the handler closure itself, before it returns a future.
    BeforeFuture,
}

fn poison_of(n: u64) -> Poison {
    match n % 7 {
        3 => Poison::InFuture,
        5 => Poison::BeforeFuture,
        _ => Poison::None,
    }
}

/// A handler that panics on some messages — inside its future, or in the
/// closure before it returns one: the panic is a failure like an error
/// (retried, then dead-lettered with kind `panic`); the other messages,
/// before and after, are handled by the same registration.
pub async fn panicking_handler_is_contained_and_dead_lettered<H: Harness>(harness: H) {
    const TOTAL: u64 = 21;
    let net = Net::new(&harness, Setup::default()).await;
    let worker = net.bus("volatile-worker").await;
    let calls = Log::new();
    let sink = Arc::clone(&calls);
    worker
        .group(net.group("failures.volatile")).subscribe(move |message: Volatile| {
            sink.push((message.n, message.poison));
            if message.poison == Poison::BeforeFuture {
                panic!(
                    "deliberate panic before the future of message {} (expected by the conformance suite)",
                    message.n
                );
            }
            async move {
                tokio::task::yield_now().await;
                if message.poison == Poison::InFuture {
                    panic!(
                        "deliberate panic in the future of message {} (expected by the conformance suite)",
                        message.n
                    );
                }
                Ok::<(), Infallible>(())
            }
        })
        .retries(1)
        .await
        .expect("subscribe");
    let dead = dead_letters_of(&net.bus("ops").await, Volatile::NAME).await;

    let publisher = net.bus("volatile-source").await;
    for n in 0..TOTAL {
        let poison = poison_of(n);
        publisher
            .publish(&Volatile { n, poison })
            .await
            .expect("publish");
    }
    let poisoned: Vec<u64> = (0..TOTAL)
        .filter(|&n| poison_of(n) != Poison::None)
        .collect();
    let good_count = (TOTAL as usize) - poisoned.len();
    dead.wait_for(poisoned.len(), "poison messages dead-lettered")
        .await;
    let good_done = |calls: &[(u64, Poison)], want: usize| {
        calls.iter().filter(|c| c.1 == Poison::None).count() >= want
    };
    calls
        .wait_until("good messages handled", |c| good_done(c, good_count))
        .await;
    // The registration still works after the panics.
    for n in 100..105 {
        publisher
            .publish(&Volatile {
                n,
                poison: Poison::None,
            })
            .await
            .expect("publish after the panics");
    }
    calls
        .wait_until("messages after the panics handled", |c| {
            good_done(c, good_count + 5)
        })
        .await;
    net.close().await;

    let mut poison_calls: BTreeMap<u64, usize> = BTreeMap::new();
    let mut good: Vec<u64> = Vec::new();
    for (n, poison) in calls.snapshot() {
        if poison == Poison::None {
            good.push(n);
        } else {
            *poison_calls.entry(n).or_default() += 1;
        }
    }
    good.sort_unstable();
    let want: Vec<u64> = (0..TOTAL)
        .filter(|&n| poison_of(n) == Poison::None)
        .chain(100..105)
        .collect();
    assert_eq!(good, want, "every good message exactly once");
    assert_eq!(
        poison_calls,
        poisoned.iter().map(|&n| (n, 2)).collect::<BTreeMap<_, _>>(),
        "each poison message tried twice"
    );
    let mut letters: Vec<(Volatile, RawMessage)> = dead
        .snapshot()
        .into_iter()
        .map(|raw| (decode(&raw), raw))
        .collect();
    letters.sort_by_key(|(m, _)| m.n);
    assert_eq!(
        letters.iter().map(|(m, _)| m.n).collect::<Vec<_>>(),
        poisoned,
        "each poison message dead-lettered once"
    );
    for (original, raw) in &letters {
        assert_ne!(original.poison, Poison::None);
        assert_eq!(header_of(raw, header::ERROR_KIND), "panic", "{original:?}");
        assert_eq!(header_of(raw, header::ATTEMPTS), "2", "{original:?}");
        assert!(
            header_of(raw, header::ERROR).contains("deliberate panic"),
            "the reason carries the panic message: {:?}",
            raw.headers
        );
        assert_eq!(header_of(raw, header::ORIGINAL_TOPIC), Volatile::NAME);
    }
}

// ------------------------------------------------------------ undecodable

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.failures.strict", key = id)]
pub struct Strict {
    id: String,
    n: u32,
}

/// Bytes that do not decode as the topic's type, or that carry another
/// codec's content type, go to the dead-letter topic on the first attempt,
/// untouched, without calling the handler; a well-formed raw message and the
/// next typed message on the same key are handled.
pub async fn undecodable_message_is_dead_lettered_at_once<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let worker = net.bus("strict-worker").await;
    let handled = Log::new();
    let sink = Arc::clone(&handled);
    worker
        .group(net.group("failures.strict"))
        .subscribe(move |message: Strict| {
            sink.push(message);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .retries(5)
        .await
        .expect("subscribe");
    let dead = dead_letters_of(&net.bus("ops").await, Strict::NAME).await;
    let publisher = net.bus("strict-source").await;

    let garbage = b"\xff\x00 this is not json".to_vec();
    let mut not_json = RawMessage::new(Strict::NAME, garbage.clone());
    not_json.key = Some(b"k".to_vec());
    publisher
        .publish_raw(not_json)
        .await
        .expect("publish garbage");

    let wrong_codec = br#"{"id":"k","n":1}"#.to_vec();
    let mut mislabelled = RawMessage::new(Strict::NAME, wrong_codec.clone());
    mislabelled.key = Some(b"k".to_vec());
    mislabelled
        .headers
        .insert(header::CONTENT_TYPE, "application/x-bincode");
    publisher
        .publish_raw(mislabelled)
        .await
        .expect("publish mislabelled");

    let mut foreign = RawMessage::new(Strict::NAME, br#"{"id":"k","n":2}"#.to_vec());
    foreign.key = Some(b"k".to_vec());
    foreign
        .headers
        .insert(header::CONTENT_TYPE, "application/json");
    publisher
        .publish_raw(foreign)
        .await
        .expect("publish well-formed raw");
    publisher
        .publish(&Strict {
            id: "k".to_owned(),
            n: 3,
        })
        .await
        .expect("publish typed");

    dead.wait_for(2, "undecodable messages dead-lettered").await;
    handled.wait_for(2, "good messages handled").await;
    net.close().await;

    let handled: Vec<u32> = handled.snapshot().iter().map(|m| m.n).collect();
    assert_eq!(handled, vec![2, 3], "only the decodable messages, in order");
    let letters = dead.snapshot();
    assert_eq!(letters.len(), 2);
    let payloads: Vec<&[u8]> = letters.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(
        payloads,
        vec![garbage.as_slice(), wrong_codec.as_slice()],
        "the bytes as published, in order"
    );
    for raw in &letters {
        assert_eq!(header_of(raw, header::ERROR_KIND), "decode");
        assert_eq!(header_of(raw, header::ATTEMPTS), "1", "not retried");
        assert_eq!(header_of(raw, header::ORIGINAL_TOPIC), Strict::NAME);
        assert!(!header_of(raw, header::ERROR).is_empty(), "a reason");
        assert_eq!(raw.key.as_deref(), Some(&b"k"[..]));
    }
}

// ------------------------------------------------------------ hangs

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.failures.stuck")]
pub struct Stuck {
    n: u64,
    hang: bool,
}

/// With `.timeout(..)`, a handler call that never finishes counts as a
/// failure: retried, then dead-lettered with kind `timeout`; quick calls of
/// the same registration succeed.
pub async fn hanging_handler_times_out_and_is_dead_lettered<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let worker = net.bus("stuck-worker").await;
    let calls = Log::new();
    let sink = Arc::clone(&calls);
    worker
        .group(net.group("failures.stuck"))
        .subscribe(move |message: Stuck, ctx: Context| {
            let sink = Arc::clone(&sink);
            async move {
                sink.push((message.n, message.hang, ctx.attempt()));
                if message.hang {
                    std::future::pending::<()>().await;
                }
                Ok::<(), Infallible>(())
            }
        })
        .timeout(Duration::from_millis(50))
        .retries(1)
        .backoff(Duration::from_millis(1))
        .await
        .expect("subscribe");
    let dead = dead_letters_of(&net.bus("ops").await, Stuck::NAME).await;
    let publisher = net.bus("stuck-source").await;
    for (n, hang) in [(0, false), (1, true), (2, false)] {
        publisher
            .publish(&Stuck { n, hang })
            .await
            .expect("publish");
    }
    dead.wait_for(1, "the hanging message dead-lettered").await;
    calls
        .wait_until("quick messages handled", |c| {
            c.iter().filter(|(_, hang, _)| !hang).count() >= 2
        })
        .await;
    net.close().await;

    let mut calls = calls.snapshot();
    calls.sort_unstable();
    assert_eq!(
        calls,
        vec![(0, false, 1), (1, true, 1), (1, true, 2), (2, false, 1)],
        "the hanging message was tried twice, the others once"
    );
    let letters = dead.snapshot();
    assert_eq!(letters.len(), 1);
    let raw = &letters[0];
    assert_eq!(decode::<Stuck>(raw), Stuck { n: 1, hang: true });
    assert_eq!(header_of(raw, header::ERROR_KIND), "timeout");
    assert_eq!(header_of(raw, header::ATTEMPTS), "2");
    assert_eq!(header_of(raw, header::ORIGINAL_TOPIC), Stuck::NAME);
}
