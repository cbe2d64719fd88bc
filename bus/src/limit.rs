//! Limits on what a bus sends and takes in: the size of a message, and the
//! checks a delivered message passes before a typed handler decodes it.

use crate::error::{Error, Result};

use crate::message::{header, Message, Payload};

/// The default largest payload, in bytes: librdkafka's default
/// `message.max.bytes` (a Kafka broker's default is 1 048 588).
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Fails with [`Error::TooLarge`] naming the size and the limit when a
/// payload of `size` bytes is over `limit`.
pub(crate) fn check_size(topic: &str, size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(Error::TooLarge {
            topic: topic.to_owned(),
            size,
            limit,
        });
    }
    Ok(())
}

/// Why a delivered message must not reach a typed handler: headers it
/// cannot be read by, or a payload over the consumer's size limit. Both are
/// permanent (retrying cannot help); the message is dead-lettered with the
/// returned kind and reason.
pub(crate) fn refuse(message: &Message, limit: usize) -> Option<(&'static str, String)> {
    if let Some(why) = &message.meta.malformed {
        return Some(("header", why.to_string()));
    }
    let size = message.payload().size();
    if size > limit {
        return Some((
            "too_large",
            format!(
                "payload of {size} bytes exceeds this consumer's limit of {limit} bytes (max_message_bytes)"
            ),
        ));
    }
    None
}

/// `message` without its payload, marked with the size it had, for a dead
/// letter the broker refuses as too large; `None` if it has no payload.
pub(crate) fn without_payload(message: &Message) -> Option<Message> {
    let size = match message.payload() {
        Payload::Bytes(bytes) if !bytes.is_empty() => bytes.len(),
        _ => return None,
    };
    let mut meta = message.meta.clone();
    meta.headers
        .insert(header::PAYLOAD_OMITTED, size.to_string());
    Some(Message::bytes(meta, bytes::Bytes::new()))
}
