//! Publish and subscribe: what arrives is what was sent, once.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use topicbus::{Context, Headers, Topic};

use crate::harness::{floor_millis, guard, Harness, Log, Net, Setup};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inner {
    label: String,
    weights: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    Plain,
    Tuple(u8, String),
    Record { depth: u16, tags: Vec<String> },
}

/// A payload with a bit of everything serde can carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.pubsub.intact", key = doc_id)]
pub struct Intact {
    doc_id: String,
    text: String,
    big: u64,
    small: i64,
    ratio: f64,
    flag: bool,
    bytes: Vec<u8>,
    nested: Inner,
    some: Option<Inner>,
    none: Option<u32>,
    kind: Kind,
    kinds: Vec<Kind>,
    map: BTreeMap<String, u32>,
}

impl Intact {
    fn sample(doc_id: &str) -> Self {
        Self {
            doc_id: doc_id.to_owned(),
            text: "héllo, 世界 🚀 \"quoted\"\n\ttab \\ back".to_owned(),
            big: u64::MAX,
            small: i64::MIN,
            ratio: -1234.0625,
            flag: true,
            bytes: vec![0, 1, 127, 128, 255],
            nested: Inner {
                label: "inner".to_owned(),
                weights: vec![0.5, -2.25, 0.125],
            },
            some: Some(Inner {
                label: String::new(),
                weights: vec![],
            }),
            none: None,
            kind: Kind::Record {
                depth: 3,
                tags: vec!["a".to_owned(), "b".to_owned()],
            },
            kinds: vec![Kind::Plain, Kind::Tuple(7, "seven".to_owned())],
            map: BTreeMap::from([("one".to_owned(), 1), ("two".to_owned(), 2)]),
        }
    }
}

/// What a handler saw of one message.
#[derive(Clone, Debug)]
struct Seen {
    message: Intact,
    id: String,
    topic: String,
    source: String,
    attempt: u32,
    group: String,
    time: SystemTime,
    handled_at: SystemTime,
    key: Option<Vec<u8>>,
    correlation_id: Option<String>,
    tenant: Option<String>,
    trace: Option<Vec<u8>>,
}

