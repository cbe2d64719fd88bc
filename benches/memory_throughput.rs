//! Memory transport: publish-to-handler throughput of a ~100-byte struct,
//! against a raw bounded tokio mpsc between two tasks of the same runtime.
//!
//! Variants: default bus (8 partitions, 3 retries), `retries(0)`, a topic
//! with `partitions = 1`, and both; on a 2-worker multi-thread runtime and
//! on a current-thread runtime. Target: topicbus >= 0.5x raw throughput.
//!
//! Diagnostics (no target): `diag_floor_vs_raw` times [`floor_rig`], the raw
//! channel plus the copies, allocation, id and timestamp this API makes
//! inherent to a message; `diag_topicbus_p8_default_vs_floor` times
//! topicbus against that floor; `diag_floor_{owned_publish,lazy_id_and_time,
//! borrowed_payload}_vs_floor` time the floor without the publish copy,
//! without the id and timestamp, or without the handler's copy, against the
//! whole floor: what each of those contract changes would save.

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{Counter, Flavor, Goal, MakeEvent};
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use topicbus::{Bus, Topic};

/// Messages per measured round.
const N: usize = 10_000;
/// The memory transport's default queue capacity per partition and group.
const CAPACITY: usize = 1024;

/// One topicbus configuration under test.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    single_partition: bool,
    retries: Option<u32>,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "topicbus_p8_default",
        single_partition: false,
        retries: None,
    },
    Variant {
        name: "topicbus_p8_retries0",
        single_partition: false,
        retries: Some(0),
    },
    Variant {
        name: "topicbus_p1_default",
        single_partition: true,
        retries: None,
    },
    Variant {
        name: "topicbus_p1_retries0",
        single_partition: true,
        retries: Some(0),
    },
];

/// A bus with one counting subscription, ready to publish `T`.
#[derive(Clone)]
struct TopicbusRig {
    bus: Bus,
    counter: Arc<Counter>,
    single_partition: bool,
}

async fn subscribe_counting<T: Topic + MakeEvent>(bus: &Bus, counter: &Arc<Counter>) {
    let c = Arc::clone(counter);
    bus.group("bench.count")
        .subscribe(move |ev: T| {
            black_box(&ev);
            c.hit();
            std::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe");
}

impl TopicbusRig {
    fn new(rt: &Runtime, variant: Variant) -> Self {
        let builder = Bus::builder().service("bench");
        let builder = match variant.retries {
            Some(r) => builder.retries(r),
            None => builder,
        };
        let bus = builder.build();
        let counter = Counter::new();
        rt.block_on(async {
            if variant.single_partition {
                subscribe_counting::<common::EventP1>(&bus, &counter).await;
            } else {
                subscribe_counting::<common::Event>(&bus, &counter).await;
            }
        });
        Self {
            bus,
            counter,
            single_partition: variant.single_partition,
        }
    }

    /// Publishes `n` messages and waits until the handler saw them all.
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
        self.counter.arm(n);
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

/// A bounded tokio mpsc between a producer task that sends `make(i)` and a
/// consumer task that passes each item to a `take` closure. Generic over
/// `make` (and `take`, in `new`), so that both are inlined as in a plain loop.
struct ChannelRig<M, F> {
    tx: mpsc::Sender<M>,
    counter: Arc<Counter>,
    make: F,
}

impl<M, F: Clone> Clone for ChannelRig<M, F> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            counter: Arc::clone(&self.counter),
            make: self.make.clone(),
        }
    }
}

impl<M, F> ChannelRig<M, F>
where
    M: Send + 'static,
    F: Fn(u64) -> M + Clone + Send + Sync + 'static,
{
    fn new(rt: &Runtime, make: F, take: impl Fn(M) + Send + 'static) -> Self {
        let (tx, mut rx) = mpsc::channel::<M>(CAPACITY);
        let counter = Counter::new();
        let c = Arc::clone(&counter);
        rt.spawn(async move {
            while let Some(item) = rx.recv().await {
                take(item);
                c.hit();
            }
        });
        Self { tx, counter, make }
    }

    fn round(&self, rt: &Runtime, n: usize) -> Duration {
        let rig = self.clone();
        common::run_on(rt, async move {
            rig.counter.arm(n);
            let start = Instant::now();
            for i in 0..n {
                rig.tx.send((rig.make)(i as u64)).await.expect("send");
            }
            rig.counter.wait().await;
            start.elapsed()
        })
    }
}

/// The baseline: the ~100-byte struct itself through the channel.
fn raw_rig(rt: &Runtime) -> ChannelRig<common::Event, impl Fn(u64) -> common::Event + Clone> {
    ChannelRig::new(rt, common::Event::make, |event| {
        black_box(&event);
    })
}

