//! Dead-letter re-drive: moving messages from `{topic}.dlq` back to
//! `{topic}` once whatever made their handler fail is fixed.
//!
//! A re-driven message keeps its key, payload and headers (id, time, source,
//! application headers) except the dead-letter headers that describe the
//! last failure (`topicbus_error`, `topicbus_error_kind`,
//! `topicbus_attempts`, `topicbus_original_topic`, `topicbus_group`). It
//! gains `topicbus_redrives` (1 on the first re-drive, one more on each
//! later one) and `topicbus_redrive_group`, the group that gave up on it:
//! only that group handles it again, the topic's other groups (which handled
//! it the first time) acknowledge it without calling their handler, each
//! time with a log line and the handler outcome `redrive_skipped`.
//!
//! A dead letter that cannot be re-driven is skipped with an error log and
//! counted in [`RedriveSummary::skipped`](crate::RedriveSummary::skipped); the re-drive goes on with the
//! next, so one bad record never stops every later run. It stays in
//! `{topic}.dlq`. That is a dead letter whose `topicbus_redrives` is not a
//! count below 1 000 000 (topicbus never writes one: the header was forged
//! or damaged), and on Kafka one the producer or broker refuses as too large
//! once re-driven.
//!
//! Kafka reads the dead-letter topic with a consumer group of its own,
//! `topicbus.redrive.{topic}`, from its committed offsets up to the end
//! offsets seen when the re-drive started, and commits what it moved only
//! after the broker acknowledged the republished messages (at-least-once:
//! a re-drive that fails half-way moves the rest, and at worst some of the
//! last batch again, on its next run). The memory transport keeps the
//! messages of every `*.dlq` topic for this, up to
//! `MemoryConfig::dead_letter_capacity` messages and
//! `MemoryConfig::dead_letter_max_bytes` bytes per topic.
//!
//! This module holds what a re-drive does to one message, [`revive`]: the
//! memory and Kafka transports call it, and a transport of another crate
//! through `TransportMessage::redriven`. Each transport moves the messages,
//! and `Bus::redrive` (`bus/redrive.rs`) starts it.

use std::borrow::Cow;

use crate::codec::CodecError;
use crate::error::Error;
use crate::message::{header, Message};

/// The `topicbus_redrives` count from which a dead letter is not re-driven:
/// topicbus adds one per re-drive, so such a count was not written by it.
const MAX_REDRIVES: u64 = 1_000_000;

/// The headers a dead letter gets that describe its failure; a re-drive
/// takes them off.
const FAILURE_HEADERS: [&str; 5] = [
    header::ERROR,
    header::ERROR_KIND,
    header::ATTEMPTS,
    header::ORIGINAL_TOPIC,
    header::GROUP,
];

/// The dead-letter topic of `topic`.
pub(crate) fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// The message to publish to `topic` for the dead letter `dead`, or why it
/// cannot be re-driven: an [`Error::Codec`] on the dead letter's topic,
/// its `codec` `header` for a `topicbus_redrives` that is not a count below
/// [`MAX_REDRIVES`], `payload` for a value that cannot be encoded.
pub(crate) fn revive(dead: &Message, topic: &str) -> Result<Message, Error> {
    let refused = |codec, reason: String| Error::Codec {
        topic: dead.meta.topic.to_string(),
        codec,
        source: CodecError::new(format!(
            "the dead letter {} cannot be re-driven: {reason}",
            dead.meta.id
        )),
    };
    let mut meta = dead.meta.clone();
    meta.topic = Cow::Owned(topic.to_owned());
    let group = meta.headers.get_str(header::GROUP).map(str::to_owned);
    let redrives = match meta.headers.get(header::REDRIVES) {
        None => 0,
        Some(count) => match std::str::from_utf8(count)
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            Some(n) if n < MAX_REDRIVES => n,
            _ => {
                let shown: String = String::from_utf8_lossy(count).chars().take(40).collect();
                return Err(refused(
                    "header",
                    format!(
                        "its `{}` header, {shown:?}, is not a count below {MAX_REDRIVES}",
                        header::REDRIVES
                    ),
                ));
            }
        },
    };
    for name in FAILURE_HEADERS {
        meta.headers.remove(name);
    }
    // The type a dead letter kept is its topic's again: no application
    // header of that name on the way back.
    if meta.headers.get(crate::wire::ce::TYPE) == Some(topic.as_bytes()) {
        meta.headers.remove(crate::wire::ce::TYPE);
    }
    meta.headers
        .insert(header::REDRIVES, redrives.saturating_add(1).to_string());
    match group {
        Some(group) => meta.headers.insert(header::REDRIVE_GROUP, group),
        None => {
            meta.headers.remove(header::REDRIVE_GROUP);
        }
    }
    dead.with_meta(meta)
        .map_err(|e| refused("payload", format!("its payload cannot be encoded: {e}")))
}

/// Logs a dead letter that is skipped, at error level: it stays in `dlq`
/// until someone acts on it.
pub(crate) fn skipped(dlq: &str, at: &str, id: &dyn std::fmt::Display, reason: &str) {
    tracing::error!(
        topic = dlq,
        at,
        id = %id,
        reason,
        "re-drive skipped a dead letter that cannot be re-driven; it stays in the dead-letter topic"
    );
}

/// Whether a registration of `group` handles `message`: not when it was
/// re-driven for another group. Such a message is acknowledged without
/// its handler; the log says so, since anyone who can write to the topic
/// can set the header.
// Inlined: every delivery asks, and a message without headers (the most,
// in process) is for every group.
#[inline]
pub(crate) fn is_for(message: &Message, group: &str) -> bool {
    message.meta.headers.is_empty() || is_for_group(message, group)
}

fn is_for_group(message: &Message, group: &str) -> bool {
    let Some(target) = message.meta.headers.get(header::REDRIVE_GROUP) else {
        return true;
    };
    if target == group.as_bytes() {
        return true;
    }
    tracing::info!(
        topic = %message.meta.topic,
        group,
        redrive_group = %String::from_utf8_lossy(target),
        id = %message.meta.id,
        "skipped a message re-driven for another consumer group (topicbus_redrive_group)"
    );
    false
}
