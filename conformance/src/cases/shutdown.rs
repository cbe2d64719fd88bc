//! Shutdown: stop intake, finish in-flight handlers, leave the groups;
//! nothing acknowledged is lost; afterwards the bus refuses work.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::{Bus, Context, Error, Headers, RawMessage, Subscription, Topic};

use crate::harness::{
    assert_exactly_once, distinct, guard, per_member, wait_for_each, Gate, Handled, Harness, Log,
    Net, Setup,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.shutdown.chore")]
pub struct Chore {
    n: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.shutdown.ask", response = Chore)]
pub struct Ask {
    n: u64,
}

fn assert_closed<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Closed) => {}
        other => panic!("{what} after shutdown: expected Error::Closed, got {other:?}"),
    }
}

/// `shutdown` returns only after a handler that was mid-way finished (its
/// side effect is visible when `shutdown` returns); requests waiting on the
/// instance fail with `Error::Closed`; afterwards publish, publish_with,
/// publish_batch, publish_raw, request, subscribe and serve fail with
/// `Error::Closed`, and a second shutdown is a no-op.
pub async fn shutdown_drains_in_flight_handlers_then_rejects_work<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let worker = net.bus("chores").await;
    let started = Log::new();
    let finished = Arc::new(AtomicBool::new(false));
    let (started_in, finished_in) = (Arc::clone(&started), Arc::clone(&finished));
    worker
        .group(net.group("shutdown.chore"))
        .subscribe(move |chore: Chore| {
            let (started, finished) = (Arc::clone(&started_in), Arc::clone(&finished_in));
            async move {
                started.push(chore.n);
                // Mid-way when shutdown is called: still sleeping.
                tokio::time::sleep(Duration::from_millis(300)).await;
                finished.store(true, Ordering::SeqCst);
                Ok::<(), Infallible>(())
            }
        })
        .await
        .expect("subscribe");

    // A request waiting on the instance that shuts down.
    let responder = net.bus("oracle").await;
    let gate = Gate::new();
    let asked = Log::new();
    let (gate_in, asked_in) = (gate.clone(), Arc::clone(&asked));
    responder
        .group(net.group("shutdown.ask"))
        .serve(move |ask: Ask| {
            let (gate, asked) = (gate_in.clone(), Arc::clone(&asked_in));
            async move {
                asked.push(ask.n);
                gate.wait().await;
                Ok::<_, Infallible>(Chore { n: ask.n })
            }
        })
        .await
        .expect("serve");
    let waiting = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.request(&Ask { n: 1 }).await })
    };
    asked.wait_for(1, "the request reached the responder").await;

    let publisher = net.bus("chore-source").await;
    publisher.publish(&Chore { n: 1 }).await.expect("publish");
    started.wait_for(1, "the handler started").await;

    guard("shutdown", worker.shutdown())
        .await
        .expect("shutdown succeeds");
    assert!(
        finished.load(Ordering::SeqCst),
        "the in-flight handler finished before shutdown returned"
    );
    assert_closed(
        "a request waiting during shutdown",
        guard("the waiting request", waiting)
            .await
            .expect("request task"),
    );
    gate.open();

    assert_closed("publish", worker.publish(&Chore { n: 2 }).await);
    assert_closed(
        "publish_with",
        worker.publish_with(&Chore { n: 3 }, Headers::new()).await,
    );
    assert_closed(
        "publish_batch",
        worker.publish_batch(&[Chore { n: 4 }]).await,
    );
    assert_closed(
        "publish_raw",
        worker
            .publish_raw(RawMessage::new(Chore::NAME, b"{\"n\":5}".to_vec()))
            .await,
    );
    assert_closed("request", worker.request(&Ask { n: 6 }).await);
    assert_closed(
        "subscribe",
        worker
            .group(net.group("shutdown.chore"))
            .subscribe(|_: Chore| async { Ok::<(), Infallible>(()) })
            .await,
    );
    assert_closed(
        "serve",
        worker
            .group(net.group("shutdown.ask"))
            .serve(|ask: Ask| async move { Ok::<_, Infallible>(Chore { n: ask.n }) })
            .await,
    );
    guard("second shutdown", worker.shutdown())
        .await
        .expect("a second shutdown is a no-op");
    net.close().await;
    assert_eq!(started.snapshot(), vec![1], "handled once");
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.shutdown.handover")]
pub struct Handover {
    n: u64,
}

/// Subscribed to find out when an instance's shutdown has begun.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.shutdown.probe")]
pub struct Probe {}

/// Same closure type for both instances: one default group. Records a
/// violation when called after its instance's shutdown returned.
fn slow_member(
    member: usize,
    gate: Gate,
    log: Arc<Log<Handled>>,
    closed: Arc<AtomicBool>,
    violations: Arc<Log<(usize, u64)>>,
) -> impl Fn(Handover, Context) -> futures::future::BoxFuture<'static, Result<(), Infallible>>
       + Send
       + Sync
       + 'static {
    move |message: Handover, ctx: Context| {
        let (gate, log) = (gate.clone(), Arc::clone(&log));
        if closed.load(Ordering::SeqCst) {
            violations.push((member, message.n));
        }
        Box::pin(async move {
            gate.wait().await;
            log.push(Handled {
                member,
                n: message.n,
                group: ctx.group().to_owned(),
                attempt: ctx.attempt(),
            });
            Ok(())
        })
    }
}

