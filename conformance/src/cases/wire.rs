//! Records as other clients write them: the CloudEvents `ce_time` in any
//! RFC 3339 form, `content-type` with parameters; and consumer groups that
//! stay put: two closures each see every message, a restarted instance
//! joins the groups it left.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use topicbus::{handler, header, Context, Headers, RawMessage, Topic};

use crate::harness::{guard, unique, Harness, Log, Net, Numbered, Setup};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.wire.timed")]
pub struct Timed {
    n: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.wire.typed")]
pub struct Typed {
    n: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.wire.shared")]
pub struct Shared {
    n: u64,
}

impl Numbered for Shared {
    fn number(&self) -> u64 {
        self.n
    }
}

/// `ce_time` as written, and the instant it names in milliseconds since
/// the Unix epoch (worked out by hand: 2026-12-05T10:00:20Z is
/// 1_796_464_820 s). A transport may carry the time at millisecond
/// precision, so sub-millisecond digits are compared truncated.
const TIMES: &[(&str, u64)] = &[
    ("2026-12-05T10:00:20Z", 1_796_464_820_000),
    ("2026-12-05T10:00:20.617+02:00", 1_796_457_620_617),
    ("2026-12-05T10:00:20-05:00", 1_796_482_820_000),
    ("2026-12-05T10:00:20+02:00", 1_796_457_620_000),
    ("2026-12-05t10:00:20.5z", 1_796_464_820_500),
    ("2026-12-05T10:00:20.123456789Z", 1_796_464_820_123),
    ("2026-12-05T15:30:20.1+05:30", 1_796_464_820_100),
    ("2026-12-05T10:00:20.000000001-00:00", 1_796_464_820_000),
];

fn raw(topic: &str, n: u64, headers: &[(&'static str, &str)]) -> RawMessage {
    let mut message = RawMessage::new(topic, format!(r#"{{"n":{n}}}"#).into_bytes());
    let mut list = Headers::new();
    for (name, value) in headers {
        list.insert(*name, *value);
    }
    message.headers = list;
    message
}

/// A `ce_time` with an offset, a fraction of 0 to 9 digits, or a lowercase
/// `t`/`z` is read as the instant it names, not as UTC wall time and not as
/// a malformed header.
pub async fn times_in_every_rfc3339_form_are_read_as_instants<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("clock-reader").await;
    let seen: Arc<Log<(u64, SystemTime)>> = Log::new();
    let sink = Arc::clone(&seen);
    consumer
        .group(net.group("wire.times"))
        .subscribe(move |message: Timed, ctx: Context| {
            sink.push((message.n, ctx.time()));
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .retries(0)
        .await
        .expect("subscribe");
    let publisher = net.bus("other-client").await;
    for (n, (time, _)) in TIMES.iter().enumerate() {
        let record = raw(
            Timed::NAME,
            n as u64,
            &[
                ("ce_time", time),
                (header::CONTENT_TYPE, "application/json"),
            ],
        );
        guard("publish", publisher.publish_raw(record))
            .await
            .expect("publish");
    }
    let mut handled = seen.wait_for(TIMES.len(), "every time handled").await;
    handled.sort_by_key(|(n, _)| *n);
    for ((n, time), (text, millis)) in handled.iter().zip(TIMES) {
        let read = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        assert_eq!(read, u128::from(*millis), "message {n}: `{text}`");
    }
    net.close().await;
}

/// A `content-type` names a media type whatever its case and parameters
/// (`application/json; charset=utf-8`); only a charset other than UTF-8 is
/// refused, and that message is dead-lettered saying so.
pub async fn media_type_parameters_and_case_are_understood<H: Harness>(harness: H) {
    const ACCEPTED: &[&str] = &[
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
        "application/json; charset=\"utf-8\"",
        "application/json ; foo=bar",
    ];
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("media-reader").await;
    let handled: Arc<Log<u64>> = Log::new();
    let sink = Arc::clone(&handled);
    consumer
        .group(net.group("wire.media"))
        .subscribe(move |message: Typed| {
            sink.push(message.n);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .retries(0)
        .await
        .expect("subscribe");
    let dead: Arc<Log<RawMessage>> = Log::new();
    let dead_sink = Arc::clone(&dead);
    consumer
        .group(net.group("wire.media.dead"))
        .subscribe_raw(
            format!("{}.dlq", Typed::NAME),
            move |raw: RawMessage, _ctx: Context| {
                dead_sink.push(raw);
                futures::future::ready(Ok::<(), Infallible>(()))
            },
        )
        .await
        .expect("subscribe to the dead letters");
    let publisher = net.bus("other-client").await;
    for (n, content_type) in ACCEPTED.iter().enumerate() {
        let record = raw(
            Typed::NAME,
            n as u64,
            &[(header::CONTENT_TYPE, content_type)],
        );
        guard("publish", publisher.publish_raw(record))
            .await
            .expect("publish");
    }
    let refused = raw(
        Typed::NAME,
        99,
        &[(header::CONTENT_TYPE, "application/json; charset=iso-8859-1")],
    );
    guard("publish", publisher.publish_raw(refused))
        .await
        .expect("publish");

    let mut numbers = handled
        .wait_for(ACCEPTED.len(), "accepted media types")
        .await;
    numbers.sort_unstable();
    assert_eq!(numbers, (0..ACCEPTED.len() as u64).collect::<Vec<_>>());
    let letters = dead.wait_for(1, "the latin-1 message dead-lettered").await;
    let reason = letters[0]
        .headers
        .get_str(header::ERROR)
        .unwrap_or_default();
    assert!(reason.contains("charset"), "{reason}");
    assert_eq!(letters[0].payload, br#"{"n":99}"#);
    assert_eq!(
        handled.snapshot().len(),
        ACCEPTED.len(),
        "none handled twice"
    );
    net.close().await;
}

/// Two closure handlers on one topic, each in its own named group, each
/// see every message (a closure has no default group to share by mistake).
pub async fn two_closure_handlers_each_see_every_message<H: Harness>(harness: H) {
    const COUNT: u64 = 50;
    let net = Net::new(&harness, Setup::default()).await;
    let bus = net.bus("two-closures").await;
    let logs = [Log::new(), Log::new()];
    for (i, log) in logs.iter().enumerate() {
        let sink: Arc<Log<u64>> = Arc::clone(log);
        bus.group(net.group(&format!("wire.closure.{i}")))
            .subscribe(move |message: Shared| {
                sink.push(message.n);
                futures::future::ready(Ok::<(), Infallible>(()))
            })
            .await
            .expect("subscribe");
    }
    let publisher = net.bus("publisher").await;
    for n in 0..COUNT {
        guard("publish", publisher.publish(&Shared { n }))
            .await
            .expect("publish");
    }
    for (i, log) in logs.iter().enumerate() {
        let mut seen = log
            .wait_for(COUNT as usize, &format!("closure {i} sees all"))
            .await;
        seen.sort_unstable();
        assert_eq!(seen, (0..COUNT).collect::<Vec<_>>(), "closure {i}");
    }
    net.close().await;
}

static RESTARTED: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

#[handler]
async fn record_restart(message: Shared, ctx: Context) -> Result<(), Infallible> {
    RESTARTED
        .lock()
        .expect("poisoned")
        .push((ctx.group().to_owned(), message.n));
    Ok(())
}

/// The same code run again (a restarted instance of the service) joins the
/// same consumer groups: a `#[handler]` function's default group and a
/// closure's named group are the same names as before, and the restarted
/// instance handles what is published next.
pub async fn a_restarted_instance_joins_the_same_groups<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let mut groups = Vec::new();
    for _run in 0..2 {
        let bus = net.bus("restarting").await;
        guard("subscribe", bus.subscribe(record_restart))
            .await
            .expect("subscribe the named handler");
        let closure_groups: Arc<Log<String>> = Log::new();
        let sink = Arc::clone(&closure_groups);
        guard(
            "subscribe",
            bus.group(net.group("wire.restart.closure")).subscribe(
                move |_: Shared, ctx: Context| {
                    sink.push(ctx.group().to_owned());
                    futures::future::ready(Ok::<(), Infallible>(()))
                },
            ),
        )
        .await
        .expect("subscribe the closure");
        let publisher = net.bus("restart-publisher").await;
        // Unique among the cases running at once (they share `RESTARTED`).
        let n = unique();
        guard("publish", publisher.publish(&Shared { n }))
            .await
            .expect("publish");
        let closure_group = closure_groups.wait_for(1, "closure handled").await;
        let named_group = wait_for_restart_record(n).await;
        groups.push((named_group, closure_group[0].clone()));
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
    assert_eq!(groups[0], groups[1], "the restarted instance's groups");
    assert!(
        groups[0].0.ends_with("record_restart"),
        "a #[handler]'s default group is named after it: {}",
        groups[0].0
    );
    net.close().await;
}

async fn wait_for_restart_record(n: u64) -> String {
    guard("the named handler sees the message", async {
        loop {
            let found = RESTARTED
                .lock()
                .expect("poisoned")
                .iter()
                .find(|(_, seen)| *seen == n)
                .map(|(group, _)| group.clone());
            if let Some(group) = found {
                return group;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}
