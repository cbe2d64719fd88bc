//! Reading a topic's log directly with rdkafka, to tell where a message was
//! lost (never written, or written and not handled) and where it sits.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

/// A consumer that never commits, for reading offsets and records.
pub fn plain_consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("plain consumer")
}

/// Calls `each` with the partition, offset and JSON value of every record
/// in the `partitions` partitions of `topic`, from the start of each to its
/// high watermark when reading began, read as `group` without committing.
/// Blocks; call it off the async runtime.
pub fn each_record(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    mut each: impl FnMut(i32, i64, serde_json::Value),
) {
    let consumer = plain_consumer(brokers, group);
    let mut list = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
    }
    consumer.assign(&list).expect("assign");
    let mut read: HashMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    while read.iter().any(|(p, at)| *at < ends[p]) {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(message)) => {
                read.insert(message.partition(), message.offset() + 1);
                let value = serde_json::from_slice(message.payload().unwrap_or_default())
                    .expect("a JSON message");
                each(message.partition(), message.offset(), value);
            }
            Some(Err(error)) => panic!("reading the log of {topic}: {error}"),
            None => panic!("reading the log of {topic} stalled at {read:?} of {ends:?}"),
        }
    }
}

/// Every copy of every numbered message (JSON with a `seq` field) in the
/// `partitions` partitions of `topic`: number → (partition, offset) of each
/// copy, in log order. Blocks; call it off the async runtime.
#[allow(dead_code)]
pub fn positions(brokers: &str, topic: &str, partitions: i32) -> HashMap<u64, Vec<(i32, i64)>> {
    let mut positions: HashMap<u64, Vec<(i32, i64)>> = HashMap::new();
    each_record(
        brokers,
        "fault.log-reader",
        topic,
        partitions,
        |partition, offset, value| {
            let seq = value["seq"].as_u64().expect("a numbered message");
            positions.entry(seq).or_default().push((partition, offset));
        },
    );
    positions
}
