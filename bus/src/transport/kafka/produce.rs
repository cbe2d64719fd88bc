//! Publishing to Kafka.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use tokio::sync::Notify;

use super::observe::{LastError, Observer};

use super::{unavailable, KafkaConfig};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::wire;

/// The producer, with a context that keeps librdkafka's last error. Its
/// deliveries count down the [`Acks`] of their publish, so a message costs
/// one shared counter rather than a channel and a future of its own.
pub(super) type KafkaProducer = ThreadedProducer<Observer>;

impl ProducerContext for Observer {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, delivered: &DeliveryResult<'_>, acks: Arc<Acks>) {
        if let Err((error, message)) = delivered {
            use rdkafka::message::Headers as _;
            use rdkafka::Message as _;
            let headers = message.headers().map_or(0, |headers| {
                headers
                    .iter()
                    .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                    .sum()
            });
            let size = message.payload().map_or(0, <[u8]>::len)
                + message.key().map_or(0, <[u8]>::len)
                + headers;
            let mut failure = acks.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| (error.clone(), message.topic().to_owned(), size));
        }
        acks.settle_one();
    }
}

/// The acknowledgements one publish (of one or many messages) waits for.
pub(crate) struct Acks {
    /// Messages enqueued and not yet acknowledged or failed.
    pending: AtomicUsize,
    /// The `pending` count at or below which the waiter wants a wake-up:
    /// 0 (all settled) unless it waits for room in a full producer queue.
    wake_at: AtomicUsize,
    woken: Notify,
    /// The first failure reported: error, topic, record size (payload,
    /// key and headers).
    failure: Mutex<Option<(KafkaError, String, usize)>>,
}

impl Acks {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            pending: AtomicUsize::new(0),
            wake_at: AtomicUsize::new(0),
            woken: Notify::new(),
            failure: Mutex::new(None),
        })
    }

    // SeqCst on `pending` and `wake_at` on both sides: either a delivery
    // sees the waiter's `wake_at` and wakes it, or the waiter sees the
    // delivery's count.
    fn settle_one(&self) {
        let left = self.pending.fetch_sub(1, Ordering::SeqCst) - 1;
        if left <= self.wake_at.load(Ordering::SeqCst) {
            // Stores a permit if the waiter is not waiting yet.
            self.woken.notify_one();
        }
    }

    /// Waits until at most `target` messages are pending.
    async fn settled_to(&self, target: usize) {
        self.wake_at.store(target, Ordering::SeqCst);
        loop {
            let woken = self.woken.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.pending.load(Ordering::SeqCst) <= target {
                break;
            }
            woken.await;
        }
        self.wake_at.store(0, Ordering::SeqCst);
    }

    /// The first delivery failure so far, as the error callers match on.
    fn failed(&self, config: &KafkaConfig) -> Result<()> {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        match &*failure {
            None => Ok(()),
            Some((error, topic, size)) => Err(delivery_error(config, topic, *size, error.clone())),
        }
    }

    /// Waits for every delivery; fails with the first failure reported.
    pub async fn settled(&self, config: &KafkaConfig) -> Result<()> {
        self.settled_to(0).await;
        self.failed(config)
    }
}

/// The instance's producer: idempotent, `acks=all`, no linger; and a handle
/// to the last client-level error it reported.
pub(super) fn producer(config: &KafkaConfig) -> Result<(KafkaProducer, LastError)> {
    let observer = Observer::default();
    let last_error = observer.last_error_handle();
    let producer: KafkaProducer = config
        .client_config(&[
            ("acks", "all".to_owned()),
            ("enable.idempotence", "true".to_owned()),
            ("linger.ms", "0".to_owned()),
            (
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            ),
            ("message.max.bytes", producer_limit(config).to_string()),
        ])
        .create_with_context(observer)
        .map_err(super::config::config_error)?;
    super::config::refresh_tokens_in_background(config, producer.client())?;
    Ok((producer, last_error))
}

