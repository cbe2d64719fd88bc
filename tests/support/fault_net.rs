//! What the `fault_*` tests run on: a memory broker or librdkafka's mock
//! cluster behind one small interface, and the one-line tally every case
//! prints (`fault <case>: sent=.. acknowledged=.. received=.. lost=.. duplicated=..`).
#![allow(dead_code)] // shared by several test binaries; each uses a part

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::{Bus, BusBuilder};

/// Hang guard only: nothing asserts on time.
pub const HANG: Duration = Duration::from_secs(60);

pub async fn guard<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what} did not finish within {HANG:?}"))
}

/// A memory broker or a Kafka mock cluster, making buses that share it.
pub enum Net {
    Memory(MemoryBroker),
    #[cfg(feature = "kafka")]
    Kafka(crate::mock_kafka::MockKafka),
}

impl Net {
    pub fn memory() -> Self {
        Net::Memory(MemoryBroker::new(MemoryConfig::default().partitions(4)))
    }

    #[cfg(feature = "kafka")]
    pub fn kafka() -> Self {
        Net::Kafka(crate::mock_kafka::MockKafka::start(1))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Net::Memory(_) => "memory",
            #[cfg(feature = "kafka")]
            Net::Kafka(_) => "kafka_mock",
        }
    }

    pub fn is_kafka(&self) -> bool {
        !matches!(self, Net::Memory(_))
    }

    /// The mock cluster's bootstrap servers.
    #[cfg(feature = "kafka")]
    pub fn brokers(&self) -> &str {
        match self {
            Net::Kafka(cluster) => &cluster.bootstrap,
            Net::Memory(_) => panic!("not a Kafka network"),
        }
    }

    /// A bus of `service`, with `settings` applied to its builder.
    pub async fn bus(&self, service: &str, settings: impl FnOnce(BusBuilder) -> BusBuilder) -> Bus {
        let builder = settings(
            Bus::builder()
                .service(service)
                .backoff(Duration::from_millis(1), Duration::from_millis(20)),
        );
        match self {
            Net::Memory(broker) => builder.memory(broker.clone()).build(),
            #[cfg(feature = "kafka")]
            Net::Kafka(cluster) => guard(
                "connect",
                builder.kafka(kafka_config(&cluster.bootstrap)).connect(),
            )
            .await
            .expect("connect to the mock cluster"),
        }
    }

    /// The partition librdkafka's default partitioner (CRC-32 of the key),
    /// or the memory transport's (FNV-1a of the key), gives `key` among `n`.
    pub fn partition_of(&self, key: &[u8], n: u32) -> u32 {
        match self {
            Net::Memory(_) => (fnv1a(key) % u64::from(n)) as u32,
            #[cfg(feature = "kafka")]
            Net::Kafka(_) => crc32(key) % n,
        }
    }
}

/// The settings the Kafka tests use on the mock cluster.
#[cfg(feature = "kafka")]
pub fn kafka_config(brokers: &str) -> topicbus::kafka::KafkaConfig {
    topicbus::kafka::KafkaConfig::new(brokers)
        .provision_topics(false)
        .set("fetch.wait.max.ms", "5")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
}

/// FNV-1a over the key as `Hash for [u8]` feeds it: its length (a
/// native-endian `usize`), then its bytes.
fn fnv1a(key: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in key.len().to_ne_bytes().iter().chain(key) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// CRC-32 (IEEE), as librdkafka's `consistent` partitioner uses it.
#[cfg(feature = "kafka")]
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Numbers seen by handlers (or dead-letter readers), with a wake-up on each.
#[derive(Default)]
pub struct Seen {
    items: Mutex<Vec<u64>>,
    changed: Notify,
}

impl Seen {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn push(&self, n: u64) {
        self.items.lock().unwrap().push(n);
        self.changed.notify_waiters();
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.items.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }

    /// Waits until `done` holds for the numbers seen.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[u64]) -> bool) {
        guard(what, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if done(&self.items.lock().unwrap()) {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }

    /// Waits until every number of `want` was seen.
    pub async fn wait_for_all(&self, what: &str, want: &[u64]) {
        self.wait_until(what, |seen| want.iter().all(|n| seen.contains(n)))
            .await;
    }
}

/// The figures of one case.
pub struct Tally {
    pub sent: u64,
    pub acknowledged: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
}

/// Counts `deliveries` (every handling or dead letter, by number) against
/// `acknowledged` (what publishers were told went through), prints the
/// case's line and asserts nothing acknowledged was lost.
pub fn tally(case: &str, sent: u64, acknowledged: &[u64], deliveries: &[u64]) -> Tally {
    let mut count: BTreeMap<u64, u64> = BTreeMap::new();
    for n in deliveries {
        *count.entry(*n).or_default() += 1;
    }
    let lost_numbers: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|n| !count.contains_key(n))
        .collect();
    let tally = Tally {
        sent,
        acknowledged: acknowledged.len() as u64,
        received: count.len() as u64,
        lost: lost_numbers.len() as u64,
        duplicated: count.values().map(|c| c - 1).sum(),
    };
    println!(
        "fault {case}: sent={} acknowledged={} received={} lost={} duplicated={}",
        tally.sent, tally.acknowledged, tally.received, tally.lost, tally.duplicated
    );
    assert_eq!(tally.lost, 0, "{case}: lost {lost_numbers:?}");
    tally
}
