//! `topicbus tail`: print a topic's records as they arrive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::cluster::Cluster;
use crate::show::{self, Json, Record};
use crate::{Failure, From};

/// How long one poll waits before the stop flag is looked at again.
const POLL: Duration = Duration::from_millis(100);

pub async fn run(
    cluster: Cluster,
    topic: String,
    from: From,
    count: Option<u64>,
    json: Json,
) -> Result<(), Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let on_interrupt = Arc::clone(&stop);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.store(true, Ordering::Release);
        }
    });
    tokio::task::spawn_blocking(move || tail(&cluster, &topic, from, count, json, &stop))
        .await
        .map_err(|e| Failure(format!("the reader failed: {e}")))?
}

fn tail(
    cluster: &Cluster,
    topic: &str,
    from: From,
    count: Option<u64>,
    json: Json,
    stop: &AtomicBool,
) -> Result<(), Failure> {
    let consumer = cluster.consumer(false)?;
    let partitions = cluster.partitions(&consumer, topic)?;
    assign(cluster, &consumer, topic, &partitions, from)?;
    eprintln!(
        "tailing `{topic}` ({} partition{}) from {}{}",
        partitions.len(),
        if partitions.len() == 1 { "" } else { "s" },
        match from {
            From::Earliest => "the oldest kept record",
            From::Latest => "now on",
        },
        match count {
            Some(n) => format!(", until {n} record{}", if n == 1 { "" } else { "s" }),
            None => "; Ctrl-C to stop".to_owned(),
        }
    );
    let mut seen = 0u64;
    let mut stdout = std::io::stdout().lock();
    while count.is_none_or(|n| seen < n) && !stop.load(Ordering::Acquire) {
        match consumer.poll(POLL) {
            Some(Ok(message)) => {
                let record = Record::from_kafka(&message);
                if !show::emit(&mut stdout, &record.render(&[], json))? {
                    break;
                }
                seen += 1;
            }
            Some(Err(error)) => show::warn(&format!("reading `{topic}`: {error}")),
            None => {}
        }
    }
    eprintln!("{seen} record{} read", if seen == 1 { "" } else { "s" });
    Ok(())
}

/// Assigns every partition at its start, or at its end offset now, so that
/// everything published after this returns is printed.
fn assign(
    cluster: &Cluster,
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    from: From,
) -> Result<(), Failure> {
    let mut assignment = TopicPartitionList::new();
    for &partition in partitions {
        let offset = match from {
            From::Earliest => Offset::Beginning,
            From::Latest => Offset::Offset(cluster.watermarks(consumer, topic, partition)?.1),
        };
        assignment
            .add_partition_offset(topic, partition, offset)
            .map_err(|e| {
                Failure(format!(
                    "cannot assign `{topic}` partition {partition}: {e}"
                ))
            })?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Failure(format!("cannot read `{topic}`: {e}")))
}
