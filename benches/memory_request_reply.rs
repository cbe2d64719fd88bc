//! Memory transport: sequential request/reply round-trip latency (one
//! request in flight at a time), against a raw tokio mpsc + oneshot round
//! trip (the request carries a `oneshot::Sender`, a server task answers).
//!
//! Target: topicbus <= 2x raw, on a 2-worker multi-thread runtime and on a
//! current-thread runtime.
//!
//! The requesting loop runs as a task of the runtime. On the multi-thread
//! runtime a second case (`mt2_client_on_bench_thread`) runs it in
//! `Runtime::block_on` on the bench thread instead, so every round trip
//! crosses threads twice (the cross-thread wake-up floor).
//!
//! Diagnostic (no target): the raw round trip with the reply wrapped in a
//! 30 s `tokio::time::timeout`, as `Bus::request` does, against the plain
//! raw round trip: what the per-request timer costs by itself.

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Flavor, Goal, MakeEvent, RpcReply, RpcRequest};
use criterion::{BenchmarkId, Criterion};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use topicbus::Bus;

/// Round trips per ratio-loop sample.
const TRIPS: usize = 2_000;
const CAPACITY: usize = 1024;

fn topicbus_rig(rt: &Runtime) -> Bus {
    let bus = Bus::builder().service("bench").build();
    rt.block_on(async {
        bus.group("bench.rpc")
            .serve(|req: RpcRequest| {
                std::future::ready(Ok::<_, Infallible>(RpcReply::answer(&req)))
            })
            .await
            .expect("serve");
    });
    bus
}

/// Where the requesting loop runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    /// A task of the runtime.
    Task,
    /// `Runtime::block_on` on the bench thread.
    BenchThread,
}

fn run<F>(rt: &Runtime, client: Client, fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match client {
        Client::Task => common::run_on(rt, fut),
        Client::BenchThread => rt.block_on(fut),
    }
}

/// `n` sequential requests; returns the total time.
fn topicbus_trips(rt: &Runtime, client: Client, bus: &Bus, n: usize) -> Duration {
    let bus = bus.clone();
    run(rt, client, async move {
        let start = Instant::now();
        for i in 0..n {
            let reply: RpcReply = bus
                .request(&RpcRequest::make(i as u64))
                .await
                .expect("request");
            black_box(reply);
        }
        start.elapsed()
    })
}

type RawRequest = (RpcRequest, oneshot::Sender<RpcReply>);

fn raw_rig(rt: &Runtime) -> mpsc::Sender<RawRequest> {
    let (tx, mut rx) = mpsc::channel::<RawRequest>(CAPACITY);
    rt.spawn(async move {
        while let Some((req, reply)) = rx.recv().await {
            let _ = reply.send(RpcReply::answer(&req));
        }
    });
    tx
}

fn raw_trips(rt: &Runtime, client: Client, tx: &mpsc::Sender<RawRequest>, n: usize) -> Duration {
    raw_trips_with(rt, client, tx, n, None)
}

/// The raw round trip, waiting for each reply under `timeout` if set.
fn raw_trips_with(
    rt: &Runtime,
    client: Client,
    tx: &mpsc::Sender<RawRequest>,
    n: usize,
    timeout: Option<Duration>,
) -> Duration {
    let tx = tx.clone();
    run(rt, client, async move {
        let start = Instant::now();
        for i in 0..n {
            let (reply_tx, reply_rx) = oneshot::channel();
            tx.send((RpcRequest::make(i as u64), reply_tx))
                .await
                .expect("send");
            let reply = match timeout {
                Some(limit) => tokio::time::timeout(limit, reply_rx)
                    .await
                    .expect("timed out"),
                None => reply_rx.await,
            };
            black_box(reply.expect("reply"));
        }
        start.elapsed()
    })
}

/// The cases: runtime flavor, where the client runs, and the case's name.
const CASES: [(Flavor, Client, &str); 3] = [
    (Flavor::Multi2, Client::Task, "mt2"),
    (
        Flavor::Multi2,
        Client::BenchThread,
        "mt2_client_on_bench_thread",
    ),
    (Flavor::Current, Client::Task, "current_thread"),
];

fn benches(c: &mut Criterion) {
    for (flavor, client, name) in CASES {
        let rt = flavor.runtime();
        let raw = raw_rig(&rt);
        let bus = topicbus_rig(&rt);
        let mut group = c.benchmark_group(format!("memory_request_reply/{name}"));
        group.bench_function(BenchmarkId::new("raw_mpsc_oneshot", "round_trip"), |b| {
            b.iter_custom(|iters| raw_trips(&rt, client, &raw, iters as usize));
        });
        group.bench_function(BenchmarkId::new("topicbus", "round_trip"), |b| {
            b.iter_custom(|iters| topicbus_trips(&rt, client, &bus, iters as usize));
        });
        group.finish();
        rt.block_on(bus.shutdown()).expect("shutdown");
    }
}

fn ratios() {
    let rounds = common::ratio_rounds();
    let mut results = Vec::new();
    for (flavor, client, name) in CASES {
        let rt = flavor.runtime();
        let raw = raw_rig(&rt);
        let bus = topicbus_rig(&rt);
        results.push(common::compare(
            &format!("memory_request_reply/{name}"),
            TRIPS as u64,
            Goal::TimeAtMost(2.0),
            rounds,
            || topicbus_trips(&rt, client, &bus, TRIPS),
            || raw_trips(&rt, client, &raw, TRIPS),
        ));
        results.push(common::compare(
            &format!("memory_request_reply/{name}/diag_raw_with_30s_timeout_vs_raw"),
            TRIPS as u64,
            Goal::Info,
            rounds,
            || raw_trips_with(&rt, client, &raw, TRIPS, Some(Duration::from_secs(30))),
            || raw_trips(&rt, client, &raw, TRIPS),
        ));
        rt.block_on(bus.shutdown()).expect("shutdown");
    }
    common::summary(&results);
}

fn main() {
    common::run(benches, ratios);
}
