//! Kafka transport: topicbus against plain rdkafka with the same settings,
//! on the same broker, in the same run, alternating the two.
//!
//! 1. `publish_batch`: `bus.publish_batch(&msgs)` of N ~100-byte JSON events
//!    against a raw `FutureProducer` that enqueues the same, pre-encoded
//!    bytes with `send_result` and then awaits every delivery (acks=all,
//!    enable.idempotence=true, linger.ms=0, as topicbus). Target >= 0.9x.
//!    Two baselines, both held to the target: `publish_batch` against raw
//!    records without headers, and `publish_batch_vs_raw_with_headers`
//!    against raw records that carry the six CloudEvents headers topicbus
//!    writes (pre-built: the same wire bytes, like for like).
//! 2. `consume`: N events pre-produced once; each round a fresh consumer
//!    group reads them from the start: a topicbus subscription
//!    (`StartFrom::Earliest`) until its handler saw them all, against a raw
//!    `StreamConsumer` that decodes each with serde_json and stores its
//!    offset (at-least-once, as topicbus). The ratio is taken over the time
//!    from the first to the last handled message; the time including the
//!    group join (seconds, set by the coordinator) is printed as `INFO`.
//!    Target >= 0.9x, against two baselines: `consume` (the raw consumer
//!    ignores the headers) and `consume_vs_raw_with_headers` (it also
//!    copies each record's headers out, the metadata topicbus hands its
//!    handlers).
//! 3. `request_reply`: sequential `bus.request(&req)` against a raw
//!    ping-pong (client produces to a request topic; a server task in a
//!    consumer group consumes it and produces the reply to a single-partition
//!    reply topic that the client reads by assignment). The ratio is of the
//!    medians, i.e. p50. Target <= 1.3x.
//!
//! Brokers: librdkafka's mock cluster, started in-process, always (skip it
//! with env `BENCH_KAFKA_SKIP_MOCK`); and a real broker when env
//! `TOPICBUS_KAFKA_BROKERS` is set (labelled `kafka`, or env
//! `BENCH_KAFKA_EXTERNAL_NAME`). Topics are provisioned on the real broker
//! (`scripts/kafka.sh` runs Apache Kafka without auto-creation) and
//! auto-created on the mock cluster.
//!
//! The mock cluster answers a waiting fetch only when `fetch.wait.max.ms`
//! ends (Apache Kafka answers as soon as data arrives), so every client here
//! runs with `fetch.wait.max.ms` = env `BENCH_KAFKA_FETCH_WAIT_MS` (default
//! 1), `session.timeout.ms=6000`, `heartbeat.interval.ms=500`.
//!
//! Knobs: `BENCH_KAFKA_N` (messages per publish / consume round, default
//! 20 000), `BENCH_KAFKA_ROUNDS` (publish rounds, default 9),
//! `BENCH_KAFKA_CONSUME_ROUNDS` (default 5), `BENCH_KAFKA_RR_ROUNDS` (round
//! trips each, default 300), plus `BENCH_RATIO_FILTER` / `BENCH_NO_RATIO`
//! as in the other benches. Criterion measures publish (2 000 per
//! iteration) and one round trip; consume is measured by the ratio loop only
//! (each of its iterations joins a group, which takes seconds).
//!
//! With env `BENCH_KAFKA_WIRE_PROFILE=lean`, topicbus writes the lean wire
//! profile (docs/wire.md) and the header-carrying baselines write its four
//! headers instead of six; the consume rounds read records with those four.
//!
//! The header-carrying baselines, and a diagnostic `INFO` line of that raw
//! publish against plain raw (what the headers cost librdkafka), are
//! skipped with env `BENCH_KAFKA_NO_DIAGNOSTICS`. With
//! env `BENCH_KAFKA_THREADS`, each publish and consume round prints the CPU
//! and run-queue time of every thread (by name, from
//! `/proc/self/task/*/schedstat`); with env `RUST_LOG`, topicbus's logs go
//! to stderr.
//!
//! Topic names are fixed by the typed topics; a real broker that persists
//! them across runs is fine: publishing appends, the consume rounds read
//! whatever the topic holds (both sides alike, counted from the low
//! watermarks to where this run's deliveries ended), and groups, the raw
//! ping-pong topics and reply inboxes are fresh per run.
//!
//! Run it on Apache Kafka as:
//!
//! ```text
//! TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start) \
//!     cargo bench --features kafka --bench kafka; scripts/kafka.sh stop
//! ```

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Goal, Ratio};
use criterion::{BenchmarkId, Criterion, Throughput};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, StartFrom, Topic, WireProfile};

/// Hang guard for anything that waits on the broker.
const HANG: Duration = Duration::from_secs(120);
/// Messages per criterion publish iteration.
const CRITERION_BATCH: usize = 2_000;
/// Partitions of the raw ping-pong request topic on a provisioning broker
/// (topicbus's default for the typed request topic).
const PARTITIONS: i32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "bench.kafka.publish")]
struct PubEvent {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "bench.kafka.consume")]
struct ConsEvent {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "bench.kafka.rpc.request", response = RpcReply)]
struct RpcRequest {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "bench.kafka.rpc.reply")]
struct RpcReply {
    id: u64,
    score: f64,
}

