//! The layers topicbus ships (`topicbus::middleware`), on every transport:
//! they see deliveries as the transport makes them, redeliveries included.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::middleware::{CircuitBreakerLayer, DedupLayer, ThrottleLayer};
use topicbus::{Context, Headers, MessageId, Topic};

use crate::harness::{eventually, guard, Harness, Log, Net, Setup};

/// Every message of a case has one key: one partition, handled in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.middleware.step", key = run)]
pub struct Step {
    run: String,
    n: u64,
}

/// `DedupLayer::new(3)` skips an id handled among the last three handled
/// ids, and handles again one that has left the window; a skipped delivery
/// counts as handled (nothing is retried or dead-lettered).
pub async fn dedup_layer_skips_ids_handled_in_its_window<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("dedup-sink").await;
    let seen: Arc<Log<String>> = Log::new();
    let dedup = DedupLayer::new(3);
    let seen_in = Arc::clone(&seen);
    consumer
        .group(net.group("middleware.dedup"))
        .subscribe(move |_: Step, ctx: Context| {
            seen_in.push(ctx.id().to_string());
            async { Ok::<(), Infallible>(()) }
        })
        .layer(dedup.clone())
        .await
        .expect("subscribe");

    let publisher = net.bus("dedup-source").await;
    let run = format!("dedup-{}", crate::harness::unique());
    let ids = ["a", "b", "a", "c", "b", "d", "e", "a"];
    for (n, id) in ids.into_iter().enumerate() {
        let step = Step {
            run: run.clone(),
            n: n as u64,
        };
        guard(
            "publish_with_id",
            publisher.publish_with_id(&step, MessageId::parse(id), Headers::new()),
        )
        .await
        .expect("publish");
    }
    // The window holds a, b, c when the second `b` comes (skipped); `d`
    // pushes `a` out, so the last `a` is handled again.
    let expected = ["a", "b", "c", "d", "e", "a"];
    let got = seen.wait_for(expected.len(), "the handled messages").await;
    eventually("both repeats skipped", || dedup.skipped() == 2).await;
    net.close().await;
    assert_eq!(got, expected, "ids handled, in order");
    assert_eq!(
        seen.snapshot().len(),
        expected.len(),
        "nothing more handled"
    );
}

/// `ThrottleLayer::per_second(50)` spaces handler calls: 15 calls take at
/// least 13 intervals of 20 ms from the first to the last (a lower bound
/// the layer enforces; a slow machine only spreads them more).
pub async fn throttle_layer_spaces_handler_calls<H: Harness>(harness: H) {
    const N: usize = 15;
    const INTERVAL: Duration = Duration::from_millis(20);
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("throttle-sink").await;
    let started: Arc<Log<tokio::time::Instant>> = Log::new();
    let started_in = Arc::clone(&started);
    consumer
        .group(net.group("middleware.throttle"))
        .subscribe(move |_: Step| {
            started_in.push(tokio::time::Instant::now());
            async { Ok::<(), Infallible>(()) }
        })
        .concurrency(4)
        .layer(ThrottleLayer::per_second(50))
        .await
        .expect("subscribe");

    let publisher = net.bus("throttle-source").await;
    let run = format!("throttle-{}", crate::harness::unique());
    let steps: Vec<Step> = (0..N as u64)
        .map(|n| Step {
            run: run.clone(),
            n,
        })
        .collect();
    guard("publish_batch", publisher.publish_batch(&steps))
        .await
        .expect("publish");
    let times = started.wait_for(N, "every call").await;
    net.close().await;
    let span = times[N - 1].duration_since(times[0]);
    assert!(
        span >= INTERVAL * (N as u32 - 2),
        "{N} calls at 50 a second took {span:?} from first to last"
    );
}

/// `CircuitBreakerLayer::new(3, 2 s)`: three failures in a row open it;
/// the message being retried then waits instead of using up its retries,
/// and once the dependency is back every message is handled once, none
/// dead-lettered, with exactly the three failed calls.
pub async fn circuit_breaker_pauses_calls_while_the_dependency_fails<H: Harness>(harness: H) {
    const N: u64 = 5;
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("breaker-sink").await;
    let down = Arc::new(AtomicBool::new(true));
    let failed = Arc::new(AtomicU64::new(0));
    let handled: Arc<Log<u64>> = Log::new();
    let breaker = CircuitBreakerLayer::new(3, Duration::from_secs(2));
    let (down_in, failed_in, handled_in) =
        (Arc::clone(&down), Arc::clone(&failed), Arc::clone(&handled));
    consumer
        .group(net.group("middleware.breaker"))
        .subscribe(move |step: Step| {
            let result = if down_in.load(Ordering::SeqCst) {
                failed_in.fetch_add(1, Ordering::SeqCst);
                Err("the database is down")
            } else {
                handled_in.push(step.n);
                Ok(())
            };
            async move { result }
        })
        .layer(breaker.clone())
        .await
        .expect("subscribe");

    let publisher = net.bus("breaker-source").await;
    let run = format!("breaker-{}", crate::harness::unique());
    for n in 0..N {
        guard(
            "publish",
            publisher.publish(&Step {
                run: run.clone(),
                n,
            }),
        )
        .await
        .expect("publish");
    }
    eventually("the breaker opens", || breaker.times_opened() == 1).await;
    assert_eq!(
        failed.load(Ordering::SeqCst),
        3,
        "calls made before the breaker opened"
    );
    down.store(false, Ordering::SeqCst);

    let mut got = handled.wait_for(N as usize, "every message handled").await;
    net.close().await;
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "each handled once");
    assert_eq!(failed.load(Ordering::SeqCst), 3, "no call while open");
    assert_eq!(breaker.times_opened(), 1, "the probe closed it");
}
