//! Failover on a three-node Apache Kafka cluster: a partition leader
//! SIGKILLed while keyed messages and requests flow, and a rolling restart
//! of every node under load, with the bus's producer defaults (`acks=all`,
//! idempotent) and topics replicated three times (`min.insync.replicas=2`).
//!
//! Each case prints one line `fault failover_<case>: sent=.. acknowledged=..
//! received=.. lost=.. duplicated=..` (see `tests/support/fault.rs`) and
//! checks: nothing acknowledged is lost, the log holds each message once
//! (the producer wrote nothing twice) in per-key order, the consumers
//! handled each key in order and each message at most twice.
//!
//! The cases kill and restart nodes through `scripts/kafka.sh`, so they
//! need that script's three-node cluster, and run one at a time:
//!
//! ```text
//! TOPICBUS_KAFKA_CLUSTER=$(scripts/kafka.sh start --nodes 3) \
//!     cargo test --all-features --test kafka_failover -- --ignored --nocapture
//! ```
//!
//! Every message carries a number unique to the test run, and what the
//! cases count is only that run's: a cluster that earlier runs used will do.
#![cfg(feature = "kafka")]

#[path = "support/fault.rs"]
mod fault;
#[path = "support/kafka_cluster.rs"]
mod kafka_cluster;
#[path = "support/kafka_log.rs"]
mod kafka_log;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, ErrorKind, Topic};

use fault::{guard, Figures, Tally};
use kafka_cluster::KafkaCluster;

/// The cases kill and restart nodes of one cluster: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster() -> KafkaCluster {
    KafkaCluster::from_env("TOPICBUS_KAFKA_CLUSTER", 3).unwrap_or_else(|e| panic!("{e}"))
}

/// A number unique to this test run, in every message it sends.
fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 48)
}

/// The bus's own producer and consumer defaults (`acks=all`, idempotence)
/// with topics replicated to all three nodes; short sessions, so that a
/// member on a dead connection is noticed quickly.
fn config(cluster: &KafkaCluster) -> KafkaConfig {
    KafkaConfig::new(cluster.bootstrap.clone())
        .replication_factor(3)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
}

async fn connect(cluster: &KafkaCluster, service: &str) -> Bus {
    Bus::builder()
        .service(service)
        .kafka(config(cluster))
        .connect()
        .await
        .expect("connect")
}

/// Runs a blocking cluster operation (kill, restart, metadata) off the
/// async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("cluster operation")
}

// ------------------------------------------------------------ keyed streams

/// Keyed messages with their run; message `seq` has key `k{seq % keys}`.
trait Keyed: Topic + Clone {
    fn new(run: u64, key: String, seq: u64) -> Self;
    fn run(&self) -> u64;
    fn key_name(&self) -> &str;
    fn seq(&self) -> u64;
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "failover.busy", key = key, partitions = 6)]
struct Busy {
    run: u64,
    key: String,
    seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "failover.rolling", key = key, partitions = 6)]
struct Rolling {
    run: u64,
    key: String,
    seq: u64,
}

macro_rules! keyed {
    ($($t:ident),*) => {$(
        impl Keyed for $t {
            fn new(run: u64, key: String, seq: u64) -> Self {
                Self { run, key, seq }
            }
            fn run(&self) -> u64 {
                self.run
            }
            fn key_name(&self) -> &str {
                &self.key
            }
            fn seq(&self) -> u64 {
                self.seq
            }
        }
    )*};
}
keyed!(Busy, Rolling);

/// One consumer's (key, seq) in the order it handled them.
type Order = Arc<Mutex<Vec<(String, u64)>>>;

/// What the consumers of one case handled: a count per message, and each
/// member's (key, seq) in the order it handled them.
struct Handled {
    tally: Arc<Tally>,
    members: Vec<Order>,
    buses: Vec<Bus>,
}