macro_rules! make_event {
    ($($t:ident),*) => {$(
        impl common::MakeEvent for $t {
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
    )*};
}
make_event!(PubEvent, ConsEvent, RpcRequest);

impl RpcReply {
    fn answer(req: &RpcRequest) -> Self {
        Self {
            id: req.id,
            score: req.score + 1.0,
        }
    }
}

fn messages() -> usize {
    common::env_or("BENCH_KAFKA_N", 20_000)
}

fn fetch_wait_ms() -> u64 {
    common::env_or("BENCH_KAFKA_FETCH_WAIT_MS", 1)
}

/// The wire profile topicbus writes (env `BENCH_KAFKA_WIRE_PROFILE`,
/// default full); the raw baselines with headers write the same headers.
fn wire_profile() -> WireProfile {
    common::env_or("BENCH_KAFKA_WIRE_PROFILE", WireProfile::Full)
}

/// A suffix that makes names unique per run (brokers keep topics and
/// groups for as long as they run).
fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!("{}{:03}", now.as_secs(), now.subsec_millis())
    })
}

/// Where the benches run.
struct Broker {
    name: String,
    bootstrap: String,
    /// Create topics with the admin API (else rely on auto-creation).
    provision: bool,
    _mock: Option<MockThread>,
}

/// librdkafka's mock cluster on a thread of its own (`MockCluster` is not
/// `Send`); it stops when this is dropped.
struct MockThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MockThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Broker {
    fn mock() -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".to_owned())
            .spawn(move || {
                let cluster = MockCluster::new(1).expect("mock cluster");
                ready_tx
                    .send(cluster.bootstrap_servers())
                    .expect("bench alive");
                // Returns when the sender is dropped.
                let _ = stopped.recv();
            })
            .expect("mock thread");
        Self {
            name: "mock".to_owned(),
            bootstrap: ready_rx.recv().expect("mock cluster started"),
            provision: false,
            _mock: Some(MockThread {
                stop: Some(stop),
                thread: Some(thread),
            }),
        }
    }

    fn external() -> Option<Self> {
        let bootstrap = std::env::var("TOPICBUS_KAFKA_BROKERS").ok()?;
        Some(Self {
            name: std::env::var("BENCH_KAFKA_EXTERNAL_NAME").unwrap_or_else(|_| "kafka".to_owned()),
            bootstrap,
            provision: true,
            _mock: None,
        })
    }

    /// The settings both sides share.
    fn properties(&self) -> [(&'static str, String); 3] {
        [
            ("fetch.wait.max.ms", fetch_wait_ms().to_string()),
            ("session.timeout.ms", "6000".to_owned()),
            ("heartbeat.interval.ms", "500".to_owned()),
        ]
    }

    fn topicbus_config(&self) -> KafkaConfig {
        self.properties().into_iter().fold(
            KafkaConfig::new(&self.bootstrap)
                .provision_topics(self.provision)
                .wire_profile(wire_profile()),
            |config, (key, value)| config.set(key, value),
        )
    }

    async fn bus(&self, service: &str) -> Bus {
        connect(self.topicbus_config(), service).await
    }

    /// A raw client's configuration: `defaults`, then the shared settings.
    fn raw_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in self.properties() {
            config.set(key, value);
        }
        config
    }

    /// A producer with topicbus's producer settings.
    fn raw_producer(&self) -> FutureProducer {
        self.raw_producer_config().create().expect("raw producer")
    }

    fn raw_producer_config(&self) -> ClientConfig {
        let max = (1_000_000 + 64 * 1024).to_string();
        self.raw_config(&[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("linger.ms", "0"),
            ("message.timeout.ms", "30000"),
            ("message.max.bytes", &max),
        ])
    }

    /// A group consumer with topicbus's group consumer settings
    /// (offsets stored by hand after handling, auto-committed).
    fn raw_group_consumer(&self, group: &str) -> StreamConsumer {
        self.raw_group_config(group).create().expect("raw consumer")
    }

    fn raw_group_config(&self, group: &str) -> ClientConfig {
        self.raw_config(&[
            ("group.id", group),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "1000"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
        ])
    }

    /// Creates raw topics: with the admin API, or by asking for their
    /// metadata as a producer (auto-creation), as topicbus does.
    async fn create_raw_topics(&self, topics: &[(&str, i32)]) {
        if self.provision {
            let admin: AdminClient<DefaultClientContext> =
                self.raw_config(&[]).create().expect("admin client");
            let new: Vec<NewTopic<'_>> = topics
                .iter()
                .map(|(name, partitions)| {
                    NewTopic::new(name, *partitions, TopicReplication::Fixed(1))
                })
                .collect();
            let results = guard(
                "create topics",
                admin.create_topics(&new, &AdminOptions::new()),
            )
            .await
            .expect("create topics");
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => panic!("cannot create `{topic}`: {code}"),
                }
            }
        } else {
            let producer = self.raw_producer();
            let names: Vec<String> = topics.iter().map(|(t, _)| (*t).to_owned()).collect();
            tokio::task::spawn_blocking(move || {
                for name in names {
                    producer
                        .client()
                        .fetch_metadata(Some(&name), Timeout::After(HANG))
                        .expect("auto-create topic");
                }
            })
            .await
            .expect("metadata task");
        }
    }

    /// Messages a topic holds: per partition, from its low watermark to
    /// `ends` (the next offset after what this run produced there) or, for
    /// partitions this run did not produce to, to its high watermark.
    /// The end is taken from the delivery reports: exactly what this run
    /// wrote, whatever else the topic holds.
    async fn topic_size(&self, topic: &'static str, ends: Vec<i64>) -> usize {
        let consumer: StreamConsumer = self
            .raw_config(&[("group.id", "bench.kafka.watermarks")])
            .create()
            .expect("consumer");
        tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(topic), Timeout::After(HANG))
                .expect("metadata");
            let partitions = metadata.topics()[0].partitions().len();
            assert!(partitions > 0, "topic `{topic}` has no partitions");
            (0..partitions)
                .map(|p| {
                    let (low, high) = consumer
                        .fetch_watermarks(topic, p as i32, Timeout::After(HANG))
                        .expect("watermarks");
                    let end = ends.get(p).copied().filter(|&e| e > 0).unwrap_or(high);
                    usize::try_from(end - low).unwrap_or(0)
                })
                .sum()
        })
        .await
        .expect("watermark task")
    }
}

