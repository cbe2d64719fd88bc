//! Payloads and helpers shared by the topicbus benchmarks.
//!
//! Each bench binary includes this module with `mod common;` and uses only
//! part of it.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use topicbus::Topic;

/// The value of the environment variable `name`, or `default` when it is
/// unset or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 40 bytes of text for the `source` field.
pub const SOURCE: &str = "svc-indexer.eu-west-1.pod-7f9c4d8b6-x2kq";

/// The ~100-byte event: 8 (id) + 40 (source text) + 8 (score) + 32 (tags)
/// = 88 bytes of data, plus a 40-byte heap allocation for `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "bench.event")]
pub struct Event {
    pub id: u64,
    pub source: String,
    pub score: f64,
    pub tags: [u32; 8],
}

/// The same payload on a topic with a single partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "bench.event.p1", partitions = 1)]
pub struct EventP1 {
    pub id: u64,
    pub source: String,
    pub score: f64,
    pub tags: [u32; 8],
}

/// A request carrying the ~100-byte payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "bench.rpc.request", response = RpcReply)]
pub struct RpcRequest {
    pub id: u64,
    pub source: String,
    pub score: f64,
    pub tags: [u32; 8],
}

/// The reply: small and allocation free.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "bench.rpc.reply")]
pub struct RpcReply {
    pub id: u64,
    pub score: f64,
}

/// Values built the same way for every payload type (one `String`
/// allocation per message, as a real producer would do).
pub trait MakeEvent: Sized {
    fn make(i: u64) -> Self;
}

macro_rules! make_event {
    ($($t:ty),*) => {$(
        impl MakeEvent for $t {
            #[inline]
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
make_event!(Event, EventP1, RpcRequest);

impl RpcReply {
    pub fn answer(req: &RpcRequest) -> Self {
        Self {
            id: req.id,
            score: req.score + 1.0,
        }
    }
}

/// Counts handled messages and wakes the waiter when `target` is reached.
#[derive(Default)]
pub struct Counter {
    seen: AtomicUsize,
    target: AtomicUsize,
    done: Notify,
}

impl Counter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Arms the counter for `target` more messages. Call only while idle.
    pub fn arm(&self, target: usize) {
        self.seen.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }

    /// Records one handled message.
    #[inline]
    pub fn hit(&self) {
        let seen = self.seen.fetch_add(1, Ordering::AcqRel) + 1;
        if seen == self.target.load(Ordering::Acquire) {
            // notify_one stores a permit: no lost wake-up if nobody waits yet.
            self.done.notify_one();
        }
    }

    /// Waits until `target` messages were recorded.
    pub async fn wait(&self) {
        self.done.notified().await;
    }
}

/// The runtimes compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Multi-thread, 2 workers.
    Multi2,
    /// Current-thread.
    Current,
}

impl Flavor {
    pub const ALL: [Flavor; 2] = [Flavor::Multi2, Flavor::Current];

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Multi2 => "mt2",
            Flavor::Current => "current_thread",
        }
    }

    pub fn runtime(self) -> tokio::runtime::Runtime {
        let mut builder = match self {
            Flavor::Multi2 => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
            Flavor::Current => tokio::runtime::Builder::new_current_thread(),
        };
        builder.enable_all().build().expect("runtime")
    }
}

/// Runs `fut` as a task of `rt` (so that on the multi-thread runtime all the
/// work happens on its workers, not on the bench thread) and waits for it.
pub fn run_on<F>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("bench task panicked") })
}

/// Criterion settings kept modest: the machine is shared and has 2 cores.
/// A bench's `main`: the criterion groups, then (under `cargo bench`) the
/// alternating ratio loop.
pub fn run(benches: fn(&mut Criterion), ratios: fn()) {
    let mut c = criterion();
    benches(&mut c);
    c.final_summary();
    if ratios_enabled() {
        ratios();
    }
}

pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// Whether the ratio loops run: only under `cargo bench` (which passes
/// `--bench`), not under `cargo test --benches` / `--all-targets` (criterion
/// then runs each bench once as a smoke test), `--list`, `--no-ratio` or
/// with env `BENCH_NO_RATIO` set.
pub fn ratios_enabled() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a == "--no-ratio")
        && std::env::var_os("BENCH_NO_RATIO").is_none()
}

/// Whether the ratio case `name` runs: all of them, or those containing
/// the text of env `BENCH_RATIO_FILTER` (ending with it, when the filter
/// ends with `$`).
pub fn wanted(name: &str) -> bool {
    match std::env::var("BENCH_RATIO_FILTER") {
        Err(_) => true,
        Ok(f) => match f.strip_suffix('$') {
            Some(end) => name.ends_with(end),
            None => name.contains(&f),
        },
    }
}

