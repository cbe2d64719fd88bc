//! Kafka-only behaviour, on librdkafka's mock cluster: consumer groups
//! across processes, hand-over when a member leaves, resuming from committed
//! offsets, a partition backed up behind a blocked handler, and failing fast
//! when no broker can be reached.
//!
//! The request/reply routing tests also run on Apache Kafka: their
//! `_on_kafka` variants are ignored unless asked for, with the broker in
//! `TOPICBUS_KAFKA_BROKERS`:
//!
//! ```text
//! TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start) \
//!     cargo test --all-features --test kafka -- --ignored _on_kafka
//! ```
#![cfg(feature = "kafka")]

#[path = "support/mock_kafka.rs"]
mod mock_kafka;
#[path = "support/reaper.rs"]
mod reaper;

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, Context, Error, ErrorKind, Topic};

use mock_kafka::{Fault, MockKafka};
use reaper::Reaped;

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "kafka.test.work", key = key, partitions = 6)]
struct Work {
    key: String,
    seq: u64,
}

fn config(brokers: &str) -> KafkaConfig {
    mock_kafka::test_settings(KafkaConfig::new(brokers).provision_topics(false))
}

async fn bus(brokers: &str, service: &str) -> Bus {
    Bus::builder()
        .service(service)
        .kafka(config(brokers))
        .connect()
        .await
        .expect("connect")
}

async fn guard<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
}

/// Every key's sequence numbers in the order one consumer handled them.
type Seen = Arc<Mutex<Vec<(String, u64)>>>;

async fn subscribe_recording(bus: &Bus, group: &str, seen: &Seen) {
    let seen = Arc::clone(seen);
    bus.group(group.to_owned())
        .subscribe(move |work: Work, _ctx: Context| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push((work.key, work.seq));
                Ok::<_, String>(())
            }
        })
        .await
        .expect("subscribe");
}

fn work(n: u64, keys: u64) -> Vec<Work> {
    (0..n)
        .map(|seq| Work {
            key: format!("k{}", seq % keys),
            seq,
        })
        .collect()
}