async fn connect(config: KafkaConfig, service: &str) -> Bus {
    guard(
        "connect",
        Bus::builder()
            .service(service)
            .request_timeout(Duration::from_secs(30))
            .kafka(config)
            .connect(),
    )
    .await
    .expect("connect")
}

async fn guard<T>(what: &str, future: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
}

/// Drops a client off the runtime: closing a group consumer blocks while it
/// leaves the group.
async fn drop_blocking<T: Send + 'static>(client: T) {
    let _ = tokio::task::spawn_blocking(move || drop(client)).await;
}

// ---------------------------------------------------------------------------
// 1. Publish throughput

/// A topicbus bus and a raw producer, with the same events to publish.
struct PublishRig {
    bus: Bus,
    producer: FutureProducer,
    events: Arc<Vec<PubEvent>>,
    payloads: Arc<Vec<Vec<u8>>>,
    /// Per message, the headers topicbus puts on the wire (for the
    /// diagnostic raw variant that sends them too).
    headers: Arc<Vec<WireHeaders>>,
}

/// The CloudEvents headers topicbus writes, with values of the same sizes:
/// six, or four in the lean wire profile.
type WireHeaders = Vec<(&'static str, String)>;

fn wire_headers(i: u64, topic: &str) -> WireHeaders {
    let mut headers = vec![
        ("ce_specversion", "1.0".to_owned()),
        ("ce_id", format!("00000000-0000-4000-8000-{i:012x}")),
        ("ce_source", "bench-publish".to_owned()),
        ("ce_type", topic.to_owned()),
    ];
    if wire_profile() == WireProfile::Full {
        headers.push(("ce_time", "2025-01-01T00:00:00.000Z".to_owned()));
        headers.push(("content-type", "application/json".to_owned()));
    }
    headers
}

impl PublishRig {
    fn new(rt: &Runtime, broker: &Broker, n: usize) -> Self {
        let events: Vec<PubEvent> = (0..n as u64).map(common::MakeEvent::make).collect();
        let payloads = events
            .iter()
            .map(|e| serde_json::to_vec(e).expect("encode"))
            .collect();
        let headers = (0..n as u64)
            .map(|i| wire_headers(i, PubEvent::NAME))
            .collect();
        rt.block_on(async {
            let bus = broker.bus("bench-publish").await;
            bus.ensure_topic::<PubEvent>().await.expect("ensure topic");
            Self {
                bus,
                producer: broker.raw_producer(),
                events: Arc::new(events),
                payloads: Arc::new(payloads),
                headers: Arc::new(headers),
            }
        })
    }

    fn topicbus(&self, rt: &Runtime, n: usize) -> Duration {
        let (bus, events) = (self.bus.clone(), Arc::clone(&self.events));
        common::run_on(rt, async move {
            let watch = watch_threads();
            let start = Instant::now();
            guard("publish_batch", bus.publish_batch(&events[..n]))
                .await
                .expect("publish_batch");
            let elapsed = start.elapsed();
            report_threads(watch, "publish topicbus");
            elapsed
        })
    }

    fn raw(&self, rt: &Runtime, n: usize) -> Duration {
        self.raw_with(rt, n, false)
    }

    /// `raw`, sending topicbus's CloudEvents headers too.
    fn raw_with_headers(&self, rt: &Runtime, n: usize) -> Duration {
        self.raw_with(rt, n, true)
    }

    fn raw_with(&self, rt: &Runtime, n: usize, with_headers: bool) -> Duration {
        let (producer, payloads) = (self.producer.clone(), Arc::clone(&self.payloads));
        let headers = with_headers.then(|| Arc::clone(&self.headers));
        common::run_on(rt, async move {
            let watch = watch_threads();
            let start = Instant::now();
            guard(
                "raw publish",
                raw_publish(
                    &producer,
                    &payloads[..n],
                    headers.as_deref().map(|h| &h[..n]),
                ),
            )
            .await;
            let elapsed = start.elapsed();
            let what = if headers.is_some() {
                "publish raw_with_headers"
            } else {
                "publish raw"
            };
            report_threads(watch, what);
            elapsed
        })
    }

    fn close(self, rt: &Runtime) {
        rt.block_on(async {
            self.bus.shutdown().await.expect("shutdown");
            let producer = self.producer;
            tokio::task::spawn_blocking(move || producer.flush(HANG))
                .await
                .expect("flush task")
                .expect("flush");
        });
    }
}

/// Enqueues every payload, then awaits every delivery; when the producer's
/// queue is full, awaits the oldest first (as topicbus's `publish_batch`).
async fn raw_publish(
    producer: &FutureProducer,
    payloads: &[Vec<u8>],
    headers: Option<&[WireHeaders]>,
) {
    let mut waiting = VecDeque::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        loop {
            let mut record = FutureRecord::<(), [u8]>::to(PubEvent::NAME).payload(&payload[..]);
            if let Some(headers) = headers {
                let mut owned = OwnedHeaders::new_with_capacity(headers[i].len());
                for (key, value) in &headers[i] {
                    owned = owned.insert(Header {
                        key,
                        value: Some(value),
                    });
                }
                record = record.headers(owned);
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    waiting.push_back(delivery);
                    break;
                }
                Err(_) if !waiting.is_empty() => {
                    let oldest = waiting.pop_front().expect("not empty");
                    settle(oldest.await);
                }
                Err((error, _)) => panic!("raw send: {error}"),
            }
        }
    }
    for delivery in waiting {
        settle(delivery.await);
    }
}

