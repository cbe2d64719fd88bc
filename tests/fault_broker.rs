//! Counting fault tests: broker faults while numbered messages flow.
//!
//! Every test publishes numbered messages, counts what the bus acknowledged
//! and what a consumer that reads everything received, prints one line
//! `fault <case>: sent=.. acknowledged=.. received=.. lost=.. duplicated=..`
//! and fails if an acknowledged message was never received.
//!
//! "Read everything" is exact, not a quiet period: after the data, one
//! end marker per key is published; messages of one key share a partition
//! and a group handles a partition in order, so once every marker arrived,
//! every copy of every data message the log holds has arrived too.
//!
//! `cargo test --all-features --test fault_broker -- --nocapture` shows
//! the figures. The broker-restart case runs on Apache Kafka, only when
//! asked for (see [`fault_broker_kafka_killed_and_restarted`]).
#![cfg(feature = "kafka")]

#[path = "support/fault.rs"]
mod fault;
#[path = "support/kafka_cluster.rs"]
mod kafka_cluster;
#[path = "support/kafka_log.rs"]
mod kafka_log;
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, ErrorKind, StartFrom, Topic};

use fault::{guard, Figures, Tally};
use kafka_cluster::KafkaCluster;
use mock_kafka::{Fault, MockKafka};

/// Distinct keys; also the number of end markers.
const KEYS: u64 = 64;

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "fault.broker.transient", key = key, partitions = 6)]
struct Transient {
    key: String,
    seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "fault.broker.outage", key = key, partitions = 6)]
struct Outage {
    key: String,
    seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "fault.broker.restart", key = key, partitions = 3)]
struct Restart {
    key: String,
    seq: u64,
}

/// A numbered message type of these tests.
trait Numbered: Topic + Clone {
    fn new(seq: u64, key: u64) -> Self;
    fn seq(&self) -> u64;
}

macro_rules! numbered {
    ($($t:ident),*) => {$(
        impl Numbered for $t {
            fn new(seq: u64, key: u64) -> Self {
                Self { key: format!("k{key}"), seq }
            }
            fn seq(&self) -> u64 {
                self.seq
            }
        }
    )*};
}
numbered!(Transient, Outage, Restart);

/// Data message `seq` (key `seq % KEYS`).
fn data<T: Numbered>(seq: u64) -> T {
    T::new(seq, seq % KEYS)
}

/// End marker `i` of a case that sent `total` data messages: number
/// `total + i`, key `i`.
fn marker<T: Numbered>(total: u64, i: u64) -> T {
    T::new(total + i, i)
}

fn mock_config(brokers: &str) -> KafkaConfig {
    mock_kafka::test_settings(KafkaConfig::new(brokers).provision_topics(false))
}

async fn connect(config: KafkaConfig, service: &str) -> Bus {
    Bus::builder()
        .service(service)
        .kafka(config)
        .connect()
        .await
        .expect("connect")
}

/// A consumer in a group of its own that reads `T` from the beginning and
/// tallies every message it handles.
async fn reader<T: Numbered>(config: KafkaConfig, group: &str) -> (Bus, Arc<Tally>) {
    let bus = connect(config, "fault-reader").await;
    let tally = Tally::new();
    let sink = Arc::clone(&tally);
    bus.group(group.to_owned())
        .subscribe(move |message: T| {
            sink.record(message.seq());
            async { Ok::<_, String>(()) }
        })
        .start_from(StartFrom::Earliest)
        .await
        .expect("subscribe");
    (bus, tally)
}

/// Publishes the end markers and waits until the reader got all of them.
async fn read_to_the_end<T: Numbered>(publisher: &Bus, tally: &Tally, total: u64) {
    let markers: Vec<T> = (0..KEYS).map(|i| marker(total, i)).collect();
    guard("end markers", publisher.publish_batch(&markers))
        .await
        .expect("end markers published once the broker is healthy");
    tally
        .wait_for_all(total..total + KEYS, "every end marker")
        .await;
}