/// Rounds of the alternating ratio loop (env `BENCH_RATIO_ROUNDS`, default 15).
pub fn ratio_rounds() -> usize {
    std::env::var("BENCH_RATIO_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2
    }
}

/// What the ratio compares.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Throughput: ratio = topicbus rate / baseline rate, must be >= bound.
    ThroughputAtLeast(f64),
    /// Time: ratio = topicbus time / baseline time, must be <= bound.
    TimeAtMost(f64),
    /// Diagnostic: time ratio candidate / baseline, no target.
    Info,
}

/// One result of [`compare`].
#[derive(Debug, Clone)]
pub struct Ratio {
    pub name: String,
    /// Units of work per timed call (messages, round trips, operations).
    pub unit: u64,
    /// Median time of one timed call.
    pub candidate: Duration,
    pub baseline: Duration,
    /// The ratio of the medians, oriented as the goal says.
    pub ratio: f64,
    /// The same ratio from the fastest call of each (less sensitive to a
    /// loaded machine).
    pub min_ratio: f64,
    pub met: bool,
    /// `MET`, `MISSED` or `INFO`.
    pub verdict: &'static str,
}

/// Runs `candidate` and `baseline` alternately `rounds` times each (one
/// warm-up call each first); each call does a fixed amount of work and
/// returns its elapsed time. Prints and returns the medians and the ratio.
///
/// `unit` divides the medians for printing (e.g. messages per call, to show
/// time per message).
pub fn compare(
    name: &str,
    unit: u64,
    goal: Goal,
    rounds: usize,
    mut candidate: impl FnMut() -> Duration,
    mut baseline: impl FnMut() -> Duration,
) -> Option<Ratio> {
    if !wanted(name) {
        return None;
    }
    candidate();
    baseline();
    let mut c = Vec::with_capacity(rounds);
    let mut b = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Alternate which one goes first so that drift hits both alike.
        if round % 2 == 0 {
            c.push(candidate());
            b.push(baseline());
        } else {
            b.push(baseline());
            c.push(candidate());
        }
    }
    let (minc, minb) = (
        c.iter().copied().min().unwrap_or_default(),
        b.iter().copied().min().unwrap_or_default(),
    );
    let (mc, mb) = (median(c), median(b));
    let oriented = |cand: Duration, base: Duration| match goal {
        Goal::ThroughputAtLeast(_) => base.as_secs_f64() / cand.as_secs_f64(),
        Goal::TimeAtMost(_) | Goal::Info => cand.as_secs_f64() / base.as_secs_f64(),
    };
    let min_ratio = oriented(minc, minb);
    let (ratio, met, what) = match goal {
        Goal::ThroughputAtLeast(bound) => {
            let r = mb.as_secs_f64() / mc.as_secs_f64();
            (
                r,
                r >= bound,
                format!("throughput ratio (target >= {bound}x)"),
            )
        }
        Goal::TimeAtMost(bound) => {
            let r = mc.as_secs_f64() / mb.as_secs_f64();
            (r, r <= bound, format!("time ratio (target <= {bound}x)"))
        }
        Goal::Info => {
            let r = mc.as_secs_f64() / mb.as_secs_f64();
            (r, true, "time ratio (diagnostic, no target)".to_owned())
        }
    };
    let label = match goal {
        Goal::Info => "candidate",
        _ => "topicbus",
    };
    let verdict = match goal {
        Goal::Info => "INFO",
        _ if met => "MET",
        _ => "MISSED",
    };
    let per = |d: Duration| fmt_duration(d / u32::try_from(unit).unwrap_or(u32::MAX));
    println!(
        "RATIO {name}: {label} {} vs baseline {} = {ratio:.3} {what} {}  [median of {rounds}; per unit {} vs {}; best-of ratio {min_ratio:.3}]",
        fmt_duration(mc),
        fmt_duration(mb),
        verdict,
        per(mc),
        per(mb),
    );
    Some(Ratio {
        name: name.to_owned(),
        unit,
        candidate: mc,
        baseline: mb,
        ratio,
        min_ratio,
        met,
        verdict,
    })
}

pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Times `f` once.
pub fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Prints the ratio lines again as one block at the end of a bench.
pub fn summary(results: &[Option<Ratio>]) {
    println!("\n== ratio summary (per unit of work; ratio of medians, best-of ratio) ==");
    for r in results.iter().flatten() {
        let per = |d: Duration| fmt_duration(d / u32::try_from(r.unit).unwrap_or(u32::MAX));
        println!(
            "{:<55} topicbus {:>11}  baseline {:>11}  ratio {:>7.3}  best-of {:>7.3}  {}",
            r.name,
            per(r.candidate),
            per(r.baseline),
            r.ratio,
            r.min_ratio,
            r.verdict
        );
    }
}
