//! The lean wire profile (`KafkaConfig::wire_profile(WireProfile::Lean)`),
//! on librdkafka's mock cluster: a lean producer writes only the four
//! CloudEvents attributes the spec requires, with the message's time as the
//! record timestamp; readers take lean and full records alike, the time of
//! a lean one from its timestamp and its codec from the topic; requests,
//! replies and dead letters keep the headers delivery needs. Also the
//! setting's configuration key.
#![cfg(feature = "kafka")]

#[path = "support/mock_kafka.rs"]
mod mock_kafka;
#[allow(dead_code)] // path() is for other tests
#[path = "support/temp_dir.rs"]
mod temp_dir;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, BusConfig, Context, ErrorKind, StartFrom, Topic, WireProfile};

use mock_kafka::MockKafka;

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(60);

/// A topic with a binary codec: a reader that goes by the topic's codec,
/// not by a `content-type`, is the only one that decodes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "lean.reading", codec = "postcard")]
struct Reading {
    sensor: String,
    value: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "lean.ask", response = Answer)]
struct Ask {
    n: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "lean.answer")]
struct Answer {
    n: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "lean.failing")]
struct Failing {
    n: i64,
}

async fn bus(kafka: &MockKafka, service: &str, profile: WireProfile) -> Bus {
    let config = KafkaConfig::new(&kafka.bootstrap)
        .provision_topics(false)
        .wire_profile(profile);
    tokio::time::timeout(
        HANG,
        Bus::builder()
            .service(service)
            .retries(0)
            .kafka(mock_kafka::test_settings(config))
            .connect(),
    )
    .await
    .expect("hang guard: connect")
    .expect("connect")
}

/// One record as a plain client reads it.
struct Record {
    headers: BTreeMap<String, Vec<u8>>,
    timestamp: Option<i64>,
    value: Vec<u8>,
}

impl Record {
    fn names(&self) -> Vec<&str> {
        self.headers.keys().map(String::as_str).collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| std::str::from_utf8(v).expect("UTF-8 header"))
    }
}

/// The first `n` records of every partition of `topic`, read by a plain
/// consumer outside any group.
fn read(brokers: &str, topic: &str, n: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "lean-profile-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), HANG)
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + HANG;
    let mut records = Vec::new();
    while records.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "hang guard: read {topic}"
        );
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = polled.expect("record");
        records.push(Record {
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp: message.timestamp().to_millis(),
            value: message.payload().unwrap_or_default().to_vec(),
        });
    }
    records
}

async fn read_async(brokers: &str, topic: &str, n: usize) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read(&brokers, &topic, n))
        .await
        .expect("reader")
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// What a handler saw of a message.
#[derive(Debug)]
struct Seen {
    reading: Reading,
    time: SystemTime,
    id: String,
    source: String,
}

async fn subscribe_readings(bus: &Bus, group: &str) -> mpsc::UnboundedReceiver<Seen> {
    let (seen, received) = mpsc::unbounded_channel();
    bus.group(group.to_owned())
        .subscribe(move |reading: Reading, ctx: Context| {
            let _ = seen.send(Seen {
                reading,
                time: ctx.time(),
                id: ctx.id().to_string(),
                source: ctx.source().to_owned(),
            });
            std::future::ready(Ok::<(), Infallible>(()))
        })
        .start_from(StartFrom::Earliest)
        .await
        .expect("subscribe");
    received
}

async fn next(received: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(HANG, received.recv())
        .await
        .expect("hang guard: handler")
        .expect("handler alive")
}

fn reading(value: i64) -> Reading {
    Reading {
        sensor: "s-1".to_owned(),
        value,
    }
}

/// A lean publisher writes exactly `ce_specversion`, `ce_id`, `ce_source`
/// and `ce_type`, with the message's time as the record timestamp; a full
/// one writes `ce_time` and `content-type` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lean_record_carries_the_four_required_attributes_and_its_time_as_timestamp() {
    let kafka = MockKafka::start(1);
    let lean = bus(&kafka, "lean-writer", WireProfile::Lean).await;
    let full = bus(&kafka, "full-writer", WireProfile::Full).await;
    lean.ensure_topic::<Reading>().await.expect("topic");
    let lean_id = lean.publish(&reading(1)).await.expect("publish lean");
    full.publish(&reading(2)).await.expect("publish full");
    let records = read_async(&kafka.bootstrap, Reading::NAME, 2).await;
    let by = |source: &str| {
        records
            .iter()
            .find(|r| r.header("ce_source") == Some(source))
            .expect("a record of each writer")
    };

    let lean_record = by("lean-writer");
    assert_eq!(
        lean_record.names(),
        ["ce_id", "ce_source", "ce_specversion", "ce_type"]
    );
    assert_eq!(lean_record.header("ce_specversion"), Some("1.0"));
    assert_eq!(
        lean_record.header("ce_id"),
        Some(lean_id.to_string().as_str())
    );
    assert_eq!(lean_record.header("ce_source"), Some("lean-writer"));
    assert_eq!(lean_record.header("ce_type"), Some(Reading::NAME));
    assert_eq!(
        postcard::from_bytes::<Reading>(&lean_record.value).expect("postcard value"),
        reading(1)
    );

    let full_record = by("full-writer");
    assert_eq!(
        full_record.names(),
        [
            "ce_id",
            "ce_source",
            "ce_specversion",
            "ce_time",
            "ce_type",
            "content-type"
        ]
    );
    assert_eq!(
        full_record.header("content-type"),
        Some("application/x-postcard")
    );

    // The lean record's timestamp is the time its handlers see; the full
    // record's `ce_time` is what a full reader sees (checked below).
    let mut received = subscribe_readings(&full, "lean.reader.time").await;
    let first = next(&mut received).await;
    let second = next(&mut received).await;
    let (lean_seen, full_seen) = if first.reading.value == 1 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(lean_record.timestamp, Some(millis(lean_seen.time)));
    let ce_time = humantime::parse_rfc3339(full_record.header("ce_time").expect("ce_time"))
        .expect("RFC 3339");
    assert_eq!(millis(ce_time), millis(full_seen.time));
    lean.shutdown().await.expect("shutdown");
    full.shutdown().await.expect("shutdown");
}

