//! Dead-letter re-drive on Kafka (what it promises: `crate::redrive`).
//!
//! A consumer of its own, in the group `topicbus.redrive.{topic}`, is
//! assigned the partitions of `{topic}.dlq` at the group's committed offsets
//! (the oldest kept where it has none) and reads up to the end offsets
//! captured at the start. Messages are republished in batches; a batch's
//! offsets are committed only after the broker acknowledged all of it, or
//! refused what it skips.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use super::config::config_error;
use super::consume::Reader;
use super::produce::{self, KafkaProducer};
use super::{unavailable, KafkaConfig};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::redrive::{dead_letter_topic, revive, skipped};
use crate::transport::RedriveSummary;
use crate::wire;

/// Messages republished before their offsets are committed.
const BATCH: usize = 256;

/// Moves the messages of `{topic}.dlq` present now back to `topic`.
pub(super) async fn run(
    producer: KafkaProducer,
    config: KafkaConfig,
    topic: &str,
) -> Result<RedriveSummary> {
    let runtime = tokio::runtime::Handle::current();
    let topic = topic.to_owned();
    // librdkafka's consumer calls block: the whole re-drive runs on a
    // blocking thread, which waits for the acknowledgements on `runtime`.
    tokio::task::spawn_blocking(move || redrive(&runtime, &producer, &config, &topic))
        .await
        .map_err(|e| Error::Unavailable {
            message: format!("the re-drive task failed: {e}"),
            source: None,
        })?
}

fn redrive(
    runtime: &tokio::runtime::Handle,
    producer: &KafkaProducer,
    config: &KafkaConfig,
    topic: &str,
) -> Result<RedriveSummary> {
    let dlq = dead_letter_topic(topic);
    let consumer: BaseConsumer = config
        .client_config(&[
            ("group.id", format!("topicbus.redrive.{topic}")),
            ("enable.auto.commit", "false".to_owned()),
            ("enable.auto.offset.store", "false".to_owned()),
            ("auto.offset.reset", "earliest".to_owned()),
            ("enable.partition.eof", "false".to_owned()),
        ])
        .create()
        .map_err(config_error)?;
    super::config::refresh_tokens_in_background(config, consumer.client())?;
    let mut ends = assign_from_committed(&consumer, config, &dlq)?;
    let mut reader = Reader::new(
        Cow::Owned(dlq.clone()),
        config.go_envelope,
        config.header_limits,
    );
    let mut batch = Batch::default();
    let mut done = RedriveSummary::default();
    let limit = produce::producer_limit(config);
    let mut progress = Instant::now();
    while !ends.is_empty() {
        let polled = consumer.poll(Duration::from_millis(100));
        let idle = polled.is_none();
        match polled {
            Some(Ok(message)) => {
                progress = Instant::now();
                let (partition, offset) = (message.partition(), message.offset());
                if let Some(&end) = ends.get(&partition) {
                    if offset < end {
                        let dead = reader.read(&message);
                        let revived = revive(&dead, topic).map_err(|e| e.to_string());
                        match revived.and_then(|revived| fits(revived, limit)) {
                            Ok(revived) => batch.messages.push((revived, partition, offset)),
                            Err(reason) => {
                                skipped(&dlq, &at(partition, offset), &dead.meta.id, &reason);
                                done.skipped += 1;
                            }
                        }
                        batch.next.insert(partition, offset + 1);
                    }
                    if offset + 1 >= end {
                        ends.remove(&partition);
                    }
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%error, topic = %dlq, "re-drive consumer");
            }
            None => {
                // Offsets that hold no message (compaction, transaction
                // markers) are never delivered: the position tells.
                if let Ok(positions) = consumer.position() {
                    for elem in positions.elements() {
                        if let (Offset::Offset(at), Some(&end)) =
                            (elem.offset(), ends.get(&elem.partition()))
                        {
                            if at >= end {
                                ends.remove(&elem.partition());
                            }
                        }
                    }
                }
                if progress.elapsed() > config.connect_timeout && !ends.is_empty() {
                    return Err(Error::Unavailable {
                        message: format!(
                            "re-drive of `{dlq}` read nothing for {:?} (brokers `{}`); {} moved so far",
                            config.connect_timeout, config.brokers, done.moved
                        ),
                        source: None,
                    });
                }
            }
        }
        if batch.messages.len() >= BATCH || (!batch.next.is_empty() && (idle || ends.is_empty())) {
            flush(
                runtime, producer, &consumer, config, &dlq, &mut batch, &mut done,
            )?;
        }
    }
    flush(
        runtime, producer, &consumer, config, &dlq, &mut batch, &mut done,
    )?;
    Ok(done)
}

/// Re-driven messages not yet acknowledged, and the offsets to commit
/// once they are.
#[derive(Default)]
struct Batch {
    /// Each with the partition and offset of its dead letter.
    messages: Vec<(Message, i32, i64)>,
    /// Per partition, the offset after the last dead letter read
    /// (re-driven or skipped).
    next: HashMap<i32, i64>,
}

