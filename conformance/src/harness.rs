//! What the cases run on: a [`Harness`] per transport makes networks, a
//! network makes [`Bus`] instances that share it (one memory broker, one
//! Kafka cluster), plus the small waiting and recording tools the cases use.
//!
//! Cases talk to the bus only through its public API and never look at which
//! harness they run on, except through the capability flags.

use std::future::{Future, IntoFuture};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{watch, Notify};
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::{Bus, BusBuilder};

/// The longest any single wait may take before the case is declared hung.
/// A hang guard only: no case asserts how fast anything is.
pub const HANG: Duration = Duration::from_secs(30);

/// Hang guard of one whole iteration of a case.
const CASE_HANG: Duration = Duration::from_secs(120);

/// Settings of a network and of every bus instance made on it.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Bus default: retries of event handlers before dead-lettering.
    pub retries: u32,
    /// Bus default: first and largest retry delay.
    pub backoff: (Duration, Duration),
    /// Bus default: how long a request waits for its reply.
    pub request_timeout: Duration,
    /// Bus default: how long `shutdown` waits for in-flight handlers.
    pub shutdown_timeout: Duration,
    /// Partitions of topics that do not set `partitions = N`.
    pub partitions: Option<usize>,
    /// Messages a consumer group may have queued per partition before a
    /// publisher waits (transports with in-process queues).
    pub queue_capacity: Option<usize>,
    /// Messages kept per topic for replay (transports that keep history
    /// only on request).
    pub retain: Option<usize>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            retries: 3,
            backoff: (Duration::from_millis(1), Duration::from_millis(20)),
            request_timeout: HANG,
            shutdown_timeout: HANG,
            partitions: None,
            queue_capacity: None,
            retain: None,
        }
    }
}

impl Setup {
    /// With [`Setup::queue_capacity`] set to `n`.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = Some(n);
        self
    }

    /// With [`Setup::retain`] set to `n`.
    pub fn retain(mut self, n: usize) -> Self {
        self.retain = Some(n);
        self
    }

    /// A builder of an instance of `service` with this setup's retries,
    /// backoff and timeouts; a [`Network`] adds its transport.
    pub fn builder(&self, service: &str) -> BusBuilder {
        Bus::builder()
            .service(service)
            .retries(self.retries)
            .backoff(self.backoff.0, self.backoff.1)
            .request_timeout(self.request_timeout)
            .shutdown_timeout(self.shutdown_timeout)
    }
}

/// A transport under test.
pub trait Harness: Send + Sync + 'static {
    /// Its name in test names and notes.
    fn name(&self) -> &'static str;

    /// Whether a new group can start from earlier messages
    /// (`StartFrom::Earliest`), given `Setup::retain` where it matters.
    fn keeps_history(&self) -> bool;

    /// Whether a publisher waits when a consumer group's queue is full (an
    /// in-process transport). A log-based transport bounds consumer memory
    /// without ever making publishers wait for consumers.
    fn publishers_wait_for_slow_consumers(&self) -> bool;

    /// Why the harness cannot run here (a broker it needs is not given);
    /// its tests are `#[ignore]`d so that they run only when asked for.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Whether a member's commit on revocation always succeeds, so that a
    /// rebalance (another member leaving) redelivers nothing. librdkafka's
    /// mock cluster refuses such commits (REBALANCE_IN_PROGRESS): what the
    /// remaining members handled since their last commit comes again, as
    /// at-least-once allows.
    fn commits_survive_rebalances(&self) -> bool {
        true
    }

    /// Whether the transport knows, when a request is sent, that nobody
    /// serves its topic. Kafka cannot: such a request times out.
    fn knows_responders(&self) -> bool {
        true
    }

    /// Whether a new group can start at a time (`StartFrom::Timestamp`):
    /// the memory transport filters what it retains by publish time; on
    /// Kafka that needs the broker's ListOffsets by time.
    fn finds_messages_by_time(&self) -> bool {
        true
    }

    /// Whether a topic gets the partitions its `partitions = N` attribute
    /// names. librdkafka's mock cluster auto-creates topics with its own
    /// count instead (topicbus provisions none there).
    fn partitions_as_declared(&self) -> bool {
        true
    }

    /// Whether a delivered message's `Context::offset` gives its offset in
    /// its partition (a log); the memory transport keeps none.
    fn has_offsets(&self) -> bool {
        true
    }

    /// A new, empty network with `setup`.
    fn network(&self, setup: Setup) -> BoxFuture<'static, Box<dyn Network>>;
}