/// Checks that `consumers` (each consumer's handled messages, in its own
/// order) hold every message at least once, and that each consumer handled
/// each key in publish order: going back is only allowed to a message
/// handled before (a redelivery after a rebalance, as at-least-once allows).
/// Returns the number of duplicates.
fn check(consumers: &[Vec<(String, u64)>], total: u64) -> usize {
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for seen in consumers {
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for (key, seq) in seen {
            let redelivery = count.contains_key(seq);
            if let Some(prev) = last.insert(key, *seq) {
                assert!(
                    prev < *seq || redelivery,
                    "key {key}: {seq} handled after {prev} for the first time"
                );
            }
            *count.entry(*seq).or_default() += 1;
        }
    }
    let missing: Vec<u64> = (0..total).filter(|s| !count.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "lost {} messages, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    count.values().map(|n| n - 1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_wrong_address_fails_naming_it() {
    let config = KafkaConfig::new("127.0.0.1:1").connect_timeout(Duration::from_secs(2));
    let error = guard("connect", Bus::builder().kafka(config).connect())
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_librdkafka_property_fails_naming_the_key() {
    let config = KafkaConfig::new("127.0.0.1:1").set("acks", "sometimes");
    let error = guard("connect", Bus::builder().kafka(config).connect())
        .await
        .expect_err("acks=sometimes is invalid");
    match &error {
        Error::Config { key, .. } => assert_eq!(key, "acks", "{error}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_without_a_reachable_broker_is_unavailable_after_the_timeout() {
    let kafka = MockKafka::start(1);
    let config = config(&kafka.bootstrap).delivery_timeout(Duration::from_secs(2));
    let bus = Bus::builder()
        .kafka(config)
        .connect()
        .await
        .expect("connect");
    bus.publish(&Work {
        key: "a".into(),
        seq: 0,
    })
    .await
    .expect("broker up");
    // Down for sure before the next publish (`inject` does not wait).
    tokio::task::block_in_place(|| kafka.apply(Fault::BrokerDown(1)));
    let error = guard(
        "publish",
        bus.publish(&Work {
            key: "a".into(),
            seq: 1,
        }),
    )
    .await
    .expect_err("the only broker is down");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    kafka.inject(Fault::BrokerUp(1));
    bus.shutdown().await.expect("shutdown");
}

/// How many `Counted` values were encoded so far (one test uses the type).
static ENCODED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An event that counts its encodings.
#[derive(Debug, Clone, Deserialize, Topic)]
#[topic(name = "kafka.test.counted")]
struct Counted {
    seq: u64,
}

impl Serialize for Counted {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        ENCODED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut out = serializer.serialize_struct("Counted", 1)?;
        out.serialize_field("seq", &self.seq)?;
        out.end()
    }
}

/// An event that cannot be encoded when `seq` is `unencodable`.
#[derive(Debug, Clone, Deserialize, Topic)]
#[topic(name = "kafka.test.batched")]
struct Batched {
    seq: u64,
    unencodable: u64,
}

impl Serialize for Batched {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeStruct as _};
        if self.seq == self.unencodable {
            return Err(S::Error::custom("this one cannot be encoded"));
        }
        let mut out = serializer.serialize_struct("Batched", 2)?;
        out.serialize_field("seq", &self.seq)?;
        out.serialize_field("unencodable", &self.unencodable)?;
        out.end()
    }
}

/// A batch far longer than the publish window, published while nothing can
/// be acknowledged: only a window's worth is ever encoded (and handed to
/// librdkafka), not the whole batch, and the batch fails with the delivery
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_batch_is_encoded_only_as_acknowledgements_make_room() {
    let kafka = MockKafka::start(1);
    let config = config(&kafka.bootstrap).delivery_timeout(Duration::from_secs(2));
    let bus = Bus::builder()
        .kafka(config)
        .connect()
        .await
        .expect("connect");
    bus.ensure_topic::<Counted>().await.expect("topic");
    tokio::task::block_in_place(|| kafka.apply(Fault::BrokerDown(1)));
    let batch: Vec<Counted> = (0..50_000).map(|seq| Counted { seq }).collect();
    let error = guard("publish", bus.publish_batch(&batch))
        .await
        .expect_err("the only broker is down");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let encoded = ENCODED.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        encoded <= 8_192,
        "{encoded} of 50 000 encoded while none could be acknowledged"
    );
    kafka.inject(Fault::BrokerUp(1));
    bus.shutdown().await.expect("shutdown");
}

