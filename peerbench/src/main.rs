//! topicbus beside RustStream's Kafka broker (`ruststream-rdkafka`) and raw
//! rdkafka, on the same broker, in the same run, each run in a process of
//! its own (this binary runs itself again as `peerbench child ROLE`).
//!
//! Scenarios, `PEERBENCH_N` (default 100 000) ~96-byte JSON events:
//! - `publish`: every event sent, pipelined, until all are acknowledged;
//!   messages per second and the child's peak resident set (VmHWM);
//! - `consume`: a fresh consumer group reads a backlog of N events on 8
//!   partitions and handles (decodes) each; the rate from the first to the
//!   last message (the group join is not timed);
//! - `rpc`: sequential request/reply round trips (`PEERBENCH_RR`, default
//!   300, after 20 unmeasured), p50; topicbus against a raw ping-pong
//!   (RustStream has no Kafka request/reply).
//!
//! Each publisher sends one message, awaited, before it is timed (RustStream
//! opens its producer with the first publish).
//!
//! Libraries: topicbus (`publish_batch`, a typed handler, `request`) in
//! its full wire profile and in the lean one (`WireProfile::Lean`; its
//! consume runs read a backlog that lean topicbus wrote), RustStream at
//! its defaults and at topicbus's producer settings (`acks=all`,
//! `enable.idempotence=true`, `linger.ms=0`), publishing with 10 000
//! publishes in flight and consuming through a `#[subscriber]` handler,
//! and raw rdkafka at topicbus's producer settings: without headers, with
//! the six CloudEvents headers topicbus writes, and with the lean
//! profile's four (its consumer copying them out, as a reader of the
//! metadata does).
//!
//! Brokers: librdkafka's mock cluster (1 broker) in a process of its own,
//! unless `PEERBENCH_SKIP_MOCK` is set; Apache Kafka when
//! `TOPICBUS_KAFKA_BROKERS` is set. `PEERBENCH_RUNS` (default 5) runs per
//! library and scenario, the libraries alternating; `PEERBENCH_SCENARIOS`
//! picks some (comma-separated). Consumers and the request/reply clients
//! run with `fetch.wait.max.ms=1` (the mock cluster answers a waiting fetch
//! only when that wait ends), `session.timeout.ms=6000` and
//! `heartbeat.interval.ms=500`, whatever the library.
//!
//! ```text
//! cd peerbench && cargo run --release
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use ruststream::{Broker as _, ConnectedBroker as _};
use ruststream_rdkafka::prelude::*;
use serde::{Deserialize, Serialize};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, StartFrom, Topic, WireProfile};

const PARTITIONS: i32 = 8;
const SOURCE: &str = "svc-indexer.eu-west-1.pod-7f9c4d8b6-x2kq";
/// Where every publish run writes.
const PUBLISH_TOPIC: &str = "peerbench.publish";
/// The backlog the consume runs read, written by topicbus.
const BACKLOG_TOPIC: &str = "peerbench.backlog";
/// The same backlog written by topicbus in the lean wire profile.
const LEAN_BACKLOG_TOPIC: &str = "peerbench.backlog.lean";
/// A bound on anything that could hang.
const HANG: Duration = Duration::from_secs(120);
/// RustStream awaits each publish: this many are kept in flight.
const RUSTSTREAM_WINDOW: usize = 10_000;
const RPC_WARMUP: usize = 20;

