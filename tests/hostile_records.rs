//! Records that any client with write access can produce, on librdkafka's
//! mock cluster: a `ce_time` of 200 000 control characters, a megabyte of
//! plain headers, 100 000 headers. Each is dead-lettered (in a form that
//! fits the broker), and the valid records behind it in its partition are
//! handled: dead-lettering always finishes.
#![cfg(feature = "kafka")]

#[path = "support/mock_kafka.rs"]
mod mock_kafka;
#[path = "support/raw_kafka.rs"]
mod raw_kafka;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use topicbus::kafka::KafkaConfig;
use topicbus::{header, Bus, BusBuilder, Topic};

use mock_kafka::MockKafka;
use raw_kafka::{read, reader};

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(90);

/// One partition, so that the valid records queue behind the hostile one.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.orders", partitions = 1)]
struct Order {
    n: u64,
}

async fn consumer(
    kafka: &MockKafka,
    tune: impl FnOnce(BusBuilder) -> BusBuilder,
) -> (Bus, Arc<Mutex<Vec<u64>>>) {
    // One partition: the mock cluster would auto-create several.
    kafka.apply(mock_kafka::Fault::CreateTopic(Order::NAME.to_owned(), 1));
    let config =
        mock_kafka::test_settings(KafkaConfig::new(&kafka.bootstrap).provision_topics(false));
    let bus = tune(Bus::builder().service("orders"))
        .kafka(config)
        .connect()
        .await
        .expect("connect");
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = Arc::clone(&handled);
    bus.group("orders")
        .subscribe(move |order: Order| {
            sink.lock().expect("poisoned").push(order.n);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .retries(0)
        .await
        .expect("subscribe");
    (bus, handled)
}

/// Writes `value` with `headers` to the topic, then two valid orders.
fn produce(kafka: &MockKafka, value: &[u8], headers: &[(String, Vec<u8>)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("message.max.bytes", "8000000")
        .create()
        .expect("producer");
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name.as_str(),
            value: Some(value.as_slice()),
        });
    }
    producer
        .send(
            BaseRecord::<(), [u8]>::to(Order::NAME)
                .payload(value)
                .headers(owned),
        )
        .map_err(|(error, _)| error)
        .expect("send the hostile record");
    for n in [1u64, 2] {
        let valid = format!(r#"{{"n":{n}}}"#);
        producer
            .send(BaseRecord::<(), str>::to(Order::NAME).payload(&valid))
            .map_err(|(error, _)| error)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

async fn handled_both(handled: &Mutex<Vec<u64>>) {
    tokio::time::timeout(HANG, async {
        while handled.lock().expect("poisoned").len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the valid records behind the hostile one are handled");
    assert_eq!(*handled.lock().expect("poisoned"), [1, 2]);
}

/// The one dead letter of the topic, as another client reads it.
async fn dead_letter(kafka: &MockKafka) -> raw_kafka::Record {
    let dlq = reader(&kafka.bootstrap, &format!("{}.dlq", Order::NAME));
    let mut records = tokio::task::spawn_blocking(move || read(&dlq, 1))
        .await
        .expect("reader");
    records.remove(0)
}

fn header_text<'a>(record: &'a raw_kafka::Record, name: &str) -> &'a str {
    let value = record
        .2
        .get(name)
        .unwrap_or_else(|| panic!("dead letter lacks `{name}`: {:?}", record.2.keys()));
    std::str::from_utf8(value).expect("UTF-8")
}

/// Sends `value` with `headers`, then two valid orders, to a consumer made
/// with `tune`; returns once the valid ones are handled, with the hostile
/// record's dead letter.
async fn hostile(
    kafka: &MockKafka,
    tune: impl FnOnce(BusBuilder) -> BusBuilder,
    value: &[u8],
    headers: &[(String, Vec<u8>)],
) -> (Bus, raw_kafka::Record) {
    let (bus, handled) = consumer(kafka, tune).await;
    produce(kafka, value, headers);
    handled_both(&handled).await;
    (bus, dead_letter(kafka).await)
}

/// 110 headers of 10 kB: more than a broker takes in one record.
fn megabyte_of_headers() -> Vec<(String, Vec<u8>)> {
    (0..110)
        .map(|i| (format!("x-padding-{i}"), vec![b'h'; 10_000]))
        .collect()
}

/// A ~200 kB record whose `ce_time` is 200 000 × U+0001: quoted in the
/// reason it made a dead letter of ~1.2 MB that the broker refused for
/// ever, and the partition stalled. The header is past the header bound;
/// the dead letter says so in a short reason, and the partition moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_unreadable_header_is_dead_lettered_and_the_partition_moves_on() {
    let kafka = MockKafka::start(1);
    let value = format!(r#"{{"n":0,"pad":"{}"}}"#, "x".repeat(200_000));
    let ce_time = ("ce_time".to_owned(), "\u{1}".repeat(200_000).into_bytes());
    let (bus, dead) = hostile(&kafka, |b| b, value.as_bytes(), &[ce_time]).await;
    assert_eq!(header_text(&dead, header::ERROR_KIND), "header");
    let reason = header_text(&dead, header::ERROR);
    assert!(
        reason.len() <= 1024,
        "a bounded reason: {} bytes",
        reason.len()
    );
    assert_eq!(header_text(&dead, header::HEADERS_DROPPED), "1");
    assert_eq!(dead.1, value.as_bytes(), "the payload is kept");
    bus.shutdown().await.expect("shutdown");
}

/// 110 headers of 10 kB and a payload the type cannot decode: the headers
/// alone are over the broker's limit. With the default header bound they
/// are dropped on reading, counted, and the record is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_of_headers_is_dropped_on_reading_and_counted() {
    let kafka = MockKafka::start(1);
    let headers = megabyte_of_headers();
    let (bus, dead) = hostile(&kafka, |b| b, br#"{"wrong":true}"#, &headers).await;
    assert_eq!(header_text(&dead, header::ERROR_KIND), "header");
    let dropped: usize = header_text(&dead, header::HEADERS_DROPPED).parse().unwrap();
    assert!(
        dropped > 100,
        "most of the 110 headers are past 64 KiB: {dropped}"
    );
    assert_eq!(dead.1, br#"{"wrong":true}"#);
    bus.shutdown().await.expect("shutdown");
}

/// The same record with the header bound raised above it: the dead letter
/// (payload, a megabyte of headers and the reason) is too large for the
/// producer, so it is written again without its oversized application
/// headers — counted — rather than retried for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_over_the_limit_is_written_without_what_does_not_fit() {
    let kafka = MockKafka::start(1);
    let raised = |b: BusBuilder| b.max_headers(1_000, 8 << 20);
    let headers = megabyte_of_headers();
    let (bus, dead) = hostile(&kafka, raised, br#"{"wrong":true}"#, &headers).await;
    assert_eq!(header_text(&dead, header::ERROR_KIND), "decode");
    assert_eq!(header_text(&dead, header::HEADERS_DROPPED), "110");
    assert!(!dead.2.contains_key("x-padding-0"));
    assert_eq!(dead.1, br#"{"wrong":true}"#, "the payload is kept");
    bus.shutdown().await.expect("shutdown");
}

/// 100 000 headers of a few bytes: read in linear time, all but the first
/// 256 dropped and counted, the record dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_headers_are_bounded() {
    let kafka = MockKafka::start(1);
    let headers: Vec<(String, Vec<u8>)> = (0..100_000)
        .map(|i| (format!("h{i}"), b"v".to_vec()))
        .collect();
    let (bus, dead) = hostile(&kafka, |b| b, br#"{"n":0}"#, &headers).await;
    assert_eq!(header_text(&dead, header::ERROR_KIND), "header");
    assert_eq!(header_text(&dead, header::HEADERS_DROPPED), "99744");
    bus.shutdown().await.expect("shutdown");
}