/// One "network": every bus made on it can reach every other.
pub trait Network: Send + Sync {
    /// A new bus instance of `service` (already scoped) with the network's
    /// settings.
    fn bus(&self, service: &str) -> BoxFuture<'_, Bus>;

    /// The name to use on this network for a service or group called
    /// `name` in a case (identity on a private memory broker).
    fn scope(&self, name: &str) -> String {
        name.to_owned()
    }
}

/// A network with the buses made on it, so that a case can shut them all
/// down at the end.
pub struct Net {
    inner: Box<dyn Network>,
    buses: Mutex<Vec<Bus>>,
}

impl Net {
    /// A fresh network of `harness`.
    pub async fn new<H: Harness>(harness: &H, setup: Setup) -> Net {
        Net {
            inner: harness.network(setup).await,
            buses: Mutex::new(Vec::new()),
        }
    }

    /// A new instance of `service`.
    pub async fn bus(&self, service: &str) -> Bus {
        let bus = self.inner.bus(&self.inner.scope(service)).await;
        self.buses.lock().unwrap().push(bus.clone());
        bus
    }

    /// `n` instances of `service`.
    pub async fn buses(&self, service: &str, n: usize) -> Vec<Bus> {
        let mut buses = Vec::with_capacity(n);
        for _ in 0..n {
            buses.push(self.bus(service).await);
        }
        buses
    }

    /// An explicit consumer-group name, scoped to this network.
    pub fn group(&self, name: &str) -> String {
        self.inner.scope(name)
    }

    /// Shuts every instance down, in the order made, and checks that each
    /// shutdown succeeds (a second shutdown of a bus is a no-op).
    pub async fn close(&self) {
        let buses = std::mem::take(&mut *self.buses.lock().unwrap());
        for bus in buses {
            let service = bus.service().to_owned();
            guard(&format!("shutdown of `{service}`"), bus.shutdown())
                .await
                .unwrap_or_else(|e| panic!("shutdown of `{service}` failed: {e}"));
        }
    }
}

/// Runs `case` `TOPICBUS_REPEAT` times (default 1), each time on a fresh
/// harness. The first failure fails the test; nothing is retried.
pub async fn run_case<H, M, C, F>(name: &str, make: M, case: C)
where
    H: Harness,
    M: Fn() -> H,
    C: Fn(H) -> F,
    F: Future<Output = ()>,
{
    if let Some(why) = make().unavailable() {
        panic!("{name} cannot run: {why}");
    }
    if std::env::var_os("RUST_LOG").is_some() {
        // topicbus's and librdkafka's logs (`debug=...` in
        // TOPICBUS_TEST_KAFKA_SET) for investigating a case; the first case
        // of the process installs it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let repeat = repeat_count();
    for iteration in 1..=repeat {
        let run = tokio::time::timeout(CASE_HANG, AssertUnwindSafe(case(make())).catch_unwind());
        match run.await {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => {
                eprintln!("{name}: failed on iteration {iteration} of {repeat}");
                std::panic::resume_unwind(panic);
            }
            Err(_) => panic!("{name}: iteration {iteration} of {repeat} hung for {CASE_HANG:?}"),
        }
    }
}

fn repeat_count() -> usize {
    match std::env::var("TOPICBUS_REPEAT") {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("TOPICBUS_REPEAT must be a positive integer, not {text:?}"),
        },
        Err(_) => 1,
    }
}

