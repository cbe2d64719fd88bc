//! Metrics through the `metrics` facade: a recorder installed for this test
//! binary (its own, so values are read without resetting them) sees what the
//! memory transport published, delivered and handled, how requests ended,
//! late replies and, on Kafka's mock cluster, the consumer lag.
//!
//! The tests share the one global recorder; each uses topics and groups of
//! its own, so their series do not mix.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};
use topicbus::telemetry::names;
use topicbus::{Bus, Error, Topic};

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(60);

/// A series: metric name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Keeps every value it is given; reading does not reset anything.
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<Series, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<Series, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<Series, Arc<Values>>>,
}

#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

fn series_of(key: &Key) -> Series {
    let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    series(key.name(), &labels)
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(Arc::clone(counters.entry(series_of(key)).or_default()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.gauges.lock().unwrap();
        Gauge::from_arc(Arc::clone(gauges.entry(series_of(key)).or_default()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(Arc::clone(histograms.entry(series_of(key)).or_default()))
    }
}

/// The recorder of this binary, installed by the first test that asks.
fn recorder() -> &'static TestRecorder {
    static RECORDER: OnceLock<&'static TestRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static TestRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(recorder).expect("no other recorder in this binary");
        recorder
    })
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    recorder()
        .counters
        .lock()
        .unwrap()
        .get(&series(name, labels))
        .map_or(0, |c| c.load(Ordering::SeqCst))
}

fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    recorder()
        .gauges
        .lock()
        .unwrap()
        .get(&series(name, labels))
        .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
}

fn histogram(name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    recorder()
        .histograms
        .lock()
        .unwrap()
        .get(&series(name, labels))
        .map_or_else(Vec::new, |h| h.0.lock().unwrap().clone())
}

async fn guard<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
}

/// Waits until `condition` holds (polling: the value changes on another
/// thread, with nothing to wait on).
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    guard(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "metrics.flow.event")]
struct FlowEvent {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_deliveries_and_handled_messages_are_counted_per_topic_and_group() {
    recorder();
    let bus = Bus::memory();
    for group in ["metrics.flow.a", "metrics.flow.b"] {
        bus.group(group)
            .subscribe(|_: FlowEvent| async { Ok::<(), Infallible>(()) })
            .await
            .expect("subscribe");
    }
    for n in 0..3 {
        bus.publish(&FlowEvent { n }).await.expect("publish");
    }
    bus.publish_batch(&[FlowEvent { n: 3 }, FlowEvent { n: 4 }])
        .await
        .expect("publish batch");
    // Shutdown lets the handlers finish everything that was queued.
    bus.shutdown().await.expect("shutdown");

    let topic = FlowEvent::NAME;
    assert_eq!(
        counter(names::PUBLISHED, &[("topic", topic), ("outcome", "ok")]),
        5
    );
    assert_eq!(
        bus.publish(&FlowEvent { n: 5 }).await.map_err(|e| e.kind()),
        Err(topicbus::ErrorKind::Closed)
    );
    assert_eq!(
        counter(names::PUBLISHED, &[("topic", topic), ("outcome", "error")]),
        1
    );
    for group in ["metrics.flow.a", "metrics.flow.b"] {
        let labels = [("topic", topic), ("group", group)];
        assert_eq!(counter(names::DELIVERED, &labels), 5, "{group}");
        let outcome = |outcome| {
            counter(
                names::HANDLER_OUTCOMES,
                &[("topic", topic), ("group", group), ("outcome", outcome)],
            )
        };
        assert_eq!(outcome("ok"), 5, "{group}");
        assert_eq!(outcome("retried"), 0, "{group}");
        assert_eq!(outcome("dead_lettered"), 0, "{group}");
        let durations = histogram(names::HANDLER_DURATION, &labels);
        assert_eq!(durations.len(), 5, "one duration per handler call");
        assert!(durations.iter().all(|d| *d >= 0.0));
        assert_eq!(gauge(names::HANDLERS_IN_FLIGHT, &labels), Some(0.0));
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "metrics.failing.event")]
struct FailingEvent {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_count_as_retried_and_the_given_up_message_as_dead_lettered() {
    recorder();
    let bus = Bus::builder()
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build();
    bus.group("metrics.failing")
        .subscribe(|_: FailingEvent| async { Err::<(), _>("always fails") })
        .retries(2)
        .await
        .expect("subscribe");
    bus.publish(&FailingEvent { n: 1 }).await.expect("publish");
    bus.shutdown().await.expect("shutdown");

