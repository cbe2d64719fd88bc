//! Counting fault tests: processes and members that crash or leave while
//! numbered messages flow, on librdkafka's mock cluster.
//!
//! Child processes are this test binary run again with
//! `--exact fault_child --ignored`; `TOPICBUS_FAULT_ROLE` says what the child
//! does. A consumer child appends the number of every message it handles to
//! a file of its own (one `write` per message, before the handler returns,
//! so a SIGKILL loses nothing the child handled).
//!
//! Every test prints one line
//! `fault <case>: sent=.. acknowledged=.. received=.. lost=.. duplicated=..`
//! (`cargo test --all-features --test fault_process -- --nocapture`).
#![cfg(feature = "kafka")]

#[path = "support/fault.rs"]
mod fault;
#[path = "support/kafka_log.rs"]
mod kafka_log;
#[path = "support/mock_kafka.rs"]
mod mock_kafka;
#[path = "support/reaper.rs"]
mod reaper;

use std::collections::{BTreeSet, HashMap};
use std::future::IntoFuture;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reaper::Reaped;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, ErrorKind, Topic};

use fault::{guard, Figures, Tally};
use mock_kafka::{Fault, MockKafka};

/// Distinct keys; also the number of end markers (see `fault_broker.rs`).
const KEYS: u64 = 64;
/// Partitions of the work topic, created so on the mock.
const PARTITIONS: i32 = 6;
/// The assignor of the consumer groups here: a rebalance takes away only the
/// partitions that move, so members that keep theirs keep working and
/// commit as usual (see docs/failures.md, "How they are tested").
const ASSIGNOR: &str = "cooperative-sticky";

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "fault.process.work", key = key, partitions = 6)]
struct Work {
    key: String,
    seq: u64,
}

fn work(seq: u64) -> Work {
    Work {
        key: format!("k{}", seq % KEYS),
        seq,
    }
}

/// End marker `i` after `total` data messages (number `total + i`, key `i`):
/// once all arrived, every copy of every data message was read.
fn marker(total: u64, i: u64) -> Work {
    Work {
        key: format!("k{i}"),
        seq: total + i,
    }
}

/// Warm-up message `round * KEYS + i` of a case with `total` data messages:
/// numbered past the data and the end markers, one per key.
fn warm_up(total: u64, round: u64) -> Vec<Work> {
    (0..KEYS)
        .map(|i| Work {
            key: format!("k{i}"),
            seq: total + KEYS + round * KEYS + i,
        })
        .collect()
}

/// Publishes warm-up rounds, each once the previous one was handled,
/// until every member handled one and two rounds in a row were handled in
/// full: then the group has settled and the stream can start.
///
/// Members join at the same time, so that the mock cluster's first
/// generation usually has them all. A member that joins later starts a
/// rebalance that, under the cooperative protocol, takes two rounds (the
/// newcomer's partitions are first revoked from their owner, then assigned;
/// the mock waits up to `session.timeout.ms` - 1 s for each): while a
/// partition is between owners, a warm-up message on it waits, so a full
/// round means every partition has an owner. A member leaving or dying
/// while the group still rebalances would find every commit refused by the
/// mock, which is not the case under test.
async fn settle(
    publisher: &Bus,
    total: u64,
    handled: impl Fn(u64) -> bool,
    all_busy: impl Fn() -> bool,
) {
    guard("group settled", async {
        let mut full_rounds = 0;
        let mut round = 0;
        while full_rounds < 2 {
            let messages = warm_up(total, round);
            publisher.publish_batch(&messages).await.expect("warm-up");
            while !messages.iter().all(|m| handled(m.seq)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if all_busy() {
                full_rounds += 1;
            }
            round += 1;
        }
    })
    .await;
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "fault.process.ask", response = Reply)]
struct Ask {
    asker: usize,
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "fault.process.reply")]
struct Reply {
    asker: usize,
    n: u64,
}

fn config(brokers: &str) -> KafkaConfig {
    let config = mock_kafka::test_settings(KafkaConfig::new(brokers).provision_topics(false));
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    config
}

async fn connect(config: KafkaConfig, service: &str) -> Bus {
    Bus::builder()
        .service(service)
        .kafka(config)
        .connect()
        .await
        .expect("connect")
}