fn settle<C: std::fmt::Debug>(
    delivered: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, C>,
) {
    match delivered {
        Ok(Ok(_)) => {}
        Ok(Err((error, _))) => panic!("raw delivery: {error}"),
        Err(canceled) => panic!("raw delivery canceled: {canceled:?}"),
    }
}

// ---------------------------------------------------------------------------
// 2. Consume and handle

/// Counts handled messages; remembers when the first and the last came.
struct Tracker {
    seen: AtomicUsize,
    target: usize,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    done: Notify,
    threads: Option<Mutex<Vec<ThreadTime>>>,
}

/// (thread name, ns on CPU, ns waiting on a run queue), summed by name.
type ThreadTime = (String, u64, u64);

fn thread_times() -> Vec<ThreadTime> {
    let mut out: Vec<ThreadTime> = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let sched = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let mut fields = sched
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        let (run, wait) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
        let name = name.trim().to_owned();
        match out.iter_mut().find(|(n, _, _)| *n == name) {
            Some(entry) => {
                entry.1 += run;
                entry.2 += wait;
            }
            None => out.push((name, run, wait)),
        }
    }
    out
}

/// With env `BENCH_KAFKA_THREADS`, the threads' times now.
fn watch_threads() -> Option<Vec<ThreadTime>> {
    std::env::var_os("BENCH_KAFKA_THREADS").map(|_| thread_times())
}

/// Prints what each thread did since `watch_threads`.
fn report_threads(before: Option<Vec<ThreadTime>>, what: &str) {
    if let Some(before) = before {
        print_thread_times(&diff_thread_times(&before, &thread_times()), what);
    }
}

fn print_thread_times(stats: &[ThreadTime], what: &str) {
    let line: Vec<String> = stats
        .iter()
        .filter(|(_, run, _)| *run >= 1_000_000)
        .map(|(name, run, wait)| {
            format!(
                "{name} run {:.1} ms wait {:.1} ms",
                *run as f64 / 1e6,
                *wait as f64 / 1e6
            )
        })
        .collect();
    println!("       threads {what}: {}", line.join("; "));
}

fn diff_thread_times(before: &[ThreadTime], after: &[ThreadTime]) -> Vec<ThreadTime> {
    let mut out: Vec<ThreadTime> = after
        .iter()
        .map(|(name, run, wait)| {
            let (r0, w0) = before
                .iter()
                .find(|(n, _, _)| n == name)
                .map_or((0, 0), |(_, r, w)| (*r, *w));
            (
                name.clone(),
                run.saturating_sub(r0),
                wait.saturating_sub(w0),
            )
        })
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.1));
    out
}

impl Tracker {
    fn new(target: usize) -> Arc<Self> {
        Arc::new(Self {
            seen: AtomicUsize::new(0),
            target,
            first: OnceLock::new(),
            last: OnceLock::new(),
            done: Notify::new(),
            threads: std::env::var_os("BENCH_KAFKA_THREADS").map(|_| Mutex::new(Vec::new())),
        })
    }

