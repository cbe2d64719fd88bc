//! Start position and backpressure: where a new group starts reading, and
//! what a publisher does when a consumer cannot keep up.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::{StartFrom, Topic};

use crate::harness::{
    assert_exactly_once, guard, member, skip, Gate, Harness, Log, Net, Numbered, Setup,
};

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.flow.history")]
pub struct History {
    /// The case's network scope: a real broker keeps the history of earlier
    /// runs too, which the earliest group replays and this case ignores.
    run: String,
    n: u64,
}

impl Numbered for History {
    fn number(&self) -> u64 {
        self.n
    }
}

/// `handler`, for the messages of run `run` only.
fn this_run<F>(
    run: &str,
    handler: F,
) -> impl Fn(History, topicbus::Context) -> futures::future::Ready<Result<(), Infallible>>
       + Send
       + Sync
       + 'static
where
    F: Fn(History, topicbus::Context) -> futures::future::Ready<Result<(), Infallible>>
        + Send
        + Sync
        + 'static,
{
    let run = run.to_owned();
    move |message: History, ctx| {
        if message.run == run {
            handler(message, ctx)
        } else {
            futures::future::ready(Ok(()))
        }
    }
}

/// Where the transport keeps history: a new group that starts from
/// `StartFrom::Earliest` handles the messages published before it joined
/// and those after, each once; a new group with the default start handles
/// only those published after it joined.
pub async fn start_from_earliest_replays_kept_history_to_a_new_group<H: Harness>(harness: H) {
    if !harness.keeps_history() {
        return skip(&harness, "the transport keeps no history to replay");
    }
    const BEFORE: u64 = 10;
    const AFTER: u64 = 5;
    let net = Net::new(&harness, Setup::default().retain(100)).await;
    let publisher = net.bus("historian").await;
    let run = net.group("run");
    for n in 0..BEFORE {
        publisher
            .publish(&History {
                run: run.clone(),
                n,
            })
            .await
            .expect("publish before");
    }

    let reader = net.bus("reader").await;
    let replayed = Log::new();
    reader
        .group(net.group("replay"))
        .subscribe(this_run(&run, member::<History>(0, Arc::clone(&replayed))))
        .start_from(StartFrom::Earliest)
        .await
        .expect("subscribe from earliest");
    let latest = Log::new();
    reader
        .group(net.group("latest"))
        .subscribe(this_run(&run, member::<History>(1, Arc::clone(&latest))))
        .await
        .expect("subscribe from latest");

    for n in BEFORE..BEFORE + AFTER {
        publisher
            .publish(&History {
                run: run.clone(),
                n,
            })
            .await
            .expect("publish after");
    }
    replayed
        .wait_for((BEFORE + AFTER) as usize, "replayed and new messages")
        .await;
    latest.wait_for(AFTER as usize, "new messages").await;
    net.close().await;

    assert_exactly_once(&replayed.snapshot(), BEFORE + AFTER, "earliest group");
    let mut new: Vec<u64> = latest.snapshot().iter().map(|h| h.n).collect();
    new.sort_unstable();
    assert_eq!(
        new,
        (BEFORE..BEFORE + AFTER).collect::<Vec<_>>(),
        "the default start skips what came before"
    );
}

/// Where the transport finds messages by time: a new group that starts
/// from `StartFrom::Timestamp(t)` handles, each once, the messages
/// published at or after `t`, and none of those published before.
pub async fn start_from_timestamp_replays_from_that_time<H: Harness>(harness: H) {
    if !harness.finds_messages_by_time() {
        return skip(&harness, "the broker does not look offsets up by time");
    }
    const BEFORE: u64 = 4;
    const SINCE: u64 = 6;
    const AFTER: u64 = 3;
    let net = Net::new(&harness, Setup::default().retain(100)).await;
    let publisher = net.bus("historian").await;
    let run = net.group("run");
    let publish = |n: u64| {
        let history = History {
            run: run.clone(),
            n,
        };
        let publisher = publisher.clone();
        async move { publisher.publish(&history).await.expect("publish") }
    };
    for n in 0..BEFORE {
        publish(n).await;
    }
    // The pauses keep the messages on either side of `cut` apart at the
    // clock's resolution (Kafka's timestamps are milliseconds); nothing is
    // measured.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cut = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for n in BEFORE..BEFORE + SINCE {
        publish(n).await;
    }

    let reader = net.bus("reader").await;
    let replayed = Log::new();
    reader
        .group(net.group("since"))
        .subscribe(this_run(&run, member::<History>(0, Arc::clone(&replayed))))
        .start_from(StartFrom::Timestamp(cut))
        .await
        .expect("subscribe from a time");
    for n in BEFORE + SINCE..BEFORE + SINCE + AFTER {
        publish(n).await;
    }
    replayed
        .wait_for(
            (SINCE + AFTER) as usize,
            "messages since the time, and new ones",
        )
        .await;
    net.close().await;

    let mut numbers: Vec<u64> = replayed.snapshot().iter().map(|h| h.n).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (BEFORE..BEFORE + SINCE + AFTER).collect::<Vec<_>>(),
        "each message from the time on, once; none from before it"
    );
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.flow.pressure", partitions = 1)]
pub struct Pressure {
    n: u64,
}