fn temp_dir(case: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "topicbus-fault-{case}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

// ------------------------------------------------------------ children

/// A child process (not a test of its own). Roles:
/// - `consumer`: a member of `TOPICBUS_FAULT_GROUP` handling [`Work`],
///   appending each number to `TOPICBUS_FAULT_OUT`, until
///   `TOPICBUS_FAULT_STOP` exists; then it shuts down gracefully.
/// - `responder`: serves [`Ask`]: answers `n < TOPICBUS_FAULT_ANSWER` at
///   once and never answers the others (it is killed while handling them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the fault tests"]
async fn fault_child() {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name}: set by the parent test"))
    };
    let brokers = var("TOPICBUS_FAULT_BROKERS");
    let out = PathBuf::from(var("TOPICBUS_FAULT_OUT"));
    let config = config(&brokers).set("partition.assignment.strategy", ASSIGNOR);
    match var("TOPICBUS_FAULT_ROLE").as_str() {
        "consumer" => {
            let file = Arc::new(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&out)
                    .expect("out file"),
            ));
            let bus = connect(config, "fault-worker").await;
            bus.group(var("TOPICBUS_FAULT_GROUP"))
                .subscribe(move |work: Work| {
                    let file = Arc::clone(&file);
                    async move {
                        // Some work per message, so that the kill finds
                        // messages in flight and queued.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let line = format!("{}\n", work.seq);
                        file.lock()
                            .unwrap()
                            .write_all(line.as_bytes())
                            .map_err(|e| e.to_string())
                    }
                })
                .await
                .expect("subscribe");
            std::fs::write(out.with_extension("ready"), b"").expect("ready file");
            let stop = PathBuf::from(var("TOPICBUS_FAULT_STOP"));
            while !stop.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bus.shutdown().await.expect("shutdown");
        }
        "responder" => {
            let answer: u64 = var("TOPICBUS_FAULT_ANSWER").parse().expect("a number");
            let bus = connect(config, "fault-responder").await;
            let file = Arc::new(Mutex::new(std::fs::File::create(&out).expect("out file")));
            bus.group("fault_process.ask")
                .serve(move |ask: Ask| {
                    let file = Arc::clone(&file);
                    async move {
                        if ask.n >= answer {
                            let line = format!("{}\n", ask.n);
                            file.lock()
                                .unwrap()
                                .write_all(line.as_bytes())
                                .map_err(|e| e.to_string())?;
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, String>(Reply {
                            asker: ask.asker,
                            n: ask.n,
                        })
                    }
                })
                .concurrency(1024)
                .await
                .expect("serve");
            std::fs::write(out.with_extension("ready"), b"").expect("ready file");
            std::future::pending::<()>().await;
        }
        other => panic!("unknown role {other}"),
    }
}

struct ChildSpec<'a> {
    role: &'a str,
    brokers: &'a str,
    out: &'a Path,
    stop: &'a Path,
    group: &'a str,
    answer: u64,
}

fn spawn_child(spec: &ChildSpec<'_>) -> Reaped {
    let _ = std::fs::remove_file(spec.out.with_extension("ready"));
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "fault_child", "--ignored", "--nocapture"])
        .env("TOPICBUS_FAULT_ROLE", spec.role)
        .env("TOPICBUS_FAULT_BROKERS", spec.brokers)
        .env("TOPICBUS_FAULT_OUT", spec.out)
        .env("TOPICBUS_FAULT_STOP", spec.stop)
        .env("TOPICBUS_FAULT_GROUP", spec.group)
        .env("TOPICBUS_FAULT_ANSWER", spec.answer.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    Reaped(child)
}