/// Fields, key, application headers and the context (id, topic, source,
/// attempt, group, time) arrive as published.
pub async fn payload_and_metadata_arrive_intact<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let publisher = net.bus("publisher").await;
    let subscriber = net.bus("subscriber").await;
    let group = net.group("intact-readers");
    let seen = Log::new();
    let log = Arc::clone(&seen);
    subscriber
        .group(group.clone())
        .subscribe(move |message: Intact, ctx: Context| {
            let log = Arc::clone(&log);
            async move {
                log.push(Seen {
                    message,
                    id: ctx.id().to_string(),
                    topic: ctx.topic().to_owned(),
                    source: ctx.source().to_owned(),
                    attempt: ctx.attempt(),
                    group: ctx.group().to_owned(),
                    time: ctx.time(),
                    handled_at: SystemTime::now(),
                    key: ctx.key().map(<[u8]>::to_vec),
                    correlation_id: ctx.correlation_id().map(ToString::to_string),
                    tenant: ctx.headers().get_str("tenant").map(str::to_owned),
                    trace: ctx.headers().get("trace").map(<[u8]>::to_vec),
                });
                Ok::<(), Infallible>(())
            }
        })
        .await
        .expect("subscribe");

    let before = floor_millis(SystemTime::now());
    let mut headers = Headers::new();
    headers.insert("tenant", "acme");
    headers.insert("trace", vec![0u8, 159, 146, 150, 255]);
    publisher
        .publish_with(&Intact::sample("doc-1"), headers)
        .await
        .expect("publish_with");
    publisher
        .publish(&Intact::sample("doc-2"))
        .await
        .expect("publish");

    let mut seen = seen.wait_for(2, "both messages handled").await;
    net.close().await;
    assert_eq!(seen.len(), 2, "each message is handled exactly once");
    seen.sort_by(|a, b| a.message.doc_id.cmp(&b.message.doc_id));

    for (s, doc_id) in seen.iter().zip(["doc-1", "doc-2"]) {
        assert_eq!(s.message, Intact::sample(doc_id), "payload fields");
        assert_eq!(s.topic, Intact::NAME);
        assert_eq!(s.source, publisher.service(), "source is the publisher");
        assert_eq!(s.attempt, 1, "first delivery is attempt 1");
        assert_eq!(s.group, group);
        assert_eq!(s.key.as_deref(), Some(doc_id.as_bytes()), "key field");
        assert_eq!(s.correlation_id, None, "an event has no correlation id");
        assert!(!s.id.is_empty(), "message id");
        assert!(
            before <= s.time && s.time <= s.handled_at,
            "publish time {:?} is between {before:?} and the handling {:?}",
            s.time,
            s.handled_at
        );
    }
    assert_ne!(seen[0].id, seen[1].id, "message ids are unique");
    assert_eq!(seen[0].tenant.as_deref(), Some("acme"), "text header");
    assert_eq!(
        seen[0].trace.as_deref(),
        Some(&[0u8, 159, 146, 150, 255][..]),
        "binary header"
    );
    assert_eq!(seen[1].tenant, None, "headers belong to their message");
    assert_eq!(seen[1].trace, None);
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.pubsub.bincode", codec = "bincode", key = id)]
pub struct BincodePayload {
    id: u64,
    kind: Kind,
    some: Option<Inner>,
    none: Option<Inner>,
    pairs: Vec<(String, i32)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.pubsub.postcard", codec = "postcard", key = id)]
pub struct PostcardPayload {
    id: String,
    kind: Kind,
    nested: Inner,
    bytes: Vec<u8>,
    big: u128,
}

/// Not `Clone`: travels encoded even where clones could travel.
#[derive(Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.pubsub.opaque")]
pub struct OpaquePayload {
    kind: Kind,
    nested: Inner,
    text: String,
}

fn bincode_sample() -> BincodePayload {
    BincodePayload {
        id: 42,
        kind: Kind::Tuple(1, "one".to_owned()),
        some: Some(Inner {
            label: "x".to_owned(),
            weights: vec![1.5],
        }),
        none: None,
        pairs: vec![("a".to_owned(), -1), ("b".to_owned(), i32::MAX)],
    }
}

fn postcard_sample() -> PostcardPayload {
    PostcardPayload {
        id: "p-1".to_owned(),
        kind: Kind::Record {
            depth: 9,
            tags: vec!["deep".to_owned()],
        },
        nested: Inner {
            label: "ünïcode".to_owned(),
            weights: vec![-0.0, 3.5],
        },
        bytes: (0..=255).collect(),
        big: u128::MAX,
    }
}

fn opaque_sample() -> OpaquePayload {
    OpaquePayload {
        kind: Kind::Plain,
        nested: Inner {
            label: "opaque".to_owned(),
            weights: vec![0.125],
        },
        text: "not Clone".to_owned(),
    }
}

/// Subscribes a handler that compares what arrives with `sample()`.
async fn expect_sample<T>(net: &Net, sample: fn() -> T) -> Arc<Log<(bool, String)>>
where
    T: Topic + PartialEq + Debug,
{
    let bus = net.bus("codec-reader").await;
    let log = Log::new();
    let sink = Arc::clone(&log);
    bus.group(net.group("pubsub.t"))
        .subscribe(move |message: T| {
            sink.push((message == sample(), format!("{message:?}")));
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe");
    log
}

/// Payloads in the bincode and postcard codecs, and a type that cannot be
/// cloned, arrive equal to what was published.
pub async fn payloads_of_every_codec_survive_the_transport<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let publisher = net.bus("codec-writer").await;
    let bincode = expect_sample(&net, bincode_sample).await;
    let postcard = expect_sample(&net, postcard_sample).await;
    let opaque = expect_sample(&net, opaque_sample).await;

    publisher.publish(&bincode_sample()).await.expect("bincode");
    publisher
        .publish(&postcard_sample())
        .await
        .expect("postcard");
    publisher.publish(&opaque_sample()).await.expect("opaque");

    for (what, log) in [
        ("bincode", &bincode),
        ("postcard", &postcard),
        ("not Clone", &opaque),
    ] {
        log.wait_for(1, what).await;
    }
    net.close().await;
    for (what, log) in [
        ("bincode", bincode),
        ("postcard", postcard),
        ("not Clone", opaque),
    ] {
        let seen = log.snapshot();
        assert_eq!(seen.len(), 1, "{what}: handled once");
        assert!(seen[0].0, "{what}: arrived changed: {}", seen[0].1);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.pubsub.flood")]
pub struct Flood {
    publisher: u32,
    seq: u32,
}

fn record_flood(
    log: Arc<Log<(u32, u32)>>,
) -> impl Fn(Flood) -> futures::future::Ready<Result<(), Infallible>> + Send + Sync + 'static {
    move |message: Flood| {
        log.push((message.publisher, message.seq));
        futures::future::ready(Ok(()))
    }
}

/// 50 publishers publish 100 messages each at the same time, on two
/// instances; a group of two members handles each message exactly once.
pub async fn concurrent_publishers_lose_and_duplicate_nothing<H: Harness>(harness: H) {
    const PUBLISHERS: u32 = 50;
    const EACH: u32 = 100;
    let total = (PUBLISHERS * EACH) as usize;

    let net = Net::new(&harness, Setup::default()).await;
    let log = Log::new();
    for consumer in net.buses("flood-sink", 2).await {
        consumer
            .group(net.group("pubsub.record_flood"))
            .subscribe(record_flood(Arc::clone(&log)))
            .await
            .expect("subscribe");
    }
    let producers = net.buses("flood-source", 2).await;

    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let bus = producers[publisher as usize % producers.len()].clone();
            tokio::spawn(async move {
                for seq in 0..EACH {
                    bus.publish(&Flood { publisher, seq })
                        .await
                        .unwrap_or_else(|e| panic!("publisher {publisher} seq {seq}: {e}"));
                }
            })
        })
        .collect();
    for task in tasks {
        guard("a publisher task", task)
            .await
            .expect("publisher task");
    }

    log.wait_until_or_describe(
        "all flood messages handled",
        |seen| seen.iter().collect::<BTreeSet<_>>().len() == total,
        |seen| {
            let mut count: BTreeMap<(u32, u32), usize> = BTreeMap::new();
            for &entry in seen {
                *count.entry(entry).or_default() += 1;
            }
            let missing: Vec<_> = (0..PUBLISHERS)
                .flat_map(|p| (0..EACH).map(move |s| (p, s)))
                .filter(|entry| !count.contains_key(entry))
                .collect();
            let twice: Vec<_> = count.iter().filter(|(_, &n)| n > 1).collect();
            format!(
                "; {} (publisher, seq) missing, first {:?}; {} seen more than once, first {:?}",
                missing.len(),
                &missing[..missing.len().min(20)],
                twice.len(),
                &twice[..twice.len().min(20)]
            )
        },
    )
    .await;
    net.close().await;
    let seen = log.snapshot();
    let distinct: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), total, "none lost");
    if harness.commits_survive_rebalances() {
        assert_eq!(seen.len(), total, "none duplicated");
    } else {
        // Kafka's mock cluster refuses commits while its group rebalances:
        // a late rebalance round redelivers (at-least-once).
        println!(
            "{}: {total} messages, 0 lost, {} redelivered after rebalances",
            harness.name(),
            seen.len() - total
        );
    }
    assert!(distinct.iter().all(|&(p, s)| p < PUBLISHERS && s < EACH));
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.pubsub.batch", key = key)]
pub struct Batched {
    key: String,
    seq: u32,
}

