//! Hostile or damaged dead letters and re-drive headers: a forged
//! `topicbus_redrives` count, a dead letter too large to re-drive, and a
//! forged `topicbus_redrive_group`. Each is skipped, logged and counted,
//! and never stops what comes after it.
//!
//! The test binary installs one metrics recorder and one tracing subscriber
//! that keep everything; each test uses topics and groups of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio::sync::mpsc;
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::telemetry::names;
use topicbus::{header, Bus, RawMessage};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::Layer;

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(60);

/// A counter: name and labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Keeps every counter; gauges and histograms are not needed here.
#[derive(Default)]
struct Counters(Mutex<HashMap<Series, Arc<AtomicU64>>>);

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let mut counters = self.0.lock().unwrap();
        let series = (key.name().to_owned(), labels);
        Counter::from_arc(Arc::clone(counters.entry(series).or_default()))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Every event logged, as its fields `name=value`, space-separated.
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!("{}={value} ", field.name()));
    }
}

impl<S: Subscriber> Layer<S> for Logged {
    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        let mut fields = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

struct Installed {
    counters: &'static Counters,
    logged: Logged,
}

/// The binary's recorder and subscriber, installed by the first caller
/// (before it builds a bus: metric handles belong to the recorder current
/// when they are registered).
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let counters: &'static Counters = Box::leak(Box::default());
        metrics::set_global_recorder(counters).expect("the only recorder");
        let logged = Logged::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(logged.clone()),
        )
        .expect("the only subscriber");
        Installed { counters, logged }
    })
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    let counters = installed().counters.0.lock().unwrap();
    counters
        .get(&(name.to_owned(), labels))
        .map_or(0, |value| value.load(Ordering::SeqCst))
}

/// The logged events that contain every one of `parts`.
fn logged(parts: &[&str]) -> Vec<String> {
    let logged = installed().logged.0.lock().unwrap();
    logged
        .iter()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .cloned()
        .collect()
}

async fn guard<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
}

/// A raw JSON message to `topic` with `payload` and `headers`, under one
/// key: the tests' messages keep their order on every partitioned topic.
fn raw(topic: &str, payload: &str, headers: &[(&str, &str)]) -> RawMessage {
    let mut message = RawMessage::new(topic, payload.as_bytes().to_vec());
    message.key = Some(b"one".to_vec());
    message
        .headers
        .insert(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        message.headers.insert((*name).to_owned(), *value);
    }
    message
}

