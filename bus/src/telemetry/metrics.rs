//! Metrics through the `metrics` facade: whatever recorder the application
//! installs (Prometheus, StatsD, ...) receives them; without one they cost a
//! branch each.
//!
//! Handles are registered once — per registration when it subscribes, per
//! topic the first time a bus publishes to it or requests on it — and
//! updated through the handle afterwards, so no label is built per message.
//! A handle belongs to the recorder that was current when it was
//! registered: install the recorder before building the bus.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::error::{Error, ErrorKind};
use crate::hash::FastMap;

/// Metric names (all prefixed `topicbus_`). docs/operations.md lists their
/// labels and meaning.
pub mod names {
    /// Counter: messages published (publish, publish_batch, publish_raw and
    /// the request messages of requests). Labels `topic`, `outcome` (`ok`,
    /// `error`).
    pub const PUBLISHED: &str = "topicbus_published_total";
    /// Counter: messages handed to a handler registration. Labels `topic`,
    /// `group`.
    pub const DELIVERED: &str = "topicbus_delivered_total";
    /// Counter: what became of delivered messages and failed attempts.
    /// Labels `topic`, `group`, `outcome` (`ok`, `retried`, `dead_lettered`,
    /// `error_replied`, `redrive_skipped`: acknowledged without the handler,
    /// re-driven for another group by `topicbus_redrive_group`).
    pub const HANDLER_OUTCOMES: &str = "topicbus_handler_outcomes_total";
    /// Histogram: duration of each handler call, in seconds. Labels `topic`,
    /// `group`.
    pub const HANDLER_DURATION: &str = "topicbus_handler_duration_seconds";
    /// Gauge: messages being handled now. Labels `topic`, `group`.
    pub const HANDLERS_IN_FLIGHT: &str = "topicbus_handlers_in_flight";
    /// Counter: finished requests. Labels `topic`, `outcome` (`ok`,
    /// `timeout`, `remote_error`, `no_responders`, `other`).
    pub const REQUESTS: &str = "topicbus_requests_total";
    /// Histogram: time from a request's start to its outcome, in seconds.
    /// Labels `topic`, `outcome`.
    pub const REQUEST_DURATION: &str = "topicbus_request_duration_seconds";
    /// Counter: replies that arrived after their request had given up.
    pub const LATE_REPLIES: &str = "topicbus_late_replies_total";
    /// Counter: replies dropped by a requester with a
    /// [`ReplyKey`](crate::ReplyKey) because their MAC did not hold.
    pub const REJECTED_REPLIES: &str = "topicbus_rejected_replies_total";
    /// Gauge: Kafka consumer lag (messages) of a partition, from
    /// librdkafka's statistics. Labels `topic`, `partition`, `group`.
    pub const KAFKA_CONSUMER_LAG: &str = "topicbus_kafka_consumer_lag";
    /// Gauge: messages librdkafka has fetched into a partition's queue and
    /// the partition's worker has not read yet, from librdkafka's
    /// statistics (`fetchq_cnt`). Labels `topic`, `partition`, `group`.
    pub const KAFKA_CONSUMER_PREFETCHED: &str = "topicbus_kafka_consumer_prefetched";
    /// Counter: dead letters the transport refused as too large even
    /// without payload and application headers, so not written (the message
    /// stays in its topic). Label `topic` (the original).
    pub const DEAD_LETTERS_TOO_LARGE: &str = "topicbus_dead_letters_too_large_total";
}