/// `publish_batch` delivers every message of the batch once, in order per key.
pub async fn publish_batch_delivers_each_message_once<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("batch-sink").await;
    let log = Log::new();
    let sink = Arc::clone(&log);
    consumer
        .group(net.group("pubsub.batched"))
        .subscribe(move |message: Batched| {
            sink.push((message.key, message.seq));
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe");
    let producer = net.bus("batch-source").await;

    let batch: Vec<Batched> = (0..300)
        .map(|seq| Batched {
            key: format!("k{}", seq % 3),
            seq,
        })
        .collect();
    producer
        .publish_batch(&batch[..150])
        .await
        .expect("batch 1");
    producer
        .publish_batch(&batch[150..])
        .await
        .expect("batch 2");

    log.wait_for(batch.len(), "all batched messages handled")
        .await;
    net.close().await;
    let seen = log.snapshot();
    assert_eq!(seen.len(), batch.len(), "none duplicated");
    for key in ["k0", "k1", "k2"] {
        let got: Vec<u32> = seen
            .iter()
            .filter(|(k, _)| k == key)
            .map(|&(_, s)| s)
            .collect();
        let want: Vec<u32> = (0..300).filter(|s| format!("k{}", s % 3) == key).collect();
        assert_eq!(got, want, "key {key}: every message, in publish order");
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.pubsub.identified", key = key)]
pub struct Identified {
    key: String,
    n: u64,
}

/// `publish` returns the id its handlers see; `publish_with_id` publishes
/// under the caller's id (text or UUID text) and refuses an empty one.
pub async fn publish_returns_the_id_and_keeps_a_callers_id<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("identified-sink").await;
    let seen: Arc<Log<(u64, String)>> = Log::new();
    let seen_in = Arc::clone(&seen);
    consumer
        .group(net.group("pubsub.identified"))
        .subscribe(move |message: Identified, ctx: Context| {
            seen_in.push((message.n, ctx.id().to_string()));
            async { Ok::<(), Infallible>(()) }
        })
        .await
        .expect("subscribe");

    let publisher = net.bus("identified-source").await;
    let at = |n| Identified {
        key: format!("k{n}"),
        n,
    };
    let made = guard("publish", publisher.publish(&at(0)))
        .await
        .expect("publish");
    let with = guard(
        "publish_with",
        publisher.publish_with(&at(1), Headers::new()),
    )
    .await
    .expect("publish_with");
    let uuid_text = "0b6e1f3c-94a6-4d0e-8d8e-6f5a2b7c9d10";
    let mut expected = vec![(0, made.to_string()), (1, with.to_string())];
    for (n, id) in [(2, "order-17/line-3"), (3, uuid_text)] {
        let kept = guard(
            "publish_with_id",
            publisher.publish_with_id(&at(n), topicbus::MessageId::parse(id), Headers::new()),
        )
        .await
        .expect("publish_with_id");
        assert_eq!(
            kept.to_string(),
            id,
            "publish_with_id returns the caller's id"
        );
        expected.push((n, id.to_owned()));
    }
    assert_ne!(made, with, "each publish makes a new id");
    match publisher
        .publish_with_id(&at(4), topicbus::MessageId::parse(""), Headers::new())
        .await
    {
        Err(topicbus::Error::Config { key, .. }) => assert_eq!(key, "ce_id"),
        other => panic!("an empty id: expected Error::Config naming ce_id, got {other:?}"),
    }

    let mut got = seen.wait_for(expected.len(), "every message handled").await;
    net.close().await;
    got.sort();
    assert_eq!(got, expected, "(n, id) as the handler saw them");
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.pubsub.positioned", key = key, partitions = 4)]
pub struct Positioned {
    key: String,
    n: u64,
}

/// A message's key and number, and its partition and offset as handled.
type Placed = (String, u64, u32, Option<i64>);

/// `Context::partition` is where the message is: the same for every
/// message of one key, below the topic's partition count; with offsets
/// (`has_offsets`), `Context::offset` grows with each message of a
/// partition, in the order they are handled.
pub async fn context_tells_partition_and_offset<H: Harness>(harness: H) {
    const KEYS: u64 = 8;
    const EACH: u64 = 5;
    let net = Net::new(&harness, Setup::default()).await;
    let consumer = net.bus("positioned-sink").await;
    let seen: Arc<Log<Placed>> = Log::new();
    let seen_in = Arc::clone(&seen);
    consumer
        .group(net.group("pubsub.positioned"))
        .subscribe(move |message: Positioned, ctx: Context| {
            seen_in.push((message.key, message.n, ctx.partition(), ctx.offset()));
            async { Ok::<(), Infallible>(()) }
        })
        .await
        .expect("subscribe");
    let publisher = net.bus("positioned-source").await;
    // Fixed keys: where they land is the same on every run (the group is
    // new, so earlier runs' messages are not seen).
    let messages: Vec<Positioned> = (0..KEYS * EACH)
        .map(|n| Positioned {
            key: format!("k{}", n % KEYS),
            n,
        })
        .collect();
    guard("publish_batch", publisher.publish_batch(&messages))
        .await
        .expect("publish");
    let seen = seen.wait_for(messages.len(), "every message handled").await;
    net.close().await;

    let mut partition_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut last_offset: BTreeMap<u32, i64> = BTreeMap::new();
    for (key, n, partition, offset) in &seen {
        let first = *partition_of.entry(key.clone()).or_insert(*partition);
        assert_eq!(*partition, first, "message {n} of {key}: partition");
        if harness.partitions_as_declared() {
            assert!(*partition < 4, "message {n}: partition {partition} of 4");
        }
        match (harness.has_offsets(), offset) {
            (true, Some(offset)) => {
                if let Some(last) = last_offset.insert(*partition, *offset) {
                    assert!(
                        *offset > last,
                        "message {n}: offset {offset} after {last} in partition {partition}"
                    );
                }
            }
            (false, None) => {}
            (has, offset) => panic!("message {n}: offset {offset:?}, has_offsets() = {has}"),
        }
    }
    if harness.partitions_as_declared() {
        assert!(
            partition_of.values().collect::<BTreeSet<_>>().len() > 1,
            "{KEYS} keys spread over more than one of 4 partitions: {partition_of:?}"
        );
    }
}