/// The ~96-byte JSON event (`{"id":..,"source":..,"score":..,"tags":[..]}`).
#[derive(Debug, Clone, Serialize, Deserialize, Topic, Outgoing)]
#[topic(name = "peerbench.publish")]
#[outgoing(name = "peerbench.publish")]
struct Event {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

/// The same payload on the backlog topic.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peerbench.backlog")]
struct Backlog {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

/// The same payload on the lean backlog topic.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peerbench.backlog.lean")]
struct LeanBacklog {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peerbench.rpc.request", response = RpcReply)]
struct RpcRequest {
    id: u64,
    source: String,
    score: f64,
    tags: [u32; 8],
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peerbench.rpc.reply")]
struct RpcReply {
    id: u64,
    score: f64,
}

macro_rules! make {
    ($($t:ident),*) => {$(
        impl $t {
            fn make(i: u64) -> Self {
                let x = i as u32;
                Self {
                    id: i,
                    source: SOURCE.to_owned(),
                    score: i as f64 * 0.5,
                    tags: [x, x + 1, x + 2, x + 3, x + 4, x + 5, x + 6, x + 7],
                }
            }
        }
    )*};
}
make!(Event, Backlog, LeanBacklog, RpcRequest);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
    }
}

fn messages() -> usize {
    env_or("PEERBENCH_N", 100_000)
}

fn brokers() -> String {
    std::env::var("PEERBENCH_BROKERS").expect("PEERBENCH_BROKERS")
}

/// Whether the broker needs topics created (Apache Kafka as scripts/kafka.sh
/// runs it does not auto-create; the mock cluster cannot create them
/// through the admin API).
fn provision() -> bool {
    std::env::var("PEERBENCH_PROVISION").is_ok_and(|v| v == "1")
}

/// The settings every consumer and request/reply client shares.
const CLIENT_SETTINGS: [(&str, &str); 3] = [
    ("fetch.wait.max.ms", "1"),
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
];

/// topicbus's producer settings, given to raw rdkafka and to the matched RustStream.
const MATCHED_PRODUCER: [(&str, &str); 3] = [
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("linger.ms", "0"),
];

fn events(n: usize) -> Vec<Event> {
    (0..n as u64).map(Event::make).collect()
}

/// The CloudEvents headers topicbus writes, with values of the same sizes:
/// six, or the lean profile's four.
fn wire_headers(i: u64, topic: &str, profile: WireProfile) -> OwnedHeaders {
    let id = format!("00000000-0000-4000-8000-{i:012x}");
    let required = OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: "ce_specversion",
            value: Some("1.0"),
        })
        .insert(Header {
            key: "ce_id",
            value: Some(&id),
        })
        .insert(Header {
            key: "ce_source",
            value: Some("peerbench"),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(topic),
        });
    if profile == WireProfile::Lean {
        return required;
    }
    required
        .insert(Header {
            key: "ce_time",
            value: Some("2026-12-07T00:00:00.000Z"),
        })
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
}

// ---------------------------------------------------------------------------
// What a child measures and prints.

/// This process's peak resident set in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// CPU time of this process so far (all threads), in milliseconds.
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .expect("stat fields");
    // utime and stime, fields 14 and 15 of the line, in clock ticks (100 Hz).
    let ticks = |i: usize| fields[i].parse::<u64>().expect("ticks");
    (ticks(11) + ticks(12)) * 10
}