/// A reader, whatever its own profile, takes a lean record's time from the
/// record timestamp and decodes it with the topic's codec; and reads full
/// records as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_and_full_readers_read_both_profiles() {
    let kafka = MockKafka::start(1);
    let lean = bus(&kafka, "lean-side", WireProfile::Lean).await;
    let full = bus(&kafka, "full-side", WireProfile::Full).await;
    lean.ensure_topic::<Reading>().await.expect("topic");
    let lean_id = lean.publish(&reading(10)).await.expect("publish lean");
    let full_id = full.publish(&reading(20)).await.expect("publish full");

    for (reader, group) in [(&full, "full.reader"), (&lean, "lean.reader")] {
        let mut received = subscribe_readings(reader, group).await;
        let mut seen = [next(&mut received).await, next(&mut received).await];
        seen.sort_by_key(|s| s.reading.value);
        assert_eq!(seen[0].reading, reading(10), "{group}");
        assert_eq!(seen[0].id, lean_id.to_string(), "{group}");
        assert_eq!(seen[0].source, "lean-side", "{group}");
        assert_eq!(seen[1].reading, reading(20), "{group}");
        assert_eq!(seen[1].id, full_id.to_string(), "{group}");
        assert_eq!(seen[1].source, "full-side", "{group}");
    }
    lean.shutdown().await.expect("shutdown");
    full.shutdown().await.expect("shutdown");
}

/// A record another client wrote with only the four required attributes
/// and a timestamp of its own reaches a handler with that timestamp as its
/// time, decoded with the topic's codec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_record_without_ce_time_has_its_timestamp_as_time() {
    let kafka = MockKafka::start(1);
    let reader = bus(&kafka, "reader", WireProfile::Full).await;
    reader.ensure_topic::<Reading>().await.expect("topic");
    let mut received = subscribe_readings(&reader, "foreign.reader").await;

    // 2021-06-01T12:00:00.250Z: no reading happens then.
    let stamped = 1_622_548_800_250;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .expect("producer");
    let value = postcard::to_allocvec(&reading(7)).expect("encode");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "ce_specversion",
            value: Some("1.0"),
        })
        .insert(Header {
            key: "ce_id",
            value: Some("foreign-1"),
        })
        .insert(Header {
            key: "ce_source",
            value: Some("python"),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(Reading::NAME),
        });
    producer
        .send(
            BaseRecord::<(), [u8]>::to(Reading::NAME)
                .payload(&value[..])
                .headers(headers)
                .timestamp(stamped),
        )
        .map_err(|(error, _)| error)
        .expect("send");
    producer.flush(HANG).expect("flush");

    let seen = next(&mut received).await;
    assert_eq!(seen.reading, reading(7));
    assert_eq!(seen.id, "foreign-1");
    assert_eq!(seen.source, "python");
    assert_eq!(
        seen.time,
        UNIX_EPOCH + Duration::from_millis(stamped as u64)
    );
    reader.shutdown().await.expect("shutdown");
}

