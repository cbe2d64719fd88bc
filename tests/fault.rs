//! Failure cases with counts, on the memory transport and on librdkafka's
//! mock cluster: the message size limit, a poisoned partition that blocks
//! in retries while the others flow, dead-letter re-drive, and the bound on
//! pending requests. Each case prints one line,
//! `fault <case>: sent=.. acknowledged=.. received=.. lost=.. duplicated=..`,
//! and asserts that nothing acknowledged was lost (`cargo test fault`).

#[path = "support/fault_net.rs"]
mod fault_net;
#[cfg(feature = "kafka")]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::{header, Context, ErrorKind, Headers, RawMessage, Topic};

use fault_net::{guard, tally, Net, Seen};

// ------------------------------------------------------------ size limit

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.sized", key = key)]
struct Sized {
    n: u64,
    key: String,
    pad: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.sized.ask", response = SizedAnswer)]
struct SizedAsk {
    len: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.sized.answer")]
struct SizedAnswer {
    pad: String,
}

/// The publisher takes payloads up to 2048 bytes, the consumer up to 1024:
/// a bigger publish fails at the publisher with `TooLarge` naming both
/// numbers; what the publisher took but is over the consumer's limit goes to
/// the dead-letter topic (`too_large`) instead of to the handler.
async fn size_limit(net: Net) {
    const N: u64 = 30;
    let case = format!("size_limit/{}", net.name());
    let worker = net.bus("sized-worker", |b| b.max_message_bytes(1024)).await;
    let handled = Seen::new();
    let sink = Arc::clone(&handled);
    worker
        .group("fault.sized")
        .subscribe(move |m: Sized| {
            sink.push(m.n);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe");
    let ops = net.bus("sized-ops", |b| b).await;
    let (dead, kinds) = dead_letters::<Sized>(&ops).await;
    let publisher = net.bus("sized-source", |b| b.max_message_bytes(2048)).await;

    let mut acknowledged = Vec::new();
    let (mut small, mut medium) = (Vec::new(), Vec::new());
    for n in 0..N {
        let pad = match n % 3 {
            0 => 10,
            1 => 1500,
            _ => 3000,
        };
        let message = Sized {
            n,
            key: format!("k{n}"),
            pad: "p".repeat(pad),
        };
        match publisher.publish(&message).await {
            Ok(_) => {
                acknowledged.push(n);
                if pad == 10 {
                    small.push(n)
                } else {
                    medium.push(n)
                }
            }
            Err(error) => {
                assert_eq!(n % 3, 2, "{case}: only the large ones fail: {error}");
                assert_eq!(error.kind(), ErrorKind::TooLarge, "{error}");
                let size = serde_json::to_vec(&message).unwrap().len();
                let text = error.to_string();
                assert!(
                    text.contains("2048") && text.contains(&size.to_string()),
                    "{case}: the error names the limit and the size: {text}"
                );
            }
        }
    }
    // The same limit on raw publishes, and on a responder's reply: a reply
    // over the limit comes back as the responder's error, not a timeout.
    let raw = RawMessage::new(Sized::NAME, vec![b' '; 4000]);
    let error = publisher.publish_raw(raw).await.expect_err("over 2048");
    assert_eq!(error.kind(), ErrorKind::TooLarge, "{error}");
    worker
        .group("sized-responder")
        .serve(|ask: SizedAsk| async move {
            Ok::<_, Infallible>(SizedAnswer {
                pad: "a".repeat(ask.len),
            })
        })
        // Its own group: two closures of one fn share a default group name,
        // and one Kafka group across two topics rebalances both.
        .await
        .expect("serve");
    let small_answer = publisher
        .request(&SizedAsk { len: 10 })
        .await
        .expect("small reply");
    assert_eq!(small_answer.pad.len(), 10);
    let error = publisher
        .request(&SizedAsk { len: 5000 })
        .await
        .expect_err("the reply is over the responder's limit");
    assert_eq!(error.kind(), ErrorKind::Remote, "{error}");
    assert!(
        error.to_string().contains("1024"),
        "names the limit: {error}"
    );

    handled
        .wait_for_all("the small messages handled", &small)
        .await;
    dead.wait_for_all("the medium messages dead-lettered", &medium)
        .await;
    for bus in [&worker, &ops, &publisher] {
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
    let mut deliveries = handled.snapshot();
    deliveries.extend(dead.snapshot());
    tally(&case, N, &acknowledged, &deliveries);
    let mut got = handled.snapshot();
    got.sort_unstable();
    assert_eq!(got, small, "{case}: only the small ones reach the handler");
    for (n, (kind, reason)) in kinds.lock().unwrap().iter() {
        assert!(medium.contains(n), "{case}: {n} dead-lettered");
        assert_eq!(kind, "too_large", "{case}");
        assert!(
            reason.contains("1024"),
            "{case}: the reason names the limit: {reason}"
        );
    }
}

/// Reads `{T::NAME}.dlq` through `bus`: the numbers (from the JSON payload)
/// and, by number, the error kind and reason.
#[allow(clippy::type_complexity)]
async fn dead_letters<T: Topic>(
    bus: &topicbus::Bus,
) -> (Arc<Seen>, Arc<Mutex<BTreeMap<u64, (String, String)>>>) {
    let dead = Seen::new();
    let kinds: Arc<Mutex<BTreeMap<u64, (String, String)>>> = Arc::default();
    let (sink, reasons) = (Arc::clone(&dead), Arc::clone(&kinds));
    bus.group("fault.handler")
        .subscribe_raw(
            format!("{}.dlq", T::NAME),
            move |raw: RawMessage, _ctx: Context| {
                let value: serde_json::Value =
                    serde_json::from_slice(&raw.payload).expect("JSON payload");
                let n = value["n"].as_u64().expect("numbered");
                let text = |name| raw.headers.get_str(name).unwrap_or_default().to_owned();
                reasons
                    .lock()
                    .unwrap()
                    .insert(n, (text(header::ERROR_KIND), text(header::ERROR)));
                sink.push(n);
                futures::future::ready(Ok::<(), Infallible>(()))
            },
        )
        .await
        .expect("subscribe to the dead letters");
    (dead, kinds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_size_limit_memory() {
    size_limit(Net::memory()).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_size_limit_kafka() {
    size_limit(Net::kafka()).await;
}

// ------------------------------------------------------------ other partitions keep flowing

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.flow", key = key, partitions = 4)]
struct Flow {
    n: u64,
    key: String,
}

const PARTITIONS: u32 = 4;
const POISON_KEY: &str = "poison";

/// What the handler saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    PoisonFailed(u32),
    PoisonHandled(u32),
    Good(u64),
}

/// Message 0, on key `poison`, fails: an error, then a panic, then a hang
/// past the handler's timeout, then errors, until every message on the other
/// partitions has been handled (so those must flow while it is retried);
/// only then does the "fixed" handler succeed. The messages behind it on its
/// own partition are handled after it, in order.
async fn other_partitions_keep_flowing(net: Net) {
    const GOOD: u64 = 40;
    let case = format!("other_partitions_flow/{}", net.name());
    let poison_partition = net.partition_of(POISON_KEY.as_bytes(), PARTITIONS);
    let key_of = |n: u64| {
        if n % 5 == 0 {
            POISON_KEY.to_owned()
        } else {
            format!("key-{n}")
        }
    };
    let (mut behind, mut others) = (Vec::new(), Vec::new());
    for n in 1..=GOOD {
        if net.partition_of(key_of(n).as_bytes(), PARTITIONS) == poison_partition {
            behind.push(n);
        } else {
            others.push(n);
        }
    }
    assert!(
        !others.is_empty() && !behind.is_empty(),
        "{case}: keys on both sides"
    );

    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let handled = Seen::new();
    let others_done = Arc::new(AtomicUsize::new(0));
    let worker = net.bus("flow-worker", |b| b).await;
    let (log, sink, done) = (
        Arc::clone(&events),
        Arc::clone(&handled),
        Arc::clone(&others_done),
    );
    let others_set = Arc::new(others.clone());
    worker
        .group("fault.flow")
        .subscribe(move |m: Flow, ctx: Context| {
            let (log, sink, done, others) = (
                Arc::clone(&log),
                Arc::clone(&sink),
                Arc::clone(&done),
                Arc::clone(&others_set),
            );
            async move {
                if m.n != 0 {
                    log.lock().unwrap().push(Event::Good(m.n));
                    if others.contains(&m.n) {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    sink.push(m.n);
                    return Ok(());
                }
                let attempt = ctx.attempt();
                let fixed = attempt > 3 && done.load(Ordering::SeqCst) == others.len();
                if fixed {
                    log.lock().unwrap().push(Event::PoisonHandled(attempt));
                    sink.push(0);
                    return Ok(());
                }
                log.lock().unwrap().push(Event::PoisonFailed(attempt));
                match attempt {
                    1 => Err(format!("poisoned (attempt {attempt})")),
                    2 => panic!("deliberate panic on the poison message (expected by this test)"),
                    3 => std::future::pending().await,
                    _ => Err(format!("still poisoned (attempt {attempt})")),
                }
            }
        })
        .retries(100_000)
        .timeout(Duration::from_millis(200))
        .await
        .expect("subscribe");

    let publisher = net.bus("flow-source", |b| b).await;
    let mut acknowledged = Vec::new();
    for n in 0..=GOOD {
        publisher
            .publish(&Flow { n, key: key_of(n) })
            .await
            .expect("publish");
        acknowledged.push(n);
    }
    handled
        .wait_for_all("every message handled", &acknowledged)
        .await;
    for bus in [&worker, &publisher] {
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
    let deliveries = handled.snapshot();
    let figures = tally(&case, GOOD + 1, &acknowledged, &deliveries);
    assert_eq!(figures.duplicated, 0, "{case}");

    let events = events.lock().unwrap().clone();
    let fixed_at = events
        .iter()
        .position(|e| matches!(e, Event::PoisonHandled(_)))
        .expect("the poison message handled in the end");
    let failures: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::PoisonFailed(a) => Some(*a),
            _ => None,
        })
        .collect();
    assert!(
        failures.len() >= 3 && failures[..3] == [1, 2, 3],
        "{case}: an error, a panic and a timeout, retried: {failures:?}"
    );
    let before: Vec<u64> = events[..fixed_at]
        .iter()
        .filter_map(|e| match e {
            Event::Good(n) => Some(*n),
            _ => None,
        })
        .collect();
    for n in &behind {
        assert!(
            !before.contains(n),
            "{case}: {n} is behind the poison on its partition"
        );
    }
    let behind_order: Vec<u64> = events[fixed_at..]
        .iter()
        .filter_map(|e| match e {
            Event::Good(n) if behind.contains(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(
        behind_order, behind,
        "{case}: its partition in order after it"
    );
    println!(
        "fault {case}: {} messages on other partitions handled while the poison failed {} times; {} waited behind it",
        others.len(),
        failures.len(),
        behind.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_other_partitions_keep_flowing_memory() {
    other_partitions_keep_flowing(Net::memory()).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_other_partitions_keep_flowing_kafka() {
    other_partitions_keep_flowing(Net::kafka()).await;
}

// ------------------------------------------------------------ re-drive

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.redrive", key = key)]
struct Redo {
    n: u64,
    key: String,
}

/// What the worker's handler saw of a message it handled.
#[derive(Debug, Clone)]
struct Revived {
    n: u64,
    redrives: Option<String>,
    tenant: Option<String>,
    error_header: bool,
    type_header: bool,
}

/// The worker's handler fails on every message ("the bug"): all go to the
/// dead-letter topic. Half the bug is fixed: a re-drive (by name) moves them
/// all back, the fixed half is handled, the other half is dead-lettered
/// again. The rest is fixed: a second re-drive (typed) moves that half, and
/// a third finds nothing. Another group, which handled every message the
/// first time, does not get the re-driven ones.
async fn redrive(net: Net) {
    const N: u64 = 20;
    let case = format!("redrive/{}", net.name());
    let broken = Arc::new(AtomicU32::new(2)); // 2: all fail, 1: odd ones, 0: none
    let seen: Arc<Mutex<Vec<Revived>>> = Arc::default();
    let handled = Seen::new();
    let worker = net.bus("redrive-worker", |b| b).await;
    let (bug, log, sink) = (Arc::clone(&broken), Arc::clone(&seen), Arc::clone(&handled));
    worker
        .group("redrive-worker")
        .subscribe(move |m: Redo, ctx: Context| {
            let failing = match bug.load(Ordering::SeqCst) {
                2 => true,
                1 => m.n % 2 == 1,
                _ => false,
            };
            if failing {
                return futures::future::ready(Err(format!("bug on {}", m.n)));
            }
            let headers = ctx.headers();
            log.lock().unwrap().push(Revived {
                n: m.n,
                redrives: headers.get_str(header::REDRIVES).map(str::to_owned),
                tenant: headers.get_str("tenant").map(str::to_owned),
                error_header: headers.get(header::ERROR).is_some(),
                type_header: headers.get("ce_type").is_some(),
            });
            sink.push(m.n);
            futures::future::ready(Ok(()))
        })
        .retries(1)
        .await
        .expect("subscribe");
    let audit = Seen::new();
    let audit_sink = Arc::clone(&audit);
    worker
        .group("redrive-audit")
        .subscribe(move |m: Redo| {
            audit_sink.push(m.n);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe the audit group");
    let ops = net.bus("redrive-ops", |b| b).await;
    let (dead, _) = dead_letters::<Redo>(&ops).await;

    let publisher = net.bus("redrive-source", |b| b).await;
    let mut acknowledged = Vec::new();
    for n in 0..N {
        let mut headers = Headers::new();
        headers.insert("tenant", format!("t{n}"));
        publisher
            .publish_with(
                &Redo {
                    n,
                    key: format!("k{n}"),
                },
                headers,
            )
            .await
            .expect("publish");
        acknowledged.push(n);
    }
    let all: Vec<u64> = (0..N).collect();
    let odd: Vec<u64> = all.iter().copied().filter(|n| n % 2 == 1).collect();
    let even: Vec<u64> = all.iter().copied().filter(|n| n % 2 == 0).collect();
    dead.wait_until("every message dead-lettered", |d| d.len() >= N as usize)
        .await;
    audit
        .wait_for_all("the audit group handled everything", &all)
        .await;

    broken.store(1, Ordering::SeqCst);
    let moved = guard("redrive", ops.redrive(Redo::NAME))
        .await
        .expect("redrive")
        .moved;
    assert_eq!(
        moved, N,
        "{case}: the first re-drive moves every dead letter"
    );
    handled.wait_for_all("the fixed half handled", &even).await;
    dead.wait_until("the other half dead-lettered again", |d| {
        d.len() >= (N + N / 2) as usize
    })
    .await;

    broken.store(0, Ordering::SeqCst);
    let moved_again = guard("redrive", worker.redrive_topic::<Redo>())
        .await
        .expect("redrive")
        .moved;
    assert_eq!(
        moved_again,
        N / 2,
        "{case}: the second re-drive moves what failed again"
    );
    handled.wait_for_all("everything handled", &all).await;
    let nothing = guard("redrive", ops.redrive(&format!("{}.dlq", Redo::NAME)))
        .await
        .expect("redrive by the dead-letter topic's name")
        .moved;
    assert_eq!(nothing, 0, "{case}: nothing left to move");
    // The audit group acknowledges re-driven messages without handling
    // them; a message published after them shows that it has read past them.
    publisher
        .publish(&Redo {
            n: N,
            key: "last".into(),
        })
        .await
        .expect("publish");
    acknowledged.push(N);
    audit.wait_for_all("the audit group read on", &[N]).await;
    handled.wait_for_all("the last message", &[N]).await;
    for bus in [&worker, &ops, &publisher] {
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }

    let figures = tally(&case, N + 1, &acknowledged, &handled.snapshot());
    assert_eq!(figures.duplicated, 0, "{case}: each handled once");
    let mut audit_seen = audit.snapshot();
    audit_seen.sort_unstable();
    assert_eq!(
        audit_seen,
        (0..=N).collect::<Vec<_>>(),
        "{case}: the audit group saw each once"
    );
    let seen = seen.lock().unwrap().clone();
    for revived in seen.iter().filter(|r| r.n < N) {
        let want = if revived.n % 2 == 0 { "1" } else { "2" };
        assert_eq!(
            revived.redrives.as_deref(),
            Some(want),
            "{case}: {revived:?}"
        );
        assert_eq!(
            revived.tenant,
            Some(format!("t{}", revived.n)),
            "{case}: headers kept"
        );
        assert!(
            !revived.error_header,
            "{case}: the failure headers are taken off"
        );
        assert!(
            !revived.type_header,
            "{case}: the dead letter's kept ce_type is the topic's again, no application header"
        );
    }
    assert_eq!(odd.len() as u64, N / 2);
    println!("fault {case}: re-drove {moved} then {moved_again} then {nothing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_redrive_memory() {
    redrive(Net::memory()).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_redrive_kafka() {
    redrive(Net::kafka()).await;
}

// ------------------------------------------------------------ pending requests

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.ask", response = Answer)]
struct Ask {
    n: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.answer")]
struct Answer {
    n: u64,
}

/// With `max_pending_requests(8)` and a responder that does not answer yet,
/// eight requests wait; every further one fails at once with `Unavailable`
/// naming the limit, and the number waiting stays at eight. Once the
/// responder answers, the eight get their replies.
async fn pending_requests_bounded(net: Net) {
    const LIMIT: usize = 8;
    const EXTRA: u64 = 1000;
    let case = format!("pending_bounded/{}", net.name());
    let server = net.bus("ask-server", |b| b).await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let open = Arc::new(AtomicBool::new(false));
    let (wait, is_open) = (Arc::clone(&gate), Arc::clone(&open));
    server
        .group("fault.ask")
        .serve(move |ask: Ask| {
            let (wait, is_open) = (Arc::clone(&wait), Arc::clone(&is_open));
            async move {
                loop {
                    let opened = wait.notified();
                    if is_open.load(Ordering::SeqCst) {
                        break;
                    }
                    opened.await;
                }
                Ok::<_, Infallible>(Answer { n: ask.n })
            }
        })
        .concurrency(LIMIT)
        .await
        .expect("serve");
    let client = net
        .bus("ask-client", |b| {
            b.max_pending_requests(LIMIT)
                .request_timeout(fault_net::HANG)
        })
        .await;
    let mut waiting = Vec::new();
    for n in 0..LIMIT as u64 {
        let client = client.clone();
        waiting.push(tokio::spawn(
            async move { client.request(&Ask { n }).await },
        ));
    }
    guard("the requests registered", async {
        while client.stats().pending_requests < LIMIT {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    for n in LIMIT as u64..LIMIT as u64 + EXTRA {
        let error = client
            .request(&Ask { n })
            .await
            .expect_err("over the limit");
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert!(
            error.to_string().contains(&LIMIT.to_string()),
            "names the limit: {error}"
        );
        assert_eq!(client.stats().pending_requests, LIMIT, "{case}: bounded");
    }
    open.store(true, Ordering::SeqCst);
    gate.notify_waiters();
    let mut answered = Vec::new();
    for request in waiting {
        let answer = guard("reply", request).await.expect("task").expect("reply");
        answered.push(answer.n);
    }
    assert_eq!(
        client.stats().pending_requests,
        0,
        "{case}: no entry outlives its request"
    );
    for bus in [&server, &client] {
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
    let acknowledged: Vec<u64> = (0..LIMIT as u64).collect();
    tally(&case, LIMIT as u64 + EXTRA, &acknowledged, &answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_pending_requests_are_bounded_memory() {
    pending_requests_bounded(Net::memory()).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_pending_requests_are_bounded_kafka() {
    pending_requests_bounded(Net::kafka()).await;
}