/// Prints why a case does not apply to a harness; the case then passes.
pub fn skip(harness: &dyn Harness, why: &str) {
    eprintln!("note: skipped on `{}`: {why}", harness.name());
}

// ---------------------------------------------------------------- memory

/// The in-process transport: one `MemoryBroker` per network.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    force_codec: bool,
}

impl Memory {
    /// Typed values travel as they are.
    pub fn plain() -> Self {
        Self { force_codec: false }
    }

    /// Every payload is encoded and decoded, as on a network.
    pub fn codec() -> Self {
        Self { force_codec: true }
    }
}

impl Harness for Memory {
    fn name(&self) -> &'static str {
        if self.force_codec {
            "memory_codec"
        } else {
            "memory"
        }
    }

    fn keeps_history(&self) -> bool {
        // With `MemoryConfig::retain(n)`, which the harness sets from `Setup`.
        true
    }

    fn publishers_wait_for_slow_consumers(&self) -> bool {
        true
    }

    fn has_offsets(&self) -> bool {
        false
    }

    fn network(&self, setup: Setup) -> BoxFuture<'static, Box<dyn Network>> {
        let mut config = MemoryConfig::default().force_codec(self.force_codec);
        if let Some(n) = setup.partitions {
            config = config.partitions(n);
        }
        if let Some(n) = setup.queue_capacity {
            config = config.queue_capacity(n);
        }
        if let Some(n) = setup.retain {
            config = config.retain(n);
        }
        let network = MemoryNet {
            broker: MemoryBroker::new(config),
            setup,
        };
        Box::pin(async move { Box::new(network) as Box<dyn Network> })
    }
}

struct MemoryNet {
    broker: MemoryBroker,
    setup: Setup,
}

impl Network for MemoryNet {
    fn bus(&self, service: &str) -> BoxFuture<'_, Bus> {
        let bus = self
            .setup
            .builder(service)
            .memory(self.broker.clone())
            .build();
        Box::pin(async move { bus })
    }
}

// ---------------------------------------------------------------- tools

/// Awaits `future`, failing the case if it takes longer than [`HANG`].
pub async fn guard<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(HANG, future.into_future()).await {
        Ok(value) => value,
        Err(_) => panic!("hang guard: {what} did not finish within {HANG:?}"),
    }
}

/// Polls `condition` until it holds, for what has no notification (counters).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    guard(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// What handlers saw, in the order they saw it, with a wake-up on each entry.
pub struct Log<T> {
    items: Mutex<Vec<T>>,
    changed: Notify,
}

impl<T: Clone> Log<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    pub fn push(&self, item: T) {
        self.items.lock().unwrap().push(item);
        self.changed.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<T> {
        self.items.lock().unwrap().clone()
    }

    /// Waits until at least `n` entries arrived; returns them all.
    pub async fn wait_for(&self, n: usize, what: &str) -> Vec<T> {
        self.wait_until(&format!("{what} ({n} entries)"), |items| items.len() >= n)
            .await
    }

    /// Waits until `done` holds for the entries; returns them all.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[T]) -> bool) -> Vec<T> {
        self.wait_until_or_describe(what, done, |_| String::new())
            .await
    }

    /// Like [`Log::wait_until`]; a timeout's panic message ends with what
    /// `describe` says of the entries (what is missing, say).
    pub async fn wait_until_or_describe(
        &self,
        what: &str,
        done: impl Fn(&[T]) -> bool,
        describe: impl Fn(&[T]) -> String,
    ) -> Vec<T> {
        let waiting = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if done(&self.items.lock().unwrap()) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(HANG, waiting).await.is_err() {
            let items = self.snapshot();
            panic!(
                "hang guard: {what}: not reached after {HANG:?}; {} entries{}",
                items.len(),
                describe(&items)
            );
        }
        self.snapshot()
    }
}

/// A latch: handlers wait on it until the case opens it.
#[derive(Clone)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
}

