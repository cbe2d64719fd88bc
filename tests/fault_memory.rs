//! Counting fault test on the memory transport: one of three members of a
//! group shuts down gracefully while numbered messages flow. Prints
//! `fault <case>: sent=.. acknowledged=.. received=.. lost=.. duplicated=..`.

#[path = "support/fault.rs"]
mod fault;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::{Bus, Topic};

use fault::{guard, Figures, Tally};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "fault.memory.work", key = key, partitions = 6)]
struct Work {
    key: String,
    seq: u64,
}

/// Case 4 on memory: a member leaves with `Bus::shutdown` mid-stream;
/// nothing is lost and nothing is handled twice. Every payload takes its
/// codec round-trip, as on a network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_memory_graceful_shutdown_of_one_of_three_members() {
    const TOTAL: u64 = 100_000;
    let broker = MemoryBroker::new(MemoryConfig::default().force_codec(true));
    let tally = Tally::new();
    let mut members = Vec::new();
    for _ in 0..3 {
        let member = Bus::builder()
            .service("fault-member")
            .memory(broker.clone())
            .build();
        let sink = Arc::clone(&tally);
        member
            .group("fault.leave.group")
            .subscribe(move |work: Work| {
                sink.record(work.seq);
                async { Ok::<_, String>(()) }
            })
            .await
            .expect("subscribe");
        members.push(member);
    }
    let publisher = Bus::builder()
        .service("fault-publisher")
        .memory(broker.clone())
        .build();
    let publishing = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut acknowledged = BTreeSet::new();
            for first in (0..TOTAL).step_by(1000) {
                let batch: Vec<Work> = (first..first + 1000)
                    .map(|seq| Work {
                        key: format!("k{}", seq % 64),
                        seq,
                    })
                    .collect();
                if publisher.publish_batch(&batch).await.is_ok() {
                    acknowledged.extend(first..first + 1000);
                }
                tokio::task::yield_now().await;
            }
            acknowledged
        })
    };
    guard("a third handled", async {
        while tally.distinct() < (TOTAL / 3) as usize {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    guard("graceful leave", members.remove(0).shutdown())
        .await
        .expect("graceful leave");
    let acknowledged = guard("publishing", publishing).await.expect("publisher");
    // The memory transport acknowledges a publish once every group queued
    // it; the remaining members then handle it.
    tally.wait_for_all(0..TOTAL, "every message").await;
    let figures = Figures::count(TOTAL as usize, &acknowledged, &tally.snapshot());
    figures.print("graceful_shutdown_memory", "members=3 partitions=6");
    figures.assert_nothing_lost("graceful_shutdown_memory");
    assert_eq!(figures.acknowledged, TOTAL as usize);
    for member in &members {
        member.shutdown().await.expect("shutdown");
    }
    // Every remaining member drained its queues: a late copy would be
    // counted now.
    let figures = Figures::count(TOTAL as usize, &acknowledged, &tally.snapshot());
    assert_eq!(figures.duplicated, 0, "messages handled twice");
    publisher.shutdown().await.expect("shutdown");
}