    #[inline]
    fn hit(&self) {
        self.first.get_or_init(|| {
            if let Some(stats) = &self.threads {
                *stats.lock().unwrap() = thread_times();
            }
            Instant::now()
        });
        if self.seen.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            let _ = self.last.set(Instant::now());
            if let Some(stats) = &self.threads {
                let mut stats = stats.lock().unwrap();
                *stats = diff_thread_times(&stats, &thread_times());
            }
            self.done.notify_one();
        }
    }

    /// With env `BENCH_KAFKA_THREADS`: prints the CPU time and run-queue
    /// wait of each thread (by name) between the first and last message.
    fn print_threads(&self, what: &str) {
        if let Some(stats) = &self.threads {
            print_thread_times(&stats.lock().unwrap(), what);
        }
    }

    async fn wait(&self) {
        self.done.notified().await;
    }

    /// (first to last message, start to last message).
    fn times(&self, start: Instant) -> (Duration, Duration) {
        let last = *self.last.get().expect("finished");
        let first = *self.first.get().expect("started");
        (last - first, last - start)
    }
}

/// The consume bench: a topic holding `total` events, fresh groups per round.
struct ConsumeRig {
    total: usize,
    round: AtomicUsize,
}

impl ConsumeRig {
    fn new(rt: &Runtime, broker: &Broker, n: usize) -> Self {
        rt.block_on(async {
            // The topic as topicbus creates it; the events written by a raw
            // producer with the headers topicbus would write, so that the
            // delivery reports tell where each partition ends.
            let bus = broker.bus("bench-consume-producer").await;
            bus.ensure_topic::<ConsEvent>().await.expect("ensure topic");
            bus.shutdown().await.expect("shutdown");
            let producer = broker.raw_producer();
            let mut ends = Vec::new();
            let mut waiting = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let event: ConsEvent = common::MakeEvent::make(i);
                let payload = serde_json::to_vec(&event).expect("encode");
                let mut headers = OwnedHeaders::new_with_capacity(6);
                for (key, value) in &wire_headers(i, ConsEvent::NAME) {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value),
                    });
                }
                let record = FutureRecord::<(), [u8]>::to(ConsEvent::NAME)
                    .payload(&payload[..])
                    .headers(headers);
                match producer.send_result(record) {
                    Ok(delivery) => waiting.push(delivery),
                    Err((error, _)) => panic!("pre-produce: {error}"),
                }
            }
            for delivery in waiting {
                match guard("pre-produce", delivery).await {
                    Ok(Ok(done)) => {
                        let p = usize::try_from(done.partition).expect("partition");
                        if ends.len() <= p {
                            ends.resize(p + 1, 0);
                        }
                        ends[p] = ends[p].max(done.offset + 1);
                    }
                    Ok(Err((error, _))) => panic!("pre-produce: {error}"),
                    Err(_) => panic!("pre-produce: producer gone"),
                }
            }
            drop_blocking(producer).await;
            let total = broker.topic_size(ConsEvent::NAME, ends).await;
            if total != n {
                println!(
                    "kafka/{}/consume: `{}` holds {total} messages, not {n} (retention, or earlier runs on this broker); both sides read them all",
                    broker.name,
                    ConsEvent::NAME
                );
            }
            Self {
                total,
                round: AtomicUsize::new(0),
            }
        })
    }

    fn group(&self, side: &str) -> String {
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        format!("bench.consume.{side}.{}.{round}", run_id())
    }

    /// Subscribes a new bus in a fresh group; returns (first to last, total).
    fn topicbus(&self, rt: &Runtime, broker: &Broker) -> (Duration, Duration) {
        let group = self.group("topicbus");
        let total = self.total;
        let config = broker.topicbus_config();
        common::run_on(rt, async move {
            let bus = connect(config, "bench-consume").await;
            let tracker = Tracker::new(total);
            let counting = Arc::clone(&tracker);
            let start = Instant::now();
            guard(
                "subscribe",
                bus.group(group)
                    .subscribe(move |ev: ConsEvent| {
                        black_box(&ev);
                        counting.hit();
                        std::future::ready(Ok::<(), Infallible>(()))
                    })
                    .start_from(StartFrom::Earliest),
            )
            .await
            .expect("subscribe");
            guard("topicbus consume", tracker.wait()).await;
            let times = tracker.times(start);
            tracker.print_threads("topicbus");
            guard("shutdown", bus.shutdown()).await.expect("shutdown");
            times
        })
    }

    /// A raw group consumer in a fresh group; returns (first to last, total).
    fn raw(&self, rt: &Runtime, broker: &Broker) -> (Duration, Duration) {
        self.raw_with(rt, broker, false)
    }

    /// `raw`, also copying each message's headers out (the metadata
    /// topicbus hands its handlers: id, source, time, ...).
    fn raw_with_headers(&self, rt: &Runtime, broker: &Broker) -> (Duration, Duration) {
        self.raw_with(rt, broker, true)
    }

    fn raw_with(&self, rt: &Runtime, broker: &Broker, with_headers: bool) -> (Duration, Duration) {
        let config = broker.raw_group_config(&self.group("raw"));
        let total = self.total;
        common::run_on(rt, async move {
            let consumer: StreamConsumer = config.create().expect("raw consumer");
            let start = Instant::now();
            consumer
                .subscribe(&[ConsEvent::NAME])
                .expect("raw subscribe");
            let tracker = Tracker::new(total);
            guard("raw consume", async {
                while tracker.seen.load(Ordering::Relaxed) < total {
                    let message = consumer.recv().await.expect("raw recv");
                    let event: ConsEvent =
                        serde_json::from_slice(message.payload().unwrap_or_default())
                            .expect("decode");
                    black_box(&event);
                    if with_headers {
                        let headers: Vec<(String, Vec<u8>)> = message
                            .headers()
                            .map(|headers| {
                                headers
                                    .iter()
                                    .map(|h| {
                                        (h.key.to_owned(), h.value.unwrap_or_default().to_vec())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        black_box(&headers);
                    }
                    consumer
                        .store_offset_from_message(&message)
                        .expect("store offset");
                    tracker.hit();
                }
            })
            .await;
            let times = tracker.times(start);
            tracker.print_threads(if with_headers {
                "raw_with_headers"
            } else {
                "raw"
            });
            drop_blocking(consumer).await;
            times
        })
    }
}

// ---------------------------------------------------------------------------
// 3. Request / reply

/// A topicbus server and client, each its own bus.
struct TopicbusRpc {
    server: Bus,
    client: Bus,
    next: AtomicUsize,
}

impl TopicbusRpc {
    fn new(rt: &Runtime, broker: &Broker) -> Self {
        rt.block_on(async {
            let server = broker.bus("bench-rpc-server").await;
            guard(
                "serve",
                server
                    .group("kafka.rpc-request")
                    .serve(|req: RpcRequest| {
                        std::future::ready(Ok::<_, Infallible>(RpcReply::answer(&req)))
                    })
                    .group(format!("bench.rpc.server.{}", run_id())),
            )
            .await
            .expect("serve");
            let client = broker.bus("bench-rpc-client").await;
            Self {
                server,
                client,
                next: AtomicUsize::new(0),
            }
        })
    }

    fn call(&self, rt: &Runtime) -> Duration {
        let client = self.client.clone();
        let id = self.next.fetch_add(1, Ordering::Relaxed) as u64;
        common::run_on(rt, async move {
            let req: RpcRequest = common::MakeEvent::make(id);
            let start = Instant::now();
            let reply = client.request(&req).timeout(HANG).await.expect("request");
            let elapsed = start.elapsed();
            assert_eq!(reply.id, id);
            elapsed
        })
    }

    fn close(self, rt: &Runtime) {
        rt.block_on(async {
            self.client.shutdown().await.expect("client shutdown");
            self.server.shutdown().await.expect("server shutdown");
        });
    }
}

/// The raw ping-pong: a client producer and reply consumer (assigned, no
/// group), a server task with a group consumer and its own producer.
struct RawRpc {
    producer: FutureProducer,
    replies: Arc<StreamConsumer>,
    request_topic: String,
    server: tokio::task::JoinHandle<()>,
    server_consumer: Arc<StreamConsumer>,
    server_producer: FutureProducer,
    next: AtomicUsize,
}

impl RawRpc {
    fn new(rt: &Runtime, broker: &Broker) -> Self {
        let request_topic = format!("bench.kafka.raw.request.{}", run_id());
        let reply_topic = format!("bench.kafka.raw.reply.{}", run_id());
        rt.block_on(async {
            broker
                .create_raw_topics(&[(&request_topic, PARTITIONS), (&reply_topic, 1)])
                .await;

            // Server: a group member that answers each request on partition
            // 0 of the reply topic, then stores the request's offset.
            let server_consumer =
                Arc::new(broker.raw_group_consumer(&format!("bench.rpc.raw.{}", run_id())));
            server_consumer
                .subscribe(&[&request_topic])
                .expect("server subscribe");
            let server_producer = broker.raw_producer();
            let server = tokio::spawn({
                let (consumer, producer) = (Arc::clone(&server_consumer), server_producer.clone());
                let reply_topic = reply_topic.clone();
                async move {
                    loop {
                        let Ok(message) = consumer.recv().await else {
                            continue;
                        };
                        let req: RpcRequest =
                            serde_json::from_slice(message.payload().unwrap_or_default())
                                .expect("decode request");
                        let reply =
                            serde_json::to_vec(&RpcReply::answer(&req)).expect("encode reply");
                        let record = FutureRecord::<(), [u8]>::to(&reply_topic)
                            .partition(0)
                            .payload(&reply[..]);
                        match producer.send_result(record) {
                            Ok(delivery) => settle(delivery.await),
                            Err((error, _)) => panic!("raw reply: {error}"),
                        }
                        let _ = consumer.store_offset_from_message(&message);
                    }
                }
            });

            // Client: reads the reply topic from its end, like an inbox.
            let replies: StreamConsumer = broker
                .raw_config(&[
                    ("group.id", &reply_topic),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                ])
                .create()
                .expect("reply consumer");
            let replies = Arc::new(replies);
            let assigning = Arc::clone(&replies);
            let topic = reply_topic.clone();
            tokio::task::spawn_blocking(move || {
                let (_, end) = assigning
                    .fetch_watermarks(&topic, 0, Timeout::After(HANG))
                    .expect("reply topic end");
                let mut assignment = TopicPartitionList::new();
                assignment
                    .add_partition_offset(&topic, 0, Offset::Offset(end))
                    .expect("assignment");
                assigning.assign(&assignment).expect("assign");
            })
            .await
            .expect("assign task");

            Self {
                producer: broker.raw_producer(),
                replies,
                request_topic,
                server,
                server_consumer,
                server_producer,
                next: AtomicUsize::new(0),
            }
        })
    }

    fn call(&self, rt: &Runtime) -> Duration {
        let (producer, replies) = (self.producer.clone(), Arc::clone(&self.replies));
        let topic = self.request_topic.clone();
        let id = self.next.fetch_add(1, Ordering::Relaxed) as u64;
        common::run_on(rt, async move {
            let req: RpcRequest = common::MakeEvent::make(id);
            let start = Instant::now();
            let payload = serde_json::to_vec(&req).expect("encode request");
            let record = FutureRecord::<(), [u8]>::to(&topic).payload(&payload[..]);
            match producer.send_result(record) {
                Ok(delivery) => settle(guard("raw request", delivery).await),
                Err((error, _)) => panic!("raw request: {error}"),
            }
            guard("raw reply", async {
                loop {
                    let message = replies.recv().await.expect("raw reply");
                    let reply: RpcReply =
                        serde_json::from_slice(message.payload().unwrap_or_default())
                            .expect("decode reply");
                    if reply.id == id {
                        break;
                    }
                }
            })
            .await;
            start.elapsed()
        })
    }

    fn close(self, rt: &Runtime) {
        self.server.abort();
        rt.block_on(async {
            let _ = self.server.await;
            drop_blocking(self.server_consumer).await;
            drop_blocking(self.replies).await;
            drop_blocking(self.server_producer).await;
            drop_blocking(self.producer).await;
        });
    }
}

// ---------------------------------------------------------------------------

fn sum_rounds(iters: u64, mut round: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| round()).sum()
}

fn criterion_benches(c: &mut Criterion, rt: &Runtime, broker: &Broker) {
    let name = |bench: &str| format!("kafka/{}/{bench}", broker.name);
    if common::wanted(&name("publish_batch")) {
        let rig = PublishRig::new(rt, broker, CRITERION_BATCH);
        let mut group = c.benchmark_group(name("publish_batch"));
        group.throughput(Throughput::Elements(CRITERION_BATCH as u64));
        group.bench_function(BenchmarkId::new("topicbus", CRITERION_BATCH), |b| {
            b.iter_custom(|iters| sum_rounds(iters, || rig.topicbus(rt, CRITERION_BATCH)));
        });
        group.bench_function(BenchmarkId::new("raw", CRITERION_BATCH), |b| {
            b.iter_custom(|iters| sum_rounds(iters, || rig.raw(rt, CRITERION_BATCH)));
        });
        group.finish();
        rig.close(rt);
    }
    if common::wanted(&name("request_reply")) {
        let ours = TopicbusRpc::new(rt, broker);
        let raw = RawRpc::new(rt, broker);
        // The first calls wait for the servers' group joins.
        ours.call(rt);
        raw.call(rt);
        let mut group = c.benchmark_group(name("request_reply"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("topicbus", |b| {
            b.iter_custom(|iters| sum_rounds(iters, || ours.call(rt)));
        });
        group.bench_function("raw", |b| {
            b.iter_custom(|iters| sum_rounds(iters, || raw.call(rt)));
        });
        group.finish();
        ours.close(rt);
        raw.close(rt);
    }
}

/// Percentile `p` (0..=100) of `xs`.
fn percentile(xs: &[Duration], p: usize) -> Duration {
    let mut xs = xs.to_vec();
    xs.sort();
    xs[((xs.len() - 1) * p / 100).min(xs.len() - 1)]
}

fn ratios(rt: &Runtime, broker: &Broker, results: &mut Vec<Option<Ratio>>) {
    let n = messages();
    let name = |bench: &str| format!("kafka/{}/{bench}", broker.name);

    let bench = name("publish_batch");
    if common::wanted(&bench) {
        let rig = PublishRig::new(rt, broker, n);
        results.push(common::compare(
            &bench,
            n as u64,
            Goal::ThroughputAtLeast(0.9),
            common::env_or("BENCH_KAFKA_ROUNDS", 9),
            || rig.topicbus(rt, n),
            || rig.raw(rt, n),
        ));
        // Like for like: the same raw publish, carrying topicbus's
        // CloudEvents headers (bigger records, header encoding).
        let diagnostics = std::env::var_os("BENCH_KAFKA_NO_DIAGNOSTICS").is_none();
        results.extend(diagnostics.then(|| {
            common::compare(
                &format!("{bench}_vs_raw_with_headers"),
                n as u64,
                Goal::ThroughputAtLeast(0.9),
                common::env_or("BENCH_KAFKA_ROUNDS", 9),
                || rig.topicbus(rt, n),
                || rig.raw_with_headers(rt, n),
            )
        }));
        results.extend(diagnostics.then(|| {
            common::compare(
                &format!("{bench}_raw_with_headers_vs_raw"),
                n as u64,
                Goal::Info,
                common::env_or("BENCH_KAFKA_ROUNDS", 9),
                || rig.raw_with_headers(rt, n),
                || rig.raw(rt, n),
            )
        }));
        rig.close(rt);
    }

    let bench = name("consume");
    if common::wanted(&bench) {
        let rig = ConsumeRig::new(rt, broker, n);
        let rounds = common::env_or("BENCH_KAFKA_CONSUME_ROUNDS", 5);
        // Each call's total time (with the group join), replayed below.
        let (ours_total, raw_total) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
        let ours_steady = Mutex::new(Vec::new());
        results.push(common::compare(
            &bench,
            rig.total as u64,
            Goal::ThroughputAtLeast(0.9),
            rounds,
            || {
                let (steady, total) = rig.topicbus(rt, broker);
                ours_total.lock().unwrap().push(total);
                ours_steady.lock().unwrap().push(steady);
                steady
            },
            || {
                let (steady, total) = rig.raw(rt, broker);
                raw_total.lock().unwrap().push(total);
                steady
            },
        ));
        let ours_total = ours_total.into_inner().unwrap();
        let (mut ours, mut raw) = (
            ours_total.iter().copied(),
            raw_total.into_inner().unwrap().into_iter(),
        );
        results.push(common::compare(
            &format!("{bench}_incl_join"),
            rig.total as u64,
            Goal::Info,
            rounds,
            || ours.next().unwrap_or_default(),
            || raw.next().unwrap_or_default(),
        ));
        // Like for like: topicbus (the times above, replayed) against a raw
        // consumer that also copies each message's headers out.
        if std::env::var_os("BENCH_KAFKA_NO_DIAGNOSTICS").is_none() {
            let mut ours = ours_steady.into_inner().unwrap().into_iter();
            results.push(common::compare(
                &format!("{bench}_vs_raw_with_headers"),
                rig.total as u64,
                Goal::ThroughputAtLeast(0.9),
                rounds,
                || ours.next().unwrap_or_default(),
                || rig.raw_with_headers(rt, broker).0,
            ));
        }
    }

    let bench = name("request_reply");
    if common::wanted(&bench) {
        let ours = TopicbusRpc::new(rt, broker);
        let raw = RawRpc::new(rt, broker);
        // Wait for both servers' group joins, then settle in.
        for _ in 0..20 {
            ours.call(rt);
            raw.call(rt);
        }
        let (ours_lat, raw_lat) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
        results.push(common::compare(
            &format!("{bench}_p50"),
            1,
            Goal::TimeAtMost(1.3),
            common::env_or("BENCH_KAFKA_RR_ROUNDS", 300),
            || {
                let d = ours.call(rt);
                ours_lat.lock().unwrap().push(d);
                d
            },
            || {
                let d = raw.call(rt);
                raw_lat.lock().unwrap().push(d);
                d
            },
        ));
        let (ours_lat, raw_lat) = (
            ours_lat.into_inner().unwrap(),
            raw_lat.into_inner().unwrap(),
        );
        for p in [10, 90, 99] {
            let (o, r) = (percentile(&ours_lat, p), percentile(&raw_lat, p));
            println!(
                "       {bench} p{p}: topicbus {} vs raw {} = {:.3}",
                common::fmt_duration(o),
                common::fmt_duration(r),
                o.as_secs_f64() / r.as_secs_f64()
            );
        }
        ours.close(rt);
        raw.close(rt);
    }
}

fn main() {
    // Diagnostics: topicbus's and librdkafka's logs with env `RUST_LOG`.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = common::Flavor::Multi2.runtime();
    let mut brokers = Vec::new();
    if std::env::var_os("BENCH_KAFKA_SKIP_MOCK").is_none() {
        brokers.push(Broker::mock());
    }
    brokers.extend(Broker::external());
    println!(
        "kafka bench: run {}, fetch.wait.max.ms={}, wire profile {}, brokers {:?}",
        run_id(),
        fetch_wait_ms(),
        wire_profile(),
        brokers
            .iter()
            .map(|b| format!("{}={}", b.name, b.bootstrap))
            .collect::<Vec<_>>()
    );

    let mut c = common::criterion();
    for broker in &brokers {
        criterion_benches(&mut c, &rt, broker);
    }
    c.final_summary();

    if common::ratios_enabled() {
        let mut results = Vec::new();
        for broker in &brokers {
            ratios(&rt, broker, &mut results);
        }
        common::summary(&results);
    }
    drop(rt);
    drop(brokers);
}
