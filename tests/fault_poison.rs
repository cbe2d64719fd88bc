//! Poison input: records no well-behaved topicbus publisher would write,
//! produced to a typed topic with plain rdkafka (on librdkafka's mock
//! cluster) or with `publish_raw` (memory). Each lands in `{topic}.dlq` with
//! a reason; good records before and after it, on the same partition, are
//! handled in order; the process keeps running.
//!
//! What counts as poison (docs/failures.md, "Poison input"): bytes the topic's codec
//! cannot decode, a `content-type` that contradicts the topic's codec, a
//! CloudEvents or routing header that is present but unreadable (not UTF-8,
//! a `ce_time` that is not RFC 3339), a payload over the consumer's size
//! limit. Not poison: a plain JSON record without any CloudEvents headers
//! (the Go bus wrote those), or binary application headers.

#[path = "support/fault_net.rs"]
mod fault_net;
#[cfg(feature = "kafka")]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use topicbus::{header, Context, Headers, RawMessage, Topic};

use fault_net::{guard, tally, Net, Seen};

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.poison.orders", key = key)]
struct Order {
    n: u64,
    key: String,
    item: String,
}

/// The consumer's size limit in this test.
const LIMIT: usize = 4096;

/// What should become of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Handled,
    /// Dead-lettered with this `topicbus_error_kind`.
    Dead(&'static str),
}

