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
// Inlined: every delivery to a typed handler asks, and the reasons are
// made only for a message refused.
#[inline]
pub(crate) fn refuse(message: &Message, limit: usize) -> Option<(&'static str, String)> {
    if let Some(why) = &message.meta.malformed {
        return Some(("header", why.to_string()));
    }
    let size = message.payload().size();
    (size > limit).then(|| too_large(size, limit))
}

fn too_large(size: usize, limit: usize) -> (&'static str, String) {
    (
        "too_large",
        format!(
            "payload of {size} bytes exceeds this consumer's limit of {limit} bytes (max_message_bytes)"
        ),
    )
}

/// At most this many bytes of a failure's reason go into a dead letter's
/// or an error reply's `topicbus_error`.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// Application headers larger than this are the first a dead letter the
/// broker refuses as too large leaves out.
const OVERSIZED_HEADER_BYTES: usize = 1024;

/// `reason` cut to at most [`MAX_REASON_BYTES`] (on a character boundary),
/// saying how long it was.
pub(crate) fn bounded_reason(mut reason: String) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let total = reason.len();
    let mut end = MAX_REASON_BYTES - 32;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.truncate(end);
    reason.push_str(&format!("… ({total} bytes in all)"));
    reason
}

/// The next smaller form of a dead letter the transport refused as too
/// large, or `None` when nothing is left to leave out. In order: without
/// its oversized application headers, without its payload, without any
/// application header. What is left out is counted in its headers; the
/// original stays in the source topic (until its retention ends).
pub(crate) fn smaller_dead_letter(dead: &Message) -> Option<Message> {
    let is_own = |name: &str| {
        name.starts_with("topicbus_") || name.starts_with("ce_") || name == header::CONTENT_TYPE
    };
    let payload = match dead.payload() {
        Payload::Bytes(bytes) => bytes.clone(),
        Payload::Value { .. } => bytes::Bytes::new(),
    };
    let mut meta = dead.meta.clone();
    let already: usize = meta
        .headers
        .get_str(header::HEADERS_DROPPED)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Application headers go: the oversized ones first, then all. Of
    // topicbus's own, only an oversized `ce_*` value (an unreadable one kept
    // as received) goes.
    let drop_headers = |meta: &mut crate::message::Meta, oversized_only: bool| -> usize {
        meta.headers.remove_where(|name, value| {
            let oversized = name.len() + value.len() > OVERSIZED_HEADER_BYTES;
            if is_own(name) {
                name.starts_with("ce_") && oversized
            } else {
                oversized || !oversized_only
            }
        })
    };
    let dropped = drop_headers(&mut meta, true);
    if dropped > 0 {
        meta.headers
            .insert(header::HEADERS_DROPPED, (already + dropped).to_string());
        return Some(Message::bytes(meta, payload));
    }
    if !payload.is_empty() {
        meta.headers
            .insert(header::PAYLOAD_OMITTED, payload.len().to_string());
        return Some(Message::bytes(meta, bytes::Bytes::new()));
    }
    let dropped = drop_headers(&mut meta, false);
    if dropped > 0 {
        meta.headers
            .insert(header::HEADERS_DROPPED, (already + dropped).to_string());
        return Some(Message::bytes(meta, payload));
    }
    None
}