/// `n` instances of one consumer service in one group of their own, each
/// recording this run's messages of `T`.
async fn consumers<T: Keyed>(cluster: &KafkaCluster, run: u64, n: usize) -> Handled {
    let tally = Tally::new();
    let mut members = Vec::new();
    let mut buses = Vec::new();
    for _ in 0..n {
        let bus = connect(cluster, "failover-consumer").await;
        let order: Order = Arc::default();
        let (sink, seen) = (Arc::clone(&tally), Arc::clone(&order));
        bus.group(format!("failover.{}.{run}", T::NAME))
            .subscribe(move |message: T| {
                if message.run() == run {
                    seen.lock()
                        .unwrap()
                        .push((message.key_name().to_owned(), message.seq()));
                    sink.record(message.seq());
                }
                async { Ok::<_, String>(()) }
            })
            .await
            .expect("subscribe");
        members.push(order);
        buses.push(bus);
    }
    Handled {
        tally,
        members,
        buses,
    }
}

/// What the publishers of one case got back.
#[derive(Default)]
struct Published {
    acknowledged: BTreeSet<u64>,
    failed: Vec<(u64, topicbus::Error)>,
}

/// Publishes `T` on `keys` keys, each key's messages one after the other
/// (so that each key has an order), the keys side by side: key `k` sends
/// `first + k`, `first + k + keys`, ... while it has sent fewer than
/// `per_key` and `stop` is not set, pausing `pace` between two. `progress`
/// counts the publishes that returned.
#[allow(clippy::too_many_arguments)]
async fn publish_keyed<T: Keyed>(
    bus: &Bus,
    run: u64,
    keys: u64,
    first: u64,
    per_key: u64,
    pace: Duration,
    stop: &AtomicBool,
    progress: &AtomicUsize,
) -> Published {
    let published = Mutex::new(Published::default());
    let streams = (0..keys).map(|k| {
        let published = &published;
        async move {
            for i in 0..per_key {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let seq = first + k + i * keys;
                let message = T::new(run, format!("k{k}"), seq);
                match bus.publish(&message).await {
                    Ok(_) => {
                        published.lock().unwrap().acknowledged.insert(seq);
                    }
                    Err(error) => published.lock().unwrap().failed.push((seq, error)),
                }
                progress.fetch_add(1, Ordering::AcqRel);
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
        }
    });
    futures::future::join_all(streams).await;
    published.into_inner().unwrap()
}

/// Every copy of this run's messages in `topic`'s log: seq → number of
/// copies, and per key the seqs in log order. Blocks: call it through
/// [`blocking`].
fn read_log(
    brokers: &str,
    topic: &str,
    partitions: i32,
    run: u64,
) -> (HashMap<u64, u32>, BTreeMap<String, Vec<u64>>) {
    let mut copies: HashMap<u64, u32> = HashMap::new();
    let mut order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let group = format!("failover.log-reader.{run}");
    kafka_log::each_record(brokers, &group, topic, partitions, |_, _, value| {
        if value["run"].as_u64() != Some(run) {
            return;
        }
        let seq = value["seq"].as_u64().expect("a numbered message");
        let key = value["key"].as_str().expect("a keyed message").to_owned();
        *copies.entry(seq).or_default() += 1;
        order.entry(key).or_default().push(seq);
    });
    (copies, order)
}

/// Checks the log of a case: each acknowledged message in it, none twice,
/// each key in publish order. Returns the copies written beyond the first.
fn check_log(
    case: &str,
    copies: &HashMap<u64, u32>,
    order: &BTreeMap<String, Vec<u64>>,
    acknowledged: &BTreeSet<u64>,
) -> usize {
    let missing: Vec<u64> = acknowledged
        .iter()
        .filter(|s| !copies.contains_key(s))
        .take(10)
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "failover {case}: acknowledged messages missing from the log, e.g. {missing:?}"
    );
    let written_twice: usize = copies.values().map(|c| *c as usize - 1).sum();
    for (key, seqs) in order {
        if let Some(pair) = seqs.windows(2).find(|w| w[0] >= w[1]) {
            panic!(
                "failover {case}: key {key} is out of order in the log: {} before {}",
                pair[0], pair[1]
            );
        }
    }
    written_twice
}

/// Checks that each consumer handled each key in publish order (going back
/// only to a message handled before, as a redelivery) and no message more
/// than twice.
fn check_handled(case: &str, handled: &Handled) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for member in &handled.members {
        let mut last: HashMap<String, u64> = HashMap::new();
        for (key, seq) in member.lock().unwrap().iter() {
            let redelivery = seen.contains_key(seq);
            if let Some(prev) = last.insert(key.clone(), *seq) {
                assert!(
                    prev < *seq || redelivery,
                    "failover {case}: key {key}: {seq} handled after {prev} for the first time"
                );
            }
            *seen.entry(*seq).or_default() += 1;
        }
    }
    if let Some((seq, n)) = seen.iter().find(|(_, n)| **n > 2) {
        panic!("failover {case}: message {seq} handled {n} times");
    }
}

