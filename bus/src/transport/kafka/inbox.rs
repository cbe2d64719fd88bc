//! The reply readers of one instance: its own single-partition reply
//! topic, and in Go-envelope mode the `{topic}.response` of each topic it
//! sends requests to (where the Go bus's responders answer). Each is read
//! without a consumer group, every partition assigned at the end offset it
//! had when the reader opened, before the first request it serves is sent.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::config::config_error;
use super::consume::{Reader, POLL_INTERVAL};
use super::{unavailable, KafkaConfig};
use crate::error::{Error, Result};
use crate::transport::Pending;

/// Which replies a reader reads.
#[derive(Clone, Copy)]
pub(super) enum Replies {
    /// This instance's reply topic, partition 0: every reply there answers
    /// one of its requests.
    Own,
    /// A `{topic}.response`, every partition: every requester of `topic`
    /// reads all of it and takes the replies to its own requests.
    Shared,
}

pub(super) struct Inbox {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inbox {
    /// Assigns the partitions of `topic` at their current end, then starts
    /// reading: every reply produced after this returns is seen. `group` is
    /// only a name for the client (nothing is committed).
    pub async fn open(
        config: &KafkaConfig,
        topic: &str,
        replies: Replies,
        group: &str,
        pending: Arc<Pending>,
    ) -> Result<Self> {
        let consumer: BaseConsumer = config
            .client_config(&[
                ("group.id", group.to_owned()),
                ("enable.auto.commit", "false".to_owned()),
                ("enable.auto.offset.store", "false".to_owned()),
            ])
            .create()
            .map_err(config_error)?;
        super::config::refresh_tokens_in_background(config, consumer.client())?;
        let topic = topic.to_owned();
        let topic_name = topic.clone();
        let timeout = config.connect_timeout;
        let (go_envelope, header_limits) = (config.go_envelope, config.header_limits);
        let consumer = tokio::task::spawn_blocking(move || -> Result<BaseConsumer> {
            let partitions = match replies {
                Replies::Own => vec![0],
                Replies::Shared => partitions(&consumer, &topic, timeout)?,
            };
            let mut assignment = TopicPartitionList::new();
            for partition in partitions {
                let end = end_offset(&consumer, &topic, partition, timeout)?;
                assignment
                    .add_partition_offset(&topic, partition, Offset::Offset(end))
                    .map_err(|e| unavailable(format!("cannot read reply topic `{topic}`"), e))?;
            }
            consumer
                .assign(&assignment)
                .map_err(|e| unavailable(format!("cannot read reply topic `{topic}`"), e))?;
            tracing::debug!(topic, ?assignment, "reply reader assigned");
            Ok(consumer)
        })
        .await
        .expect("inbox set-up panicked")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("topicbus-inbox".to_owned())
            .spawn(move || {
                let mut reader = Reader::new(Cow::Owned(topic_name), go_envelope, header_limits);
                while !stopping.load(Ordering::Acquire) {
                    match consumer.poll(POLL_INTERVAL) {
                        Some(Ok(reply)) => {
                            tracing::trace!(offset = rdkafka::Message::offset(&reply), "reply");
                            let reply = reader.read(&reply);
                            match replies {
                                Replies::Own => pending.complete(reply),
                                Replies::Shared => pending.complete_shared(reply),
                            }
                        }
                        Some(Err(error)) => tracing::warn!(%error, "reply inbox"),
                        None => {}
                    }
                }
            })
            .expect("cannot start the inbox thread");
        Ok(Self {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops reading, without waiting for the thread.
    pub fn stop_now(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Stops reading; blocks until the reading thread ended.
    pub fn close(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.lock().expect("poisoned").take() {
            let _ = thread.join();
        }
    }
}

/// The `{topic}.response` readers of one instance, by request topic, each
/// opened by the first request to its topic.
#[derive(Default)]
pub(super) struct ResponseReaders {
    readers: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Inbox>>>>,
}

impl ResponseReaders {
    /// The place of the reader of `request_topic`'s replies, opened or not.
    pub fn slot(&self, request_topic: &str) -> Arc<tokio::sync::OnceCell<Inbox>> {
        let mut readers = self.readers.lock().expect("poisoned");
        if let Some(slot) = readers.get(request_topic) {
            return Arc::clone(slot);
        }
        let slot = Arc::default();
        readers.insert(request_topic.to_owned(), Arc::clone(&slot));
        slot
    }

    fn opened(&self) -> Vec<Arc<tokio::sync::OnceCell<Inbox>>> {
        let readers = self.readers.lock().expect("poisoned");
        readers
            .values()
            .filter(|slot| slot.initialized())
            .cloned()
            .collect()
    }

    /// Stops every reader, without waiting for their threads.
    pub fn stop_now(&self) {
        for slot in self.opened() {
            if let Some(reader) = slot.get() {
                reader.stop_now();
            }
        }
    }

    /// Stops every reader; blocks until their threads ended.
    pub fn close(&self) {
        for slot in self.opened() {
            if let Some(reader) = slot.get() {
                reader.close();
            }
        }
    }
}

/// The partitions of `topic`, asked again while a just-created topic is not
/// yet known to the broker's metadata.
fn partitions(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let known = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| unavailable(format!("cannot read the partitions of `{topic}`"), e))
            .map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect::<Vec<_>>()
            });
        match known {
            Ok(partitions) if !partitions.is_empty() => return Ok(partitions),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Ok(_) if Instant::now() >= deadline => {
                return Err(Error::Unavailable {
                    message: format!("the brokers know no topic `{topic}` to read replies on"),
                    source: None,
                })
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The high watermark of `partition`, retried while a just-created topic
/// is not yet known to the broker's metadata.
fn end_offset(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Ok((_, high)) => return Ok(high),
            Err(error) if Instant::now() >= deadline => {
                return Err(unavailable(
                    format!("cannot read the end of reply topic `{topic}`"),
                    error,
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
