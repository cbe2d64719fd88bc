//! Peak memory of publishing a batch to Kafka: topicbus's `publish_batch`
//! against raw rdkafka enqueueing the same events (without headers) and
//! waiting for all of them, each run its own process.
//!
//! librdkafka's mock cluster runs in a process of its own (1 broker, 8
//! partitions), so that the log it keeps does not count. Each round starts
//! one publisher process per side, alternating; a publisher builds N
//! (`BENCH_PUBLISH_MEMORY_N`, default 100 000) ~96-byte JSON events, publishes
//! them all, and reports its peak resident set (`VmHWM`) once every delivery
//! is acknowledged. Prints min / median / max over `BENCH_PUBLISH_MEMORY_ROUNDS`
//! (default 5) rounds.
//!
//! ```text
//! cargo bench --features kafka --bench kafka_publish_memory
//! ```
//!
//! Its processes also serve to count instructions per record with
//! callgrind (docs/performance.md has the commands): with env
//! `BENCH_PUBLISH_MEMORY_ROLE` = `mock` it serves the mock cluster and prints
//! its address; `topicbus` or `raw` publishes, `consume` (a topicbus
//! subscription in a fresh group) or `raw-consume` (an assigned raw
//! consumer that decodes each event) reads N events from the start, each on
//! the brokers in `BENCH_PUBLISH_MEMORY_BROKERS`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, StartFrom, Topic};

const PARTITIONS: i32 = 8;
const ROLE: &str = "BENCH_PUBLISH_MEMORY_ROLE";
const BROKERS: &str = "BENCH_PUBLISH_MEMORY_BROKERS";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Topic)]
#[topic(name = "bench.kafka.publish.memory")]
struct Published {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

impl common::MakeEvent for Published {
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

/// This process's peak resident set, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn events(n: usize) -> Vec<Published> {
    (0..n as u64).map(common::MakeEvent::make).collect()
}

/// Serves a mock cluster until stdin closes.
fn serve_mock() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(Published::NAME, PARTITIONS, 1)
        .expect("topic");
    println!("{}", cluster.bootstrap_servers());
    std::io::stdout().flush().expect("stdout");
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
}

fn publish_topicbus(brokers: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bus = Bus::builder()
            .service("bench-publish-memory")
            .kafka(KafkaConfig::new(brokers).provision_topics(false))
            .connect()
            .await
            .expect("connect");
        let events = events(n);
        let start = Instant::now();
        bus.publish_batch(&events).await.expect("publish");
        let took = start.elapsed();
        println!("peak_kib={} took_ms={}", peak_rss_kib(), took.as_millis());
        bus.shutdown().await.expect("shutdown");
    });
}

/// Reads `n` events from the start of the topic in a fresh group.
fn consume_topicbus(brokers: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bus = Bus::builder()
            .service("bench-consume-cost")
            .kafka(
                KafkaConfig::new(brokers)
                    .provision_topics(false)
                    .set("fetch.wait.max.ms", "1")
                    .set("session.timeout.ms", "6000")
                    .set("heartbeat.interval.ms", "500"),
            )
            .connect()
            .await
            .expect("connect");
        let seen = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(tokio::sync::Notify::new());
        let (counting, finished) = (Arc::clone(&seen), Arc::clone(&done));
        let group = format!("bench.cost.{}", std::process::id());
        bus.group(group)
            .subscribe(move |event: Published| {
                std::hint::black_box(&event);
                if counting.fetch_add(1, Ordering::AcqRel) + 1 == n {
                    finished.notify_one();
                }
                std::future::ready(Ok::<(), std::convert::Infallible>(()))
            })
            .start_from(StartFrom::Earliest)
            .await
            .expect("subscribe");
        let start = Instant::now();
        done.notified().await;
        println!(
            "peak_kib={} took_ms={}",
            peak_rss_kib(),
            start.elapsed().as_millis()
        );
        bus.shutdown().await.expect("shutdown");
    });
}

/// Reads `n` events from the start of every partition with a raw consumer
/// (assigned, no group), decoding each as topicbus's handler does.
fn consume_raw(brokers: &str, n: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench.cost.raw.{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(Published::NAME, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let start = Instant::now();
    let mut seen = 0;
    while seen < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let event: Published =
                    serde_json::from_slice(message.payload().unwrap_or_default()).expect("decode");
                std::hint::black_box(&event);
                seen += 1;
            }
            Some(Err(error)) => panic!("raw consume: {error}"),
            None => {}
        }
    }
    println!(
        "peak_kib={} took_ms={}",
        peak_rss_kib(),
        start.elapsed().as_millis()
    );
}

fn publish_raw(brokers: &str, n: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let events = events(n);
    let start = Instant::now();
    for event in &events {
        let payload = serde_json::to_vec(event).expect("encode");
        let mut record = BaseRecord::<(), [u8]>::to(Published::NAME).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer
        .flush(Timeout::After(Duration::from_secs(60)))
        .expect("flush");
    println!(
        "peak_kib={} took_ms={}",
        peak_rss_kib(),
        start.elapsed().as_millis()
    );
}

fn run_child(role: &str, brokers: &str) -> (f64, u64) {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .arg("--bench")
        .env(ROLE, role)
        .env(BROKERS, brokers)
        .output()
        .expect("publisher");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{role} failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("peak_kib="))
        .unwrap_or_else(|| panic!("{role} printed no figures: {text}"));
    let mut fields = line.split_whitespace().map(|f| {
        f.split_once('=')
            .expect("k=v")
            .1
            .parse::<u64>()
            .expect("number")
    });
    let kib = fields.next().expect("peak");
    let ms = fields.next().expect("took");
    (kib as f64 / 1024.0, ms)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = common::env_or("BENCH_PUBLISH_MEMORY_N", 100_000);
    match std::env::var(ROLE).as_deref() {
        Ok("mock") => return serve_mock(),
        Ok("topicbus") => return publish_topicbus(&std::env::var(BROKERS).expect("brokers"), n),
        Ok("raw") => return publish_raw(&std::env::var(BROKERS).expect("brokers"), n),
        Ok("consume") => return consume_topicbus(&std::env::var(BROKERS).expect("brokers"), n),
        Ok("raw-consume") => return consume_raw(&std::env::var(BROKERS).expect("brokers"), n),
        _ => {}
    }
    let rounds: usize = common::env_or("BENCH_PUBLISH_MEMORY_ROUNDS", 5);
    let mut mock = Command::new(std::env::current_exe().expect("exe"))
        .arg("--bench")
        .env(ROLE, "mock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mock process");
    let mut bootstrap = String::new();
    BufReader::new(mock.stdout.take().expect("stdout"))
        .read_line(&mut bootstrap)
        .expect("bootstrap");
    let bootstrap = bootstrap.trim().to_owned();
    println!("kafka_publish_memory: {n} events, {rounds} rounds, mock cluster {bootstrap} in its own process");
    let mut figures: [(&str, Vec<(f64, u64)>); 2] = [("topicbus", Vec::new()), ("raw", Vec::new())];
    for round in 0..rounds {
        for (role, results) in &mut figures {
            let (mib, ms) = run_child(role, &bootstrap);
            println!("round {round}: {role:<8} peak RSS {mib:6.1} MiB, publish {ms} ms");
            results.push((mib, ms));
        }
    }
    for (role, results) in &mut figures {
        results.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mid = results.len() / 2;
        println!(
            "{role:<8} peak RSS min/median/max {:.1} / {:.1} / {:.1} MiB",
            results[0].0,
            results[mid].0,
            results[results.len() - 1].0
        );
    }
    drop(mock.stdin.take());
    let _ = mock.wait();
}
