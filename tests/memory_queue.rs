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