/// The line a child prints: `result value=... rss_kib=... cpu_ms=...`.
fn report(value: f64, cpu_before: u64) {
    println!(
        "result value={value} rss_kib={} cpu_ms={}",
        peak_rss_kib(),
        cpu_ms() - cpu_before
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn guard<T>(what: &str, future: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
}

fn topicbus_config(profile: WireProfile, extra: &[(&str, &str)]) -> KafkaConfig {
    extra.iter().fold(
        KafkaConfig::new(brokers())
            .provision_topics(provision())
            .wire_profile(profile),
        |config, (k, v)| config.set(*k, *v),
    )
}

async fn topicbus_bus(service: &str, config: KafkaConfig) -> Bus {
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

fn raw_config(extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers());
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
}

fn raw_producer() -> FutureProducer {
    raw_config(&MATCHED_PRODUCER)
        .create()
        .expect("raw producer")
}

fn ruststream_broker(matched: bool) -> KafkaBroker {
    let mut broker = KafkaBroker::new([brokers()]);
    if matched {
        for (k, v) in MATCHED_PRODUCER {
            broker = broker.producer_config(k, v);
        }
    }
    broker
}

/// Counts handled messages; remembers when the first and the last came.
struct Tracker {
    target: usize,
    seen: AtomicUsize,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    done: tokio::sync::Notify,
}

impl Tracker {
    fn new(target: usize) -> Self {
        Self {
            target,
            seen: AtomicUsize::new(0),
            first: OnceLock::new(),
            last: OnceLock::new(),
            done: tokio::sync::Notify::new(),
        }
    }

    fn hit(&self) {
        let seen = self.seen.fetch_add(1, Ordering::AcqRel) + 1;
        if seen == 1 {
            let _ = self.first.set(Instant::now());
        }
        if seen == self.target {
            let _ = self.last.set(Instant::now());
            self.done.notify_one();
        }
    }

    async fn wait(&self) {
        self.done.notified().await;
    }

    /// Messages per second from the first to the last.
    fn rate(&self) -> f64 {
        let first = *self.first.get().expect("started");
        let last = *self.last.get().expect("finished");
        let span = (last - first).as_secs_f64();
        // The first message starts the clock: the others are what was timed.
        (self.target - 1) as f64 / span
    }
}

/// The tracker RustStream's `#[subscriber]` handler counts into.
static RUSTSTREAM_TRACKER: OnceLock<Tracker> = OnceLock::new();

#[subscriber(KafkaTopic::new("peerbench.backlog").start(StartOffset::Earliest))]
async fn ruststream_handle(event: &Backlog) -> HandlerOutcome {
    black_box(event);
    RUSTSTREAM_TRACKER.get().expect("tracker").hit();
    HandlerOutcome::ack()
}

// ---------------------------------------------------------------------------
// The children.

fn publish_topicbus(n: usize, profile: WireProfile) {
    runtime().block_on(async {
        let bus = topicbus_bus("peerbench", topicbus_config(profile, &[])).await;
        let events = events(n);
        guard("warm-up", bus.publish(&Event::make(0)))
            .await
            .expect("warm-up");
        let cpu = cpu_ms();
        let start = Instant::now();
        guard("publish_batch", bus.publish_batch(&events))
            .await
            .expect("publish_batch");
        let rate = n as f64 / start.elapsed().as_secs_f64();
        report(rate, cpu);
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    });
}

fn publish_ruststream(n: usize, matched: bool) {
    runtime().block_on(async {
        let connected = guard("connect", ruststream_broker(matched).connect())
            .await
            .expect("connect");
        let publisher = connected.publisher(Publish::default());
        let events = events(n);
        // The producer opens with the first publish.
        guard("warm-up", publisher.message(&Event::make(0)).publish())
            .await
            .expect("warm-up");
        let cpu = cpu_ms();
        let start = Instant::now();
        let mut acks = futures::stream::iter(&events)
            .map(|event| publisher.message(event).publish())
            .buffer_unordered(RUSTSTREAM_WINDOW);
        guard("publish", async {
            while let Some(ack) = acks.next().await {
                ack.expect("publish");
            }
        })
        .await;
        let rate = n as f64 / start.elapsed().as_secs_f64();
        report(rate, cpu);
        drop(acks);
        guard("shutdown", connected.shutdown())
            .await
            .expect("shutdown");
    });
}

/// Enqueues every event, then awaits every delivery; when the producer's
/// queue is full, awaits the oldest first (as topicbus's `publish_batch`).
fn publish_raw(n: usize, headers: Option<WireProfile>) {
    runtime().block_on(async {
        let producer = raw_producer();
        let events = events(n);
        let warm_up = serde_json::to_vec(&Event::make(0)).expect("encode");
        match producer
            .send_result(FutureRecord::<(), [u8]>::to(PUBLISH_TOPIC).payload(&warm_up[..]))
        {
            Ok(delivery) => settle(guard("warm-up", delivery).await),
            Err((error, _)) => panic!("raw send: {error}"),
        }
        let cpu = cpu_ms();
        let start = Instant::now();
        let mut waiting = VecDeque::new();
        for (i, event) in events.iter().enumerate() {
            let payload = serde_json::to_vec(event).expect("encode");
            loop {
                let mut record = FutureRecord::<(), [u8]>::to(PUBLISH_TOPIC).payload(&payload[..]);
                if let Some(profile) = headers {
                    record = record.headers(wire_headers(i as u64, PUBLISH_TOPIC, profile));
                }
                match producer.send_result(record) {
                    Ok(delivery) => {
                        waiting.push_back(delivery);
                        break;
                    }
                    Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if !waiting.is_empty() =>
                    {
                        let oldest = waiting.pop_front().expect("not empty");
                        settle(guard("delivery", oldest).await);
                    }
                    Err((error, _)) => panic!("raw send: {error}"),
                }
            }
        }
        for delivery in waiting {
            settle(guard("delivery", delivery).await);
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        report(rate, cpu);
        let flushing = producer.clone();
        tokio::task::spawn_blocking(move || flushing.flush(HANG))
            .await
            .expect("flush task")
            .expect("flush");
    });
}

fn settle<T, E: std::fmt::Display, M>(delivery: Result<Result<T, (E, M)>, impl std::fmt::Debug>) {
    match delivery {
        Ok(Ok(_)) => {}
        Ok(Err((error, _))) => panic!("delivery failed: {error}"),
        Err(canceled) => panic!("delivery lost: {canceled:?}"),
    }
}

fn total() -> usize {
    env_or("PEERBENCH_TOTAL", messages())
}

fn group(side: &str) -> String {
    format!("peerbench.{side}.{}", std::process::id())
}

/// A topicbus subscription in a fresh group, reading the backlog of `T`.
fn consume_topicbus<T: Topic + serde::de::DeserializeOwned + Send + 'static>() {
    let total = total();
    runtime().block_on(async {
        let bus = topicbus_bus(
            "peerbench",
            topicbus_config(WireProfile::Full, &CLIENT_SETTINGS),
        )
        .await;
        let tracker = Arc::new(Tracker::new(total));
        let counting = Arc::clone(&tracker);
        let cpu = cpu_ms();
        guard(
            "subscribe",
            bus.group(group("topicbus"))
                .subscribe(move |event: T| {
                    black_box(&event);
                    counting.hit();
                    std::future::ready(Ok::<(), Infallible>(()))
                })
                .start_from(StartFrom::Earliest),
        )
        .await
        .expect("subscribe");
        guard("consume", tracker.wait()).await;
        report(tracker.rate(), cpu);
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    });
}

fn consume_ruststream() {
    let tracker = RUSTSTREAM_TRACKER.get_or_init(|| Tracker::new(total()));
    runtime().block_on(async {
        let broker = CLIENT_SETTINGS.into_iter().fold(
            ruststream_broker(false).default_group(group("ruststream")),
            |broker, (k, v)| broker.config(k, v),
        );
        let cpu = cpu_ms();
        let app = RustStream::new(AppInfo::new("peerbench", "0.1.0")).with_broker(broker, |b| {
            b.include(ruststream_handle);
        });
        let running = guard("start", app.start()).await.expect("start");
        guard("consume", tracker.wait()).await;
        report(tracker.rate(), cpu);
        guard("shutdown", running.shutdown())
            .await
            .expect("shutdown");
    });
}

/// A raw group consumer that decodes each event and stores its offset after
/// handling it (at-least-once, as topicbus), optionally copying its headers
/// out (the metadata topicbus hands its handlers).
fn consume_raw(topic: &str, with_headers: bool) {
    let total = total();
    runtime().block_on(async {
        let mut settings = vec![
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
        ];
        settings.extend(CLIENT_SETTINGS);
        let name = group("raw");
        settings.push(("group.id", &name));
        let consumer: StreamConsumer = raw_config(&settings).create().expect("raw consumer");
        let cpu = cpu_ms();
        consumer.subscribe(&[topic]).expect("subscribe");
        let tracker = Tracker::new(total);
        guard("consume", async {
            while tracker.seen.load(Ordering::Relaxed) < total {
                let message = consumer.recv().await.expect("recv");
                let event: Backlog =
                    serde_json::from_slice(message.payload().unwrap_or_default()).expect("decode");
                black_box(&event);
                if with_headers {
                    let headers: Vec<(String, Vec<u8>)> = message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
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
        report(tracker.rate(), cpu);
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    });
}

/// p50 of `calls` round trips after a warm-up, in milliseconds.
async fn p50_ms<F: std::future::Future<Output = ()>>(mut call: impl FnMut(u64) -> F) -> f64 {
    let rounds: usize = env_or("PEERBENCH_RR", 300);
    let mut times = Vec::with_capacity(rounds);
    for i in 0..(RPC_WARMUP + rounds) as u64 {
        let start = Instant::now();
        guard("round trip", call(i)).await;
        if i >= RPC_WARMUP as u64 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}

fn rpc_topicbus(profile: WireProfile) {
    runtime().block_on(async {
        let config = topicbus_config(profile, &CLIENT_SETTINGS);
        let server = topicbus_bus("peerbench-server", config.clone()).await;
        guard(
            "serve",
            server
                .group(group("rpc.topicbus"))
                .serve(|req: RpcRequest| {
                    std::future::ready(Ok::<_, Infallible>(RpcReply {
                        id: req.id,
                        score: req.score + 1.0,
                    }))
                }),
        )
        .await
        .expect("serve");
        let client = topicbus_bus("peerbench-client", config).await;
        let cpu = cpu_ms();
        let p50 = p50_ms(|i| {
            let client = &client;
            async move {
                let reply = client.request(&RpcRequest::make(i)).await.expect("request");
                assert_eq!(reply.id, i);
            }
        })
        .await;
        report(p50, cpu);
        guard("client shutdown", client.shutdown())
            .await
            .expect("client shutdown");
        guard("server shutdown", server.shutdown())
            .await
            .expect("server shutdown");
    });
}

/// Creates topics: with the admin API where the broker needs it, else by
/// asking for their metadata as a producer (the mock cluster auto-creates).
async fn create_topics(topics: &[(&str, i32)]) {
    if provision() {
        let admin: AdminClient<DefaultClientContext> =
            raw_config(&[]).create().expect("admin client");
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
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
        let producer = raw_producer();
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

/// The raw ping-pong: the client produces a request and reads the reply
/// topic by assignment; a server task in a consumer group answers each
/// request on partition 0 of the reply topic.
fn rpc_raw() {
    runtime().block_on(async {
        let request_topic = format!("peerbench.raw.request.{}", std::process::id());
        let reply_topic = format!("peerbench.raw.reply.{}", std::process::id());
        create_topics(&[(&request_topic, PARTITIONS), (&reply_topic, 1)]).await;

        let mut settings = vec![
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
        ];
        settings.extend(CLIENT_SETTINGS);
        let name = group("rpc.raw");
        settings.push(("group.id", &name));
        let server_consumer: Arc<StreamConsumer> =
            Arc::new(raw_config(&settings).create().expect("server consumer"));
        server_consumer
            .subscribe(&[&request_topic])
            .expect("server subscribe");
        let server_producer = raw_producer();
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
                    let reply = serde_json::to_vec(&RpcReply {
                        id: req.id,
                        score: req.score + 1.0,
                    })
                    .expect("encode reply");
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

        let mut settings = vec![
            ("group.id", reply_topic.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ];
        settings.extend(CLIENT_SETTINGS);
        let replies: Arc<StreamConsumer> =
            Arc::new(raw_config(&settings).create().expect("reply consumer"));
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

        let producer = raw_producer();
        let cpu = cpu_ms();
        let p50 = p50_ms(|i| {
            let (producer, replies, topic) = (&producer, &replies, &request_topic);
            async move {
                let payload = serde_json::to_vec(&RpcRequest::make(i)).expect("encode request");
                let record = FutureRecord::<(), [u8]>::to(topic).payload(&payload[..]);
                match producer.send_result(record) {
                    Ok(delivery) => settle(delivery.await),
                    Err((error, _)) => panic!("raw request: {error}"),
                }
                loop {
                    let message = replies.recv().await.expect("raw reply");
                    let reply: RpcReply =
                        serde_json::from_slice(message.payload().unwrap_or_default())
                            .expect("decode reply");
                    if reply.id == i {
                        break;
                    }
                }
            }
        })
        .await;
        report(p50, cpu);
        server.abort();
        let _ = server.await;
        let _ = tokio::task::spawn_blocking(move || {
            drop(server_consumer);
            drop(replies);
            drop(server_producer);
            drop(producer);
        })
        .await;
    });
}

/// Writes the backlogs with topicbus (the lean one in the lean profile),
/// then prints how many messages the backlog topic holds (from its low to
/// its high watermarks); the lean one holds as many.
fn fill() {
    let n = messages();
    runtime().block_on(async {
        let bus = topicbus_bus("peerbench-fill", topicbus_config(WireProfile::Full, &[])).await;
        let backlog: Vec<Backlog> = (0..n as u64).map(Backlog::make).collect();
        guard("fill", bus.publish_batch(&backlog))
            .await
            .expect("fill");
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
        let lean = topicbus_bus("peerbench-fill", topicbus_config(WireProfile::Lean, &[])).await;
        let backlog: Vec<LeanBacklog> = (0..n as u64).map(LeanBacklog::make).collect();
        guard("fill lean", lean.publish_batch(&backlog))
            .await
            .expect("fill lean");
        guard("shutdown", lean.shutdown()).await.expect("shutdown");
    });
    let consumer: BaseConsumer = raw_config(&[("group.id", "peerbench.watermarks")])
        .create()
        .expect("consumer");
    let held = |topic: &str| -> i64 {
        (0..PARTITIONS)
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, Timeout::After(HANG))
                    .expect("watermarks");
                high - low
            })
            .sum()
    };
    let (held, lean) = (held(BACKLOG_TOPIC), held(LEAN_BACKLOG_TOPIC));
    assert_eq!(held, lean, "the two backlogs hold different counts");
    println!("result value={held} rss_kib=0 cpu_ms=0");
}

/// Serves a mock cluster with the bench's topics until stdin closes.
fn serve_mock() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in [PUBLISH_TOPIC, BACKLOG_TOPIC, LEAN_BACKLOG_TOPIC] {
        cluster
            .create_topic(topic, PARTITIONS, 1)
            .expect("mock topic");
    }
    println!("{}", cluster.bootstrap_servers());
    std::io::stdout().flush().expect("stdout");
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
}

fn child(role: &str) {
    let n = messages();
    match role {
        "mock" => serve_mock(),
        "fill" => fill(),
        "publish-topicbus" => publish_topicbus(n, WireProfile::Full),
        "publish-topicbus-lean" => publish_topicbus(n, WireProfile::Lean),
        "publish-ruststream" => publish_ruststream(n, false),
        "publish-ruststream-matched" => publish_ruststream(n, true),
        "publish-raw" => publish_raw(n, None),
        "publish-raw-headers" => publish_raw(n, Some(WireProfile::Full)),
        "publish-raw-lean-headers" => publish_raw(n, Some(WireProfile::Lean)),
        "consume-topicbus" => consume_topicbus::<Backlog>(),
        "consume-topicbus-lean" => consume_topicbus::<LeanBacklog>(),
        "consume-ruststream" => consume_ruststream(),
        "consume-raw" => consume_raw(BACKLOG_TOPIC, false),
        "consume-raw-headers" => consume_raw(BACKLOG_TOPIC, true),
        "consume-raw-lean-headers" => consume_raw(LEAN_BACKLOG_TOPIC, true),
        "rpc-topicbus" => rpc_topicbus(WireProfile::Full),
        "rpc-topicbus-lean" => rpc_topicbus(WireProfile::Lean),
        "rpc-raw" => rpc_raw(),
        other => panic!("unknown child role {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The parent.

struct Scenario {
    name: &'static str,
    /// What the value is.
    unit: &'static str,
    /// Whether a higher value is better.
    higher_is_better: bool,
    /// (label, child role).
    libraries: &'static [(&'static str, &'static str)],
    /// (library, baseline, target) of a ratio of medians to report.
    targets: &'static [(&'static str, &'static str, f64)],
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "publish",
        unit: "msgs/s",
        higher_is_better: true,
        libraries: &[
            ("topicbus", "publish-topicbus"),
            ("topicbus-lean", "publish-topicbus-lean"),
            ("ruststream", "publish-ruststream"),
            ("ruststream-matched", "publish-ruststream-matched"),
            ("raw", "publish-raw"),
            ("raw-6-headers", "publish-raw-headers"),
            ("raw-4-headers", "publish-raw-lean-headers"),
        ],
        targets: &[
            ("topicbus", "ruststream", 1.0),
            ("topicbus", "raw-6-headers", 0.9),
            ("topicbus-lean", "ruststream", 1.0),
            ("topicbus-lean", "raw-4-headers", 0.9),
            ("topicbus-lean", "raw-6-headers", 0.9),
        ],
    },
    Scenario {
        name: "consume",
        unit: "msgs/s",
        higher_is_better: true,
        libraries: &[
            ("topicbus", "consume-topicbus"),
            ("topicbus-lean", "consume-topicbus-lean"),
            ("ruststream", "consume-ruststream"),
            ("raw", "consume-raw"),
            ("raw-6-headers", "consume-raw-headers"),
            ("raw-4-headers", "consume-raw-lean-headers"),
        ],
        targets: &[
            ("topicbus", "ruststream", 1.0),
            ("topicbus-lean", "ruststream", 1.0),
            ("raw-6-headers", "ruststream", 1.0),
            ("raw-4-headers", "ruststream", 1.0),
        ],
    },
    Scenario {
        name: "rpc",
        unit: "ms p50",
        higher_is_better: false,
        libraries: &[
            ("topicbus", "rpc-topicbus"),
            ("topicbus-lean", "rpc-topicbus-lean"),
            ("raw-ping-pong", "rpc-raw"),
        ],
        targets: &[
            ("topicbus", "raw-ping-pong", 1.05),
            ("topicbus-lean", "raw-ping-pong", 1.05),
        ],
    },
];

#[derive(Clone, Copy)]
struct Run {
    value: f64,
    rss_mib: f64,
    cpu_ms: u64,
}

fn run_child(role: &str, broker: &BrokerUnderTest, total: usize) -> Run {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args(["child", role])
        .env("PEERBENCH_BROKERS", &broker.bootstrap)
        .env(
            "PEERBENCH_PROVISION",
            if broker.provision { "1" } else { "0" },
        )
        .env("PEERBENCH_TOTAL", total.to_string())
        .output()
        .expect("child process");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {role} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .unwrap_or_else(|| panic!("child {role} printed no result: {text}"));
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("child {role}: no {name} in {line:?}"))
    };
    Run {
        value: field("value"),
        rss_mib: field("rss_kib") / 1024.0,
        cpu_ms: field("cpu_ms") as u64,
    }
}

struct BrokerUnderTest {
    name: String,
    bootstrap: String,
    provision: bool,
    mock: Option<Child>,
}

impl BrokerUnderTest {
    fn mock() -> Self {
        let mut mock = Command::new(std::env::current_exe().expect("exe"))
            .args(["child", "mock"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("mock process");
        let mut bootstrap = String::new();
        BufReader::new(mock.stdout.take().expect("stdout"))
            .read_line(&mut bootstrap)
            .expect("bootstrap");
        Self {
            name: "mock cluster (1 broker, own process)".to_owned(),
            bootstrap: bootstrap.trim().to_owned(),
            provision: false,
            mock: Some(mock),
        }
    }

    fn external() -> Option<Self> {
        let bootstrap = std::env::var("TOPICBUS_KAFKA_BROKERS").ok()?;
        Some(Self {
            name: format!("Apache Kafka at {bootstrap}"),
            bootstrap,
            provision: true,
            mock: None,
        })
    }

    /// Creates the bench's topics afresh on a real broker.
    fn prepare(&self) {
        if !self.provision {
            return;
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        runtime().block_on(async {
            let new: Vec<NewTopic<'_>> = [PUBLISH_TOPIC, BACKLOG_TOPIC, LEAN_BACKLOG_TOPIC]
                .iter()
                .map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)))
                .collect();
            for result in guard(
                "create topics",
                admin.create_topics(&new, &AdminOptions::new()),
            )
            .await
            .expect("create topics")
            {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => panic!("cannot create `{topic}`: {code}"),
                }
            }
        });
    }

    /// Deletes the bench's topics on a real broker, so that the next run
    /// starts from empty ones.
    fn clean_up(&self) {
        if !self.provision {
            return;
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        runtime().block_on(async {
            let deleted = guard(
                "delete topics",
                admin.delete_topics(
                    &[PUBLISH_TOPIC, BACKLOG_TOPIC, LEAN_BACKLOG_TOPIC],
                    &AdminOptions::new(),
                ),
            )
            .await;
            if let Err(error) = deleted {
                eprintln!("peerbench: could not delete the bench's topics: {error}");
            }
        });
    }
}

impl Drop for BrokerUnderTest {
    fn drop(&mut self) {
        if let Some(mut mock) = self.mock.take() {
            drop(mock.stdin.take());
            let _ = mock.wait();
        }
    }
}

fn min_median_max(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[0], xs[xs.len() / 2], xs[xs.len() - 1])
}

fn bench(broker: &BrokerUnderTest, runs: usize, scenarios: &[&Scenario]) {
    broker.prepare();
    let needs_backlog = scenarios.iter().any(|s| s.name == "consume");
    let total = if needs_backlog {
        run_child("fill", broker, 0).value as usize
    } else {
        0
    };
    let n = messages();
    println!(
        "\n== {}: {n} messages, {runs} runs per library, backlog {total}",
        broker.name
    );
    for scenario in scenarios {
        let mut results: Vec<Vec<Run>> = vec![Vec::new(); scenario.libraries.len()];
        for round in 0..runs {
            // Alternate: each round starts with the next library.
            let count = scenario.libraries.len();
            for k in 0..count {
                let i = (round + k) % count;
                let (label, role) = scenario.libraries[i];
                let run = run_child(role, broker, total);
                println!(
                    "{} run {round}: {label:<20} {:>12.2} {}  peak RSS {:6.1} MiB  CPU {} ms",
                    scenario.name, run.value, scenario.unit, run.rss_mib, run.cpu_ms
                );
                results[i].push(run);
            }
        }
        println!(
            "\n{} ({}), min / median / max over {runs} processes:",
            scenario.name, scenario.unit
        );
        let mut medians = Vec::new();
        for ((label, _), runs) in scenario.libraries.iter().zip(&results) {
            let (lo, mid, hi) = min_median_max(runs.iter().map(|r| r.value).collect());
            let (rlo, rmid, rhi) = min_median_max(runs.iter().map(|r| r.rss_mib).collect());
            let (_, cpu, _) = min_median_max(runs.iter().map(|r| r.cpu_ms as f64).collect());
            println!(
                "  {label:<20} {lo:>12.2} / {mid:>12.2} / {hi:>12.2}   peak RSS {rlo:5.1} / {rmid:5.1} / {rhi:5.1} MiB   CPU {cpu:.0} ms"
            );
            medians.push((*label, mid, rmid));
        }
        let median = |label: &str| {
            medians
                .iter()
                .find(|(l, _, _)| *l == label)
                .map(|(_, value, rss)| (*value, *rss))
                .expect("a library of the scenario")
        };
        for (subject, baseline, target) in scenario.targets {
            let ratio = median(subject).0 / median(baseline).0;
            let met = if scenario.higher_is_better {
                ratio >= *target
            } else {
                ratio <= *target
            };
            println!(
                "  {subject} / {baseline}: {ratio:.2}x (target {} {target}x: {})",
                if scenario.higher_is_better {
                    ">="
                } else {
                    "<="
                },
                if met { "met" } else { "NOT met" }
            );
        }
        if scenario.name == "publish" {
            for subject in ["topicbus", "topicbus-lean"] {
                let ratio = median(subject).1 / median("ruststream").1;
                println!(
                    "  {subject} / ruststream peak RSS: {ratio:.2}x (target <= 1.0x: {})",
                    if ratio <= 1.0 { "met" } else { "NOT met" }
                );
            }
        }
    }
    broker.clean_up();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(args.get(2).expect("child role"));
    }
    let runs: usize = env_or("PEERBENCH_RUNS", 5);
    let picked = std::env::var("PEERBENCH_SCENARIOS").ok();
    let scenarios: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| {
            picked
                .as_deref()
                .is_none_or(|p| p.split(',').any(|name| name.trim() == s.name))
        })
        .collect();
    assert!(
        !scenarios.is_empty(),
        "PEERBENCH_SCENARIOS names no scenario"
    );
    if std::env::var_os("PEERBENCH_SKIP_MOCK").is_none() {
        bench(&BrokerUnderTest::mock(), runs, &scenarios);
    }
    if let Some(kafka) = BrokerUnderTest::external() {
        bench(&kafka, runs, &scenarios);
    }
}