async fn shut_down(handled: Handled, publisher: Bus) {
    publisher.shutdown().await.expect("publisher shutdown");
    for bus in handled.buses {
        bus.shutdown().await.expect("consumer shutdown");
    }
}

/// SIGKILL of the node leading a partition while 10 000 keyed messages are
/// published (a third of them acknowledged before the kill): nothing
/// acknowledged is lost, the log holds each message once, in per-key order.
/// With the node still down, the group handles everything; the node then
/// restarts, rejoins (back in every partition's in-sync replicas) and the
/// group handles a second wave without anyone touching it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs three Kafka nodes: TOPICBUS_KAFKA_CLUSTER=$(scripts/kafka.sh start --nodes 3)"]
async fn leader_killed_mid_stream_loses_nothing_and_rejoins() {
    const TOTAL: u64 = 10_000;
    const SECOND_WAVE: u64 = 1_000;
    const KEYS: u64 = 40;
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Arc::new(cluster());
    let run = run_id();
    let publisher = connect(&cluster, "failover-publisher").await;
    publisher.ensure_topic::<Busy>().await.expect("topic");
    let handled = consumers::<Busy>(&cluster, run, 2).await;

    let progress = Arc::new(AtomicUsize::new(0));
    let never = AtomicBool::new(false);
    let killer = {
        let (cluster, progress) = (Arc::clone(&cluster), Arc::clone(&progress));
        tokio::spawn(async move {
            while progress.load(Ordering::Acquire) < (TOTAL / 3) as usize {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            blocking(move || {
                let leader = cluster.leader(Busy::NAME, 0);
                cluster.kill(leader);
                leader
            })
            .await
        })
    };
    let first = guard(
        "10 000 publishes",
        publish_keyed::<Busy>(
            &publisher,
            run,
            KEYS,
            0,
            TOTAL / KEYS,
            Duration::ZERO,
            &never,
            &progress,
        ),
    )
    .await;
    let killed = guard("kill", killer).await.expect("killer task");
    let sent = progress.load(Ordering::Acquire);
    handled
        .tally
        .wait_for_all(
            first.acknowledged.iter().copied(),
            "every acknowledged message, node down",
        )
        .await;

    let restarting = Arc::clone(&cluster);
    guard(
        "restart of the killed node",
        blocking(move || restarting.restart(killed)),
    )
    .await;
    let second_progress = AtomicUsize::new(0);
    let second = guard(
        "second wave",
        publish_keyed::<Busy>(
            &publisher,
            run,
            KEYS,
            TOTAL,
            SECOND_WAVE / KEYS,
            Duration::ZERO,
            &never,
            &second_progress,
        ),
    )
    .await;
    handled
        .tally
        .wait_for_all(
            second.acknowledged.iter().copied(),
            "the second wave, node back",
        )
        .await;

    let acknowledged: BTreeSet<u64> = first
        .acknowledged
        .union(&second.acknowledged)
        .copied()
        .collect();
    let brokers = cluster.bootstrap.clone();
    let (copies, order) = blocking(move || read_log(&brokers, Busy::NAME, 6, run)).await;
    let written_twice = check_log("leader_kill", &copies, &order, &acknowledged);
    // Every number the handlers recorded is one of this case's messages.
    let mut figures = Figures::count(usize::MAX, &acknowledged, &handled.tally.snapshot());
    figures.sent = sent + second_progress.load(Ordering::Acquire);
    figures.print(
        "failover_leader_kill",
        &format!(
            "written_twice={written_twice} failed_publishes={} fault=SIGKILL of node {killed}, \
             leader of {}/0, after {} of {TOTAL} publishes returned; restarted after the first \
             wave, then a second wave of {}",
            first.failed.len() + second.failed.len(),
            Busy::NAME,
            TOTAL / 3,
            second.acknowledged.len(),
        ),
    );
    for (seq, error) in first.failed.iter().chain(&second.failed).take(10) {
        eprintln!("publish {seq} failed: {error}");
    }
    figures.assert_nothing_lost("failover_leader_kill");
    assert_eq!(
        written_twice, 0,
        "the idempotent producer wrote messages twice"
    );
    check_handled("leader_kill", &handled);
    shut_down(handled, publisher).await;
}

// ------------------------------------------------------------ requests

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "failover.ask", response = FailoverAnswer, partitions = 3)]
struct FailoverAsk {
    run: u64,
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "failover.answer")]
struct FailoverAnswer {
    run: u64,
    n: u64,
}