impl Numbered for Pressure {
    fn number(&self) -> u64 {
        self.n
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.flow.given_up", partitions = 1)]
pub struct GivenUp {
    n: u64,
}

impl Numbered for GivenUp {
    fn number(&self) -> u64 {
        self.n
    }
}

/// Subscribes a handler that records when it starts and waits for `gate`.
async fn blocked_consumer<T: Numbered>(net: &Net, gate: &Gate) -> (Arc<Log<u64>>, Arc<Log<u64>>) {
    let consumer = net.bus("slowpoke").await;
    let started = Log::new();
    let done = Log::new();
    let (gate, started_in, done_in) = (gate.clone(), Arc::clone(&started), Arc::clone(&done));
    consumer
        .group(net.group("flow.t"))
        .subscribe(move |message: T| {
            let (gate, started, done) =
                (gate.clone(), Arc::clone(&started_in), Arc::clone(&done_in));
            async move {
                started.push(message.number());
                gate.wait().await;
                done.push(message.number());
                Ok::<(), Infallible>(())
            }
        })
        .await
        .expect("subscribe");
    (started, done)
}

/// "Not finished yet": a liveness probe, not a timing assertion.
const NOT_YET: Duration = Duration::from_millis(100);

/// With a queue of one message and a blocked handler, a publish beyond the
/// queue waits instead of piling up messages, and completes once the
/// handler moves on; every message is then handled once, in order.
pub async fn slow_consumer_makes_publishers_wait<H: Harness>(harness: H) {
    if !harness.publishers_wait_for_slow_consumers() {
        return skip(&harness, "publishers never wait for consumers here");
    }
    let net = Net::new(&harness, Setup::default().queue_capacity(1)).await;
    let gate = Gate::new();
    let (started, done) = blocked_consumer::<Pressure>(&net, &gate).await;
    let publisher = net.bus("pusher").await;

    guard("publish 0", publisher.publish(&Pressure { n: 0 }))
        .await
        .expect("publish 0");
    started.wait_for(1, "the handler holds message 0").await;
    guard(
        "publish 1 (fits the queue)",
        publisher.publish(&Pressure { n: 1 }),
    )
    .await
    .expect("publish 1");

    let third = Pressure { n: 2 };
    let blocked = publisher.publish(&third);
    tokio::pin!(blocked);
    assert!(
        tokio::time::timeout(NOT_YET, &mut blocked).await.is_err(),
        "a publish into a full queue waits while the consumer is blocked"
    );
    assert_eq!(
        started.snapshot(),
        vec![0],
        "the consumer is still on message 0"
    );

    gate.open();
    guard("the waiting publish", blocked)
        .await
        .expect("the waiting publish completes once the consumer moves on");
    done.wait_for(3, "all messages handled").await;
    net.close().await;
    assert_eq!(done.snapshot(), vec![0, 1, 2], "each once, in order");
}

/// A publish that waits for room and is then given up (its future dropped)
/// leaves nothing behind: later messages flow and shutdown finishes.
pub async fn cancelled_waiting_publish_does_not_wedge_shutdown<H: Harness>(harness: H) {
    if !harness.publishers_wait_for_slow_consumers() {
        return skip(&harness, "publishers never wait for consumers here");
    }
    let setup = Setup {
        // A wedged shutdown shows as a failed shutdown, soon.
        shutdown_timeout: Duration::from_secs(10),
        ..Setup::default().queue_capacity(1)
    };
    let net = Net::new(&harness, setup).await;
    let gate = Gate::new();
    let (started, done) = blocked_consumer::<GivenUp>(&net, &gate).await;
    let publisher = net.bus("pusher").await;

    guard("publish 0", publisher.publish(&GivenUp { n: 0 }))
        .await
        .expect("publish 0");
    started.wait_for(1, "the handler holds message 0").await;
    guard("publish 1", publisher.publish(&GivenUp { n: 1 }))
        .await
        .expect("publish 1");
    let gave_up = tokio::time::timeout(NOT_YET, publisher.publish(&GivenUp { n: 2 })).await;
    assert!(gave_up.is_err(), "the publish was waiting when given up");

    gate.open();
    guard("publish 3", publisher.publish(&GivenUp { n: 3 }))
        .await
        .expect("publish 3");
    done.wait_until("message 3 handled", |d| d.contains(&3))
        .await;
    net.close().await;
    let handled = done.snapshot();
    let times = |n: u64| handled.iter().filter(|&&h| h == n).count();
    assert_eq!(
        (times(0), times(1), times(3)),
        (1, 1, 1),
        "the published messages are handled once each: {handled:?}"
    );
    assert!(
        times(2) <= 1,
        "the given-up message at most once: {handled:?}"
    );
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.flow.bounded", key = key, partitions = 8)]
pub struct Bounded {
    run: String,
    key: String,
    n: u64,
}

/// What the handlers of [`concurrency_bounds_handlers_across_partitions`]
/// share: the run they count, their gate, how many run now and at most, and
/// which messages started and finished.
struct Probe {
    run: String,
    gate: Gate,
    running: AtomicUsize,
    most: AtomicUsize,
    started: Arc<Log<u64>>,
    done: Arc<Log<u64>>,
}

/// A registration's `concurrency` bounds the messages it handles at once,
/// across all its partitions: with a limit of 2 and handlers that hold on
/// until released, a third never starts while two are held (and, where the
/// topic has its 8 partitions, two do run at once); once released, every
/// message is handled once.
pub async fn concurrency_bounds_handlers_across_partitions<H: Harness>(harness: H) {
    const LIMIT: usize = 2;
    const N: u64 = 16;
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("bounded").await;
    let run = net.group("run");
    let probe = Arc::new(Probe {
        run: run.clone(),
        gate: Gate::new(),
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        started: Log::new(),
        done: Log::new(),
    });
    let handler = {
        let probe = Arc::clone(&probe);
        move |message: Bounded| {
            let probe = Arc::clone(&probe);
            async move {
                // A real broker keeps earlier runs' messages.
                if message.run != probe.run {
                    return Ok::<(), Infallible>(());
                }
                let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
                probe.most.fetch_max(now, Ordering::SeqCst);
                probe.started.push(message.n);
                probe.gate.wait().await;
                probe.running.fetch_sub(1, Ordering::SeqCst);
                probe.done.push(message.n);
                Ok(())
            }
        }
    };
    consumer
        .group(net.group("flow.handler"))
        .subscribe(handler)
        .concurrency(LIMIT)
        .await
        .expect("subscribe");
    let publisher = net.bus("spreader").await;
    for n in 0..N {
        let message = Bounded {
            run: run.clone(),
            key: format!("key-{n}"),
            n,
        };
        guard("publish", publisher.publish(&message))
            .await
            .expect("publish");
    }

    let declared = harness.partitions_as_declared();
    let expected = if declared { LIMIT } else { 1 };
    probe
        .started
        .wait_for(expected, "handlers hold messages up to the limit")
        .await;
    tokio::time::sleep(NOT_YET).await;
    let held = probe.started.len();
    assert!(
        held <= LIMIT,
        "{held} handlers started at once with concurrency {LIMIT}"
    );
    if declared {
        assert_eq!(held, LIMIT, "the limit, not fewer, runs at once");
    }

    probe.gate.open();
    let mut handled = probe
        .done
        .wait_for(N as usize, "every message handled")
        .await;
    net.close().await;
    handled.sort_unstable();
    assert_eq!(handled, (0..N).collect::<Vec<_>>(), "each once");
    assert!(
        probe.most.load(Ordering::SeqCst) <= LIMIT,
        "at most {LIMIT} at once, saw {}",
        probe.most.load(Ordering::SeqCst)
    );
}
