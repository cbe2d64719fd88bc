//! Kafka consumer catching up on a backlog: the longest pause between two
//! handled messages, over many rounds.
//!
//! A topic of 8 partitions holds N (`BENCH_BACKLOG_N`, default 100 000)
//! ~96-byte JSON events, published once by topicbus. Each round (env
//! `BENCH_BACKLOG_ROUNDS`, default 30) a fresh bus joins a fresh group and
//! reads them all from the start. Per round it prints the steady phase (first
//! to last handled message) and the longest gap between two consecutive
//! handled messages, then the rounds' min / median / max and how many had a
//! gap of `BENCH_BACKLOG_STALL_MS` (default 250) or more.
//!
//! This is the shape that showed a one-second stall in about 1 of 15 runs:
//! with more messages per partition than `queued.min.messages`, librdkafka
//! stops fetching a partition whose queue is full and looks at it again only
//! after `fetch.queue.backoff.ms`; a handler that drains the queue sooner
//! then waits for the rest of that backoff. Run it with enough rounds to
//! catch such an event (30 rounds: a 1-in-15 event is missed with
//! probability (14/15)^30 ~ 13%; 60 rounds: ~2%).
//!
//! Runs on librdkafka's mock cluster (1 broker), in-process:
//!
//! ```text
//! cargo bench --features kafka --bench kafka_backlog
//! ```
//!
//! With env `RUST_LOG` (e.g. `rdkafka=debug`) and `BENCH_BACKLOG_DEBUG`
//! (librdkafka's `debug` contexts, e.g. `fetch`), librdkafka's logs go to
//! stderr with timestamps, to line up with the printed gaps.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use tokio::sync::Notify;
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, StartFrom, Topic};

const PARTITIONS: i32 = 8;
const HANG: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Topic)]
#[topic(name = "bench.kafka.backlog")]
struct Backlog {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

impl common::MakeEvent for Backlog {
    fn make(i: u64) -> Self {
        let x = i as u32;
        Self {
            id: i,
            source: common::SOURCE.to_owned(),
            score: i as f64 * 0.5,
            tags: [x, x + 1, x + 2, x + 3, x + 4, x + 5, x + 6, x + 7],
        }
    }
}

/// What a round saw: when the first and last messages were handled, and the
/// longest gap between two consecutive ones (with when it ended).
struct Gaps {
    seen: usize,
    target: usize,
    first: Option<Instant>,
    last: Option<Instant>,
    longest: Duration,
    longest_at: Option<Instant>,
}

struct Round {
    gaps: Mutex<Gaps>,
    done: Notify,
}

impl Round {
    fn hit(&self) {
        let now = Instant::now();
        let mut gaps = self.gaps.lock().unwrap();
        if let Some(last) = gaps.last {
            let gap = now - last;
            if gap > gaps.longest {
                gaps.longest = gap;
                gaps.longest_at = Some(now);
            }
        } else {
            gaps.first = Some(now);
        }
        gaps.last = Some(now);
        gaps.seen += 1;
        if gaps.seen == gaps.target {
            self.done.notify_one();
        }
    }
}

async fn guard<T>(what: &str, future: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
}

async fn connect(config: KafkaConfig) -> Bus {
    guard(
        "connect",
        Bus::builder()
            .service("bench-backlog")
            .kafka(config)
            .connect(),
    )
    .await
    .expect("connect")
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    // `cargo test --benches` runs this with `--bench` absent: nothing to do.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = common::env_or("BENCH_BACKLOG_N", 100_000);
    let rounds: usize = common::env_or("BENCH_BACKLOG_ROUNDS", 30);
    let stall = Duration::from_millis(common::env_or("BENCH_BACKLOG_STALL_MS", 250));

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let mock = std::thread::spawn(move || {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster
            .create_topic(Backlog::NAME, PARTITIONS, 1)
            .expect("topic");
        ready_tx.send(cluster.bootstrap_servers()).expect("alive");
        let _ = stopped.recv();
    });
    let bootstrap = ready_rx.recv().expect("mock cluster");
    let mut config = KafkaConfig::new(&bootstrap)
        .provision_topics(false)
        .set("fetch.wait.max.ms", "1")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    if let Ok(debug) = std::env::var("BENCH_BACKLOG_DEBUG") {
        config = config.set("debug", debug);
    }
    let rt = common::Flavor::Multi2.runtime();

    rt.block_on(async {
        let bus = connect(config.clone()).await;
        let events: Vec<Backlog> = (0..n as u64).map(common::MakeEvent::make).collect();
        guard("publish", bus.publish_batch(&events))
            .await
            .expect("publish");
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    });
    println!("kafka_backlog: {n} events in {PARTITIONS} partitions, {rounds} rounds");

    let mut steady = Vec::new();
    let mut longest = Vec::new();
    let base = Instant::now();
    for round in 0..rounds {
        let config = config.clone();
        let (first_to_last, gap, gap_at) = common::run_on(&rt, async move {
            let bus = connect(config).await;
            let state = Arc::new(Round {
                gaps: Mutex::new(Gaps {
                    seen: 0,
                    target: n,
                    first: None,
                    last: None,
                    longest: Duration::ZERO,
                    longest_at: None,
                }),
                done: Notify::new(),
            });
            let counting = Arc::clone(&state);
            guard(
                "subscribe",
                bus.group(format!("bench.backlog.{round}"))
                    .subscribe(move |event: Backlog| {
                        std::hint::black_box(&event);
                        counting.hit();
                        std::future::ready(Ok::<(), Infallible>(()))
                    })
                    .start_from(StartFrom::Earliest),
            )
            .await
            .expect("subscribe");
            guard("consume", state.done.notified()).await;
            guard("shutdown", bus.shutdown()).await.expect("shutdown");
            let gaps = state.gaps.lock().unwrap();
            (
                gaps.last.unwrap() - gaps.first.unwrap(),
                gaps.longest,
                gaps.longest_at,
            )
        });
        println!(
            "round {round:2}: steady {:>9} ({:.0} k/s), longest gap {:>9} ending at +{:.3}s{}",
            common::fmt_duration(first_to_last),
            n as f64 / first_to_last.as_secs_f64() / 1e3,
            common::fmt_duration(gap),
            gap_at.map_or(0.0, |at| (at - base).as_secs_f64()),
            if gap >= stall { "  <- stall" } else { "" },
        );
        steady.push(first_to_last);
        longest.push(gap);
    }
    steady.sort();
    longest.sort();
    let stalls = longest.iter().filter(|g| **g >= stall).count();
    if rounds > 0 {
        println!(
            "steady min/median/max {} / {} / {}; longest gap min/median/max {} / {} / {}; rounds with a gap >= {}: {stalls} of {rounds}",
            common::fmt_duration(steady[0]),
            common::fmt_duration(steady[rounds / 2]),
            common::fmt_duration(steady[rounds - 1]),
            common::fmt_duration(longest[0]),
            common::fmt_duration(longest[rounds / 2]),
            common::fmt_duration(longest[rounds - 1]),
            common::fmt_duration(stall),
        );
    }
    drop(rt);
    drop(stop);
    let _ = mock.join();
}
