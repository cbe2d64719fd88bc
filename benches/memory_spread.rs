//! Memory transport: the spread of throughput across separate processes.
//!
//! A criterion median hides a figure that is bimodal from one process to the
//! next (where the runtime's workers happen to put the tasks at start-up
//! decides it for the whole process). This bench starts every run in a
//! process of its own (it runs itself again with `TOPICBUS_SPREAD_CHILD`
//! set) and prints, per scenario, every run and then min, median and max
//! of topicbus, of the raw baseline measured in the same process, and of
//! their ratio.
//!
//! Scenarios, one publishing task and closures that count, 1 000 000
//! ~100-byte serde structs (`SPREAD_MESSAGES`):
//! - `mt2`: publish → one handler, multi-thread runtime with 2 workers, against a
//!   tokio mpsc channel bounded at 1024 between two tasks;
//! - `current`: the same on a current-thread runtime;
//! - `fanout4_mt2`: publish → 4 groups, 2 workers, against a tokio broadcast
//!   channel with 4 receiving tasks.
//!
//! `SPREAD_RUNS` processes per scenario (default 10), `SPREAD_SCENARIOS`
//! picks some (comma-separated), `SPREAD_PARTITIONS` sets the broker's
//! partitions per topic (default: the broker's default). Each line also gives the process's CPU
//! time per message of each side and the runtime's parks and unparks per
//! message; built with `RUSTFLAGS="--cfg tokio_unstable"` it adds tokio's
//! unstable worker metrics (steals, polls, wake-ups scheduled locally and
//! from outside the runtime).

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Counter, MakeEvent};
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, mpsc};
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::Bus;

const CHILD_ENV: &str = "TOPICBUS_SPREAD_CHILD";
const CAPACITY: usize = 1024;
const GROUPS: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Mt2,
    Current,
    Fanout4Mt2,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Mt2, Scenario::Current, Scenario::Fanout4Mt2];

    fn name(self) -> &'static str {
        match self {
            Scenario::Mt2 => "mt2",
            Scenario::Current => "current",
            Scenario::Fanout4Mt2 => "fanout4_mt2",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The targets: topicbus's throughput over the baseline's.
    fn target(self) -> f64 {
        match self {
            Scenario::Mt2 => 0.4,
            Scenario::Current => 0.3,
            Scenario::Fanout4Mt2 => 0.5,
        }
    }

    fn baseline(self) -> &'static str {
        match self {
            Scenario::Mt2 | Scenario::Current => "tokio mpsc(1024)",
            Scenario::Fanout4Mt2 => "tokio broadcast(1024), 4 receivers",
        }
    }

    fn runtime(self) -> Runtime {
        let mut builder = match self {
            Scenario::Mt2 | Scenario::Fanout4Mt2 => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
            Scenario::Current => tokio::runtime::Builder::new_current_thread(),
        };
        builder.enable_all().build().expect("runtime")
    }

    /// Deliveries per published message.
    fn deliveries(self) -> usize {
        match self {
            Scenario::Fanout4Mt2 => GROUPS,
            Scenario::Mt2 | Scenario::Current => 1,
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
    }
}

// ---- the child: one scenario, topicbus and the baseline, in this process ----

/// CPU time of this process so far (all threads), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, in clock ticks.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => Duration::from_millis((u + s) * 10),
        _ => Duration::ZERO,
    }
}

/// Peak resident memory of this process in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runtime counters summed over the workers.
#[derive(Default, Clone, Copy)]
struct Counters {
    parks: u64,
    unparks: u64,
    #[cfg(tokio_unstable)]
    steals: u64,
    #[cfg(tokio_unstable)]
    polls: u64,
    #[cfg(tokio_unstable)]
    local_schedules: u64,
    #[cfg(tokio_unstable)]
    remote_schedules: u64,
}

impl Counters {
    fn read(rt: &Runtime) -> Self {
        let m = rt.metrics();
        let mut c = Counters::default();
        for w in 0..m.num_workers() {
            c.parks += m.worker_park_count(w);
            c.unparks += m.worker_park_unpark_count(w);
            #[cfg(tokio_unstable)]
            {
                c.steals += m.worker_steal_count(w);
                c.polls += m.worker_poll_count(w);
                c.local_schedules += m.worker_local_schedule_count(w);
            }
        }
        #[cfg(tokio_unstable)]
        {
            c.remote_schedules = m.remote_schedule_count();
        }
        c
    }