/// SIGKILL of the node leading a request topic's partition while 2 000
/// requests are in flight, 32 at a time: each ends with its own reply or
/// with `Timeout`, and none before its timeout; none hangs (the hang guard)
/// and none gets another request's reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs three Kafka nodes: TOPICBUS_KAFKA_CLUSTER=$(scripts/kafka.sh start --nodes 3)"]
async fn requests_during_a_leader_election_get_their_reply_or_time_out() {
    const TOTAL: u64 = 2_000;
    let timeout = Duration::from_secs(15);
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Arc::new(cluster());
    let run = run_id();
    let responder = connect(&cluster, &format!("failover-answers-{run}")).await;
    responder
        .group("kafka_failover.failover-ask")
        .serve(|ask: FailoverAsk| async move {
            Ok::<_, String>(FailoverAnswer {
                run: ask.run,
                n: ask.n,
            })
        })
        .await
        .expect("serve");
    let requester = Bus::builder()
        .service(format!("failover-asks-{run}"))
        .request_timeout(timeout)
        .kafka(config(&cluster))
        .connect()
        .await
        .expect("connect");
    // The reply topic exists before the kill (the first request makes it).
    let warm_up = requester
        .request(&FailoverAsk { run, n: u64::MAX })
        .await
        .expect("warm-up request");
    assert_eq!(warm_up.n, u64::MAX);

    let finished = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (cluster, finished) = (Arc::clone(&cluster), Arc::clone(&finished));
        tokio::spawn(async move {
            while finished.load(Ordering::Acquire) < (TOTAL / 4) as usize {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            blocking(move || {
                let leader = cluster.leader(FailoverAsk::NAME, 0);
                cluster.kill(leader);
                leader
            })
            .await
        })
    };
    let outcomes: Vec<(u64, Duration, topicbus::Result<FailoverAnswer>)> = guard(
        "2 000 requests",
        futures::stream::iter(0..TOTAL)
            .map(|n| {
                let (requester, finished) = (&requester, &finished);
                async move {
                    let start = Instant::now();
                    let outcome = requester.request(&FailoverAsk { run, n }).await;
                    finished.fetch_add(1, Ordering::AcqRel);
                    (n, start.elapsed(), outcome)
                }
            })
            .buffer_unordered(32)
            .collect(),
    )
    .await;
    let killed = guard("kill", killer).await.expect("killer task");

    let mut answered = 0;
    let mut slowest_answer = Duration::ZERO;
    let mut timed_out = Vec::new();
    for (n, elapsed, outcome) in &outcomes {
        match outcome {
            Ok(answer) => {
                assert_eq!(
                    answer,
                    &FailoverAnswer { run, n: *n },
                    "request {n} got another request's reply"
                );
                answered += 1;
                slowest_answer = slowest_answer.max(*elapsed);
            }
            Err(error) if error.kind() == ErrorKind::Timeout => {
                // Never before the bound: the request's own clock starts
                // after the test's.
                assert!(
                    *elapsed >= timeout,
                    "request {n} timed out after {elapsed:?}, before its {timeout:?}"
                );
                timed_out.push(*elapsed);
            }
            Err(error) => {
                panic!("request {n} failed with {error:?}, neither a reply nor a timeout")
            }
        }
    }
    let slowest = timed_out.iter().max().copied().unwrap_or_default();
    println!(
        "fault failover_requests: sent={TOTAL} answered={answered} (slowest after \
         {slowest_answer:?}) timed_out={} (timeout {timeout:?}, slowest returned after {slowest:?}) \
         late_replies={} \
         fault=SIGKILL of node {killed}, leader of {}/0, after {} requests returned",
        timed_out.len(),
        requester.stats().late_replies,
        FailoverAsk::NAME,
        TOTAL / 4,
    );
    assert_eq!(answered + timed_out.len(), TOTAL as usize);
    assert_eq!(
        requester.stats().pending_requests,
        0,
        "a request still waits"
    );

    let restarting = Arc::clone(&cluster);
    guard(
        "restart of the killed node",
        blocking(move || restarting.restart(killed)),
    )
    .await;
    let after = guard(
        "a request after the restart",
        requester
            .request(&FailoverAsk { run, n: TOTAL })
            .into_future(),
    )
    .await
    .expect("answered once the node is back");
    assert_eq!(after, FailoverAnswer { run, n: TOTAL });
    requester.shutdown().await.expect("shutdown");
    responder.shutdown().await.expect("shutdown");
}

