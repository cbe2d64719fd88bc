//! `topicbus dlq ...`: dead-letter topics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use topicbus::header;

use crate::cluster::Cluster;
use crate::show::{self, Json, Record};
use crate::Failure;

/// Dead-letter headers, shown first under a plain label (docs/wire.md, "Dead letters").
const DEAD_LETTER_HEADERS: [(&str, &str); 5] = [
    (header::ERROR, "reason"),
    (header::ERROR_KIND, "kind"),
    (header::ATTEMPTS, "attempts"),
    (header::ORIGINAL_TOPIC, "original topic"),
    (header::GROUP, "group"),
];

/// How often a long listing reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// `dlq list`: every record of `{topic}.dlq` up to its end when the listing
/// started, with its dead-letter headers, then the count.
pub async fn list(cluster: Cluster, topic: String, json: Json) -> Result<(), Failure> {
    let dlq = format!("{topic}.dlq");
    let (dlq, count) = tokio::task::spawn_blocking(move || {
        let mut stdout = std::io::stdout().lock();
        read_to_end(&cluster, &dlq, |record| {
            show::emit(&mut stdout, &record.render(&DEAD_LETTER_HEADERS, json))
        })
        .map(|count| (dlq, count))
    })
    .await
    .map_err(|e| Failure(format!("the reader failed: {e}")))??;
    let summary = format!(
        "{count} dead-lettered message{} in `{dlq}`\n",
        if count == 1 { "" } else { "s" }
    );
    show::emit(&mut std::io::stdout(), &summary).map(drop)
}

/// `dlq redrive`: moves the messages now in `{topic}.dlq` back to `topic`
/// (`Bus::redrive`), so that the consumer group that gave up on each one
/// handles it again; prints how many it moved, and warns of those it
/// skipped.
pub async fn redrive(cluster: Cluster, topic: String) -> Result<(), Failure> {
    let topic = topic.strip_suffix(".dlq").unwrap_or(&topic).to_owned();
    let dlq = format!("{topic}.dlq");
    cluster.require_topic(&dlq).await?;
    cluster.require_topic(&topic).await?;
    let bus = cluster.bus().await?;
    eprintln!("re-driving `{dlq}` to `{topic}`");
    let done = bus.redrive(&topic).await;
    crate::send::close(&bus).await;
    let done = done?;
    if done.skipped > 0 {
        show::warn(&format!(
            "skipped {} dead letter{} that cannot be re-driven: larger than the producer or \
             broker accepts once re-driven, or with a `topicbus_redrives` count that is not a \
             number below 1000000; they stay in `{dlq}`, and later re-drives pass them by",
            done.skipped,
            if done.skipped == 1 { "" } else { "s" }
        ));
    }
    let summary = format!(
        "moved {} message{} from `{dlq}` back to `{topic}`\n",
        done.moved,
        if done.moved == 1 { "" } else { "s" }
    );
    show::emit(&mut std::io::stdout(), &summary).map(drop)
}

/// Reads `topic` from the oldest kept record to the end offsets it had when
/// called, handing each record to `each` (which returns `false` to stop
/// early); returns how many it was handed.
/// Fails when the cluster stops answering for the tool's timeout. Blocks.
pub fn read_to_end(
    cluster: &Cluster,
    topic: &str,
    mut each: impl FnMut(&Record) -> Result<bool, Failure>,
) -> Result<u64, Failure> {
    let consumer = cluster.consumer(true)?;
    let partitions = cluster.partitions(&consumer, topic)?;
    // The offset each partition must reach, for those with records.
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut total = 0;
    for partition in partitions {
        let (low, high) = cluster.watermarks(&consumer, topic, partition)?;
        if low < high {
            ends.insert(partition, high);
            total += high - low;
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(|e| {
                    Failure(format!(
                        "cannot assign `{topic}` partition {partition}: {e}"
                    ))
                })?;
        }
    }
    eprintln!(
        "reading `{topic}`: {total} record{} in {} partition{}",
        if total == 1 { "" } else { "s" },
        ends.len(),
        if ends.len() == 1 { "" } else { "s" }
    );
    if ends.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Failure(format!("cannot read `{topic}`: {e}")))?;
    let mut read = 0u64;
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let record = Record::from_kafka(&message);
                let Some(&end) = ends.get(&record.partition) else {
                    continue;
                };
                if record.offset >= end {
                    continue;
                }
                read += 1;
                if !each(&record)? {
                    break;
                }
                if record.offset + 1 >= end {
                    ends.remove(&record.partition);
                }
            }
            // Transaction markers may take the last offsets: the end is
            // reached all the same.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                last_progress = Instant::now();
                ends.remove(&partition);
            }
            Some(Err(error)) => show::warn(&format!("reading `{topic}`: {error}")),
            None => {}
        }
        if last_progress.elapsed() > cluster.timeout {
            return Err(Failure(format!(
                "no progress reading `{topic}` from `{}` for {} (read {read} of {total})",
                cluster.brokers,
                humantime::format_duration(cluster.timeout)
            )));
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            eprintln!("read {read} of {total}");
            last_report = Instant::now();
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_headers_are_featured_by_their_wire_names() {
        let record = Record {
            topic: "orders.dlq".into(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            headers: vec![
                ("topicbus_error".into(), Some(b"boom".to_vec())),
                ("topicbus_attempts".into(), Some(b"4".to_vec())),
                ("topicbus_original_topic".into(), Some(b"orders".to_vec())),
            ],
            payload: None,
        };
        let shown = record.render(&DEAD_LETTER_HEADERS, Json::AsSent);
        assert!(shown.contains("  reason: boom\n"), "{shown}");
        assert!(shown.contains("  attempts: 4\n"), "{shown}");
        assert!(shown.contains("  original topic: orders\n"), "{shown}");
        assert!(shown.contains("  group: -\n"), "{shown}");
    }
}