/// Case 1: produce requests fail now and then (NOT_LEADER_FOR_PARTITION,
/// REQUEST_TIMED_OUT), the producer's connection is dropped and the broker
/// goes down briefly, while 100 000 messages are published by three
/// `publish_batch` loops and a pool of concurrent single publishes. All are
/// acknowledged (the faults are far shorter than the delivery timeout),
/// none is lost, none is written twice.
///
/// The publisher sends one produce request at a time per connection
/// (`max.in.flight.requests.per.connection=1`), because the mock cluster
/// checks idempotent producers' sequence numbers only for transactional
/// producers: with requests R1, R2 in flight, it fails R1 as told and still
/// writes R2, where a real broker answers R2 with OUT_OF_ORDER_SEQUENCE.
/// librdkafka, trusting the broker's ordering, then counts R1 as written
/// ("implicit ack", rdkafka_request.c) and acknowledges messages that are
/// not in the log: with 5 in flight this test lost 4 to 11 of 100 000 on the
/// mock. That is the mock's gap, not a producer bug; a real broker keeps
/// the guarantee with 5 in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_broker_transient_errors() {
    const TOTAL: u64 = 100_000;
    const SINGLES: u64 = 10_000;
    const CHUNK: u64 = 1_000;
    let kafka = Arc::new(MockKafka::start(1));
    kafka.apply(Fault::CreateTopic(Transient::NAME.to_owned(), 6));
    // The case is the producer's: a session far longer than the faults
    // keeps the reader in its group, where a starved machine could let a
    // 6 s session lapse and rebalance it, which redelivers (at least once)
    // what it had not committed.
    let reader_config = mock_config(&kafka.bootstrap).set("session.timeout.ms", "30000");
    let (consumer, tally) = reader::<Transient>(reader_config, "fault.transient.reader").await;
    let publisher = connect(
        mock_config(&kafka.bootstrap).set("max.in.flight.requests.per.connection", "1"),
        "fault-publisher",
    )
    .await;
    publisher
        .publish(&marker::<Transient>(TOTAL, KEYS))
        .await
        .expect("warm-up");

    // The faults, on a thread of their own: ROUNDS rounds 100 ms apart,
    // each failing two of the next six produce requests; every fifth round
    // also drops the producer's connection or takes the broker down for
    // 200 ms, in turn (more often, librdkafka's reconnect backoff, which
    // doubles up to 10 s while connections keep failing, would stretch the
    // outage past the delivery timeout).
    const ROUNDS: usize = 20;
    let publishing = Arc::new(AtomicBool::new(true));
    let injector = {
        let (kafka, publishing) = (Arc::clone(&kafka), Arc::clone(&publishing));
        std::thread::spawn(move || {
            use RDKafkaRespErr::*;
            let mut rounds = 0;
            while rounds < ROUNDS && publishing.load(Ordering::Acquire) {
                rounds += 1;
                let mut errors = vec![
                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    RD_KAFKA_RESP_ERR_NO_ERROR,
                    RD_KAFKA_RESP_ERR_NO_ERROR,
                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RD_KAFKA_RESP_ERR_NO_ERROR,
                    RD_KAFKA_RESP_ERR_NO_ERROR,
                ];
                match rounds % 10 {
                    5 => errors.push(RD_KAFKA_RESP_ERR__TRANSPORT),
                    0 => kafka.apply(Fault::Outage(1, Duration::from_millis(200))),
                    _ => {}
                }
                kafka.apply(Fault::RequestErrors(RDKafkaApiKey::Produce, errors));
                std::thread::sleep(Duration::from_millis(100));
            }
            rounds
        })
    };

    let acknowledged = Mutex::new(BTreeSet::new());
    let failures = AtomicUsize::new(0);
    let batches = (0..3u64).map(|loop_| {
        let (acknowledged, failures, publisher) = (&acknowledged, &failures, &publisher);
        async move {
            // Chunks of the data below SINGLES, dealt round the three loops.
            let mut chunk = loop_;
            while SINGLES + chunk * CHUNK < TOTAL {
                let first = SINGLES + chunk * CHUNK;
                let seqs = first..(first + CHUNK).min(TOTAL);
                let messages: Vec<Transient> = seqs.clone().map(data).collect();
                match publisher.publish_batch(&messages).await {
                    Ok(()) => acknowledged.lock().unwrap().extend(seqs),
                    Err(error) => {
                        eprintln!("batch {first}: {error}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                chunk += 3;
            }
        }
    });
    let singles = futures::stream::iter(0..SINGLES)
        .map(|seq| {
            let publisher = &publisher;
            async move { (seq, publisher.publish(&data::<Transient>(seq)).await) }
        })
        .buffer_unordered(128)
        .for_each(|(seq, outcome)| {
            match outcome {
                Ok(_) => {
                    acknowledged.lock().unwrap().insert(seq);
                }
                Err(error) => {
                    eprintln!("publish {seq}: {error}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            async {}
        });
    guard(
        "publishing",
        futures::future::join(futures::future::join_all(batches), singles),
    )
    .await;
    publishing.store(false, Ordering::Release);
    let rounds = tokio::task::spawn_blocking(move || injector.join().expect("injector"))
        .await
        .expect("injector thread");
    kafka.apply(Fault::ClearRequestErrors(RDKafkaApiKey::Produce));

    read_to_the_end::<Transient>(&publisher, &tally, TOTAL).await;
    let acknowledged = acknowledged.into_inner().unwrap();
    let figures = Figures::count(TOTAL as usize, &acknowledged, &tally.snapshot());
    figures.print(
        "transient_errors",
        &format!(
            "fault_rounds={rounds} (each: NOT_LEADER_FOR_PARTITION and REQUEST_TIMED_OUT among the next \
             6 produce requests; rounds 5, 15: dropped connection; rounds 10, 20: broker down 200 ms) failed_publishes={}",
            failures.load(Ordering::Relaxed)
        ),
    );
    // The log itself, read apart from the reader: what the producer wrote.
    let brokers = kafka.bootstrap.clone();
    let log =
        tokio::task::spawn_blocking(move || kafka_log::positions(&brokers, Transient::NAME, 6))
            .await
            .expect("log");
    for n in &figures.lost_examples {
        eprintln!("lost {n}: in the log at {:?}", log.get(n));
    }
    let written_twice: Vec<(&u64, &Vec<(i32, i64)>)> = log
        .iter()
        .filter(|(seq, copies)| **seq < TOTAL && copies.len() > 1)
        .take(10)
        .collect();
    figures.assert_nothing_lost("transient_errors");
    assert!(rounds > 0, "no fault was injected while publishing");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "a publish failed although every fault was far shorter than the delivery timeout"
    );
    assert_eq!(figures.acknowledged, TOTAL as usize);
    assert!(
        written_twice.is_empty(),
        "the producer wrote messages twice (number: copies at partition, offset): {written_twice:?}"
    );
    assert_eq!(
        figures.duplicated, 0,
        "the reader got messages again that the log holds once"
    );
    publisher.shutdown().await.expect("shutdown");
    consumer.shutdown().await.expect("shutdown");
}

/// One publish of the outage case: when it started and how it ended.
struct Outcome {
    seq: u64,
    elapsed: Duration,
    error: Option<topicbus::Error>,
}

/// Case 2a: the only broker goes down for longer than the publishers'
/// delivery timeout while messages flow, then comes back.
///
/// Nothing acknowledged is lost. Publishes that cannot be delivered fail
/// with `Unavailable` (or `Timeout`), and never before the configured
/// delivery timeout: librdkafka starts a message's timeout when the
/// message is enqueued, which is after the test took its start time, and
/// both measure on the monotonic clock (1 ms of slack covers librdkafka's
/// microsecond rounding). That is a lower bound, which a slow machine
/// cannot break; how much later than the timeout a publish fails is only
/// printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_broker_outage_mid_stream() {
    const TOTAL: u64 = 4_000;
    /// Publishes from this number on start only after the broker is down.
    const DOWN_BEFORE: u64 = 2_000;
    let delivery_timeout = Duration::from_secs(2);
    let outage = Duration::from_secs(5);
    let kafka = Arc::new(MockKafka::start(1));
    // A session longer than the outage keeps the reader in its group.
    let reader_config = mock_config(&kafka.bootstrap).set("session.timeout.ms", "15000");
    let (consumer, tally) = reader::<Outage>(reader_config, "fault.outage.reader").await;
    let publisher = connect(
        mock_config(&kafka.bootstrap).delivery_timeout(delivery_timeout),
        "fault-publisher",
    )
    .await;
    publisher
        .publish(&marker::<Outage>(TOTAL, KEYS))
        .await
        .expect("warm-up");

    let down = Arc::new(Notify::new());
    let is_down = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicUsize::new(0));
    let fault = {
        let (kafka, down, is_down) = (Arc::clone(&kafka), Arc::clone(&down), Arc::clone(&is_down));
        let finished = Arc::clone(&finished);
        tokio::spawn(async move {
            // Mid-stream: once a quarter of the publishes returned.
            while finished.load(Ordering::Acquire) < (TOTAL / 4) as usize {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let kafka2 = Arc::clone(&kafka);
            tokio::task::spawn_blocking(move || kafka2.apply(Fault::BrokerDown(1)))
                .await
                .expect("down");
            is_down.store(true, Ordering::Release);
            down.notify_waiters();
            tokio::time::sleep(outage).await;
            tokio::task::spawn_blocking(move || kafka.apply(Fault::BrokerUp(1)))
                .await
                .expect("up");
        })
    };

    let outcomes: Vec<Outcome> = guard(
        "publishing",
        futures::stream::iter(0..TOTAL)
            .map(|seq| {
                let (publisher, down, is_down) = (&publisher, &down, &is_down);
                let finished = &finished;
                async move {
                    if seq >= DOWN_BEFORE {
                        let notified = down.notified();
                        if !is_down.load(Ordering::Acquire) {
                            notified.await;
                        }
                    }
                    let start = Instant::now();
                    let result = publisher.publish(&data::<Outage>(seq)).await;
                    let elapsed = start.elapsed();
                    finished.fetch_add(1, Ordering::AcqRel);
                    Outcome {
                        seq,
                        elapsed,
                        error: result.err(),
                    }
                }
            })
            .buffer_unordered(32)
            .collect(),
    )
    .await;
    guard("broker back up", fault).await.expect("fault task");

    read_to_the_end::<Outage>(&publisher, &tally, TOTAL).await;
    let acknowledged: BTreeSet<u64> = outcomes
        .iter()
        .filter(|o| o.error.is_none())
        .map(|o| o.seq)
        .collect();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    let figures = Figures::count(TOTAL as usize, &acknowledged, &tally.snapshot());
    let earliest = failed.iter().map(|o| o.elapsed).min().unwrap_or_default();
    let latest = failed.iter().map(|o| o.elapsed).max().unwrap_or_default();
    let unacknowledged_received = failed.iter().filter(|o| tally.count(o.seq) > 0).count();
    figures.print(
        "broker_outage",
        &format!(
            "outage={outage:?} delivery_timeout={delivery_timeout:?} failed={} \
             (first after {earliest:?}, last after {latest:?}) failed_but_received={unacknowledged_received}",
            failed.len()
        ),
    );
    figures.assert_nothing_lost("broker_outage");
    assert!(
        !failed.is_empty(),
        "publishes started during a {outage:?} outage must fail after {delivery_timeout:?}"
    );
    for outcome in &failed {
        let error = outcome.error.as_ref().expect("failed");
        assert!(
            matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
            "publish {} failed with {error:?}",
            outcome.seq
        );
        assert!(
            outcome.elapsed + Duration::from_millis(1) >= delivery_timeout,
            "publish {} failed after {:?}, before the delivery timeout {delivery_timeout:?}: {error}",
            outcome.seq,
            outcome.elapsed
        );
    }
    publisher.shutdown().await.expect("shutdown");
    consumer.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------- Apache Kafka

/// Case 2b: Apache Kafka (one node, its log on disk) is killed with
/// SIGKILL mid-stream and started again on its data; every acknowledged
/// message must still be read.
///
/// Needs the one-node cluster of `scripts/kafka.sh`, whose node it kills
/// and restarts: `TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start) cargo
/// test --all-features --test fault_broker -- --ignored fault_broker_kafka`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn fault_broker_kafka_killed_and_restarted() {
    let cluster =
        KafkaCluster::from_env("TOPICBUS_KAFKA_BROKERS", 1).unwrap_or_else(|e| panic!("{e}"));
    let address = cluster.bootstrap.clone();
    // The counts are of this run's numbers: an earlier run's copies in the
    // topic would stand in for messages this run lost.
    let cluster = tokio::task::spawn_blocking(move || {
        let held = cluster.messages(Restart::NAME);
        assert_eq!(
            held, 0,
            "{} holds {held} messages of an earlier run: start a fresh cluster (scripts/kafka.sh start)",
            Restart::NAME
        );
        cluster
    })
    .await
    .expect("topic check");
    restart_mid_stream(
        &address,
        move || {
            // The only node, or the first of several: with one replica per
            // partition (topicbus's default replication factor), its
            // partitions are away until it is back.
            cluster.kill(1);
            std::thread::sleep(Duration::from_secs(2));
            cluster.restart(1);
        },
        "kafka_restart",
        "SIGKILL of Apache Kafka's node 1 (its log on disk)",
    )
    .await;
}

/// Publishes numbered messages; once a third of the publishes returned,
/// `crash` (run on a blocking thread) kills the broker and starts it again
/// on its storage, 2 s later. Counts, prints and checks that nothing
/// acknowledged was lost.
async fn restart_mid_stream(
    address: &str,
    crash: impl FnOnce() + Send + 'static,
    case: &str,
    fault: &str,
) {
    const TOTAL: u64 = 3_000;
    let config = mock_kafka::test_settings(
        KafkaConfig::new(address).delivery_timeout(Duration::from_secs(20)),
    )
    .set("max.poll.interval.ms", "7000");
    let publisher = connect(config.clone(), "fault-publisher").await;
    publisher.ensure_topic::<Restart>().await.expect("topic");
    let group = format!("fault.restart.reader.{}", std::process::id());
    let (consumer, tally) = reader::<Restart>(config, &group).await;

    let finished = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let killed = {
        let (finished, restarted) = (Arc::clone(&finished), Arc::clone(&restarted));
        tokio::spawn(async move {
            // Mid-stream: once a third of the publishes returned.
            while finished.load(Ordering::Acquire) < (TOTAL / 3) as usize {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::task::spawn_blocking(move || {
                crash();
                restarted.store(true, Ordering::Release);
            })
            .await
            .expect("restart");
        })
    };
    let outcomes: Vec<(u64, bool, bool)> = guard(
        "publishing",
        futures::stream::iter(0..TOTAL)
            .map(|seq| {
                let (publisher, finished, restarted) = (&publisher, &finished, &restarted);
                async move {
                    let ok = publisher.publish(&data::<Restart>(seq)).await.is_ok();
                    finished.fetch_add(1, Ordering::AcqRel);
                    (seq, ok, restarted.load(Ordering::Acquire))
                }
            })
            .buffer_unordered(16)
            .collect(),
    )
    .await;
    guard("broker restarted", killed)
        .await
        .expect("restart task");
    read_to_the_end::<Restart>(&publisher, &tally, TOTAL).await;
    let acknowledged: BTreeSet<u64> = outcomes.iter().filter(|o| o.1).map(|o| o.0).collect();
    let after_restart = outcomes.iter().filter(|o| o.2).count();
    let figures = Figures::count(TOTAL as usize, &acknowledged, &tally.snapshot());
    figures.print(
        case,
        &format!(
            "faults={fault} after a third of the publishes returned, restarted 2 s later; \
             publishes returning after the restart={after_restart}"
        ),
    );
    figures.assert_nothing_lost(case);
    publisher.shutdown().await.expect("shutdown");
    consumer.shutdown().await.expect("shutdown");
}
