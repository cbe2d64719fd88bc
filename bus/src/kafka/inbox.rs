//! The reply inbox of one instance: its own single-partition topic, read
//! without a consumer group from the end offset it had at `connect`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::config::config_error;
use super::consume::{Reader, POLL_INTERVAL};
use super::{unavailable, KafkaConfig};
use crate::error::Result;
use crate::request::Pending;

pub(super) struct Inbox {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inbox {
    /// Assigns the reply topic at its current end, then starts reading:
    /// every reply produced after this returns is seen.
    pub async fn open(config: &KafkaConfig, topic: &str, pending: Arc<Pending>) -> Result<Self> {
        let consumer: BaseConsumer = config
            .client_config(&[
                ("group.id", topic.to_owned()),
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
            let end = end_offset(&consumer, &topic, timeout)?;
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(&topic, 0, Offset::Offset(end))
                .and_then(|()| consumer.assign(&assignment))
                .map_err(|e| unavailable(format!("cannot read reply topic `{topic}`"), e))?;
            tracing::debug!(topic, end, "reply inbox assigned");
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
                            pending.complete(reader.read(&reply))
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

/// The high watermark of partition 0, retried while a just-created topic is
/// not yet known to the broker's metadata.
fn end_offset(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.fetch_watermarks(topic, 0, timeout) {
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