/// One of two members shuts down while its handlers are held busy and
/// messages are queued for it: it finishes what it had started, is given nothing
/// after its shutdown returned, and every message is handled exactly once,
/// the rest by the other member.
pub async fn shutdown_hands_queued_work_to_remaining_members<H: Harness>(harness: H) {
    const N: u64 = 40;
    let net = Net::new(&harness, Setup::default()).await;
    let gate = Gate::new();
    let log = Log::new();
    let violations = Log::new();
    let leaving_closed = Arc::new(AtomicBool::new(false));
    let members = net.buses("handover", 2).await;
    let (leaving, staying) = (members[0].clone(), members[1].clone());
    leaving
        .group(net.group("shutdown.slow_member"))
        .subscribe(slow_member(
            0,
            gate.clone(),
            Arc::clone(&log),
            Arc::clone(&leaving_closed),
            Arc::clone(&violations),
        ))
        .await
        .expect("subscribe leaving");
    let open = Gate::new();
    open.open();
    staying
        .group(net.group("shutdown.slow_member"))
        .subscribe(slow_member(
            1,
            open,
            Arc::clone(&log),
            Arc::new(AtomicBool::new(false)),
            Arc::clone(&violations),
        ))
        .await
        .expect("subscribe staying");

    let publisher = net.bus("handover-source").await;
    for n in 0..N {
        publisher.publish(&Handover { n }).await.expect("publish");
    }
    let shutdown = {
        let leaving = leaving.clone();
        let closed = Arc::clone(&leaving_closed);
        tokio::spawn(async move {
            let result = leaving.shutdown().await;
            closed.store(true, Ordering::SeqCst);
            result
        })
    };
    // Open the gate once the leaving instance refuses new registrations:
    // its shutdown is under way while its handlers are still busy.
    guard("the leaving instance to refuse registrations", async {
        loop {
            let probe = leaving
                .group(net.group("shutdown.probe"))
                .subscribe(|_: Probe| async { Ok::<(), Infallible>(()) })
                .await;
            match probe {
                Err(Error::Closed) => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => panic!("probe subscription: {e}"),
            }
        }
    })
    .await;
    gate.open();
    guard("shutdown of the leaving member", shutdown)
        .await
        .expect("shutdown task")
        .expect("shutdown succeeds");

    wait_for_each(&log, N, "every message handled").await;
    net.close().await;
    let handled = log.snapshot();
    if harness.commits_survive_rebalances() {
        assert_exactly_once(&handled, N, "with a member leaving");
    } else {
        let duplicates = handled.len() - distinct(&handled);
        println!(
            "{}: {N} messages, 0 lost, {duplicates} redelivered after the rebalance",
            harness.name()
        );
    }
    assert_eq!(
        violations.snapshot(),
        vec![],
        "(member, message) handed to a member after its shutdown returned"
    );
    let counts = per_member(&handled);
    assert!(
        counts.get(&1).copied().unwrap_or(0) > 0,
        "the staying member took over: {counts:?}"
    );
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.shutdown.stint")]
pub struct Stint {
    n: u64,
}

/// A subscription that counts what it is given.
async fn counting(bus: &Bus, group: String, log: &Arc<Log<u64>>) -> Subscription {
    let log = Arc::clone(log);
    bus.group(group)
        .subscribe(move |stint: Stint| {
            log.push(stint.n);
            async { Ok::<(), Infallible>(()) }
        })
        .await
        .expect("subscribe")
}

/// `Subscription::stop` ends one subscription the way shutdown ends them
/// all: its in-flight handler finishes before `stop` returns and it is given
/// nothing afterwards, while the bus and its other subscriptions go on,
/// one whose handle was dropped among them.
pub async fn a_stopped_subscription_ends_alone<H: Harness>(harness: H) {
    const N: u64 = 20;
    let net = Net::new(&harness, Setup::default()).await;
    let worker = net.bus("stints").await;
    let started = Log::new();
    let stopped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let violations = Log::new();
    let stopping = {
        let (started, stopped, finished, violations) = (
            Arc::clone(&started),
            Arc::clone(&stopped),
            Arc::clone(&finished),
            Arc::clone(&violations),
        );
        worker
            .group(net.group("stop.stopped"))
            .subscribe(move |stint: Stint| {
                if stopped.load(Ordering::SeqCst) {
                    violations.push(stint.n);
                }
                started.push(stint.n);
                let finished = Arc::clone(&finished);
                async move {
                    // Mid-way when `stop` is called: still sleeping.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    finished.store(true, Ordering::SeqCst);
                    Ok::<(), Infallible>(())
                }
            })
            .await
            .expect("subscribe")
    };
    assert_eq!(stopping.topic(), Stint::NAME);
    assert_eq!(stopping.group(), net.group("stop.stopped"));
    let (kept, dropped) = (Log::new(), Log::new());
    let _kept = counting(&worker, net.group("stop.kept"), &kept).await;
    drop(counting(&worker, net.group("stop.dropped"), &dropped).await);

    let publisher = net.bus("stint-source").await;
    publisher.publish(&Stint { n: 0 }).await.expect("publish");
    started.wait_for(1, "the handler started").await;
    guard("stop", stopping.stop()).await.expect("stop succeeds");
    stopped.store(true, Ordering::SeqCst);
    assert!(
        finished.load(Ordering::SeqCst),
        "the in-flight handler finished before stop returned"
    );

    for n in 1..N {
        publisher.publish(&Stint { n }).await.expect("publish");
    }
    let every: Vec<u64> = (0..N).collect();
    for (log, what) in [(&kept, "kept"), (&dropped, "handle dropped")] {
        let seen = log
            .wait_until(
                &format!("the subscription whose {what} sees everything"),
                |seen| seen.len() >= every.len(),
            )
            .await;
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted, every,
            "the subscription ({what}) saw each message once"
        );
    }
    net.close().await;
    assert_eq!(
        started.snapshot(),
        vec![0],
        "the stopped subscription was given only what came before stop"
    );
    assert_eq!(
        violations.snapshot(),
        Vec::<u64>::new(),
        "given after stop returned"
    );
}