    /// The counts since `before`, per message, as printed.
    fn per_message(self, before: Self, n: usize) -> String {
        let per = |a: u64, b: u64| (a - b) as f64 / n as f64;
        #[allow(unused_mut)]
        let mut s = format!(
            "parks/msg={:.3} unparks/msg={:.3}",
            per(self.parks, before.parks),
            per(self.unparks, before.unparks)
        );
        #[cfg(tokio_unstable)]
        {
            s += &format!(
                " steals/msg={:.3} polls/msg={:.3} local_sched/msg={:.3} remote_sched/msg={:.3}",
                per(self.steals, before.steals),
                per(self.polls, before.polls),
                per(self.local_schedules, before.local_schedules),
                per(self.remote_schedules, before.remote_schedules)
            );
        }
        s
    }
}

/// One side's figures.
struct Side {
    elapsed: Duration,
    cpu: Duration,
    counters: String,
}

/// Times `round` (run as a task of `rt`), with its CPU time and counters.
fn measure(rt: &Runtime, n: usize, round: impl FnOnce() -> Duration) -> Side {
    let counters = Counters::read(rt);
    let cpu = cpu_time();
    let elapsed = round();
    Side {
        elapsed,
        cpu: cpu_time() - cpu,
        counters: Counters::read(rt).per_message(counters, n),
    }
}

async fn subscribe_counting(bus: &Bus, group: String, counter: &Arc<Counter>) {
    let c = Arc::clone(counter);
    bus.group(group)
        .subscribe(move |ev: common::Event| {
            black_box(&ev);
            c.hit();
            std::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe");
}

fn topicbus_side(scenario: Scenario, rt: &Runtime, n: usize) -> Side {
    let mut config = MemoryConfig::default();
    if std::env::var_os("SPREAD_PARTITIONS").is_some() {
        config = config.partitions(env_usize("SPREAD_PARTITIONS", 1));
    }
    let bus = Bus::builder()
        .service("bench")
        .memory(MemoryBroker::new(config))
        .build();
    let counter = Counter::new();
    rt.block_on(async {
        for g in 0..scenario.deliveries() {
            subscribe_counting(&bus, format!("bench.spread.g{g}"), &counter).await;
        }
    });
    let side = measure(rt, n, || {
        let (bus, counter) = (bus.clone(), Arc::clone(&counter));
        common::run_on(rt, async move {
            counter.arm(n * scenario.deliveries());
            let start = Instant::now();
            for i in 0..n {
                bus.publish(&common::Event::make(i as u64))
                    .await
                    .expect("publish");
            }
            counter.wait().await;
            start.elapsed()
        })
    });
    rt.block_on(bus.shutdown()).expect("shutdown");
    side
}

fn mpsc_side(rt: &Runtime, n: usize) -> Side {
    let (tx, mut rx) = mpsc::channel::<common::Event>(CAPACITY);
    let counter = Counter::new();
    let c = Arc::clone(&counter);
    rt.spawn(async move {
        while let Some(event) = rx.recv().await {
            black_box(&event);
            c.hit();
        }
    });
    measure(rt, n, || {
        common::run_on(rt, async move {
            counter.arm(n);
            let start = Instant::now();
            for i in 0..n {
                tx.send(common::Event::make(i as u64)).await.expect("send");
            }
            counter.wait().await;
            start.elapsed()
        })
    })
}

fn broadcast_side(rt: &Runtime, n: usize) -> Side {
    let (tx, _) = broadcast::channel::<common::Event>(CAPACITY);
    let counter = Counter::new();
    for _ in 0..GROUPS {
        let mut rx = tx.subscribe();
        let c = Arc::clone(&counter);
        rt.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        black_box(&event);
                        c.hit();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        panic!("broadcast receiver lagged by {n}")
                    }
                }
            }
        });
    }
    measure(rt, n, || {
        common::run_on(rt, async move {
            counter.arm(n * GROUPS);
            let start = Instant::now();
            for i in 0..n {
                // The bound the bus keeps: wait while the slowest receiver
                // is a channel's length behind.
                while tx.len() >= CAPACITY {
                    tokio::task::yield_now().await;
                }
                tx.send(common::Event::make(i as u64)).expect("send");
            }
            counter.wait().await;
            start.elapsed()
        })
    })
}

fn child(scenario: Scenario, n: usize, run: usize) {
    let rt = scenario.runtime();
    let baseline = |rt: &Runtime| match scenario {
        Scenario::Fanout4Mt2 => broadcast_side(rt, n),
        Scenario::Mt2 | Scenario::Current => mpsc_side(rt, n),
    };
    // Alternate which side goes first from run to run, so that neither
    // always gets the fresher process.
    let (topicbus, raw) = if run % 2 == 0 {
        let t = topicbus_side(scenario, &rt, n);
        (t, baseline(&rt))
    } else {
        let r = baseline(&rt);
        (topicbus_side(scenario, &rt, n), r)
    };
    let rate = |d: Duration| (n * scenario.deliveries()) as f64 / d.as_secs_f64();
    let cpu = |s: &Side| s.cpu.as_secs_f64() * 1e9 / (n * scenario.deliveries()) as f64;
    println!(
        "SPREAD {} {} {} {} {}",
        rate(topicbus.elapsed),
        rate(raw.elapsed),
        cpu(&topicbus),
        cpu(&raw),
        peak_rss_kib()
    );
    println!("COUNTERS topicbus {}", topicbus.counters);
    println!("COUNTERS raw {}", raw.counters);
}

