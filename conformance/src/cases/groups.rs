//! Consumer groups: every group sees every message; the members of one group
//! share the work; broadcast subscriptions see everything on every instance.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use topicbus::{Context, Topic};

use crate::harness::{
    assert_exactly_once, assert_group_handled, guard, member, per_member, wait_for_each, Handled,
    Harness, Log, Net, Numbered, Setup,
};

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.groups.fanout")]
pub struct Fanout {
    n: u64,
}

impl Numbered for Fanout {
    fn number(&self) -> u64 {
        self.n
    }
}

/// Three groups — the default groups of two different handlers on one
/// instance, and an explicit group on an instance of another service — each
/// handle every message exactly once.
pub async fn two_groups_each_receive_everything<H: Harness>(harness: H) {
    const N: u64 = 200;
    let net = Net::new(&harness, Setup::default()).await;
    let indexer = net.bus("indexer").await;
    let auditor = net.bus("auditor").await;

    let first = Log::new();
    indexer
        .group(net.group("groups.member-fanout"))
        .subscribe(member::<Fanout>(0, Arc::clone(&first)))
        .await
        .expect("subscribe first handler");
    let second = Log::new();
    let sink = Arc::clone(&second);
    indexer
        .group(net.group("groups.fanout"))
        .subscribe(move |message: Fanout, ctx: Context| {
            sink.push(Handled {
                member: 1,
                n: message.n,
                group: ctx.group().to_owned(),
                attempt: ctx.attempt(),
            });
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe second handler");
    let explicit = Log::new();
    let audit_group = net.group("audit-trail");
    auditor
        .group(audit_group.clone())
        .subscribe(member::<Fanout>(2, Arc::clone(&explicit)))
        .await
        .expect("subscribe explicit group");

    let publisher = net.bus("fanout-source").await;
    for n in 0..N {
        publisher.publish(&Fanout { n }).await.expect("publish");
    }
    for (what, log) in [
        ("first handler", &first),
        ("second handler", &second),
        ("explicit group", &explicit),
    ] {
        log.wait_for(N as usize, what).await;
    }
    net.close().await;

    let mut groups = BTreeSet::new();
    for (what, log) in [
        ("first handler", &first),
        ("second handler", &second),
        ("explicit group", &explicit),
    ] {
        let handled = log.snapshot();
        assert_exactly_once(&handled, N, what);
        let names: BTreeSet<_> = handled.iter().map(|h| h.group.clone()).collect();
        assert_eq!(names.len(), 1, "{what}: one group, got {names:?}");
        groups.extend(names);
    }
    assert_eq!(groups.len(), 3, "three distinct groups: {groups:?}");
    assert!(groups.contains(&audit_group), "the explicit group is used");
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.groups.shared")]
pub struct Shared {
    n: u64,
}

impl Numbered for Shared {
    fn number(&self) -> u64 {
        self.n
    }
}

/// Three instances of one service subscribing the same handler form one
/// default group: each message is handled once overall, by more than one
/// of them.
pub async fn instances_of_one_service_share_the_work<H: Harness>(harness: H) {
    const N: u64 = 300;
    let net = Net::new(&harness, Setup::default()).await;
    let log = Log::new();
    for (i, worker) in net.buses("worker", 3).await.iter().enumerate() {
        worker
            .group(net.group("groups.member-shared"))
            .subscribe(member::<Shared>(i, Arc::clone(&log)))
            .await
            .expect("subscribe");
    }
    let publisher = net.bus("shared-source").await;
    for n in 0..N {
        publisher.publish(&Shared { n }).await.expect("publish");
    }
    wait_for_each(&log, N, "shared messages handled").await;
    net.close().await;

    let handled = log.snapshot();
    assert_group_handled(&harness, &handled, N, "one default group");
    let counts = per_member(&handled);
    assert!(
        counts.len() >= 2,
        "more than one instance worked: {counts:?}"
    );
    let groups: BTreeSet<_> = handled.iter().map(|h| h.group.clone()).collect();
    assert_eq!(groups.len(), 1, "one group: {groups:?}");
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.groups.explicit")]
pub struct Explicit {
    n: u64,
}

impl Numbered for Explicit {
    fn number(&self) -> u64 {
        self.n
    }
}

/// Different handlers on instances of different services, joined to one
/// explicit group, share the work: each message once overall.
pub async fn members_of_an_explicit_group_share_the_work<H: Harness>(harness: H) {
    const N: u64 = 300;
    let net = Net::new(&harness, Setup::default()).await;
    let group = net.group("shared-explicit");
    let log = Log::new();
    let alpha = net.bus("alpha").await;
    alpha
        .group(group.clone())
        .subscribe(member::<Explicit>(0, Arc::clone(&log)))
        .await
        .expect("subscribe alpha");
    let beta = net.bus("beta").await;
    let sink = Arc::clone(&log);
    beta.group(group.clone())
        .subscribe(move |message: Explicit, ctx: Context| {
            sink.push(Handled {
                member: 1,
                n: message.n,
                group: ctx.group().to_owned(),
                attempt: ctx.attempt(),
            });
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe beta");

    let publisher = net.bus("explicit-source").await;
    for n in 0..N {
        publisher.publish(&Explicit { n }).await.expect("publish");
    }
    wait_for_each(&log, N, "explicit-group messages handled").await;
    net.close().await;

    let handled = log.snapshot();
    assert_group_handled(&harness, &handled, N, "one explicit group");
    let counts = per_member(&handled);
    assert_eq!(counts.len(), 2, "both members worked: {counts:?}");
    assert!(handled.iter().all(|h| h.group == group));
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.groups.broadcast")]
pub struct Announcement {
    n: u64,
}

impl Numbered for Announcement {
    fn number(&self) -> u64 {
        self.n
    }
}

/// With `.broadcast()`, each of three instances of one service handles
/// every message.
pub async fn broadcast_reaches_every_instance<H: Harness>(harness: H) {
    const N: u64 = 100;
    const INSTANCES: usize = 3;
    let net = Net::new(&harness, Setup::default()).await;
    let logs: Vec<_> = (0..INSTANCES).map(|_| Log::new()).collect();
    for (i, instance) in net.buses("cache", INSTANCES).await.iter().enumerate() {
        instance
            .group(net.group("groups.member-announcement"))
            .subscribe(member::<Announcement>(i, Arc::clone(&logs[i])))
            .broadcast()
            .await
            .expect("subscribe broadcast");
    }
    let publisher = net.bus("announcer").await;
    for n in 0..N {
        publisher
            .publish(&Announcement { n })
            .await
            .expect("publish");
    }
    for log in &logs {
        log.wait_for(N as usize, "broadcast messages handled").await;
    }
    net.close().await;
    for (i, log) in logs.iter().enumerate() {
        assert_exactly_once(&log.snapshot(), N, &format!("instance {i}"));
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.groups.ephemeral", partitions = 1)]
pub struct Ephemeral {
    n: u64,
}

impl Numbered for Ephemeral {
    fn number(&self) -> u64 {
        self.n
    }
}

/// A broadcast subscription belongs to its instance alone: once that
/// instance shut down, publishing goes on without waiting for it, however
/// many messages follow (small queues make a leftover group fill at once).
pub async fn departed_broadcast_subscriber_does_not_block_publishers<H: Harness>(harness: H) {
    const N: u64 = 20;
    let net = Net::new(&harness, Setup::default().queue_capacity(2)).await;
    let departed = net.bus("listener").await;
    departed
        .group(net.group("groups.member-ephemeral"))
        .subscribe(member::<Ephemeral>(0, Log::new()))
        .broadcast()
        .await
        .expect("subscribe departed");
    guard("shutdown of the departing instance", departed.shutdown())
        .await
        .expect("shutdown");
    let staying = net.bus("listener").await;
    let log = Log::new();
    staying
        .group(net.group("groups.member-ephemeral"))
        .subscribe(member::<Ephemeral>(1, Arc::clone(&log)))
        .broadcast()
        .await
        .expect("subscribe staying");

    let publisher = net.bus("ephemeral-source").await;
    for n in 0..N {
        guard(
            &format!("publish {n} after a broadcast subscriber left"),
            publisher.publish(&Ephemeral { n }),
        )
        .await
        .unwrap_or_else(|e| panic!("publish {n}: {e}"));
    }
    log.wait_for(N as usize, "staying instance handled all")
        .await;
    net.close().await;
    assert_exactly_once(&log.snapshot(), N, "staying instance");
}