/// Collects the payloads and `topicbus_redrives` of what group `group`
/// handles on `topic`.
async fn collect(
    bus: &Bus,
    topic: &str,
    group: &str,
) -> mpsc::UnboundedReceiver<(String, Option<String>)> {
    let (seen, collected) = mpsc::unbounded_channel();
    bus.group(group.to_owned())
        .subscribe_raw(topic, move |message: RawMessage, _| {
            let seen = seen.clone();
            async move {
                let payload = String::from_utf8_lossy(&message.payload).into_owned();
                let redrives = message.headers.get_str(header::REDRIVES).map(str::to_owned);
                seen.send((payload, redrives)).map_err(|e| e.to_string())
            }
        })
        .start_from(topicbus::StartFrom::Earliest)
        .await
        .expect("subscribe");
    collected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_with_an_unreadable_redrive_count_is_skipped_and_the_rest_move() {
    installed();
    let bus = Bus::builder()
        .service("hostile-count")
        .memory(MemoryBroker::new(MemoryConfig::default()))
        .build();
    let mut handled = collect(&bus, "hostile.count", "hostile.count.workers").await;
    for (payload, count) in [
        (r#"{"n":1}"#, "18446744073709551615"),
        (r#"{"n":2}"#, "not a number"),
        (r#"{"n":3}"#, "999999"),
        (r#"{"n":4}"#, "2"),
    ] {
        bus.publish_raw(raw(
            "hostile.count.dlq",
            payload,
            &[(header::REDRIVES, count)],
        ))
        .await
        .expect("dead letter written");
    }

    let done = guard("re-drive", bus.redrive("hostile.count"))
        .await
        .expect("the re-drive goes past the unreadable counts");
    assert_eq!((done.moved, done.skipped), (2, 2), "{done:?}");
    for expected in [(r#"{"n":3}"#, "1000000"), (r#"{"n":4}"#, "3")] {
        let (payload, redrives) = guard("re-driven", handled.recv()).await.expect("open");
        assert_eq!(
            (payload.as_str(), redrives.as_deref()),
            (expected.0, Some(expected.1))
        );
    }
    for count in ["18446744073709551615", "not a number"] {
        assert_eq!(
            logged(&[
                "ERROR",
                "hostile.count.dlq",
                "is not a count below 1000000",
                count
            ])
            .len(),
            1,
            "the skip of {count} is logged"
        );
    }
    // The skipped ones stay: the next re-drive skips them again, moving
    // nothing twice.
    let again = guard("re-drive", bus.redrive("hostile.count"))
        .await
        .expect("re-drive");
    assert_eq!((again.moved, again.skipped), (0, 2), "{again:?}");
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_redriven_for_another_group_is_skipped_with_a_log_and_a_count() {
    installed();
    let bus = Bus::builder().service("hostile-group").build();
    let mut chosen = collect(&bus, "hostile.group", "hostile.group.chosen").await;
    let mut other = collect(&bus, "hostile.group", "hostile.group.other").await;
    bus.publish_raw(raw(
        "hostile.group",
        r#"{"n":1}"#,
        &[(header::REDRIVE_GROUP, "hostile.group.chosen")],
    ))
    .await
    .expect("publish");
    bus.publish_raw(raw("hostile.group", r#"{"n":2}"#, &[]))
        .await
        .expect("publish");

    for n in [1, 2] {
        let (payload, _) = guard("chosen group", chosen.recv()).await.expect("open");
        assert_eq!(payload, format!(r#"{{"n":{n}}}"#));
    }
    // The other group reads both in order: once it has the second, it has
    // passed the first and counted it (before the second's handler ran).
    let (payload, _) = guard("other group", other.recv()).await.expect("open");
    assert_eq!(payload, r#"{"n":2}"#, "the other group skips the first");
    let outcome = |group, outcome| {
        counter(
            names::HANDLER_OUTCOMES,
            &[
                ("topic", "hostile.group"),
                ("group", group),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(outcome("hostile.group.other", "redrive_skipped"), 1);
    assert_eq!(outcome("hostile.group.chosen", "redrive_skipped"), 0);
    let skips = logged(&[
        "INFO",
        "skipped a message re-driven for another consumer group",
        "group=hostile.group.other",
        "redrive_group=hostile.group.chosen",
    ]);
    assert_eq!(skips.len(), 1, "{skips:?}");
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_transport_keeps_dead_letters_up_to_a_byte_bound() {
    installed();
    let broker = MemoryBroker::new(MemoryConfig::default().dead_letter_max_bytes(3_000));
    let bus = Bus::builder()
        .service("hostile-bytes")
        .memory(broker)
        .build();
    let mut handled = collect(&bus, "hostile.bytes", "hostile.bytes.workers").await;
    for n in 0..5 {
        let payload = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(1_000));
        bus.publish_raw(raw("hostile.bytes.dlq", &payload, &[]))
            .await
            .expect("dead letter written");
    }
    // Larger than the bound alone: not kept.
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4_000));
    bus.publish_raw(raw("hostile.bytes.dlq", &huge, &[]))
        .await
        .expect("dead letter written");

    let done = guard("re-drive", bus.redrive("hostile.bytes"))
        .await
        .expect("re-drive");
    assert_eq!(
        (done.moved, done.skipped),
        (2, 0),
        "about 1 kB each with its headers: the newest two fit in 3 000 bytes"
    );
    for n in [3, 4] {
        let (payload, _) = guard("re-driven", handled.recv()).await.expect("open");
        assert!(payload.starts_with(&format!(r#"{{"n":{n},"#)), "{payload}");
    }
    assert_eq!(
        logged(&[
            "WARN",
            "hostile.bytes.dlq",
            "did not keep a dead letter larger"
        ])
        .len(),
        1
    );
    bus.shutdown().await.expect("shutdown");
}

#[cfg(feature = "kafka")]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

#[cfg(feature = "kafka")]
mod kafka {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use topicbus::kafka::KafkaConfig;

    use super::*;
    use crate::mock_kafka::{test_settings, Fault, MockKafka};

    /// librdkafka's smallest `message.max.bytes`: a few small records fit,
    /// a 5 kB one does not.
    const SMALL_LIMIT: &str = "1000";

    async fn bus_on(service: &str, config: KafkaConfig) -> Bus {
        let config = test_settings(config.provision_topics(false));
        guard(
            "connect",
            Bus::builder().service(service).kafka(config).connect(),
        )
        .await
        .expect("connect")
    }

    /// Dead letters that cannot be re-driven are skipped, logged and counted,
    /// the rest move, and the next run does not meet the skipped ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_letter_too_large_to_redrive_is_skipped_and_the_rest_move() {
        installed();
        let kafka = MockKafka::start(1);
        let topic = "hostile.large";
        kafka.apply(Fault::CreateTopic(topic.to_owned(), 1));
        kafka.apply(Fault::CreateTopic(format!("{topic}.dlq"), 1));
        let writer = bus_on("hostile-writer", KafkaConfig::new(&kafka.bootstrap)).await;
        let dlq = format!("{topic}.dlq");
        let large = format!(r#"{{"n":2,"pad":"{}"}}"#, "x".repeat(5_000));
        for (payload, headers) in [
            (r#"{"n":1}"#, &[][..]),
            (large.as_str(), &[][..]),
            (
                r#"{"n":3}"#,
                &[(header::REDRIVES, "18446744073709551615")][..],
            ),
            (r#"{"n":4}"#, &[][..]),
        ] {
            writer
                .publish_raw(raw(&dlq, payload, headers))
                .await
                .expect("dead letter written");
        }
        let ops = bus_on(
            "hostile-ops",
            KafkaConfig::new(&kafka.bootstrap).set("message.max.bytes", SMALL_LIMIT),
        )
        .await;
        let mut handled = collect(&writer, topic, "hostile.large.workers").await;

        let done = guard("re-drive", ops.redrive(topic))
            .await
            .expect("the re-drive goes past what it cannot re-drive");
        assert_eq!((done.moved, done.skipped), (2, 2), "{done:?}");
        for n in [1, 4] {
            let (payload, redrives) = guard("re-driven", handled.recv()).await.expect("open");
            assert_eq!(payload, format!(r#"{{"n":{n}}}"#));
            assert_eq!(redrives.as_deref(), Some("1"));
        }
        assert_eq!(
            logged(&[
                "ERROR",
                "hostile.large.dlq",
                "partition 0 offset 1",
                "over the producer's limit"
            ])
            .len(),
            1,
            "the large one is named"
        );
        let again = guard("re-drive", ops.redrive(topic))
            .await
            .expect("re-drive");
        assert_eq!((again.moved, again.skipped), (0, 0), "{again:?}");
        guard("shutdown", ops.shutdown()).await.expect("shutdown");
        guard("shutdown", writer.shutdown())
            .await
            .expect("shutdown");
        assert!(handled.try_recv().is_err(), "nothing moved twice");
    }

    /// A broker refuses a record batch as a whole; the re-drive sends its
    /// records one by one and skips the one refused alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_letter_the_broker_refuses_as_too_large_is_skipped() {
        installed();
        let kafka = MockKafka::start(1);
        let topic = "hostile.refused";
        kafka.apply(Fault::CreateTopic(topic.to_owned(), 1));
        kafka.apply(Fault::CreateTopic(format!("{topic}.dlq"), 1));
        let writer = bus_on("hostile-writer", KafkaConfig::new(&kafka.bootstrap)).await;
        writer
            .publish_raw(raw(&format!("{topic}.dlq"), r#"{"n":1}"#, &[]))
            .await
            .expect("dead letter written");
        let ops = bus_on("hostile-ops", KafkaConfig::new(&kafka.bootstrap)).await;
        // The batch, then the record alone.
        let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
        kafka.apply(Fault::RequestErrors(
            RDKafkaApiKey::Produce,
            vec![too_large, too_large],
        ));

        let done = guard("re-drive", ops.redrive(topic))
            .await
            .expect("the re-drive goes past what the broker refuses");
        assert_eq!((done.moved, done.skipped), (0, 1), "{done:?}");
        assert_eq!(
            logged(&[
                "ERROR",
                "hostile.refused.dlq",
                "partition 0 offset 0",
                "refused"
            ])
            .len(),
            1
        );
        let again = guard("re-drive", ops.redrive(topic))
            .await
            .expect("re-drive");
        assert_eq!((again.moved, again.skipped), (0, 0), "{again:?}");
        // The producer still works.
        ops.publish_raw(raw(topic, r#"{"n":2}"#, &[]))
            .await
            .expect("publish after the refusals");
        guard("shutdown", ops.shutdown()).await.expect("shutdown");
        guard("shutdown", writer.shutdown())
            .await
            .expect("shutdown");
    }
}