/// Gives the recorder the unit and help text of every metric (once per bus:
/// a recorder installed later still gets them from the next bus).
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::PUBLISHED,
        Unit::Count,
        "Messages published, by topic and outcome (ok, error)"
    );
    describe_counter!(
        names::DEAD_LETTERS_TOO_LARGE,
        Unit::Count,
        "Dead letters not written: too large even without payload and application headers"
    );
    describe_counter!(
        names::DELIVERED,
        Unit::Count,
        "Messages handed to a handler registration, by topic and consumer group"
    );
    describe_counter!(
        names::HANDLER_OUTCOMES,
        Unit::Count,
        "Handled messages (ok, dead_lettered, error_replied), failed attempts that are retried (retried), and messages re-driven for another group (redrive_skipped)"
    );
    describe_histogram!(
        names::HANDLER_DURATION,
        Unit::Seconds,
        "Duration of each handler call"
    );
    describe_gauge!(
        names::HANDLERS_IN_FLIGHT,
        Unit::Count,
        "Messages being handled now"
    );
    describe_counter!(
        names::REQUESTS,
        Unit::Count,
        "Finished requests by outcome (ok, timeout, remote_error, no_responders, other)"
    );
    describe_histogram!(
        names::REQUEST_DURATION,
        Unit::Seconds,
        "Time from a request's start to its outcome"
    );
    describe_counter!(
        names::LATE_REPLIES,
        Unit::Count,
        "Replies that arrived after their request had given up"
    );
    describe_counter!(
        names::REJECTED_REPLIES,
        Unit::Count,
        "Replies dropped because their reply-key MAC did not hold"
    );
    describe_gauge!(
        names::KAFKA_CONSUMER_LAG,
        Unit::Count,
        "Kafka consumer lag of a partition (librdkafka statistics)"
    );
    describe_gauge!(
        names::KAFKA_CONSUMER_PREFETCHED,
        Unit::Count,
        "Messages fetched into a Kafka partition's queue, not read yet (librdkafka statistics)"
    );
}

/// The per-topic handles of one bus, registered on first use.
pub(crate) struct BusMetrics {
    /// Tells this bus's entries in [`RECENT`] from another's.
    id: u64,
    topics: RwLock<FastMap<Box<str>, Arc<TopicMetrics>>>,
}

impl Default for BusMetrics {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            topics: RwLock::default(),
        }
    }
}

/// A topic's handles as recently used on this thread, found by the address
/// of the topic's `&'static` name: a typed publish finds its handles without
/// a lock, a hash or a string comparison.
struct Recent {
    bus: u64,
    name: *const u8,
    len: usize,
    metrics: Arc<TopicMetrics>,
}

/// Entries [`RECENT`] keeps per thread (the oldest make room).
const RECENT_MAX: usize = 8;

thread_local! {
    static RECENT: RefCell<Vec<Recent>> = const { RefCell::new(Vec::new()) };
}

struct TopicMetrics {
    published_ok: Counter,
    published_error: Counter,
    /// Registered with the topic's first request.
    requests: OnceLock<RequestMetrics>,
}

struct RequestMetrics {
    outcomes: [(Counter, Histogram); RequestOutcome::COUNT],
}

/// How a request ended.
#[derive(Debug, Clone, Copy)]
enum RequestOutcome {
    Ok,
    Timeout,
    RemoteError,
    NoResponders,
    Other,
}

impl RequestOutcome {
    const COUNT: usize = 5;
    const ALL: [RequestOutcome; Self::COUNT] = [
        Self::Ok,
        Self::Timeout,
        Self::RemoteError,
        Self::NoResponders,
        Self::Other,
    ];

    fn of<T>(result: &Result<T, Error>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(error) => match error.kind() {
                ErrorKind::Timeout => Self::Timeout,
                ErrorKind::Remote => Self::RemoteError,
                ErrorKind::NoResponders => Self::NoResponders,
                _ => Self::Other,
            },
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Timeout => "timeout",
            Self::RemoteError => "remote_error",
            Self::NoResponders => "no_responders",
            Self::Other => "other",
        }
    }
}

