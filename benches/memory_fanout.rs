//! Memory transport: fan-out of a ~100-byte struct to 4 consumer groups
//! (4 subscriptions with distinct `.group(..)`), against a tokio broadcast
//! channel (capacity 1024) with 4 receiver tasks. A round publishes N
//! messages and ends when all 4 consumers saw all of them.
//!
//! tokio's broadcast never makes a sender wait: a receiver that falls more
//! than the capacity behind loses messages (`Lagged`). The baseline producer
//! therefore yields while the channel is full (`Sender::len`), which is the
//! cheapest backpressure available, and a lagging receiver panics the bench.
//!
//! Target: topicbus >= 0.5x the raw throughput.

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Counter, Flavor, Goal, MakeEvent};
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use tokio::sync::broadcast;
use topicbus::{Bus, Topic};

const N: usize = 10_000;
const GROUPS: usize = 4;
const CAPACITY: usize = 1024;

#[derive(Clone)]
struct TopicbusRig {
    bus: Bus,
    counter: Arc<Counter>,
    single_partition: bool,
}

async fn subscribe_groups<T: Topic>(bus: &Bus, counter: &Arc<Counter>) {
    for g in 0..GROUPS {
        let c = Arc::clone(counter);
        bus.group(format!("bench.fanout.g{g}"))
            .subscribe(move |ev: T| {
                black_box(&ev);
                c.hit();
                std::future::ready(Ok::<(), Infallible>(()))
            })
            .await
            .expect("subscribe");
    }
}

impl TopicbusRig {
    fn new(rt: &Runtime, single_partition: bool) -> Self {
        let bus = Bus::builder().service("bench").build();
        let counter = Counter::new();
        rt.block_on(async {
            if single_partition {
                subscribe_groups::<common::EventP1>(&bus, &counter).await;
            } else {
                subscribe_groups::<common::Event>(&bus, &counter).await;
            }
        });
        Self {
            bus,
            counter,
            single_partition,
        }
    }

    fn round(&self, rt: &Runtime, n: usize) -> Duration {
        let rig = self.clone();
        common::run_on(rt, async move {
            if rig.single_partition {
                rig.publish_all::<common::EventP1>(n).await
            } else {
                rig.publish_all::<common::Event>(n).await
            }
        })
    }

    async fn publish_all<T: Topic + MakeEvent>(&self, n: usize) -> Duration {
        self.counter.arm(n * GROUPS);
        let start = Instant::now();
        for i in 0..n {
            self.bus.publish(&T::make(i as u64)).await.expect("publish");
        }
        self.counter.wait().await;
        start.elapsed()
    }

    fn shutdown(self, rt: &Runtime) {
        rt.block_on(self.bus.shutdown()).expect("shutdown");
    }
}

#[derive(Clone)]
struct RawRig {
    tx: broadcast::Sender<common::Event>,
    counter: Arc<Counter>,
}

impl RawRig {
    fn new(rt: &Runtime) -> Self {
        let (tx, _) = broadcast::channel::<common::Event>(CAPACITY);
        let counter = Counter::new();
        for _ in 0..GROUPS {
            let mut rx = tx.subscribe();
            let c = Arc::clone(&counter);
            rt.spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(ev) => {
                            black_box(&ev);
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
        Self { tx, counter }
    }

    fn round(&self, rt: &Runtime, n: usize) -> Duration {
        let rig = self.clone();
        common::run_on(rt, async move {
            rig.counter.arm(n * GROUPS);
            let start = Instant::now();
            for i in 0..n {
                while rig.tx.len() >= CAPACITY {
                    tokio::task::yield_now().await;
                }
                rig.tx.send(common::Event::make(i as u64)).expect("send");
            }
            rig.counter.wait().await;
            start.elapsed()
        })
    }
}

fn sum_rounds(iters: u64, mut round: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| round()).sum()
}

const VARIANTS: [(&str, bool); 2] = [("topicbus_p8", false), ("topicbus_p1", true)];

fn benches(c: &mut Criterion) {
    for flavor in Flavor::ALL {
        let rt = flavor.runtime();
        let raw = RawRig::new(&rt);
        let rigs: Vec<(&str, TopicbusRig)> = VARIANTS
            .iter()
            .map(|&(name, p1)| (name, TopicbusRig::new(&rt, p1)))
            .collect();
        let mut group = c.benchmark_group(format!("memory_fanout/{}", flavor.name()));
        group.throughput(Throughput::Elements(N as u64));
        group.bench_function(BenchmarkId::new("raw_broadcast", N), |b| {
            b.iter_custom(|iters| sum_rounds(iters, || raw.round(&rt, N)));
        });
        for (name, rig) in &rigs {
            group.bench_function(BenchmarkId::new(*name, N), |b| {
                b.iter_custom(|iters| sum_rounds(iters, || rig.round(&rt, N)));
            });
        }
        group.finish();
        for (_, rig) in rigs {
            rig.shutdown(&rt);
        }
    }
}

fn ratios() {
    let rounds = common::ratio_rounds();
    let mut results = Vec::new();
    for flavor in Flavor::ALL {
        let rt = flavor.runtime();
        let raw = RawRig::new(&rt);
        for (name, p1) in VARIANTS {
            let rig = TopicbusRig::new(&rt, p1);
            results.push(common::compare(
                &format!("memory_fanout/{}/{name}", flavor.name()),
                N as u64,
                Goal::ThroughputAtLeast(0.5),
                rounds,
                || rig.round(&rt, N),
                || raw.round(&rt, N),
            ));
            rig.shutdown(&rt);
        }
    }
    common::summary(&results);
}

fn main() {
    common::run(benches, ratios);
}