/// A message that cannot be encoded ends its batch: the ones before it are
/// published, in order, and none after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_ends_at_its_first_unencodable_message() {
    let kafka = MockKafka::start(1);
    // One partition: the end marker is read after all that came before it.
    tokio::task::block_in_place(|| kafka.apply(Fault::CreateTopic(Batched::NAME.to_owned(), 1)));
    let publisher = bus(&kafka.bootstrap, "publisher").await;
    let batch: Vec<Batched> = (0..10)
        .map(|seq| Batched {
            seq,
            unencodable: 5,
        })
        .collect();
    let error = guard("publish", publisher.publish_batch(&batch))
        .await
        .expect_err("the sixth cannot be encoded");
    assert_eq!(error.kind(), ErrorKind::Codec, "{error}");
    // An end marker after the failed batch: everything the batch published
    // is read before it.
    let end = Batched {
        seq: 100,
        unencodable: u64::MAX,
    };
    publisher.publish(&end).await.expect("end marker");

    let consumer = bus(&kafka.bootstrap, "consumer").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let done_tx = Mutex::new(Some(done_tx));
    let recording = Arc::clone(&seen);
    consumer
        .group("batched.group")
        .subscribe(move |event: Batched| {
            if event.seq == 100 {
                if let Some(done) = done_tx.lock().unwrap().take() {
                    let _ = done.send(());
                }
            } else {
                recording.lock().unwrap().push(event.seq);
            }
            std::future::ready(Ok::<_, String>(()))
        })
        .start_from(topicbus::StartFrom::Earliest)
        .await
        .expect("subscribe");
    guard("end marker", done_rx).await.expect("end marker read");
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    consumer.shutdown().await.expect("shutdown");
    publisher.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_subscriber_resumes_from_its_committed_offset() {
    let kafka = MockKafka::start(1);
    let publisher = bus(&kafka.bootstrap, "publisher").await;
    let first: Seen = Seen::default();
    let consumer = bus(&kafka.bootstrap, "resume").await;
    subscribe_recording(&consumer, "resume.group", &first).await;
    publisher
        .publish_batch(&work(200, 8))
        .await
        .expect("publish");
    guard("first 200", async {
        while first.lock().unwrap().len() < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    consumer.shutdown().await.expect("shutdown commits");

    let later: Vec<Work> = (200..400)
        .map(|seq| Work {
            key: format!("k{}", seq % 8),
            seq,
        })
        .collect();
    publisher
        .publish_batch(&later)
        .await
        .expect("publish while nobody reads");

    let second: Seen = Seen::default();
    let restarted = bus(&kafka.bootstrap, "resume").await;
    subscribe_recording(&restarted, "resume.group", &second).await;
    guard("next 200", async {
        while second.lock().unwrap().len() < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let seqs: Vec<u64> = second.lock().unwrap().iter().map(|(_, s)| *s).collect();
    assert!(
        seqs.iter().all(|s| *s >= 200),
        "redelivered committed messages: {seqs:?}"
    );
    let duplicates = check(
        &[
            first.lock().unwrap().clone(),
            second.lock().unwrap().clone(),
        ],
        400,
    );
    assert_eq!(duplicates, 0);
    restarted.shutdown().await.expect("shutdown");
    publisher.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_mid_stream_hands_its_partitions_over() {
    let kafka = MockKafka::start(1);
    let publisher = bus(&kafka.bootstrap, "publisher").await;
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    let mut members = Vec::new();
    for log in &seen {
        let member = bus(&kafka.bootstrap, "handover").await;
        subscribe_recording(&member, "handover.group", log).await;
        members.push(member);
    }
    let total = 3000;
    let messages = work(total, 16);
    publisher
        .publish_batch(&messages[..1500])
        .await
        .expect("publish");
    // One member leaves gracefully while messages are flowing.
    members.remove(0).shutdown().await.expect("graceful leave");
    publisher
        .publish_batch(&messages[1500..])
        .await
        .expect("publish");
    guard("all handled", async {
        loop {
            let handled: usize = seen.iter().map(|s| s.lock().unwrap().len()).sum();
            let distinct: std::collections::HashSet<u64> = seen
                .iter()
                .flat_map(|s| {
                    s.lock()
                        .unwrap()
                        .iter()
                        .map(|(_, q)| *q)
                        .collect::<Vec<_>>()
                })
                .collect();
            if distinct.len() as u64 == total {
                break handled;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let logs: Vec<Vec<(String, u64)>> = seen.iter().map(|s| s.lock().unwrap().clone()).collect();
    let duplicates = check(&logs, total);
    println!("handover: sent {total}, lost 0, duplicated {duplicates}");
    for member in members {
        member.shutdown().await.expect("shutdown");
    }
    publisher.shutdown().await.expect("shutdown");
}

// ------------------------------------------------------------ processes

/// Runs as a child process: one consumer-group member that appends every
/// message it handles to `TOPICBUS_CHILD_OUT` until `TOPICBUS_CHILD_STOP`
/// exists, then shuts down gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of three_processes_share_a_group_without_loss"]
async fn child_group_member() {
    let brokers = std::env::var("TOPICBUS_CHILD_BROKERS").expect("started by the parent test");
    let out = PathBuf::from(std::env::var("TOPICBUS_CHILD_OUT").expect("out file"));
    let stop = PathBuf::from(std::env::var("TOPICBUS_CHILD_STOP").expect("stop file"));
    let file = Arc::new(Mutex::new(std::fs::File::create(&out).expect("out file")));
    let bus = bus(&brokers, "worker").await;
    let sink = Arc::clone(&file);
    bus.group("processes.group")
        .subscribe(move |work: Work| {
            let sink = Arc::clone(&sink);
            async move {
                writeln!(sink.lock().unwrap(), "{} {}", work.key, work.seq)
                    .map_err(|e| e.to_string())
            }
        })
        .await
        .expect("subscribe");
    std::fs::write(out.with_extension("ready"), b"").expect("ready file");
    while !stop.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.shutdown().await.expect("shutdown");
    file.lock().unwrap().flush().expect("flush");
}

fn spawn_child(brokers: &str, out: &Path, stop: &Path) -> Reaped {
    Reaped(
        Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "child_group_member", "--ignored", "--nocapture"])
            .env("TOPICBUS_CHILD_BROKERS", brokers)
            .env("TOPICBUS_CHILD_OUT", out)
            .env("TOPICBUS_CHILD_STOP", stop)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn child"),
    )
}

fn read_seen(out: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, seq) = line.split_once(' ')?;
            Some((key.to_owned(), seq.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_a_group_without_loss() {
    let kafka = MockKafka::start(1);
    let dir = std::env::temp_dir().join(format!("topicbus-processes-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let stop = dir.join("stop");
    let outs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("child-{i}.txt"))).collect();
    let mut children: Vec<Reaped> = outs
        .iter()
        .map(|out| spawn_child(&kafka.bootstrap, out, &stop))
        .collect();
    guard("children joined", async {
        while !outs.iter().all(|o| o.with_extension("ready").exists()) {
            for child in &mut children {
                if let Some(status) = child.try_wait().expect("child status") {
                    panic!("a child exited before it joined: {status}");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let publisher = bus(&kafka.bootstrap, "publisher").await;
    let total = 10_000;
    publisher
        .publish_batch(&work(total, 32))
        .await
        .expect("publish");
    guard("10 000 handled", async {
        loop {
            let distinct: std::collections::HashSet<u64> = outs
                .iter()
                .flat_map(|o| read_seen(o))
                .map(|(_, s)| s)
                .collect();
            if distinct.len() as u64 == total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    std::fs::write(&stop, b"").expect("stop file");
    for child in &mut children {
        let status = child.wait().expect("child exit");
        assert!(status.success(), "a child failed: {status}");
    }
    let logs: Vec<Vec<(String, u64)>> = outs.iter().map(|o| read_seen(o)).collect();
    let shares: Vec<usize> = logs.iter().map(Vec::len).collect();
    let duplicates = check(&logs, total);
    println!("3 processes: sent {total}, lost 0, duplicated {duplicates}, shares {shares:?}");
    assert!(
        shares.iter().filter(|n| **n > 0).count() >= 2,
        "work was not shared: {shares:?}"
    );
    publisher.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "kafka.test.replay", key = key)]
struct Replay {
    key: String,
    seq: u64,
}

/// A new group started at offset 5 of every partition: the one partition
/// holding the 10 messages (one key) replays from its sixth message, the
/// empty ones clamp to their end.
///
/// `StartFrom::Timestamp` is not tested here: it relies on the broker's
/// ListOffsets-by-time, which the mock cluster does not implement (it
/// answers "end" for every partition); the conformance suite tests it on
/// Apache Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_replays_from_an_offset() {
    let kafka = MockKafka::start(1);
    let bus = bus(&kafka.bootstrap, "replay").await;
    let messages: Vec<Replay> = (0..10)
        .map(|seq| Replay {
            key: "one".into(),
            seq,
        })
        .collect();
    bus.publish_batch(&messages).await.expect("publish");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    bus.group("replay.group")
        .subscribe(move |msg: Replay| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(msg.seq);
                Ok::<_, String>(())
            }
        })
        .start_from(topicbus::StartFrom::Offsets(
            (0..64).map(|p| (p, 5)).collect(),
        ))
        .await
        .expect("subscribe");
    guard("5 replayed", async {
        while seen.lock().unwrap().len() < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    bus.shutdown().await.expect("shutdown");
    assert_eq!(*seen.lock().unwrap(), vec![5, 6, 7, 8, 9]);
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "kafka.test.ask", response = Answer)]
struct Ask {
    asker: usize,
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "kafka.test.answer")]
struct Answer {
    asker: usize,
    n: u64,
}

/// Where a routing test runs: a mock cluster of its own, or the Apache
/// Kafka broker named by `TOPICBUS_KAFKA_BROKERS`, which earlier runs may
/// have used too (so the tests name their services with [`Broker::scope`]).
enum Broker {
    Mock(MockKafka),
    Kafka(String),
}

impl Broker {
    fn mock() -> Self {
        Broker::Mock(MockKafka::start(1))
    }

    fn kafka() -> Self {
        let brokers = std::env::var("TOPICBUS_KAFKA_BROKERS")
            .ok()
            .filter(|b| !b.is_empty())
            .expect("set TOPICBUS_KAFKA_BROKERS to a broker: $(scripts/kafka.sh start)");
        Broker::Kafka(brokers)
    }

    fn bootstrap(&self) -> &str {
        match self {
            Broker::Mock(kafka) => &kafka.bootstrap,
            Broker::Kafka(brokers) => brokers,
        }
    }

    /// A new instance of `service`. A real broker creates topics through
    /// the admin API as in production; the mock cluster auto-creates them.
    async fn bus(&self, service: &str) -> Bus {
        let config = mock_kafka::test_settings(
            KafkaConfig::new(self.bootstrap()).provision_topics(matches!(self, Broker::Kafka(_))),
        );
        Bus::builder()
            .service(service)
            .kafka(config)
            .connect()
            .await
            .expect("connect")
    }

    /// `name` made unique to this run, for services whose reply topics a
    /// test counts and groups that must start without committed offsets.
    fn scope(&self, name: &str) -> String {
        format!("{name}-{}", uuid_like())
    }
}

/// A bus of `service` answering each `Ask` with its own numbers.
async fn answering(broker: &Broker, service: &str) -> Bus {
    let responder = broker.bus(service).await;
    responder
        .group("kafka.ask")
        .serve(|ask: Ask| async move {
            Ok::<_, String>(Answer {
                asker: ask.asker,
                n: ask.n,
            })
        })
        .await
        .expect("serve");
    responder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reach_the_asking_instance_of_a_group() {
    replies_reach_the_asking_instance(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a broker: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn replies_reach_the_asking_instance_of_a_group_on_kafka() {
    replies_reach_the_asking_instance(Broker::kafka()).await;
}

/// Three instances of one requesting service, members of one consumer group
/// (they share a subscription), each get the replies to their own requests:
/// replies travel on per-instance reply topics, not through the group.
async fn replies_reach_the_asking_instance(broker: Broker) {
    let responder = answering(&broker, &broker.scope("answers")).await;
    let (frontend, group) = (broker.scope("frontend"), broker.scope("frontend.group"));
    let mut askers = Vec::new();
    for _ in 0..3 {
        let asker = broker.bus(&frontend).await;
        subscribe_recording(&asker, &group, &Seen::default()).await;
        askers.push(asker);
    }
    let calls = askers.iter().enumerate().flat_map(|(asker, bus)| {
        (0..100).map(move |n| async move {
            let answer = bus
                .request(&Ask { asker, n })
                .timeout(Duration::from_secs(60))
                .await
                .expect("every request is answered in time");
            assert_eq!(
                answer,
                Answer { asker, n },
                "a reply reached another instance"
            );
        })
    });
    guard("300 requests", futures::future::join_all(calls)).await;
    for asker in &askers {
        assert_eq!(asker.stats().pending_requests, 0);
        assert_eq!(asker.stats().late_replies, 0);
    }
    for asker in askers {
        asker.shutdown().await.expect("shutdown");
    }
    responder.shutdown().await.expect("shutdown");
}

/// The reply topics of `service` the cluster knows.
fn reply_topics(brokers: &str, service: &str) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("metadata client");
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let prefix = format!("topicbus.reply.{service}.");
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_topic_is_created_by_the_first_request() {
    reply_topic_created_by_the_first_request(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a broker: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn the_reply_topic_is_created_by_the_first_request_on_kafka() {
    reply_topic_created_by_the_first_request(Broker::kafka()).await;
}

/// An instance creates its reply topic with its first request, before
/// sending it (so the first reply is read); one that only publishes and
/// subscribes creates none.
async fn reply_topic_created_by_the_first_request(broker: Broker) {
    let (answers, asks) = (broker.scope("replies-answer"), broker.scope("replies-ask"));
    let brokers = broker.bootstrap();
    let responder = answering(&broker, &answers).await;
    let client = broker.bus(&asks).await;
    client
        .publish(&Work {
            key: "k".to_owned(),
            seq: 1,
        })
        .await
        .expect("publish");
    assert_eq!(
        reply_topics(brokers, &asks),
        Vec::<String>::new(),
        "publishing opens no reply topic"
    );
    let answer = guard(
        "first request",
        client.request(&Ask { asker: 7, n: 1 }).into_future(),
    )
    .await;
    assert_eq!(answer.expect("answered"), Answer { asker: 7, n: 1 });
    assert_eq!(reply_topics(brokers, &asks).len(), 1);
    let answer = guard(
        "second request",
        client.request(&Ask { asker: 7, n: 2 }).into_future(),
    )
    .await;
    assert_eq!(answer.expect("answered"), Answer { asker: 7, n: 2 });
    assert_eq!(
        reply_topics(brokers, &asks).len(),
        1,
        "one reply topic per instance"
    );
    assert_eq!(reply_topics(brokers, &answers).len(), 0);
    client.shutdown().await.expect("shutdown");
    responder.shutdown().await.expect("shutdown");
}

/// One key, so that every message goes to one partition (the mock cluster
/// auto-creates topics with several).
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "kafka.test.backlog", key = key)]
struct Backlog {
    key: String,
    seq: u64,
}

/// A handler that blocks while 2 000 messages are published to its one
/// partition: the partition backs up in librdkafka's queue for it (which
/// nothing reads while the handler is busy) and, once the handler moves
/// on, every message is handled exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_handler_backs_up_its_partition_without_loss_or_repeats() {
    const TOTAL: u64 = 2_000;
    let kafka = MockKafka::start(1);
    let consumer = bus(&kafka.bootstrap, "backlog-consumer").await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let recording = Arc::clone(&seen);
    consumer
        .group("kafka.backlog")
        .subscribe(move |message: Backlog| {
            let (mut gate, seen) = (gate.clone(), Arc::clone(&recording));
            async move {
                seen.lock().unwrap().push(message.seq);
                gate.wait_for(|open| *open).await.expect("gate kept");
                Ok::<_, String>(())
            }
        })
        .await
        .expect("subscribe");
    let publisher = bus(&kafka.bootstrap, "backlog-publisher").await;
    let backlog: Vec<Backlog> = (0..TOTAL)
        .map(|seq| Backlog {
            key: "one".to_owned(),
            seq,
        })
        .collect();
    guard("publish", publisher.publish_batch(&backlog))
        .await
        .expect("publish");
    guard("the handler holds the first message", async {
        while seen.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Time for librdkafka to fetch the backlog into the partition's queue
    // while the handler holds the first message.
    tokio::time::sleep(Duration::from_millis(200)).await;
    open.send(true).expect("handler alive");
    guard("every message handled", async {
        while seen.lock().unwrap().len() < TOTAL as usize {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    publisher.shutdown().await.expect("publisher shutdown");
    consumer.shutdown().await.expect("consumer shutdown");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, (0..TOTAL).collect::<Vec<_>>(), "each once, in order");
}