impl BusMetrics {
    /// The handles of `topic`, registered the first time.
    fn topic(&self, topic: &str) -> Arc<TopicMetrics> {
        if let Some(metrics) = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
        {
            return Arc::clone(metrics);
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(topics.entry(topic.into()).or_insert_with(|| {
            let owned = topic.to_owned();
            Arc::new(TopicMetrics {
                published_ok: metrics::counter!(names::PUBLISHED, "topic" => owned.clone(), "outcome" => "ok"),
                published_error: metrics::counter!(names::PUBLISHED, "topic" => owned, "outcome" => "error"),
                requests: OnceLock::new(),
            })
        }))
    }

    /// Runs `f` on the handles of the typed topic `topic`, through this
    /// thread's cache.
    fn with_static_topic(&self, topic: &'static str, f: impl FnOnce(&TopicMetrics)) {
        RECENT.with(|recent| {
            let Ok(mut recent) = recent.try_borrow_mut() else {
                // Only if a recorder published from inside an update.
                return f(&self.topic(topic));
            };
            let (name, len) = (topic.as_ptr(), topic.len());
            if let Some(hit) = recent
                .iter()
                .find(|r| r.name == name && r.len == len && r.bus == self.id)
            {
                return f(&hit.metrics);
            }
            let metrics = self.topic(topic);
            if recent.len() == RECENT_MAX {
                recent.remove(0);
            }
            recent.push(Recent {
                bus: self.id,
                name,
                len,
                metrics: Arc::clone(&metrics),
            });
            f(&metrics)
        })
    }

    /// Counts `n` messages published to the typed topic `topic`, or failed to.
    pub fn published(&self, topic: &'static str, n: usize, ok: bool) {
        self.with_static_topic(topic, |metrics| metrics.published(n, ok));
    }

    /// Counts `n` messages published to `topic` by name, or failed to.
    pub fn published_raw(&self, topic: &str, n: usize, ok: bool) {
        self.topic(topic).published(n, ok);
    }

    /// Counts a finished request on `topic` that started at `started`.
    pub fn request<T>(&self, topic: &'static str, started: Instant, result: &Result<T, Error>) {
        let outcome = RequestOutcome::of(result);
        self.with_static_topic(topic, |metrics| {
            let requests = metrics.requests.get_or_init(|| RequestMetrics {
                outcomes: RequestOutcome::ALL.map(|outcome| {
                    let labels = [
                        ("topic", topic.to_owned()),
                        ("outcome", outcome.label().to_owned()),
                    ];
                    (
                        metrics::counter!(names::REQUESTS, &labels),
                        metrics::histogram!(names::REQUEST_DURATION, &labels),
                    )
                }),
            });
            let (count, duration) = &requests.outcomes[outcome as usize];
            count.increment(1);
            duration.record(started.elapsed().as_secs_f64());
        });
    }
}

impl TopicMetrics {
    fn published(&self, n: usize, ok: bool) {
        let counter = if ok {
            &self.published_ok
        } else {
            &self.published_error
        };
        counter.increment(n as u64);
    }
}

/// The handles of one handler registration.
pub(crate) struct HandlerMetrics {
    delivered: Counter,
    ok: Counter,
    retried: Counter,
    dead_lettered: Counter,
    error_replied: Counter,
    redrive_skipped: Counter,
    duration: Histogram,
    in_flight: Gauge,
    /// Whether handler calls are timed: only for a real recorder, since the
    /// two clock reads per call are the dearest part of these metrics.
    timed: bool,
}

/// Whether a recorder other than `metrics`' no-op one is current.
///
/// The facade cannot say; its no-op recorder is the only zero-sized one of
/// any exporter in use, so a zero-sized recorder counts as none. (A
/// hand-written zero-sized recorder still gets every counter and gauge, but
/// no handler durations: install it boxed.)
fn recorder_installed() -> bool {
    metrics::with_recorder(|recorder| std::mem::size_of_val(recorder) != 0)
}

impl HandlerMetrics {
    pub fn new(topic: &str, group: &str) -> Self {
        let outcome = |outcome: &'static str| {
            metrics::counter!(
                names::HANDLER_OUTCOMES,
                "topic" => topic.to_owned(),
                "group" => group.to_owned(),
                "outcome" => outcome,
            )
        };
        let labels = [("topic", topic.to_owned()), ("group", group.to_owned())];
        Self {
            delivered: metrics::counter!(names::DELIVERED, &labels),
            ok: outcome("ok"),
            retried: outcome("retried"),
            dead_lettered: outcome("dead_lettered"),
            error_replied: outcome("error_replied"),
            redrive_skipped: outcome("redrive_skipped"),
            duration: metrics::histogram!(names::HANDLER_DURATION, &labels),
            in_flight: metrics::gauge!(names::HANDLERS_IN_FLIGHT, &labels),
            timed: recorder_installed(),
        }
    }