/// Headers as produced: name and raw value.
type WireHeaders = Vec<(&'static str, Vec<u8>)>;

/// One record as produced: number `n` travels in the `n` header (so that a
/// dead letter can be told apart whatever its payload) and, for decodable
/// ones, in the payload.
struct Record {
    n: u64,
    what: &'static str,
    payload: Vec<u8>,
    headers: WireHeaders,
    expect: Expect,
}

fn json(n: u64, item: &str) -> Vec<u8> {
    serde_json::to_vec(&Order {
        n,
        key: "same".into(),
        item: item.into(),
    })
    .unwrap()
}

fn cloud_event(id: &str) -> WireHeaders {
    vec![
        ("ce_specversion", b"1.0".to_vec()),
        ("ce_id", id.as_bytes().to_vec()),
        ("ce_source", b"plain-rdkafka".to_vec()),
        ("ce_type", Order::NAME.as_bytes().to_vec()),
        ("ce_time", b"2026-11-27T10:15:00.123Z".to_vec()),
        (header::CONTENT_TYPE, b"application/json".to_vec()),
    ]
}

/// The case of a header whose name is not UTF-8 (`0xff 0xfe`): only a Kafka
/// record can carry one (in-process header names are strings), and
/// rdkafka's own header reader panics on it.
const BAD_HEADER_NAME: &str = "header name that is not UTF-8";

/// The poison cases, each followed by a good record, between good records.
fn records() -> Vec<Record> {
    let mut poison: Vec<(&'static str, Vec<u8>, WireHeaders, Expect)> = vec![
        (
            "full CloudEvents headers",
            Vec::new(),
            cloud_event("evt-1"),
            Expect::Handled,
        ),
        (
            "plain JSON, no headers (Go bus)",
            Vec::new(),
            vec![],
            Expect::Handled,
        ),
        (
            "binary application header",
            Vec::new(),
            vec![("trace", vec![0x00, 0xff, 0xfe])],
            Expect::Handled,
        ),
        (
            "bytes that do not decode",
            b"\xff\x00 not json".to_vec(),
            vec![],
            Expect::Dead("decode"),
        ),
        (
            "JSON of another shape",
            br#"{"n":1}"#.to_vec(),
            vec![],
            Expect::Dead("decode"),
        ),
        (
            "empty value (tombstone)",
            b"".to_vec(),
            vec![],
            Expect::Dead("decode"),
        ),
        (
            "content-type of another codec",
            Vec::new(),
            vec![(header::CONTENT_TYPE, b"application/x-bincode".to_vec())],
            Expect::Dead("decode"),
        ),
        (
            "non-UTF-8 ce_id",
            Vec::new(),
            vec![("ce_id", vec![0xc3, 0x28])],
            Expect::Dead("header"),
        ),
        (
            "non-UTF-8 content-type",
            Vec::new(),
            vec![(header::CONTENT_TYPE, vec![0xff])],
            Expect::Dead("header"),
        ),
        (BAD_HEADER_NAME, Vec::new(), vec![], Expect::Dead("header")),
        (
            "ce_time that is not a time",
            Vec::new(),
            vec![("ce_time", b"yesterday".to_vec())],
            Expect::Dead("header"),
        ),
        (
            "reply_to that is no topic name",
            Vec::new(),
            vec![(header::REPLY_TO, b"not a topic!".to_vec())],
            Expect::Dead("header"),
        ),
        (
            "payload over the consumer's limit",
            json(0, &"x".repeat(100_000)),
            vec![],
            Expect::Dead("too_large"),
        ),
    ];
    let mut out = Vec::new();
    let mut n = 0;
    let good = |out: &mut Vec<Record>, n: &mut u64| {
        out.push(Record {
            n: *n,
            what: "good",
            payload: json(*n, "ok"),
            headers: vec![(header::CONTENT_TYPE, b"application/json".to_vec())],
            expect: Expect::Handled,
        });
        *n += 1;
    };
    good(&mut out, &mut n);
    for (what, payload, headers, expect) in poison.drain(..) {
        // A decodable case's payload carries its number.
        let payload = if payload.is_empty() && what != "empty value (tombstone)" {
            json(n, "case")
        } else {
            payload
        };
        out.push(Record {
            n,
            what,
            payload,
            headers,
            expect,
        });
        n += 1;
        good(&mut out, &mut n);
    }
    for _ in 0..5 {
        good(&mut out, &mut n);
    }
    out
}

/// One dead letter as read from the dead-letter topic.
#[derive(Debug, Clone)]
struct Letter {
    n: u64,
    kind: String,
    reason: String,
    payload_len: usize,
    omitted: Option<String>,
    attempts: String,
}

async fn run(net: Net) {
    let case = format!("poison/{}", net.name());
    let worker = net
        .bus("poison-worker", |b| b.max_message_bytes(LIMIT).retries(2))
        .await;
    let handled = Seen::new();
    let sink = Arc::clone(&handled);
    worker
        .group("fault_poison.order")
        .subscribe(move |order: Order, _ctx: Context| {
            sink.push(order.n);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe");
    let ops = net.bus("poison-ops", |b| b).await;
    let dead = Seen::new();
    let letters: Arc<Mutex<Vec<Letter>>> = Arc::default();
    let (dead_sink, letters_sink) = (Arc::clone(&dead), Arc::clone(&letters));
    ops.group("fault_poison.handler")
        .subscribe_raw(
            format!("{}.dlq", Order::NAME),
            move |raw: RawMessage, _ctx: Context| {
                let text = |name: &str| raw.headers.get_str(name).unwrap_or_default().to_owned();
                let n: u64 = text("n").parse().expect("every record carries `n`");
                letters_sink.lock().unwrap().push(Letter {
                    n,
                    kind: text(header::ERROR_KIND),
                    reason: text(header::ERROR),
                    payload_len: raw.payload.len(),
                    omitted: raw
                        .headers
                        .get_str(header::PAYLOAD_OMITTED)
                        .map(str::to_owned),
                    attempts: text(header::ATTEMPTS),
                });
                dead_sink.push(n);
                futures::future::ready(Ok::<(), Infallible>(()))
            },
        )
        .await
        .expect("subscribe to the dead letters");

    let records: Vec<Record> = records()
        .into_iter()
        .filter(|r| net.is_kafka() || r.what != BAD_HEADER_NAME)
        .collect();
    let acknowledged = produce(&net, &ops, &records).await;

    let want_handled: Vec<u64> = records
        .iter()
        .filter(|r| r.expect == Expect::Handled)
        .map(|r| r.n)
        .collect();
    let want_dead: Vec<u64> = records
        .iter()
        .filter(|r| r.expect != Expect::Handled)
        .map(|r| r.n)
        .collect();
    handled
        .wait_for_all("every good record handled", &want_handled)
        .await;
    dead.wait_for_all("every poison record dead-lettered", &want_dead)
        .await;

    // The process still works: a typed publish after the poison is handled.
    let after = records.iter().map(|r| r.n).max().unwrap_or(0) + 1;
    worker
        .publish(&Order {
            n: after,
            key: "same".into(),
            item: "after".into(),
        })
        .await
        .expect("publish after the poison");
    handled
        .wait_for_all("the record after the poison", &[after])
        .await;
    guard("shutdown", worker.shutdown())
        .await
        .expect("shutdown");
    guard("shutdown", ops.shutdown()).await.expect("shutdown");

    let mut acknowledged = acknowledged;
    acknowledged.push(after);
    let mut deliveries = handled.snapshot();
    deliveries.extend(dead.snapshot());
    let figures = tally(&case, records.len() as u64 + 1, &acknowledged, &deliveries);
    assert_eq!(figures.duplicated, 0, "{case}: nothing twice");

    let mut in_order = want_handled.clone();
    in_order.push(after);
    assert_eq!(
        handled.snapshot(),
        in_order,
        "{case}: the good records, in order: the partition kept flowing"
    );
    let letters = letters.lock().unwrap().clone();
    for record in records.iter().filter(|r| r.expect != Expect::Handled) {
        let Expect::Dead(kind) = record.expect else {
            unreachable!()
        };
        let letter = letters
            .iter()
            .find(|l| l.n == record.n)
            .unwrap_or_else(|| panic!("{case}: no dead letter for {}", record.what));
        assert_eq!(letter.kind, kind, "{case}: {}: {letter:?}", record.what);
        assert_eq!(letter.attempts, "1", "{case}: {}: not retried", record.what);
        assert!(
            !letter.reason.is_empty(),
            "{case}: {}: a reason",
            record.what
        );
        if kind == "header" {
            let named = if record.what == BAD_HEADER_NAME {
                letter.reason.contains("header name is not UTF-8")
            } else {
                record
                    .headers
                    .iter()
                    .any(|(name, _)| letter.reason.contains(name))
            };
            assert!(
                named,
                "{case}: {}: the reason names the header: {}",
                record.what, letter.reason
            );
        }
        if kind == "too_large" {
            assert!(
                letter.reason.contains(&LIMIT.to_string())
                    && letter.reason.contains(&record.payload.len().to_string()),
                "{case}: the reason names the size and the limit: {}",
                letter.reason
            );
            if net.is_kafka() {
                // 100 kB is more than the dead-letter producer takes
                // (limit + 64 KiB): the letter says what was left out.
                assert_eq!(letter.payload_len, 0, "{case}");
                assert_eq!(
                    letter.omitted.as_deref(),
                    Some(record.payload.len().to_string().as_str()),
                    "{case}"
                );
            } else {
                assert_eq!(letter.payload_len, record.payload.len(), "{case}");
            }
        } else {
            assert_eq!(
                letter.payload_len,
                record.payload.len(),
                "{case}: {}: bytes kept",
                record.what
            );
        }
    }
}

/// Produces `records` as a foreign client would; returns the numbers the
/// broker acknowledged.
async fn produce(net: &Net, bus: &topicbus::Bus, records: &[Record]) -> Vec<u64> {
    match net {
        Net::Memory(_) => {
            let mut acknowledged = Vec::new();
            for record in records {
                let mut raw = RawMessage::new(Order::NAME, record.payload.clone());
                raw.key = Some(b"same".to_vec());
                raw.headers = Headers::new();
                raw.headers.insert("n", record.n.to_string());
                for (name, value) in &record.headers {
                    raw.headers.insert(*name, value.clone());
                }
                // The publisher's own limit is the default (1 MB).
                bus.publish_raw(raw).await.expect("publish_raw");
                acknowledged.push(record.n);
            }
            acknowledged
        }
        #[cfg(feature = "kafka")]
        Net::Kafka(_) => produce_with_rdkafka(net.brokers(), records).await,
    }
}

#[cfg(feature = "kafka")]
async fn produce_with_rdkafka(brokers: &str, records: &[Record]) -> Vec<u64> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .expect("plain producer");
    let mut deliveries = Vec::new();
    for record in records {
        let n = record.n.to_string();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(n.as_bytes()),
        });
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_slice()),
            });
        }
        if record.what == BAD_HEADER_NAME {
            add_header_named_in_bytes(&headers, b"\xff\xfe", b"value");
        }
        let mut out = FutureRecord::to(Order::NAME).key("same").headers(headers);
        if record.what != "empty value (tombstone)" {
            out = out.payload(&record.payload);
        }
        let delivery = producer
            .send_result(out)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        deliveries.push((record.n, delivery));
    }
    let mut acknowledged = Vec::new();
    for (n, delivery) in deliveries {
        guard("delivery", delivery)
            .await
            .expect("producer alive")
            .map_err(|(e, _)| e)
            .expect("acknowledged");
        acknowledged.push(n);
    }
    acknowledged
}

/// Adds a header whose name is any bytes, as a client in another language
/// can: rdkafka's `Header` takes the name as `&str`.
#[cfg(feature = "kafka")]
fn add_header_named_in_bytes(headers: &rdkafka::message::OwnedHeaders, name: &[u8], value: &[u8]) {
    use rdkafka::bindings::{rd_kafka_header_add, rd_kafka_headers_t};
    use rdkafka::types::RDKafkaRespErr;

    // `BorrowedHeaders` is rdkafka's view of the native header list: a
    // reference to it is the list's pointer.
    let list = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
        as *mut rd_kafka_headers_t;
    // SAFETY: `list` is the live list `headers` owns (no other reference
    // reads it meanwhile); librdkafka copies the name and value, whose
    // lengths are given.
    let err = unsafe {
        rd_kafka_header_add(
            list,
            name.as_ptr().cast(),
            name.len() as isize,
            value.as_ptr().cast(),
            value.len() as isize,
        )
    };
    assert_eq!(
        err,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
        "header added"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_poison_records_are_dead_lettered_and_the_partition_flows_memory() {
    run(Net::memory()).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_poison_records_are_dead_lettered_and_the_partition_flows_kafka() {
    run(Net::kafka()).await;
}