/// Fails unless a broker answers a metadata request within the connect
/// timeout; the error names the configured brokers.
pub(super) async fn check_reachable(
    producer: &KafkaProducer,
    last_error: &LastError,
    config: &KafkaConfig,
) -> Result<()> {
    let timeout = config.connect_timeout;
    fetch_metadata(producer, None, timeout)
        .await
        .map_err(|error| {
            // What the brokers answered, e.g. a failed authentication.
            let answered = last_error
                .last_error()
                .map(|reason| format!(" (last broker error: {reason})"))
                .unwrap_or_default();
            Error::Unavailable {
                message: format!(
                    "cannot reach the Kafka brokers `{}` within {timeout:?}: {error}{answered}",
                    config.brokers
                ),
                source: Some(Box::new(error)),
            }
        })
}

/// Asks for `topic`'s metadata as a producer, which makes a broker with
/// `auto.create.topics.enable` create it.
pub(super) async fn request_auto_creation(
    producer: &KafkaProducer,
    config: &KafkaConfig,
    topic: &str,
) -> Result<()> {
    fetch_metadata(producer, Some(topic), config.connect_timeout)
        .await
        .map_err(|e| unavailable(format!("cannot create topic `{topic}` by auto-creation"), e))
}

/// A metadata request (of one topic, or of the cluster), off the async
/// runtime: librdkafka blocks the calling thread until it answers.
async fn fetch_metadata(
    producer: &KafkaProducer,
    topic: Option<&str>,
    timeout: std::time::Duration,
) -> std::result::Result<(), KafkaError> {
    let client = producer.clone();
    let topic = topic.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(topic.as_deref(), Timeout::After(timeout))
            .map(drop)
    })
    .await
    .expect("metadata task panicked")
}

pub(super) async fn publish(
    producer: &KafkaProducer,
    config: &KafkaConfig,
    message: &Message,
) -> Result<()> {
    let acks = Acks::new();
    enqueue(producer, config, &acks, &message.meta.topic, None, message)?;
    acks.settled(config).await
}

/// Publishes a reply to partition 0 of an inbox topic, the one partition its
/// owner reads (a broker may auto-create the topic with more).
pub(super) fn reply(
    producer: &KafkaProducer,
    config: &KafkaConfig,
    topic: &str,
    message: &Message,
) -> Result<Arc<Acks>> {
    let acks = Acks::new();
    enqueue(producer, config, &acks, topic, Some(0), message)?;
    Ok(acks)
}

/// Messages of one batch enqueued and not yet acknowledged, at most: a
/// batch is encoded and enqueued as acknowledgements make room, so that a
/// publish holds this many messages (encoded, and copied into librdkafka's
/// queue), not the whole batch.
const BATCH_WINDOW: usize = 8_192;
/// Where a batch that filled its window resumes: waiting for a quarter of
/// the window wakes the publisher once per 2 048 acknowledgements, not for
/// each one.
const BATCH_RESUME: usize = BATCH_WINDOW - BATCH_WINDOW / 4;

/// Publishes `messages` in order, pipelined: each is made (encoded) and
/// enqueued once at most [`BATCH_WINDOW`] are waiting for their
/// acknowledgement, so the producer batches them while memory stays
/// bounded. Ends at the first failure: a message that cannot be made ends
/// the batch after the ones before it are acknowledged; a delivery failure
/// ends it when it is seen (the ones already enqueued are still sent).
pub(super) async fn publish_batch<M: Borrow<Message>>(
    producer: &KafkaProducer,
    config: &KafkaConfig,
    messages: impl IntoIterator<Item = Result<M>>,
) -> Result<()> {
    let acks = Acks::new();
    let mut messages = messages.into_iter();
    loop {
        // Before the next message is made, so that none waits made.
        if acks.pending.load(Ordering::SeqCst) >= BATCH_WINDOW {
            acks.settled_to(BATCH_RESUME).await;
            acks.failed(config)?;
        }
        let message = match messages.next() {
            None => break,
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                acks.settled(config).await?;
                return Err(error);
            }
        };
        let message = message.borrow();
        let topic: &str = &message.meta.topic;
        loop {
            match enqueue(producer, config, &acks, topic, None, message) {
                Ok(()) => break,
                Err(Error::Unavailable { .. }) if acks.pending.load(Ordering::SeqCst) > 0 => {
                    let pending = acks.pending.load(Ordering::SeqCst);
                    acks.settled_to(pending - 1).await;
                    acks.failed(config)?;
                }
                Err(error) => return Err(error),
            }
        }
    }
    acks.settled(config).await
}