async fn wait_ready(outs: &[&Path]) {
    guard("children ready", async {
        while !outs.iter().all(|o| o.with_extension("ready").exists()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The numbers a consumer child wrote, in order (a torn last line, cut by
/// SIGKILL mid-write, is not a number and is skipped).
fn read_numbers(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect()
}

fn tally_of(outs: &[PathBuf]) -> HashMap<u64, u32> {
    let mut counts = HashMap::new();
    for out in outs {
        for n in read_numbers(out) {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

// ------------------------------------------------------------ kafka state

/// The group's committed offset per partition of `topic`.
fn committed(brokers: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer = kafka_log::plain_consumer(brokers, group);
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            let at = match e.offset() {
                Offset::Offset(at) => at,
                _ => 0,
            };
            (e.partition(), at)
        })
        .collect()
}

// ------------------------------------------------------------ case 3

/// Case 3: three consumer processes share a group; one is killed with
/// SIGKILL mid-stream and started again. Nothing is lost; what the killed
/// process had handled but not yet committed is handled again, and nothing
/// else: the duplicates are at most the killed process's messages at or
/// past its partitions' committed offsets, read from the broker right
/// after the kill (an asynchronous commit still on its way may lower the
/// number actually redelivered, never raise it).
///
/// With the cooperative assignor the surviving members keep their
/// partitions through both rebalances (the dead member's session timing
/// out, the restarted member joining), so they redeliver nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_consumer_process_killed_and_restarted() {
    const TOTAL: u64 = 20_000;
    let kafka = MockKafka::start(1);
    let brokers = kafka.bootstrap.clone();
    kafka.apply(Fault::CreateTopic(Work::NAME.to_owned(), PARTITIONS));
    let dir = temp_dir("crash");
    let stop = dir.join("stop");
    let group = "fault.crash.group";
    let outs: Vec<PathBuf> = (0..4).map(|i| dir.join(format!("child-{i}.txt"))).collect();
    let child = |out: &Path| {
        spawn_child(&ChildSpec {
            role: "consumer",
            brokers: &brokers,
            out,
            stop: &stop,
            group,
            answer: 0,
        })
    };
    let mut children: Vec<Reaped> = outs[..3].iter().map(|o| child(o)).collect();
    wait_ready(&[&outs[0], &outs[1], &outs[2]]).await;

    let publisher = connect(config(&brokers), "fault-publisher").await;
    settle(
        &publisher,
        TOTAL,
        |n| tally_of(&outs).contains_key(&n),
        || outs[..3].iter().all(|o| !read_numbers(o).is_empty()),
    )
    .await;
    let publishing = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut acknowledged = BTreeSet::new();
            for first in (0..TOTAL).step_by(500) {
                let batch: Vec<Work> = (first..first + 500).map(work).collect();
                if publisher.publish_batch(&batch).await.is_ok() {
                    acknowledged.extend(first..first + 500);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acknowledged
        })
    };

    // Mid-stream: once a third of the messages were handled.
    guard("a third handled", async {
        while tally_of(&outs).keys().filter(|n| **n < TOTAL).count() < (TOTAL / 3) as usize {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    children[0].kill().expect("SIGKILL");
    children[0].wait().expect("reap");
    let at_kill = {
        let brokers = brokers.clone();
        tokio::task::spawn_blocking(move || committed(&brokers, group, Work::NAME))
            .await
            .expect("committed offsets")
    };
    let killed_handled = read_numbers(&outs[0]);
    // Started again, as a new process writing to a new file.
    children[0] = child(&outs[3]);
    wait_ready(&[&outs[3]]).await;

    let acknowledged = guard("publishing", publishing).await.expect("publisher");
    let markers: Vec<Work> = (0..KEYS).map(|i| marker(TOTAL, i)).collect();
    publisher.publish_batch(&markers).await.expect("markers");
    let tally = Tally::new();
    guard("every marker handled", async {
        while !(TOTAL..TOTAL + KEYS).all(|n| tally_of(&outs).contains_key(&n)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    std::fs::write(&stop, b"").expect("stop file");
    for child in &mut children {
        let status = child.wait().expect("child exit");
        assert!(status.success(), "a consumer child failed: {status}");
    }
    for out in &outs {
        tally.record_all(read_numbers(out));
    }

    let positions = {
        let brokers = brokers.clone();
        tokio::task::spawn_blocking(move || kafka_log::positions(&brokers, Work::NAME, PARTITIONS))
            .await
            .expect("log")
    };
    let uncommitted_at_kill = killed_handled
        .iter()
        .filter(|n| **n < TOTAL)
        .filter(|n| {
            let (partition, offset) = positions[n][0];
            offset >= at_kill.get(&partition).copied().unwrap_or(0)
        })
        .count();
    let figures = Figures::count(TOTAL as usize, &acknowledged, &tally.snapshot());
    figures.print(
        "consumer_killed",
        &format!(
            "killed_had_handled={} handled_but_uncommitted_at_kill={uncommitted_at_kill} \
             (bound; commits every 100 ms while busy, {PARTITIONS} partitions, assignor {ASSIGNOR})",
            killed_handled.len()
        ),
    );
    figures.assert_nothing_lost("consumer_killed");
    assert_eq!(
        figures.acknowledged, TOTAL as usize,
        "every batch acknowledged"
    );
    assert!(
        figures.duplicated <= uncommitted_at_kill,
        "{} duplicates, more than the {uncommitted_at_kill} messages the killed process \
         handled past its committed offsets",
        figures.duplicated
    );
    publisher.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------ case 4

/// Case 4: one of three members of a group shuts down gracefully
/// (`Bus::shutdown`) while messages flow: nothing lost, nothing handled
/// twice. The leaving member commits what it handled before it leaves; with
/// the cooperative assignor the others keep their partitions and their
/// uncommitted work through the rebalance, so no commit of theirs is
/// refused (librdkafka's mock cluster refuses every commit while a group
/// rebalances, which under the eager assignors redelivers what the
/// remaining members handled since their last commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_graceful_shutdown_of_one_of_three_members() {
    const TOTAL: u64 = 6_000;
    let kafka = MockKafka::start(1);
    kafka.apply(Fault::CreateTopic(Work::NAME.to_owned(), PARTITIONS));
    let tally = Tally::new();
    let busy: Arc<[AtomicBool; 3]> = Arc::default();
    let mut members = Vec::new();
    for _ in 0..3 {
        let config = config(&kafka.bootstrap).set("partition.assignment.strategy", ASSIGNOR);
        members.push(connect(config, "fault-member").await);
    }
    // All three join at once (see `settle`).
    let joins = members.iter().enumerate().map(|(index, member)| {
        let (sink, busy) = (Arc::clone(&tally), Arc::clone(&busy));
        member
            .group("fault.leave.group")
            .subscribe(move |work: Work| {
                let sink = Arc::clone(&sink);
                busy[index].store(true, Ordering::Release);
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    sink.record(work.seq);
                    Ok::<_, String>(())
                }
            })
            .into_future()
    });
    for joined in guard("members joined", futures::future::join_all(joins)).await {
        joined.expect("subscribe");
    }
    let publisher = connect(config(&kafka.bootstrap), "fault-publisher").await;
    settle(
        &publisher,
        TOTAL,
        |n| tally.count(n) > 0,
        || busy.iter().all(|b| b.load(Ordering::Acquire)),
    )
    .await;
    let publishing = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut acknowledged = BTreeSet::new();
            for first in (0..TOTAL).step_by(200) {
                let batch: Vec<Work> = (first..first + 200).map(work).collect();
                if publisher.publish_batch(&batch).await.is_ok() {
                    acknowledged.extend(first..first + 200);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acknowledged
        })
    };
    guard("a third handled", async {
        while (0..TOTAL).filter(|n| tally.count(*n) > 0).count() < (TOTAL / 3) as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let leaving = members.remove(0);
    guard("graceful leave", leaving.shutdown())
        .await
        .expect("graceful leave");
    let acknowledged = guard("publishing", publishing).await.expect("publisher");
    let markers: Vec<Work> = (0..KEYS).map(|i| marker(TOTAL, i)).collect();
    publisher.publish_batch(&markers).await.expect("markers");
    tally
        .wait_for_all(TOTAL..TOTAL + KEYS, "every end marker")
        .await;
    let figures = Figures::count(TOTAL as usize, &acknowledged, &tally.snapshot());
    figures.print(
        "graceful_shutdown_kafka",
        &format!("members=3 partitions={PARTITIONS} assignor={ASSIGNOR}"),
    );
    figures.assert_nothing_lost("graceful_shutdown_kafka");
    assert_eq!(
        figures.acknowledged, TOTAL as usize,
        "every batch acknowledged"
    );
    assert_eq!(figures.duplicated, 0, "messages handled twice");
    for member in members {
        member.shutdown().await.expect("shutdown");
    }
    publisher.shutdown().await.expect("shutdown");
}

// ------------------------------------------------------------ case 5

/// Case 5a: 10 000 concurrent requests from three requester instances that
/// share a consumer group (each also subscribes in it): every reply reaches
/// the instance that asked, none times out, no pending entry remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_ten_thousand_requests_from_three_instances() {
    const PER_INSTANCE: u64 = 3_334;
    let kafka = MockKafka::start(1);
    let responder = connect(config(&kafka.bootstrap), "fault-answers").await;
    responder
        .group("fault_process.ask")
        .serve(|ask: Ask| async move {
            Ok::<_, String>(Reply {
                asker: ask.asker,
                n: ask.n,
            })
        })
        .concurrency(64)
        .await
        .expect("serve");
    let mut askers = Vec::new();
    for _ in 0..3 {
        let asker = connect(config(&kafka.bootstrap), "fault-frontend").await;
        asker
            .group("fault.frontend.group")
            .subscribe(|_: Work| async { Ok::<_, String>(()) })
            .await
            .expect("subscribe");
        askers.push(asker);
    }
    let calls = askers.iter().enumerate().flat_map(|(asker, bus)| {
        (0..PER_INSTANCE).map(move |n| async move {
            match bus
                .request(&Ask { asker, n })
                .timeout(Duration::from_secs(120))
                .await
            {
                Ok(reply) if reply == (Reply { asker, n }) => Ok(()),
                Ok(reply) => Err(format!("instance {asker} got {reply:?} for request {n}")),
                Err(error) => Err(format!("instance {asker}, request {n}: {error}")),
            }
        })
    });
    let outcomes = guard("10 000 requests", futures::future::join_all(calls)).await;
    let failed: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let sent = 3 * PER_INSTANCE as usize;
    let pending: usize = askers.iter().map(|a| a.stats().pending_requests).sum();
    let late: u64 = askers.iter().map(|a| a.stats().late_replies).sum();
    // Every request is answered by the responder: "lost" is a reply that
    // did not reach the instance that asked, in time.
    println!(
        "fault requests_under_load: sent={sent} acknowledged={sent} received={} lost={} duplicated=0 \
         instances=3 pending_after={pending} late_replies={late}",
        sent - failed.len(),
        failed.len(),
    );
    assert!(
        failed.is_empty(),
        "{} requests failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(pending, 0);
    assert_eq!(late, 0);
    for asker in askers {
        asker.shutdown().await.expect("shutdown");
    }
    responder.shutdown().await.expect("shutdown");
}

/// Case 5b: the only responder, a child process, is killed with SIGKILL
/// while it handles requests. The requests it had answered succeeded; the
/// ones in its hands fail with `Timeout` at their deadline instead of
/// hanging, and no pending entry is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_responder_process_killed_mid_flight() {
    const ANSWERED: u64 = 50;
    const STUCK: u64 = 150;
    let kafka = MockKafka::start(1);
    let dir = temp_dir("responder");
    let out = dir.join("responder.txt");
    let mut responder = spawn_child(&ChildSpec {
        role: "responder",
        brokers: &kafka.bootstrap,
        out: &out,
        stop: &dir.join("stop"),
        group: "unused",
        answer: ANSWERED,
    });
    wait_ready(&[&out]).await;
    let asker = connect(config(&kafka.bootstrap), "fault-asker").await;
    let timeout = Duration::from_secs(5);
    let ask = |n: u64| {
        let asker = &asker;
        async move {
            (
                n,
                asker.request(&Ask { asker: 0, n }).timeout(timeout).await,
            )
        }
    };
    // First the requests it answers, then the ones it is handling when it dies.
    let mut outcomes = guard(
        "answered requests",
        futures::future::join_all((0..ANSWERED).map(ask)),
    )
    .await;
    let stuck = futures::future::join_all((ANSWERED..ANSWERED + STUCK).map(ask));
    let kill = async {
        while read_numbers(&out).is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        responder.kill().expect("SIGKILL");
        responder.wait().expect("reap");
    };
    let (stuck, ()) = guard("stuck requests end", futures::future::join(stuck, kill)).await;
    let in_hands = read_numbers(&out).len();
    outcomes.extend(stuck);
    let mut ok = 0;
    let mut timed_out = 0;
    for (n, outcome) in &outcomes {
        match outcome {
            Ok(reply) => {
                assert_eq!(reply, &Reply { asker: 0, n: *n });
                assert!(
                    *n < ANSWERED,
                    "request {n} answered by a responder that never answers it"
                );
                ok += 1;
            }
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::Timeout, "request {n}: {error}");
                timed_out += 1;
            }
        }
    }
    let pending = asker.stats().pending_requests;
    println!(
        "fault responder_killed: sent={} acknowledged={ANSWERED} received={ok} lost={} duplicated=0 \
         in_the_killed_responder's_hands={in_hands} timed_out={timed_out} (timeout {timeout:?}) pending_after={pending}",
        ANSWERED + STUCK,
        ANSWERED as usize - ok,
    );
    assert_eq!(ok, ANSWERED as usize, "answered requests lost their reply");
    assert_eq!(timed_out, STUCK as usize);
    assert_eq!(pending, 0, "pending entries outlived their requests");
    asker.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