    /// A message was handed to the registration: counted, and in flight
    /// until the returned guard drops.
    pub fn delivered(&self) -> InFlight<'_> {
        self.delivered.increment(1);
        self.in_flight.increment(1.0);
        InFlight(&self.in_flight)
    }

    /// Times one handler call until the returned guard drops.
    pub fn call(&self) -> Option<CallTimer<'_>> {
        self.timed.then(|| CallTimer {
            duration: &self.duration,
            started: Instant::now(),
        })
    }

    pub fn handled(&self) {
        self.ok.increment(1);
    }

    pub fn retried(&self) {
        self.retried.increment(1);
    }

    pub fn dead_lettered(&self) {
        self.dead_lettered.increment(1);
    }

    pub fn error_replied(&self) {
        self.error_replied.increment(1);
    }

    pub fn redrive_skipped(&self) {
        self.redrive_skipped.increment(1);
    }
}

/// Takes a message off the in-flight gauge when dropped.
pub(crate) struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Records a handler call's duration when dropped (also when it was
/// cancelled by a timeout).
pub(crate) struct CallTimer<'a> {
    duration: &'a Histogram,
    started: Instant,
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        self.duration.record(self.started.elapsed().as_secs_f64());
    }
}

/// The late-replies counter of one bus.
pub(crate) fn late_replies() -> Counter {
    metrics::counter!(names::LATE_REPLIES)
}

/// The rejected-replies counter of one bus.
pub(crate) fn rejected_replies() -> Counter {
    metrics::counter!(names::REJECTED_REPLIES)
}

/// Consumer-lag and prefetch gauges of one Kafka group member, per
/// partition of its topic, from librdkafka's statistics.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub(crate) struct ConsumerLag {
    topic: String,
    group: String,
    gauges: Mutex<FastMap<i32, PartitionGauges>>,
}

/// A partition's gauges, each registered once it has a value to show.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
#[derive(Default)]
struct PartitionGauges {
    lag: Option<Gauge>,
    prefetched: Option<Gauge>,
}

#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
impl ConsumerLag {
    pub fn new(topic: &str, group: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            group: group.to_owned(),
            gauges: Mutex::new(FastMap::default()),
        }
    }

    /// Sets the lag of `partition` and the messages prefetched for it.
    /// librdkafka reports a lag of -1 while it is unknown (a partition not
    /// assigned here, or not fetched yet), which leaves the lag gauge as it
    /// was; a partition gets its prefetch gauge once something was
    /// prefetched for it. So partitions this member never read show neither.
    pub fn set(&self, partition: i32, lag: i64, prefetched: i64) {
        if partition < 0 {
            return;
        }
        let labels = || {
            [
                ("topic", self.topic.clone()),
                ("partition", partition.to_string()),
                ("group", self.group.clone()),
            ]
        };
        let mut gauges = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        let gauges = gauges.entry(partition).or_default();
        if lag >= 0 {
            gauges
                .lag
                .get_or_insert_with(|| metrics::gauge!(names::KAFKA_CONSUMER_LAG, &labels()))
                .set(lag as f64);
        }
        if prefetched > 0 || gauges.prefetched.is_some() {
            gauges
                .prefetched
                .get_or_insert_with(|| metrics::gauge!(names::KAFKA_CONSUMER_PREFETCHED, &labels()))
                .set(prefetched.max(0) as f64);
        }
    }
}