impl Gate {
    pub fn new() -> Self {
        Self {
            open: Arc::new(watch::Sender::new(false)),
        }
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub async fn wait(&self) {
        let mut rx = self.open.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// A process-unique number, to tell runs and messages apart.
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `time` cut to whole milliseconds, the precision of `ce_time` on the wire.
pub fn floor_millis(time: SystemTime) -> SystemTime {
    let since = time.duration_since(UNIX_EPOCH).expect("after 1970");
    UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

/// A payload numbered by the case, so that handlers can record which one
/// they got.
pub trait Numbered: topicbus::Topic + Clone {
    fn number(&self) -> u64;
}

/// One handler call, as recorded by [`member`].
#[derive(Debug, Clone)]
pub struct Handled {
    /// Which registration (instance) handled it, as numbered by the case.
    pub member: usize,
    pub n: u64,
    pub group: String,
    pub attempt: u32,
}

/// A handler that records each message it handles as member `member`.
///
/// Every call gives a closure of one type, whose name is the default
/// consumer group's: instances of one service subscribing `member(i, ..)`
/// are members of one default group.
#[allow(clippy::type_complexity)]
pub fn member<T: Numbered>(
    member: usize,
    log: Arc<Log<Handled>>,
) -> impl Fn(T, topicbus::Context) -> futures::future::Ready<Result<(), std::convert::Infallible>>
       + Send
       + Sync
       + 'static {
    move |message: T, ctx: topicbus::Context| {
        log.push(Handled {
            member,
            n: message.number(),
            group: ctx.group().to_owned(),
            attempt: ctx.attempt(),
        });
        futures::future::ready(Ok(()))
    }
}

/// Asserts that `handled` holds each of `0..count` exactly once, each on
/// its first attempt.
pub fn assert_exactly_once(handled: &[Handled], count: u64, what: &str) {
    if let Some(retried) = handled.iter().find(|h| h.attempt != 1) {
        panic!("{what}: a message was retried although no handler failed: {retried:?}");
    }
    let mut numbers: Vec<u64> = handled.iter().map(|h| h.n).collect();
    numbers.sort_unstable();
    let mut dups = numbers.clone();
    dups.dedup();
    assert_eq!(
        dups.len(),
        numbers.len(),
        "{what}: {} duplicate deliveries",
        numbers.len() - dups.len()
    );
    assert_eq!(
        numbers,
        (0..count).collect::<Vec<_>>(),
        "{what}: every message exactly once"
    );
}

/// How many different messages `handled` holds.
pub fn distinct(handled: &[Handled]) -> usize {
    handled
        .iter()
        .map(|h| h.n)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Waits until `log` holds each of `count` messages at least once.
pub async fn wait_for_each(log: &Log<Handled>, count: u64, what: &str) {
    log.wait_until(what, |handled| distinct(handled) == count as usize)
        .await;
}

/// What a group of several members handled of `0..count`: exactly once
/// where the harness's commits survive rebalances; elsewhere (Kafka's mock
/// cluster refuses commits while its group rebalances, and a late rebalance
/// round redelivers from the last commit) each at least once, the
/// redeliveries counted and printed.
pub fn assert_group_handled<H: Harness>(harness: &H, handled: &[Handled], count: u64, what: &str) {
    if harness.commits_survive_rebalances() {
        return assert_exactly_once(handled, count, what);
    }
    if let Some(retried) = handled.iter().find(|h| h.attempt != 1) {
        panic!("{what}: a message was retried although no handler failed: {retried:?}");
    }
    let numbers: std::collections::BTreeSet<u64> = handled.iter().map(|h| h.n).collect();
    assert_eq!(
        numbers,
        (0..count).collect(),
        "{what}: every message at least once"
    );
    println!(
        "{}: {what}: {count} messages, 0 lost, {} redelivered after rebalances",
        harness.name(),
        handled.len() - numbers.len()
    );
}

/// How many messages each member handled, by member number.
pub fn per_member(handled: &[Handled]) -> std::collections::BTreeMap<usize, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for h in handled {
        *counts.entry(h.member).or_insert(0) += 1;
    }
    counts
}