/// Between lean buses, a request carries `correlation_id` and `reply_to`
/// and gets its reply; an error reply carries its failure headers; a dead
/// letter carries the failure headers and the original's timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_requests_replies_and_dead_letters_keep_what_delivery_needs() {
    let kafka = MockKafka::start(1);
    let responder = bus(&kafka, "lean-responder", WireProfile::Lean).await;
    let requester = bus(&kafka, "lean-requester", WireProfile::Lean).await;
    responder
        .group("lean.responders")
        .serve(|ask: Ask| async move {
            if ask.n < 0 {
                Err(format!("cannot answer {}", ask.n))
            } else {
                Ok(Answer { n: ask.n * 2 })
            }
        })
        .await
        .expect("serve");
    let answer = tokio::time::timeout(HANG, requester.request(&Ask { n: 21 }))
        .await
        .expect("hang guard: request")
        .expect("reply");
    assert_eq!(answer, Answer { n: 42 });
    let failed = tokio::time::timeout(HANG, requester.request(&Ask { n: -1 }))
        .await
        .expect("hang guard: request")
        .expect_err("an error reply");
    assert_eq!(failed.kind(), ErrorKind::Remote);
    assert!(failed.to_string().contains("cannot answer -1"), "{failed}");

    let requests = read_async(&kafka.bootstrap, Ask::NAME, 2).await;
    for request in &requests {
        assert!(request.header("correlation_id").is_some());
        let reply_to = request.header("reply_to").expect("reply_to");
        assert!(reply_to.starts_with("topicbus.reply."), "{reply_to}");
        assert_eq!(request.header("ce_time"), None);
        assert_eq!(request.header("content-type"), None);
    }
    let inbox = requests[0].header("reply_to").expect("reply_to").to_owned();
    let replies = read_async(&kafka.bootstrap, &inbox, 2).await;
    // The request topic has several partitions: the order of the requests
    // read is not the order they were sent in.
    let corr = |records: &[Record]| -> std::collections::BTreeSet<String> {
        records
            .iter()
            .map(|r| {
                r.header("correlation_id")
                    .expect("correlation_id")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(corr(&replies), corr(&requests));
    for reply in &replies {
        assert_eq!(reply.header("ce_time"), None);
        assert_eq!(reply.header("content-type"), None);
    }
    // The one inbox partition holds the replies in the order of the
    // requests, which were made one after the other.
    assert_eq!(replies[0].header("topicbus_error_kind"), None);
    assert_eq!(replies[1].header("topicbus_error_kind"), Some("handler"));
    assert_eq!(
        replies[1].header("topicbus_error"),
        Some("cannot answer -1")
    );

    let dead_letters = responder.clone();
    dead_letters
        .group("lean.failing")
        .subscribe(|_: Failing| async { Err::<(), _>("always fails".to_owned()) })
        .start_from(StartFrom::Earliest)
        .await
        .expect("subscribe");
    requester.publish(&Failing { n: 1 }).await.expect("publish");
    let original = read_async(&kafka.bootstrap, Failing::NAME, 1).await;
    let dlq = format!("{}.dlq", Failing::NAME);
    let dead = read_async(&kafka.bootstrap, &dlq, 1).await;
    let dead = &dead[0];
    assert_eq!(dead.header("topicbus_error_kind"), Some("handler"));
    assert_eq!(dead.header("topicbus_error"), Some("always fails"));
    assert_eq!(dead.header("topicbus_original_topic"), Some(Failing::NAME));
    assert_eq!(dead.header("ce_type"), Some(Failing::NAME));
    assert_eq!(dead.header("ce_id"), original[0].header("ce_id"));
    assert_eq!(dead.timestamp, original[0].timestamp);
    requester.shutdown().await.expect("shutdown");
    responder.shutdown().await.expect("shutdown");
}

/// `kafka_wire_profile` loads from the environment and from a file; a value
/// other than `full` or `lean` fails naming the key.
#[test]
fn the_wire_profile_is_a_configuration_key() {
    let config = BusConfig::loader()
        .env_vars([("TOPICBUS_KAFKA_WIRE_PROFILE", "Lean")])
        .load()
        .expect("loads");
    assert_eq!(config.kafka_wire_profile, WireProfile::Lean);
    assert_eq!(BusConfig::default().kafka_wire_profile, WireProfile::Full);

    let dir = temp_dir::TempDir::new("wire-profile");
    let yaml = dir.write("bus.yaml", "bus:\n  kafka_wire_profile: lean\n");
    let config = BusConfig::loader().file(&yaml).load().expect("YAML");
    assert_eq!(config.kafka_wire_profile, WireProfile::Lean);
    let toml = dir.write("bus.toml", "[bus]\nkafka_wire_profile = \"full\"\n");
    let config = BusConfig::loader().file(&toml).load().expect("TOML");
    assert_eq!(config.kafka_wire_profile, WireProfile::Full);

    let error = BusConfig::loader()
        .env_vars([("TOPICBUS_KAFKA_WIRE_PROFILE", "slim")])
        .load()
        .expect_err("not a profile");
    let text = error.to_string();
    assert!(
        text.contains("kafka_wire_profile") || text.contains("KAFKA_WIRE_PROFILE"),
        "{text}"
    );
    assert!(
        text.contains("slim") && text.contains("full or lean"),
        "{text}"
    );
    let error = BusConfig::loader()
        .file(dir.write("bad.yaml", "bus:\n  kafka_wire_profile: 3\n"))
        .load()
        .expect_err("not a profile");
    assert!(error.to_string().contains("kafka_wire_profile"), "{error}");
}