    let outcome = |outcome| {
        counter(
            names::HANDLER_OUTCOMES,
            &[
                ("topic", FailingEvent::NAME),
                ("group", "metrics.failing"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(outcome("retried"), 2, "two retries after the first attempt");
    assert_eq!(outcome("dead_lettered"), 1);
    assert_eq!(outcome("ok"), 0);
    let labels = [("topic", FailingEvent::NAME), ("group", "metrics.failing")];
    assert_eq!(counter(names::DELIVERED, &labels), 1);
    assert_eq!(
        histogram(names::HANDLER_DURATION, &labels).len(),
        3,
        "three calls"
    );
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "metrics.blocking.event")]
struct BlockingEvent {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_gauge_counts_messages_being_handled() {
    recorder();
    let bus = Bus::memory();
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let held = Arc::clone(&gate);
    bus.group("metrics.blocking")
        .subscribe(move |ev: BlockingEvent| {
            let gate = Arc::clone(&held);
            let started = started_tx.clone();
            async move {
                let _ = started.send(ev.n);
                gate.acquire().await.expect("gate open").forget();
                Ok::<(), Infallible>(())
            }
        })
        .concurrency(4)
        .await
        .expect("subscribe");
    // Without a key, messages go round the partitions: two partitions, two
    // handlers at once.
    for n in 0..2 {
        bus.publish(&BlockingEvent { n }).await.expect("publish");
    }
    for _ in 0..2 {
        guard("handler started", started.recv()).await;
    }
    let labels = [
        ("topic", BlockingEvent::NAME),
        ("group", "metrics.blocking"),
    ];
    assert_eq!(gauge(names::HANDLERS_IN_FLIGHT, &labels), Some(2.0));
    gate.add_permits(2);
    bus.shutdown().await.expect("shutdown");
    assert_eq!(gauge(names::HANDLERS_IN_FLIGHT, &labels), Some(0.0));
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "metrics.ask", response = Answer)]
struct Ask {
    fail: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "metrics.ask.nobody", response = Answer)]
struct AskNobody {
    n: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "metrics.ask.slow", response = Answer)]
struct AskSlow {
    n: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "metrics.answer")]
struct Answer {
    ok: bool,
}

fn requests(topic: &str, outcome: &str) -> u64 {
    counter(names::REQUESTS, &[("topic", topic), ("outcome", outcome)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_outcomes_latency_and_late_replies_are_counted() {
    recorder();
    let bus = Bus::memory();
    bus.group("metrics.ask.server")
        .serve(|ask: Ask| async move {
            if ask.fail {
                Err("refused")
            } else {
                Ok(Answer { ok: true })
            }
        })
        .await
        .expect("serve");
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    bus.group("metrics.ask.slow.server")
        .serve(move |_: AskSlow| {
            let gate = Arc::clone(&held);
            async move {
                gate.acquire().await.expect("gate open").forget();
                Ok::<_, Infallible>(Answer { ok: true })
            }
        })
        .await
        .expect("serve slow");

    bus.request(&Ask { fail: false }).await.expect("answered");
    bus.request(&Ask { fail: false }).await.expect("answered");
    let remote = bus.request(&Ask { fail: true }).await;
    assert!(matches!(remote, Err(Error::Remote { .. })), "{remote:?}");
    let nobody = bus.request(&AskNobody { n: 1 }).await;
    assert!(
        matches!(nobody, Err(Error::NoResponders { .. })),
        "{nobody:?}"
    );
    let slow = bus
        .request(&AskSlow { n: 1 })
        .timeout(Duration::from_millis(50))
        .await;
    assert!(matches!(slow, Err(Error::Timeout { .. })), "{slow:?}");

    assert_eq!(requests(Ask::NAME, "ok"), 2);
    assert_eq!(requests(Ask::NAME, "remote_error"), 1);
    assert_eq!(requests(AskNobody::NAME, "no_responders"), 1);
    assert_eq!(requests(AskSlow::NAME, "timeout"), 1);
    assert_eq!(requests(Ask::NAME, "timeout"), 0);
    assert_eq!(
        histogram(
            names::REQUEST_DURATION,
            &[("topic", Ask::NAME), ("outcome", "ok")]
        )
        .len(),
        2
    );
    // The request messages count as published; the one nobody serves was
    // never sent.
    assert_eq!(
        counter(names::PUBLISHED, &[("topic", Ask::NAME), ("outcome", "ok")]),
        3
    );
    assert_eq!(
        counter(
            names::PUBLISHED,
            &[("topic", AskNobody::NAME), ("outcome", "ok")]
        ),
        0
    );
    let server = |outcome| {
        counter(
            names::HANDLER_OUTCOMES,
            &[
                ("topic", Ask::NAME),
                ("group", "metrics.ask.server"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(server("ok"), 2);
    assert_eq!(
        server("error_replied"),
        1,
        "the error went back to the requester"
    );
    assert_eq!(server("dead_lettered"), 0);

    // The slow handler answers after its requester gave up: a late reply.
    // This is the only test of the binary that makes one.
    gate.add_permits(1);
    eventually("the late reply arrived", || bus.stats().late_replies == 1).await;
    assert_eq!(counter(names::LATE_REPLIES, &[]), 1);
    bus.shutdown().await.expect("shutdown");
}

#[cfg(feature = "kafka")]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

#[cfg(feature = "kafka")]
mod kafka {
    use std::future::IntoFuture;

    use super::*;
    use crate::mock_kafka::{test_settings, MockKafka};
    use topicbus::kafka::KafkaConfig;

    #[derive(Debug, Clone, Serialize, Deserialize, Topic)]
    #[topic(name = "metrics.kafka.lag")]
    struct Lagging {
        n: u32,
    }

    /// The values of gauge `name` for the partitions of `topic` read by
    /// `group`.
    fn partition_gauges(name: &str, topic: &str, group: &str) -> Vec<f64> {
        let labelled = |labels: &Vec<(String, String)>, key: &str, value: &str| {
            labels.contains(&(key.to_owned(), value.to_owned()))
        };
        recorder()
            .gauges
            .lock()
            .unwrap()
            .iter()
            .filter(|((gauge, labels), _)| {
                gauge == name
                    && labelled(labels, "topic", topic)
                    && labelled(labels, "group", group)
            })
            .map(|(_, value)| f64::from_bits(value.load(Ordering::SeqCst)))
            .collect()
    }

    /// The mock cluster's test settings, with statistics every 100 ms.
    fn statistics_config(kafka: &MockKafka) -> KafkaConfig {
        test_settings(
            KafkaConfig::new(&kafka.bootstrap)
                .provision_topics(false)
                .statistics_interval(Duration::from_millis(100)),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_consumer_lag_gauge_follows_librdkafka_statistics() {
        recorder();
        let kafka = MockKafka::start(1);
        let config = statistics_config(&kafka);
        let bus = guard("connect", Bus::builder().kafka(config).connect())
            .await
            .expect("connect");
        let gate = Arc::new(Semaphore::new(0));
        let held = Arc::clone(&gate);
        guard(
            "subscribe",
            bus.group("metrics.kafka.lag.group")
                .subscribe(move |_: Lagging| {
                    let gate = Arc::clone(&held);
                    async move {
                        gate.acquire().await.expect("gate open").forget();
                        Ok::<(), Infallible>(())
                    }
                })
                .into_future(),
        )
        .await
        .expect("subscribe");
        for n in 0..5 {
            bus.publish(&Lagging { n }).await.expect("publish");
        }
        // The sum over the topic's partitions (the mock cluster creates it
        // with its own partition count).
        let lag = || -> f64 {
            partition_gauges(
                names::KAFKA_CONSUMER_LAG,
                Lagging::NAME,
                "metrics.kafka.lag.group",
            )
            .into_iter()
            .sum()
        };
        // Nothing is committed while the handlers are held.
        eventually("lag 5 reported", || lag() == 5.0).await;
        gate.add_permits(5);
        eventually("lag 0 reported", || lag() == 0.0).await;
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }

    /// One key: every message goes to one partition.
    #[derive(Debug, Clone, Serialize, Deserialize, Topic)]
    #[topic(name = "metrics.kafka.backlog", key = key)]
    struct Backlog {
        key: String,
        n: u32,
    }

    /// A handler held on its first message while 15 000 are published to
    /// its partition: librdkafka fills the partition's queue to the bound
    /// topicbus sets (10 000 messages, plus the rest of the fetch that
    /// crossed it: at most `max.partition.fetch.bytes`, 256 KiB here, about
    /// a thousand of these) and stops fetching, instead of fetching the
    /// whole backlog into memory. Then every message is handled. (The
    /// backlog stays under the 5 MiB the mock cluster keeps per partition,
    /// so none of it is deleted before it is read.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_partition_prefetches_only_up_to_its_bound() {
        const TOTAL: u32 = 15_000;
        const GROUP: &str = "metrics.kafka.backlog.group";
        recorder();
        let kafka = MockKafka::start(1);
        let config = statistics_config(&kafka).set("max.partition.fetch.bytes", "262144");
        let bus = guard("connect", Bus::builder().kafka(config).connect())
            .await
            .expect("connect");
        let gate = Arc::new(Semaphore::new(0));
        let handled = Arc::new(AtomicU64::new(0));
        let (held, counted) = (Arc::clone(&gate), Arc::clone(&handled));
        guard(
            "subscribe",
            bus.group(GROUP)
                .subscribe(move |_: Backlog| {
                    let (gate, counted) = (Arc::clone(&held), Arc::clone(&counted));
                    async move {
                        gate.acquire().await.expect("gate open").forget();
                        counted.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), Infallible>(())
                    }
                })
                .into_future(),
        )
        .await
        .expect("subscribe");
        let backlog: Vec<Backlog> = (0..TOTAL)
            .map(|n| Backlog {
                key: "one".to_owned(),
                n,
            })
            .collect();
        guard("publish", bus.publish_batch(&backlog))
            .await
            .expect("publish");
        // The largest value over the topic's partitions (one holds them all).
        let prefetched = || -> f64 {
            partition_gauges(names::KAFKA_CONSUMER_PREFETCHED, Backlog::NAME, GROUP)
                .into_iter()
                .fold(0.0, f64::max)
        };
        eventually("the partition's queue filled to its bound", || {
            prefetched() >= 10_000.0
        })
        .await;
        // Ten more statistics reports while the handler is still held: a
        // queue that kept filling would show more of the backlog.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = prefetched();
            assert!(now < 12_000.0, "{now} of {TOTAL} messages prefetched");
        }
        gate.add_permits(TOTAL as usize);
        eventually("every message handled", || {
            handled.load(Ordering::SeqCst) == u64::from(TOTAL)
        })
        .await;
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
}
