//! Not a timing bench: counts heap allocations per message (with a counting
//! global allocator) for the scenarios of the other benches, on a
//! current-thread runtime, to show where topicbus spends beyond the raw
//! channel. Run with `cargo bench --bench alloc_count`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{Counter, Event, EventP1, MakeEvent, RpcReply, RpcRequest};
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, mpsc, oneshot};
use topicbus::codec::{Bincode, Codec, Json, Postcard};
use topicbus::{Bus, Topic};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Allocations by exact size (sizes of 4096 bytes and more share the last slot).
static SIZES: [AtomicU64; 4097] = [const { AtomicU64::new(0) }; 4097];

fn record(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
    SIZES[size.min(4096)].fetch_add(1, Ordering::Relaxed);
}

fn sizes() -> Vec<u64> {
    SIZES.iter().map(|c| c.load(Ordering::SeqCst)).collect()
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: u64 = 10_000;

/// Allocations and bytes per unit of the work `f` does (`units` units),
/// with the sizes allocated at least once per ten units.
fn per_unit(name: &str, units: u64, f: impl FnOnce()) {
    let s0 = sizes();
    let (a0, b0) = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
    f();
    let (a1, b1) = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
    let s1 = sizes();
    let common: Vec<String> = s0
        .iter()
        .zip(&s1)
        .enumerate()
        .filter(|(_, (a, b))| (*b - *a) * 10 >= units)
        .map(|(size, (a, b))| format!("{size}B x{:.2}", (b - a) as f64 / units as f64))
        .collect();
    println!(
        "ALLOCS {name:<52} {:>6.2} allocs/unit {:>7.1} bytes/unit  sizes: {}",
        (a1 - a0) as f64 / units as f64,
        (b1 - b0) as f64 / units as f64,
        common.join(", ")
    );
}

fn counting_bus<T: Topic>(rt: &Runtime, retries: u32, groups: usize) -> (Bus, Arc<Counter>) {
    let bus = Bus::builder().service("bench").retries(retries).build();
    let counter = Counter::new();
    rt.block_on(async {
        for g in 0..groups {
            let c = Arc::clone(&counter);
            bus.group(format!("bench.g{g}"))
                .subscribe(move |ev: T| {
                    black_box(&ev);
                    c.hit();
                    std::future::ready(Ok::<(), Infallible>(()))
                })
                .await
                .expect("subscribe");
        }
    });
    (bus, counter)
}

fn publish_round<T: Topic + MakeEvent>(
    rt: &Runtime,
    bus: &Bus,
    counter: &Counter,
    n: u64,
    k: usize,
) {
    rt.block_on(async {
        counter.arm(n as usize * k);
        for i in 0..n {
            bus.publish(&T::make(i)).await.expect("publish");
        }
        if k > 0 {
            counter.wait().await;
        }
    });
}

fn main() {
    if !common::ratios_enabled() {
        return;
    }
    let rt = common::Flavor::Current.runtime();

    per_unit("baseline: Event::make (construct the struct)", N, || {
        for i in 0..N {
            black_box(Event::make(i));
        }
    });

    // Raw mpsc.
    {
        let (tx, mut rx) = mpsc::channel::<Event>(1024);
        let counter = Counter::new();
        let c = Arc::clone(&counter);
        rt.spawn(async move {
            while let Some(ev) = rx.recv().await {
                black_box(&ev);
                c.hit();
            }
        });
        let round = || {
            rt.block_on(async {
                counter.arm(N as usize);
                for i in 0..N {
                    tx.send(Event::make(i)).await.expect("send");
                }
                counter.wait().await;
            })
        };
        round();
        per_unit("raw mpsc: send + recv", N, round);
    }

    // topicbus publish with no subscriber (publish-side cost only).
    {
        let bus = Bus::builder().service("bench").build();
        let counter = Counter::new();
        publish_round::<Event>(&rt, &bus, &counter, N, 0);
        per_unit("topicbus: publish, no subscriber", N, || {
            publish_round::<Event>(&rt, &bus, &counter, N, 0)
        });
    }

    for (label, retries, p1) in [
        ("p8 retries=3", 3, false),
        ("p8 retries=0", 0, false),
        ("p1 retries=3", 3, true),
        ("p1 retries=0", 0, true),
    ] {
        if p1 {
            let (bus, counter) = counting_bus::<EventP1>(&rt, retries, 1);
            publish_round::<EventP1>(&rt, &bus, &counter, N, 1);
            per_unit(&format!("topicbus: publish + handler, {label}"), N, || {
                publish_round::<EventP1>(&rt, &bus, &counter, N, 1)
            });
        } else {
            let (bus, counter) = counting_bus::<Event>(&rt, retries, 1);
            publish_round::<Event>(&rt, &bus, &counter, N, 1);
            per_unit(&format!("topicbus: publish + handler, {label}"), N, || {
                publish_round::<Event>(&rt, &bus, &counter, N, 1)
            });
        }
    }

    // Fan-out to 4 groups.
    {
        let (tx, _) = broadcast::channel::<Event>(1024);
        let counter = Counter::new();
        for _ in 0..4 {
            let mut rx = tx.subscribe();
            let c = Arc::clone(&counter);
            rt.spawn(async move {
                while let Ok(ev) = rx.recv().await {
                    black_box(&ev);
                    c.hit();
                }
            });
        }
        let round = || {
            rt.block_on(async {
                counter.arm(N as usize * 4);
                for i in 0..N {
                    while tx.len() >= 1024 {
                        tokio::task::yield_now().await;
                    }
                    tx.send(Event::make(i)).expect("send");
                }
                counter.wait().await;
            })
        };
        round();
        per_unit("raw broadcast: 4 receivers (per published msg)", N, round);
        let (bus, counter) = counting_bus::<Event>(&rt, 3, 4);
        publish_round::<Event>(&rt, &bus, &counter, N, 4);
        per_unit(
            "topicbus: fan-out to 4 groups (per published msg)",
            N,
            || publish_round::<Event>(&rt, &bus, &counter, N, 4),
        );
    }

    // Request/reply.
    {
        let (tx, mut rx) = mpsc::channel::<(RpcRequest, oneshot::Sender<RpcReply>)>(1024);
        rt.spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let _ = reply.send(RpcReply::answer(&req));
            }
        });
        let trips = |n: u64| {
            rt.block_on(async {
                for i in 0..n {
                    let (rtx, rrx) = oneshot::channel();
                    tx.send((RpcRequest::make(i), rtx)).await.expect("send");
                    black_box(rrx.await.expect("reply"));
                }
            })
        };
        trips(100);
        per_unit("raw mpsc+oneshot: round trip", N, || trips(N));

        let bus = Bus::builder().service("bench").build();
        rt.block_on(async {
            bus.group("bench.rpc")
                .serve(|req: RpcRequest| {
                    std::future::ready(Ok::<_, Infallible>(RpcReply::answer(&req)))
                })
                .await
                .expect("serve");
        });
        let trips = |n: u64| {
            rt.block_on(async {
                for i in 0..n {
                    let reply: RpcReply = bus.request(&RpcRequest::make(i)).await.expect("request");
                    black_box(reply);
                }
            })
        };
        trips(100);
        per_unit("topicbus: request round trip", N, || trips(N));
    }

    // Codecs.
    let v = Event::make(1_234_567);
    per_unit("codec json encode (topicbus)", N, || {
        for _ in 0..N {
            black_box(Json::encode(black_box(&v)).expect("encode"));
        }
    });
    per_unit("codec json encode (serde_json::to_vec)", N, || {
        for _ in 0..N {
            black_box(serde_json::to_vec(black_box(&v)).expect("encode"));
        }
    });
    per_unit("codec bincode encode (topicbus)", N, || {
        for _ in 0..N {
            black_box(Bincode::encode(black_box(&v)).expect("encode"));
        }
    });
    per_unit("codec bincode encode (encode_to_vec)", N, || {
        for _ in 0..N {
            black_box(
                bincode::serde::encode_to_vec(black_box(&v), bincode::config::standard())
                    .expect("encode"),
            );
        }
    });
    per_unit("codec postcard encode (topicbus)", N, || {
        for _ in 0..N {
            black_box(Postcard::encode(black_box(&v)).expect("encode"));
        }
    });
    per_unit("codec postcard encode (to_allocvec)", N, || {
        for _ in 0..N {
            black_box(postcard::to_allocvec(black_box(&v)).expect("encode"));
        }
    });
}
