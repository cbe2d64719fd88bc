//! Order: messages with one key are handled in publish order within a group.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use topicbus::Topic;

use crate::harness::{guard, Harness, Log, Net, Setup};

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.order.sequenced", key = key)]
pub struct Sequenced {
    key: String,
    seq: u32,
}

/// (member, key, seq) of one handled message.
type Step = (usize, String, u32);

/// Same closure type for every instance: one default group.
fn orderer(
    member: usize,
    log: Arc<Log<Step>>,
) -> impl Fn(Sequenced) -> futures::future::BoxFuture<'static, Result<(), Infallible>>
       + Send
       + Sync
       + 'static {
    move |message: Sequenced| {
        let log = Arc::clone(&log);
        Box::pin(async move {
            // Give other messages a chance to overtake, were order not kept.
            tokio::task::yield_now().await;
            log.push((member, message.key, message.seq));
            tokio::task::yield_now().await;
            Ok(())
        })
    }
}

/// 16 keys published at once (each key in order, half of them with
/// `publish_batch`), 4 competing members of one group: each key's sequence
/// numbers are handled strictly increasing, each exactly once (where the
/// transport redelivers after a rebalance: each at least once, and a
/// redelivery starts again from an earlier message and keeps the order).
pub async fn per_key_order_holds_with_competing_members<H: Harness>(harness: H) {
    const KEYS: u32 = 16;
    const EACH: u32 = 50;
    let net = Net::new(&harness, Setup::default()).await;
    let log = Log::new();
    for (i, member) in net.buses("orderer", 4).await.iter().enumerate() {
        member
            .group(net.group("order.orderer"))
            .subscribe(orderer(i, Arc::clone(&log)))
            .await
            .expect("subscribe");
    }
    let publishers = net.buses("order-source", 2).await;

    let tasks: Vec<_> = (0..KEYS)
        .map(|k| {
            let bus = publishers[k as usize % publishers.len()].clone();
            tokio::spawn(async move {
                let key = format!("key-{k}");
                let messages: Vec<Sequenced> = (0..EACH)
                    .map(|seq| Sequenced {
                        key: key.clone(),
                        seq,
                    })
                    .collect();
                if k % 2 == 0 {
                    bus.publish_batch(&messages).await.expect("publish_batch");
                } else {
                    for message in &messages {
                        bus.publish(message).await.expect("publish");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        guard("a key's publisher", task)
            .await
            .expect("publisher task");
    }

    let total = (KEYS * EACH) as usize;
    // Kafka's mock cluster refuses commits while its group rebalances, and
    // a late rebalance round redelivers from the last commit: there, wait
    // for every message rather than for a count.
    let exactly_once = harness.commits_survive_rebalances();
    log.wait_until("all sequenced messages handled", |steps| {
        steps
            .iter()
            .map(|(_, key, seq)| (key, seq))
            .collect::<BTreeSet<_>>()
            .len()
            == total
    })
    .await;
    net.close().await;

    let steps = log.snapshot();
    if exactly_once {
        assert_eq!(steps.len(), total, "none duplicated");
    }
    let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut members: BTreeMap<usize, usize> = BTreeMap::new();
    for (member, key, seq) in steps {
        by_key.entry(key).or_default().push(seq);
        *members.entry(member).or_default() += 1;
    }
    assert_eq!(by_key.len(), KEYS as usize);
    let mut redelivered = 0;
    for (key, seqs) in &by_key {
        if exactly_once {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{key}: handled out of order: {seqs:?}"
            );
            assert_eq!(seqs.len(), EACH as usize, "{key}: every message once");
        } else {
            // At-least-once: in order, except that a redelivery starts
            // again from an earlier message and goes on in order.
            assert!(
                seqs.first() == Some(&0)
                    && seqs.windows(2).all(|w| w[1] == w[0] + 1 || w[1] <= w[0]),
                "{key}: handled out of order: {seqs:?}"
            );
            redelivered += seqs.len() - EACH as usize;
        }
    }
    if !exactly_once {
        println!(
            "{}: {total} messages in key order, 0 lost, {redelivered} redelivered after rebalances",
            harness.name()
        );
    }
    assert!(members.len() >= 2, "members competed: {members:?}");
}