/// Where a dead letter is, for the log.
fn at(partition: i32, offset: i64) -> String {
    format!("partition {partition} offset {offset}")
}

/// `message` if it fits the producer's `limit`, else why not: refused
/// before it is sent, so that the rest of its batch goes through.
fn fits(message: Message, limit: usize) -> std::result::Result<Message, String> {
    match record_size(&message) {
        size if size > limit => Err(format!(
            "{size} bytes once re-driven, over the producer's limit of {limit} bytes (message.max.bytes)"
        )),
        _ => Ok(message),
    }
}

/// The bytes of `message` as a record: payload, key and headers.
fn record_size(message: &Message) -> usize {
    let meta = &message.meta;
    let bare = message.payload().size() + meta.key.as_ref().map_or(0, Vec::len);
    wire::fold_headers(meta, bare, |size, name, value| {
        size + name.len() + value.len()
    })
}

/// Assigns the partitions of `dlq` that hold messages past the group's
/// committed offset; returns their end offsets as of now.
fn assign_from_committed(
    consumer: &BaseConsumer,
    config: &KafkaConfig,
    dlq: &str,
) -> Result<HashMap<i32, i64>> {
    let timeout = config.connect_timeout;
    let metadata = consumer
        .fetch_metadata(Some(dlq), timeout)
        .map_err(|e| unavailable(format!("cannot read the partitions of `{dlq}`"), e))?;
    let Some(described) = metadata.topics().iter().find(|t| t.name() == dlq) else {
        return Ok(HashMap::new());
    };
    match described.error() {
        None => {}
        // No dead-letter topic: nothing was ever dead-lettered.
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Ok(HashMap::new()),
        Some(error) => {
            return Err(Error::Unavailable {
                message: format!("cannot read the partitions of `{dlq}`: {error:?}"),
                source: None,
            })
        }
    }
    let mut all = TopicPartitionList::new();
    for partition in described.partitions() {
        all.add_partition(dlq, partition.id());
    }
    let committed = consumer
        .committed_offsets(all, timeout)
        .map_err(|e| unavailable(format!("cannot read the re-drive offsets of `{dlq}`"), e))?;
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for elem in committed.elements() {
        let partition = elem.partition();
        let (low, high) = consumer
            .fetch_watermarks(dlq, partition, timeout)
            .map_err(|e| unavailable(format!("cannot read the offsets of `{dlq}`"), e))?;
        let start = match elem.offset() {
            Offset::Offset(at) => at.max(low),
            _ => low,
        };
        if start < high {
            assignment
                .add_partition_offset(dlq, partition, Offset::Offset(start))
                .map_err(|e| unavailable("cannot set a start offset", e))?;
            ends.insert(partition, high);
        }
    }
    if !ends.is_empty() {
        consumer
            .assign(&assignment)
            .map_err(|e| unavailable(format!("cannot read `{dlq}`"), e))?;
    }
    Ok(ends)
}

/// Republishes `batch`, waits for the broker's acknowledgements, then
/// commits the offsets after it.
///
/// When the producer or the broker refuses the batch as too large, which
/// record is not known (a broker refuses a whole record batch), so the
/// batch is sent again one record at a time and a record refused alone is
/// skipped. Records of the batch already delivered arrive again
/// (at-least-once); none is lost, and the next run does not meet the
/// skipped one again.
fn flush(
    runtime: &tokio::runtime::Handle,
    producer: &KafkaProducer,
    consumer: &BaseConsumer,
    config: &KafkaConfig,
    dlq: &str,
    batch: &mut Batch,
    done: &mut RedriveSummary,
) -> Result<()> {
    if batch.next.is_empty() {
        return Ok(());
    }
    let messages = batch.messages.iter().map(|(m, ..)| Ok(m));
    match runtime.block_on(produce::publish_batch(producer, config, messages)) {
        Ok(()) => done.moved += batch.messages.len() as u64,
        Err(Error::TooLarge { .. }) => {
            for (message, partition, offset) in &batch.messages {
                match runtime.block_on(produce::publish(producer, config, message)) {
                    Ok(()) => done.moved += 1,
                    Err(error @ Error::TooLarge { .. }) => {
                        let reason = format!(
                            "about {} bytes once re-driven, refused: {error}",
                            record_size(message)
                        );
                        skipped(dlq, &at(*partition, *offset), &message.meta.id, &reason);
                        done.skipped += 1;
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        Err(other) => return Err(other),
    }
    let mut offsets = TopicPartitionList::new();
    for (&partition, &offset) in batch.next.iter() {
        offsets
            .add_partition_offset(dlq, partition, Offset::Offset(offset))
            .map_err(|e| unavailable("cannot set an offset to commit", e))?;
    }
    consumer.commit(&offsets, CommitMode::Sync).map_err(|e| {
        unavailable(
            format!("re-drive of `{dlq}` could not commit its offsets"),
            e,
        )
    })?;
    batch.messages.clear();
    batch.next.clear();
    Ok(())
}