// ---- the parent: N processes per scenario, then the spread ----

struct Run {
    topicbus: f64,
    raw: f64,
    topicbus_cpu_ns: f64,
    raw_cpu_ns: f64,
    rss_kib: u64,
    counters: Vec<String>,
}

impl Run {
    fn ratio(&self) -> f64 {
        self.topicbus / self.raw
    }
}

fn run_child(scenario: Scenario, n: usize, run: usize) -> Run {
    let exe = std::env::current_exe().expect("the bench's own path");
    let out = Command::new(exe)
        .env(CHILD_ENV, format!("{},{n},{run}", scenario.name()))
        .output()
        .expect("start a run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run {run} of {} failed: {}\n{stdout}{}",
        scenario.name(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SPREAD "))
        .unwrap_or_else(|| panic!("no SPREAD line from the run: {stdout}"));
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    Run {
        topicbus: v[0],
        raw: v[1],
        topicbus_cpu_ns: v[2],
        raw_cpu_ns: v[3],
        rss_kib: v[4] as u64,
        counters: stdout
            .lines()
            .filter_map(|l| l.strip_prefix("COUNTERS "))
            .map(str::to_owned)
            .collect(),
    }
}

fn min_median_max(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    (xs[0], median, xs[n - 1])
}

fn parent(runs: usize, n: usize, scenarios: &[Scenario]) {
    for &scenario in scenarios {
        println!(
            "== memory_spread/{}: {n} messages, {runs} processes, baseline {} ==",
            scenario.name(),
            scenario.baseline()
        );
        let results: Vec<Run> = (0..runs)
            .map(|run| {
                let r = run_child(scenario, n, run);
                println!(
                    "run {run:>2}: topicbus {:>6.3} M/s ({:>4.0} ns CPU/msg)  raw {:>6.3} M/s ({:>4.0} ns CPU/msg)  ratio {:.3}  peak RSS {:.1} MiB",
                    r.topicbus / 1e6,
                    r.topicbus_cpu_ns,
                    r.raw / 1e6,
                    r.raw_cpu_ns,
                    r.ratio(),
                    r.rss_kib as f64 / 1024.0
                );
                for c in &r.counters {
                    println!("        {c}");
                }
                r
            })
            .collect();
        let spread = |f: fn(&Run) -> f64| min_median_max(results.iter().map(f).collect());
        let line = |name: &str, (lo, mid, hi): (f64, f64, f64), scale: f64, unit: &str| {
            println!(
                "SPREAD {}/{name}: min {:.3} median {:.3} max {:.3}{unit}",
                scenario.name(),
                lo / scale,
                mid / scale,
                hi / scale
            );
        };
        line("topicbus", spread(|r| r.topicbus), 1e6, " M/s");
        line("raw", spread(|r| r.raw), 1e6, " M/s");
        line("ratio", spread(Run::ratio), 1.0, "x");
        let met = results
            .iter()
            .filter(|r| r.ratio() >= scenario.target())
            .count();
        println!(
            "SPREAD {}/target: {met} of {runs} runs at or above {}x raw\n",
            scenario.name(),
            scenario.target()
        );
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let parts: Vec<&str> = spec.split(',').collect();
        let scenario = Scenario::parse(parts[0]).expect("a known scenario");
        child(
            scenario,
            parts[1].parse().unwrap(),
            parts[2].parse().unwrap(),
        );
        return;
    }
    let scenarios: Vec<Scenario> = match std::env::var("SPREAD_SCENARIOS") {
        Err(_) => Scenario::ALL.to_vec(),
        Ok(list) => list
            .split(',')
            .map(|s| {
                Scenario::parse(s.trim()).unwrap_or_else(|| {
                    panic!("SPREAD_SCENARIOS: no scenario {s:?} (mt2, current, fanout4_mt2)")
                })
            })
            .collect(),
    };
    // Under `cargo test --benches` (no `--bench`): one small run each, to
    // prove that the bench works.
    if std::env::args().any(|a| a == "--bench") {
        parent(
            env_usize("SPREAD_RUNS", 10),
            env_usize("SPREAD_MESSAGES", 1_000_000),
            &scenarios,
        );
    } else {
        parent(1, 10_000, &scenarios);
    }
}
