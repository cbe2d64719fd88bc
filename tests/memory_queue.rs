//! The memory transport's bounded queues, through the public API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::{Bus, Context};

#[derive(Debug, Clone, Serialize, Deserialize, topicbus::Topic)]
#[topic(name = "memory.queue.job", partitions = 1)]
struct Job {
    n: u64,
}

const CAPACITY: u64 = 8;

/// A handler may publish into its own partition while the queue is full of
/// messages its run already took: each message handed out to the run makes
/// room for one, also before the run's batch of them is given back.
#[tokio::test]
async fn a_handler_publishes_into_its_own_full_partition_as_many_as_were_handed_out() {
    let broker = MemoryBroker::new(
        MemoryConfig::default()
            .queue_capacity(CAPACITY as usize)
            // Long enough for any machine; a publish that never finds room
            // fails with a timeout instead of hanging the test.
            .publish_timeout(Duration::from_secs(5)),
    );
    let bus = Bus::builder().service("queue").memory(broker).build();
    let published = Arc::new(Mutex::new(Vec::new()));
    let (handled, mut handled_rx) = mpsc::unbounded_channel();
    {
        let published = Arc::clone(&published);
        bus.group("memory.queue.workers")
            .subscribe(move |job: Job, cx: Context| {
                let published = Arc::clone(&published);
                let handled = handled.clone();
                async move {
                    // The fourth message of the first run: four were handed
                    // out, so four more fit.
                    if job.n == 3 {
                        for child in 0..4 {
                            let bus = cx.bus().expect("open");
                            let result = bus.publish(&Job { n: 100 + child }).await;
                            published.lock().unwrap().push(result.map(|_| ()));
                        }
                    }
                    handled.send(job.n).expect("test waits");
                    Ok::<_, String>(())
                }
            })
            .await
            .expect("subscribe");
    }
    for n in 0..CAPACITY {
        bus.publish(&Job { n }).await.expect("publish");
    }
    // The first eight are handled whether or not the handler's publishes
    // found room (one that found none failed with a timeout).
    let mut seen = Vec::new();
    while seen.iter().filter(|&&n| n < CAPACITY).count() < CAPACITY as usize {
        seen.push(handled_rx.recv().await.expect("handler alive"));
    }
    {
        let published = published.lock().unwrap();
        assert_eq!(published.len(), 4);
        for result in published.iter() {
            assert!(result.is_ok(), "the handler's publish failed: {result:?}");
        }
    }
    while seen.len() < CAPACITY as usize + 4 {
        seen.push(handled_rx.recv().await.expect("handler alive"));
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 102, 103]);
    bus.shutdown().await.expect("shutdown");
}

#[derive(Debug, Clone, Serialize, Deserialize, topicbus::Topic)]
#[topic(name = "memory.queue.fanout", partitions = 1)]
struct Fanned {
    n: u64,
}

/// A publish to several groups wakes the first waiting partition task,
/// which passes the wake on to the next: a group whose handler is stuck
/// does not hold back the groups after it, for the message it holds nor
/// for the ones after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_group_does_not_hold_back_the_groups_after_it() {
    let bus = Bus::builder()
        .service("fanout")
        .memory(MemoryBroker::default())
        .build();
    let (unstick, stuck) = tokio::sync::watch::channel(false);
    let (handled, mut handled_rx) = mpsc::unbounded_channel();
    for g in 0..4 {
        let handled = handled.clone();
        let stuck = stuck.clone();
        bus.group(format!("memory.queue.fanout.g{g}"))
            .subscribe(move |m: Fanned| {
                let handled = handled.clone();
                let mut stuck = stuck.clone();
                async move {
                    if g == 0 {
                        stuck.wait_for(|free| *free).await.expect("test alive");
                    }
                    handled.send((g, m.n)).expect("test waits");
                    Ok::<_, String>(())
                }
            })
            .await
            .expect("subscribe");
    }
    let mut seen = Vec::new();
    for n in 0..3 {
        bus.publish(&Fanned { n }).await.expect("publish");
        // Groups 1 to 3 handle each message while group 0 is stuck on the
        // first.
        let guard = Duration::from_secs(60);
        while seen.len() < 3 * (n as usize + 1) {
            let next = tokio::time::timeout(guard, handled_rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("message {n} never reached the groups after the stuck one: {seen:?}")
                });
            seen.push(next.expect("handlers alive"));
        }
    }
    unstick.send(true).expect("handlers alive");
    while seen.len() < 12 {
        seen.push(handled_rx.recv().await.expect("handlers alive"));
    }
    seen.sort_unstable();
    let expected: Vec<(u64, u64)> = (0..4).flat_map(|g| (0..3).map(move |n| (g, n))).collect();
    assert_eq!(seen, expected);
    bus.shutdown().await.expect("shutdown");
}