fn enqueue(
    producer: &KafkaProducer,
    config: &KafkaConfig,
    acks: &Arc<Acks>,
    topic: &str,
    partition: Option<i32>,
    message: &Message,
) -> Result<()> {
    let payload = message
        .payload()
        .to_bytes()
        .map_err(|e| Error::codec(topic, "payload", e))?;
    let enveloped = if config.go_envelope {
        super::envelope::wrap(&message.meta, &payload)
    } else {
        None
    };
    // The size limit is checked before this, where a publish is made (the
    // bus), so that dead letters and re-drives of oversized messages pass.
    let payload: &[u8] = enveloped.as_deref().unwrap_or(&payload);
    let mut headers_size = 0;
    let headers = wire::fold_profile_headers(
        &message.meta,
        config.wire_profile,
        OwnedHeaders::new_with_capacity(8 + message.meta.headers.len()),
        |headers, key, value| {
            headers_size += key.len() + value.len();
            headers.insert(Header {
                key,
                value: Some(value),
            })
        },
    );
    let mut record = BaseRecord::with_opaque_to(topic, Arc::clone(acks))
        .payload(payload)
        .headers(headers);
    // The Go bus keyed each record by its event id: an enveloped record of
    // a topic without a key field does the same, so it spreads over the
    // partitions as the Go bus's did. A declared key keeps its order.
    let id_key = match (&message.meta.key, &enveloped) {
        (None, Some(_)) => Some(message.meta.id.to_string()),
        _ => None,
    };
    if let Some(key) = message
        .meta
        .key
        .as_deref()
        .or(id_key.as_deref().map(str::as_bytes))
    {
        record = record.key(key);
    }
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    // Without `ce_time` the record's timestamp is the message's time, so
    // it is the message's (a dead letter's or re-drive's the original's),
    // not the moment librdkafka takes the record.
    if config.wire_profile == crate::WireProfile::Lean {
        record = record.timestamp(unix_millis(message.meta.time));
    }
    // What librdkafka's `message.max.bytes` counts, give or take the
    // record's framing: an error names the real size.
    let size = payload.len() + record.key.map_or(0, <[u8]>::len) + headers_size;
    // Counted before the send: its delivery may be reported before `send`
    // returns.
    acks.pending.fetch_add(1, Ordering::SeqCst);
    producer.send(record).map_err(|(error, _)| {
        acks.pending.fetch_sub(1, Ordering::SeqCst);
        delivery_error(config, topic, size, error)
    })
}

/// A record timestamp: milliseconds since the Unix epoch. Kafka takes no
/// time before it; 0 has librdkafka stamp the record with the current time.
fn unix_millis(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |after| {
            i64::try_from(after.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Maps a librdkafka delivery failure to the error kinds callers match on.
/// librdkafka's and the broker's "too large" become [`Error::TooLarge`]
/// with the record's size (payload, key and headers). The limit named is librdkafka's when the
/// payload is over it; else the broker refused it, whose limit is not known
/// here but is below the size.
fn delivery_error(config: &KafkaConfig, topic: &str, size: usize, error: KafkaError) -> Error {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
        | Some(RDKafkaErrorCode::InvalidMessageSize) => Error::TooLarge {
            topic: topic.to_owned(),
            size,
            limit: match producer_limit(config) {
                limit if size > limit => limit,
                _ => size.saturating_sub(1),
            },
        },
        Some(RDKafkaErrorCode::MessageTimedOut) => unavailable(
            format!(
                "publish to `{topic}` not acknowledged within {:?} (brokers `{}`)",
                config.delivery_timeout, config.brokers
            ),
            error,
        ),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) | Some(RDKafkaErrorCode::UnknownTopic) => {
            unavailable(format!("topic `{topic}` does not exist"), error)
        }
        _ => unavailable(format!("publish to `{topic}` failed"), error),
    }
}

/// librdkafka's `message.max.bytes` for the producer: the user's, or
/// topicbus's payload limit plus room for headers and the record batch
/// overhead (dead letters and re-drives may carry payloads up to it).
pub(super) fn producer_limit(config: &KafkaConfig) -> usize {
    config
        .properties
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(config.max_message_bytes.saturating_add(64 * 1024))
}
