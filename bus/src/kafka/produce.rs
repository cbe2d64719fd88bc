//! Publishing to Kafka.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::observe::{LastError, Observer};
use rdkafka::util::Timeout;

use super::{unavailable, KafkaConfig};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::wire;

/// The producer, with a context that keeps librdkafka's last error.
pub(super) type KafkaProducer = FutureProducer<Observer>;

/// The instance's producer: idempotent, `acks=all`, no linger; and a handle
/// to the last client-level error it reported.
pub(super) fn producer(config: &KafkaConfig) -> Result<(KafkaProducer, LastError)> {
    let observer = Observer::default();
    let last_error = observer.last_error_handle();
    let producer = config
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
        .map_err(config_error)?;
    Ok((producer, last_error))
}

/// A librdkafka client that could not be created: a property is wrong.
pub(super) fn config_error(error: KafkaError) -> Error {
    let key = match &error {
        KafkaError::ClientConfig(_, _, key, _) => key.clone(),
        _ => "kafka".to_owned(),
    };
    Error::Config {
        key,
        message: error.to_string(),
    }
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
    let delivery = enqueue(producer, config, &message.meta.topic, None, message)?;
    settle(config, &message.meta.topic, delivery.await)
}

/// Publishes a reply to partition 0 of an inbox topic, the one partition its
/// owner reads (a broker may auto-create the topic with more).
pub(super) fn reply(
    producer: &KafkaProducer,
    config: &KafkaConfig,
    topic: &str,
    message: &Message,
) -> Result<DeliveryFuture> {
    enqueue(producer, config, topic, Some(0), message)
}

/// Enqueues every message before awaiting any acknowledgement, so the
/// producer batches them; waits for the oldest when its queue is full.
pub(super) async fn publish_batch(
    producer: &KafkaProducer,
    config: &KafkaConfig,
    messages: &[Message],
) -> Result<()> {
    let mut waiting = std::collections::VecDeque::new();
    for message in messages {
        let topic: &str = &message.meta.topic;
        loop {
            match enqueue(producer, config, topic, None, message) {
                Ok(delivery) => {
                    waiting.push_back((topic, delivery));
                    break;
                }
                Err(Error::Unavailable { .. }) if !waiting.is_empty() => {
                    let (topic, oldest) = waiting.pop_front().expect("not empty");
                    settle(config, topic, oldest.await)?;
                }
                Err(error) => return Err(error),
            }
        }
    }
    for (topic, delivery) in waiting {
        settle(config, topic, delivery.await)?;
    }
    Ok(())
}

fn enqueue(
    producer: &KafkaProducer,
    config: &KafkaConfig,
    topic: &str,
    partition: Option<i32>,
    message: &Message,
) -> Result<DeliveryFuture> {
    let payload = message
        .payload
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
    let headers = wire::fold_headers(
        &message.meta,
        OwnedHeaders::new_with_capacity(8 + message.meta.headers.len()),
        |headers, key, value| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        },
    );
    let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
    if let Some(key) = &message.meta.key {
        record = record.key(&key[..]);
    }
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    let size = payload.len();
    producer
        .send_result(record)
        .map_err(|(error, _)| delivery_error(config, topic, size, error))
}

/// The outcome of an awaited [`DeliveryFuture`]; its error side means the
/// producer went away.
pub(super) fn settle<Canceled>(
    config: &KafkaConfig,
    topic: &str,
    delivered: std::result::Result<OwnedDeliveryResult, Canceled>,
) -> Result<()> {
    match delivered {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, message))) => {
            use rdkafka::Message as _;
            let size = message.payload().map_or(0, <[u8]>::len);
            Err(delivery_error(config, topic, size, error))
        }
        Err(_) => Err(Error::Closed),
    }
}

/// Maps a librdkafka delivery failure to the error kinds callers match on.
/// librdkafka's and the broker's "too large" become [`Error::TooLarge`]
/// with the payload's size. The limit named is librdkafka's when the
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
fn producer_limit(config: &KafkaConfig) -> usize {
    config
        .properties
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(config.max_message_bytes.saturating_add(64 * 1024))
}