// ------------------------------------------------------------ rolling restart

/// A rolling restart (SIGTERM, start, wait until every partition is in sync
/// again) of nodes 1, 2 and 3, one at a time, while 16 keys publish one
/// message every 10 ms each: nothing acknowledged is lost, nothing is
/// written twice, per-key order holds, and the group handles everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs three Kafka nodes: TOPICBUS_KAFKA_CLUSTER=$(scripts/kafka.sh start --nodes 3)"]
async fn rolling_restart_under_load_loses_nothing() {
    const KEYS: u64 = 16;
    /// Bounds the publishing however long the restarts take.
    const PER_KEY_LIMIT: u64 = 20_000;
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Arc::new(cluster());
    let run = run_id();
    let publisher = connect(&cluster, "failover-publisher").await;
    publisher.ensure_topic::<Rolling>().await.expect("topic");
    let handled = consumers::<Rolling>(&cluster, run, 2).await;

    let progress = Arc::new(AtomicUsize::new(0));
    let restarts_done = Arc::new(AtomicBool::new(false));
    let restarter = {
        let (cluster, progress, done) = (
            Arc::clone(&cluster),
            Arc::clone(&progress),
            Arc::clone(&restarts_done),
        );
        tokio::spawn(async move {
            // Under load from the start.
            while progress.load(Ordering::Acquire) < 1_000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut during = Vec::new();
            for node in 1..=cluster.nodes() as i32 {
                let before = progress.load(Ordering::Acquire);
                let restarting = Arc::clone(&cluster);
                blocking(move || restarting.restart(node)).await;
                during.push(progress.load(Ordering::Acquire) - before);
            }
            done.store(true, Ordering::Release);
            during
        })
    };
    let published = guard(
        "publishing through the rolling restart",
        publish_keyed::<Rolling>(
            &publisher,
            run,
            KEYS,
            0,
            PER_KEY_LIMIT,
            Duration::from_millis(10),
            &restarts_done,
            &progress,
        ),
    )
    .await;
    let during = guard("rolling restart", restarter)
        .await
        .expect("restart task");
    assert!(
        restarts_done.load(Ordering::Acquire),
        "the publishers reached their limit before the restarts ended"
    );
    handled
        .tally
        .wait_for_all(
            published.acknowledged.iter().copied(),
            "every acknowledged message",
        )
        .await;

    let brokers = cluster.bootstrap.clone();
    let (copies, order) = blocking(move || read_log(&brokers, Rolling::NAME, 6, run)).await;
    let written_twice = check_log("rolling_restart", &copies, &order, &published.acknowledged);
    // Every number the handlers recorded is one of this case's messages.
    let mut figures = Figures::count(
        usize::MAX,
        &published.acknowledged,
        &handled.tally.snapshot(),
    );
    figures.sent = progress.load(Ordering::Acquire);
    figures.print(
        "failover_rolling_restart",
        &format!(
            "written_twice={written_twice} failed_publishes={} fault=SIGTERM and restart of nodes \
             1, 2, 3 in turn; publishes returning during each: {during:?}",
            published.failed.len(),
        ),
    );
    for (seq, error) in published.failed.iter().take(10) {
        eprintln!("publish {seq} failed: {error}");
    }
    figures.assert_nothing_lost("failover_rolling_restart");
    assert_eq!(
        written_twice, 0,
        "the idempotent producer wrote messages twice"
    );
    assert!(
        published.failed.is_empty(),
        "publishes failed although a node at a time stopped gracefully"
    );
    check_handled("rolling_restart", &handled);
    shut_down(handled, publisher).await;
}