/// A diagnostic baseline: the raw channel plus the work this API makes
/// inherent to every message, whatever the bus. `publish(&T)` borrows, so
/// the bus copies the value; the copy travels in a shared allocation with
/// an id and a timestamp; the handler takes its own copy, because the
/// message is kept for retries and the dead-letter topic. The rest of the
/// distance from topicbus to this floor is the bus itself (routing,
/// partitions, groups, backpressure, acknowledgement, slots, metrics).
///
/// `without` leaves one of those out, to time what a contract change that
/// drops it would save.
fn floor_rig(
    rt: &Runtime,
    without: Option<Inherent>,
) -> ChannelRig<Arc<Carried>, impl Fn(u64) -> Arc<Carried> + Clone> {
    ChannelRig::new(
        rt,
        move |i| {
            let event = common::Event::make(i);
            let (id, time) = if without == Some(Inherent::IdAndTime) {
                (uuid::Uuid::nil(), SystemTime::UNIX_EPOCH)
            } else {
                (uuid::Uuid::new_v4(), SystemTime::now())
            };
            let value = if without == Some(Inherent::PublishCopy) {
                event
            } else {
                let copy = event.clone();
                drop(event);
                copy
            };
            Arc::new(Carried { id, time, value })
        },
        move |carried| {
            if without == Some(Inherent::HandlerCopy) {
                black_box((&carried.value, carried.id, carried.time));
            } else {
                let value = carried.value.clone();
                black_box((&value, carried.id, carried.time));
            }
        },
    )
}

/// Per-message work of [`floor_rig`] that a contract change could drop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inherent {
    /// An owned `publish(T)` would move the value instead of copying it.
    PublishCopy,
    /// Ids and timestamps made only when read.
    IdAndTime,
    /// Handlers that borrow the payload instead of owning a copy.
    HandlerCopy,
}

impl Inherent {
    const ALL: [Inherent; 3] = [
        Inherent::PublishCopy,
        Inherent::IdAndTime,
        Inherent::HandlerCopy,
    ];

    fn name(self) -> &'static str {
        match self {
            Inherent::PublishCopy => "owned_publish",
            Inherent::IdAndTime => "lazy_id_and_time",
            Inherent::HandlerCopy => "borrowed_payload",
        }
    }
}

/// A message as [`floor_rig`] carries it.
struct Carried {
    id: uuid::Uuid,
    time: SystemTime,
    value: common::Event,
}

fn sum_rounds(iters: u64, mut round: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| round()).sum()
}

fn benches(c: &mut Criterion) {
    for flavor in Flavor::ALL {
        let rt = flavor.runtime();
        let raw = raw_rig(&rt);
        let rigs: Vec<(Variant, TopicbusRig)> = VARIANTS
            .iter()
            .map(|&v| (v, TopicbusRig::new(&rt, v)))
            .collect();

        let mut group = c.benchmark_group(format!("memory_throughput/{}", flavor.name()));
        group.throughput(Throughput::Elements(N as u64));
        group.bench_function(BenchmarkId::new("raw_mpsc", N), |b| {
            b.iter_custom(|iters| sum_rounds(iters, || raw.round(&rt, N)));
        });
        for (variant, rig) in &rigs {
            group.bench_function(BenchmarkId::new(variant.name, N), |b| {
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
        let raw = raw_rig(&rt);
        let floor = floor_rig(&rt, None);
        results.push(common::compare(
            &format!("memory_throughput/{}/diag_floor_vs_raw", flavor.name()),
            N as u64,
            Goal::Info,
            rounds,
            || floor.round(&rt, N),
            || raw.round(&rt, N),
        ));
        for without in Inherent::ALL {
            let lighter = floor_rig(&rt, Some(without));
            results.push(common::compare(
                &format!(
                    "memory_throughput/{}/diag_floor_{}_vs_floor",
                    flavor.name(),
                    without.name()
                ),
                N as u64,
                Goal::Info,
                rounds,
                || lighter.round(&rt, N),
                || floor.round(&rt, N),
            ));
        }
        let rig = TopicbusRig::new(&rt, VARIANTS[0]);
        results.push(common::compare(
            &format!(
                "memory_throughput/{}/diag_{}_vs_floor",
                flavor.name(),
                VARIANTS[0].name
            ),
            N as u64,
            Goal::Info,
            rounds,
            || rig.round(&rt, N),
            || floor.round(&rt, N),
        ));
        rig.shutdown(&rt);
        for variant in VARIANTS {
            let rig = TopicbusRig::new(&rt, variant);
            results.push(common::compare(
                &format!("memory_throughput/{}/{}", flavor.name(), variant.name),
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
