//! Hostile payloads for the binary codecs, sent with `publish_raw` to typed
//! topics as any client that can write to a topic could: a length prefix far
//! beyond the payload (bincode allocated it first and aborted the process)
//! and a value nested hundreds of thousands deep (postcard and bincode
//! recursed until the worker's stack overflowed). Each lands in
//! `{topic}.dlq` with kind `decode` and a reason; the good records around
//! it, on the same partition, are handled in order; the process lives on.
//!
//! The limits are in docs/limits.md.

#[path = "support/fault_net.rs"]
mod fault_net;
#[cfg(feature = "kafka")]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use topicbus::codec::{Codec, MAX_DEPTH};
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::{header, Context, RawMessage, Topic};

use fault_net::{guard, tally, Net, Seen};

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.bincode.named", codec = "bincode")]
struct BincodeNamed {
    name: String,
    n: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.postcard.named", codec = "postcard")]
struct PostcardNamed {
    name: String,
    n: u64,
}

/// The recursive type of the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

impl Tree {
    /// `nodes` nodes above a leaf, built without recursion.
    fn deep(nodes: usize) -> Tree {
        (0..nodes).fold(Tree::Leaf, |tree, _| Tree::Node(Box::new(tree)))
    }
}

impl Drop for Tree {
    // The derived drop recurses once per level; a long chain is taken
    // apart in a loop instead, so that the test's own values are safe.
    fn drop(&mut self) {
        let mut next = match self {
            Tree::Node(child) => std::mem::replace(&mut **child, Tree::Leaf),
            Tree::Leaf => return,
        };
        while let Tree::Node(child) = &mut next {
            next = std::mem::replace(&mut **child, Tree::Leaf);
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.postcard.tree", codec = "postcard")]
struct PostcardTree {
    n: u64,
    tree: Tree,
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.bincode.tree", codec = "bincode")]
struct BincodeTree {
    n: u64,
    tree: Tree,
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.json.tree")]
struct JsonTree {
    n: u64,
    tree: Tree,
}

/// A payload type whose records carry their number.
trait Numbered: Topic + Clone {
    fn make(n: u64) -> Self;
    fn number(&self) -> u64;
}

macro_rules! numbered_named {
    ($($t:ty),*) => {$(
        impl Numbered for $t {
            fn make(n: u64) -> Self {
                Self { name: format!("record {n}"), n }
            }
            fn number(&self) -> u64 {
                self.n
            }
        }
    )*};
}
numbered_named!(BincodeNamed, PostcardNamed);

/// How deep the good records' trees are: right under the depth limit, so
/// that the limit is shown to leave room for the values it lets through,
/// on the worker's own stack.
const GOOD_TREE_NODES: usize = MAX_DEPTH - 2;

macro_rules! numbered_tree {
    ($($t:ty),*) => {$(
        impl Numbered for $t {
            fn make(n: u64) -> Self {
                Self { n, tree: Tree::deep(GOOD_TREE_NODES) }
            }
            fn number(&self) -> u64 {
                self.n
            }
        }
    )*};
}
numbered_tree!(PostcardTree, BincodeTree, JsonTree);

/// One dead letter as read from the dead-letter topic.
#[derive(Debug, Clone)]
struct Letter {
    n: u64,
    kind: String,
    reason: String,
    payload_len: usize,
}

/// A memory broker whose in-process deliveries go through the codec too,
/// so that the good records are decoded like the hostile one.
fn memory() -> Net {
    Net::Memory(MemoryBroker::new(
        MemoryConfig::default().partitions(4).force_codec(true),
    ))
}

/// Publishes good, good, `hostile`, good, good on one partition of `T`'s
/// topic; checks that the hostile record is dead-lettered at once with kind
/// `decode` and a reason containing `reason_has`, and that every good
/// record is handled, in order.
async fn hostile_record_is_dead_lettered<T: Numbered>(
    net: Net,
    hostile: Vec<u8>,
    reason_has: &str,
) {
    let case = format!("hostile/{}/{}", T::NAME, net.name());
    let worker = net.bus("hostile-worker", |b| b.retries(2)).await;
    let handled = Seen::new();
    let sink = Arc::clone(&handled);
    worker
        .group("hostile_codecs.handler")
        .subscribe(move |value: T, _ctx: Context| {
            sink.push(value.number());
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe");
    let ops = net.bus("hostile-ops", |b| b).await;
    let dead = Seen::new();
    let letters: Arc<Mutex<Vec<Letter>>> = Arc::default();
    let (dead_sink, letters_sink) = (Arc::clone(&dead), Arc::clone(&letters));
    ops.group("hostile_codecs.dead_letters")
        .subscribe_raw(
            format!("{}.dlq", T::NAME),
            move |raw: RawMessage, _ctx: Context| {
                let text = |name: &str| raw.headers.get_str(name).unwrap_or_default().to_owned();
                let n: u64 = text("n").parse().expect("every record carries `n`");
                letters_sink.lock().unwrap().push(Letter {
                    n,
                    kind: text(header::ERROR_KIND),
                    reason: text(header::ERROR),
                    payload_len: raw.payload.len(),
                });
                dead_sink.push(n);
                futures::future::ready(Ok::<(), Infallible>(()))
            },
        )
        .await
        .expect("subscribe to the dead letters");

    const HOSTILE: u64 = 2;
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        let payload = if n == HOSTILE {
            hostile.clone()
        } else {
            <T::Codec as Codec>::encode(&T::make(n)).expect("encode a good record")
        };
        let mut raw = RawMessage::new(T::NAME, payload);
        raw.key = Some(b"same".to_vec());
        raw.headers.insert("n", n.to_string());
        raw.headers
            .insert(header::CONTENT_TYPE, <T::Codec as Codec>::CONTENT_TYPE);
        guard("publish_raw", ops.publish_raw(raw))
            .await
            .expect("publish_raw");
        acknowledged.push(n);
    }
    let good: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|n| *n != HOSTILE)
        .collect();
    handled
        .wait_for_all("every good record handled", &good)
        .await;
    dead.wait_for_all("the hostile record dead-lettered", &[HOSTILE])
        .await;
    guard("shutdown", worker.shutdown())
        .await
        .expect("shutdown");
    guard("shutdown", ops.shutdown()).await.expect("shutdown");

    let mut deliveries = handled.snapshot();
    deliveries.extend(dead.snapshot());
    let figures = tally(&case, acknowledged.len() as u64, &acknowledged, &deliveries);
    assert_eq!(figures.duplicated, 0, "{case}: nothing twice");
    assert_eq!(handled.snapshot(), good, "{case}: good records in order");
    let letters = letters.lock().unwrap().clone();
    let [letter] = &letters[..] else {
        panic!("{case}: one dead letter, got {letters:?}");
    };
    assert_eq!(letter.n, HOSTILE, "{case}");
    assert_eq!(letter.kind, "decode", "{case}: {letter:?}");
    assert!(
        letter.reason.contains(<T::Codec as Codec>::NAME) && letter.reason.contains(reason_has),
        "{case}: the reason names the codec and `{reason_has}`: {}",
        letter.reason
    );
    assert_eq!(letter.payload_len, hostile.len(), "{case}: bytes kept");
}

/// bincode's standard configuration: a length of 2^50 (varint tag `fd`,
/// then eight little-endian bytes), and nothing after it.
fn bincode_length_2_pow_50() -> Vec<u8> {
    let mut payload = vec![0xfd];
    payload.extend_from_slice(&(1u64 << 50).to_le_bytes());
    assert_eq!(payload.len(), 9);
    payload
}

/// postcard: a varint length of 2^50, and nothing after it.
fn postcard_length_2_pow_50() -> Vec<u8> {
    let mut length = 1u64 << 50;
    let mut payload = Vec::new();
    while length >= 0x80 {
        payload.push((length as u8) | 0x80);
        length >>= 7;
    }
    payload.push(length as u8);
    payload
}

/// Number 2, then `Node` 400 000 times, then `Leaf`: the same bytes in
/// postcard and in bincode (single-byte varints).
fn tree_400_kb() -> Vec<u8> {
    let mut payload = vec![2];
    payload.resize(1 + 400_000, 1);
    payload.push(0);
    payload
}

/// Number 2 and a tree of 50 000 nodes in JSON.
fn json_tree_50_000() -> Vec<u8> {
    let nodes = 50_000;
    let mut text = String::from(r#"{"n":2,"tree":"#);
    text.push_str(&r#"{"Node":"#.repeat(nodes));
    text.push_str(r#""Leaf""#);
    text.push_str(&"}".repeat(nodes));
    text.push('}');
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bincode_length_prefix_is_dead_lettered_memory() {
    hostile_record_is_dead_lettered::<BincodeNamed>(
        memory(),
        bincode_length_2_pow_50(),
        "UnexpectedEnd",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_postcard_length_prefix_is_dead_lettered_memory() {
    hostile_record_is_dead_lettered::<PostcardNamed>(
        memory(),
        postcard_length_2_pow_50(),
        "Hit the end of buffer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_postcard_deep_tree_is_dead_lettered_memory() {
    hostile_record_is_dead_lettered::<PostcardTree>(memory(), tree_400_kb(), "nested deeper than")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bincode_deep_tree_is_dead_lettered_memory() {
    hostile_record_is_dead_lettered::<BincodeTree>(memory(), tree_400_kb(), "nested deeper than")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_json_deep_tree_is_dead_lettered_memory() {
    hostile_record_is_dead_lettered::<JsonTree>(
        memory(),
        json_tree_50_000(),
        "recursion limit exceeded",
    )
    .await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bincode_length_prefix_is_dead_lettered_kafka() {
    hostile_record_is_dead_lettered::<BincodeNamed>(
        Net::kafka(),
        bincode_length_2_pow_50(),
        "UnexpectedEnd",
    )
    .await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_postcard_deep_tree_is_dead_lettered_kafka() {
    hostile_record_is_dead_lettered::<PostcardTree>(
        Net::kafka(),
        tree_400_kb(),
        "nested deeper than",
    )
    .await;
}
