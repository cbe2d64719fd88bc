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
//! counted in [`RedriveSummary::skipped`]; the re-drive goes on with the
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

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Mutex;

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::message::{header, Message};
use crate::topic::{validate_topic_name, Topic};

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
/// cannot be re-driven.
pub(crate) fn revive(dead: &Message, topic: &str) -> std::result::Result<Message, String> {
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
                return Err(format!(
                    "its `{}` header, {shown:?}, is not a count below {MAX_REDRIVES}",
                    header::REDRIVES
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
        .map_err(|e| format!("its payload cannot be encoded: {e}"))
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
pub(crate) fn is_for(message: &Message, group: &str) -> bool {
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

/// What [`Bus::redrive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RedriveSummary {
    /// Dead letters moved back to the topic.
    pub moved: u64,
    /// Dead letters that cannot be re-driven, each logged at error level
    /// with its reason; they stay in the dead-letter topic.
    pub skipped: u64,
}

impl Bus {
    /// Moves every message now in `{topic}.dlq` back to `topic` and returns
    /// how many it moved and how many it skipped. Use it after fixing what
    /// made a handler fail. `topic` may also be given as the dead-letter
    /// topic's name (`"{topic}.dlq"`).
    ///
    /// The messages keep their key, payload and headers, minus the
    /// dead-letter headers describing the failure; `topicbus_redrives`
    /// counts the re-drives, and only the consumer group that dead-lettered
    /// a message handles it again. Messages dead-lettered while the
    /// re-drive runs stay for the next one. Run one re-drive of a topic at a
    /// time.
    ///
    /// On Kafka the dead-letter topic is read with the consumer group
    /// `topicbus.redrive.{topic}` and what was moved is committed once the
    /// broker acknowledged it; on the memory transport, the broker keeps the
    /// last `MemoryConfig::dead_letter_capacity` dead letters of each topic,
    /// up to `MemoryConfig::dead_letter_max_bytes` (in memory, so not across
    /// restarts).
    ///
    /// A dead letter that cannot be re-driven is skipped with an error log
    /// naming it and the reason, and counted in
    /// [`RedriveSummary::skipped`]; the re-drive goes on with the rest. That
    /// is one whose `topicbus_redrives` count is not a number below
    /// 1 000 000, or, on Kafka, a record the producer or the broker refuses
    /// as too large once re-driven. It stays in the dead-letter topic; on
    /// Kafka the next re-drive does not read it again.
    ///
    /// ```
    /// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
    /// let done = bus.redrive("index.chunk.created").await?;
    /// println!("re-drove {} messages, skipped {}", done.moved, done.skipped);
    /// # Ok(()) }
    /// ```
    pub async fn redrive(&self, topic: &str) -> Result<RedriveSummary> {
        let core = self.core();
        core.check_open()?;
        let topic = topic.strip_suffix(".dlq").unwrap_or(topic);
        validate_topic_name(topic).map_err(|reason| Error::InvalidTopic {
            topic: topic.to_owned(),
            reason,
        })?;
        let done = core.transport.redrive(topic).await?;
        tracing::info!(
            topic,
            moved = done.moved,
            skipped = done.skipped,
            "re-drove dead letters"
        );
        Ok(done)
    }

    /// [`Bus::redrive`] for the topic of `T`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Serialize, Deserialize, topicbus::Topic)]
    /// # #[topic(name = "index.chunk.created")]
    /// # struct ChunkCreated { chunk_id: String }
    /// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
    /// let done = bus.redrive_topic::<ChunkCreated>().await?;
    /// # Ok(()) }
    /// ```
    pub async fn redrive_topic<T: Topic>(&self) -> Result<RedriveSummary> {
        self.redrive(T::NAME).await
    }
}

/// The dead letters a memory broker keeps for re-drives: the last
/// `capacity` messages of each `*.dlq` topic, and no more than `max_bytes`
/// of them.
pub(crate) struct DeadLetters {
    capacity: usize,
    max_bytes: usize,
    kept: Mutex<FastMap<String, Kept>>,
    /// One re-drive at a time per broker.
    redriving: tokio::sync::Mutex<()>,
}

/// The dead letters of one `*.dlq` topic, oldest first, with their sizes.
#[derive(Default)]
struct Kept {
    messages: VecDeque<(Message, usize)>,
    bytes: usize,
}

/// What a kept dead letter counts against `max_bytes`: payload, key and
/// headers, as they would travel.
fn size(message: &Message) -> usize {
    let meta = &message.meta;
    let headers: usize = meta
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    message.payload().size() + meta.key.as_ref().map_or(0, Vec::len) + headers
}

impl DeadLetters {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity,
            max_bytes,
            kept: Mutex::new(FastMap::default()),
            redriving: tokio::sync::Mutex::new(()),
        }
    }

    /// Keeps `message` if it goes to a dead-letter topic, dropping the
    /// oldest kept ones past either bound.
    pub fn keep(&self, message: &Message) {
        if self.capacity == 0 || !message.meta.topic.ends_with(".dlq") {
            return;
        }
        let size = size(message);
        if size > self.max_bytes {
            tracing::warn!(topic = %message.meta.topic, size, max_bytes = self.max_bytes, "did not keep a dead letter larger than dead_letter_max_bytes for re-drives");
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let queue = kept.entry(message.meta.topic.to_string()).or_default();
        while queue.messages.len() >= self.capacity || queue.bytes + size > self.max_bytes {
            let Some((_, dropped)) = queue.messages.pop_front() else {
                break;
            };
            queue.bytes -= dropped;
            tracing::warn!(topic = %message.meta.topic, capacity = self.capacity, max_bytes = self.max_bytes, "dropped the oldest kept dead letter (dead_letter_capacity, dead_letter_max_bytes)");
        }
        queue.messages.push_back((message.clone(), size));
        queue.bytes += size;
    }

    /// The dead letters of `dlq` kept now, oldest first.
    fn snapshot(&self, dlq: &str) -> Vec<Message> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(dlq).map_or_else(Vec::new, |queue| {
            queue.messages.iter().map(|(m, _)| m.clone()).collect()
        })
    }

    /// Forgets `message` (it was re-driven).
    fn forget(&self, dlq: &str, message: &Message) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = kept.get_mut(dlq) {
            if let Some(at) = queue.messages.iter().position(|(m, _)| m.same(message)) {
                if let Some((_, size)) = queue.messages.remove(at) {
                    queue.bytes -= size;
                }
            }
        }
    }

    /// Moves the dead letters of `topic` kept now back to `topic` through
    /// `publish`; each is forgotten only once `publish` took it. One that
    /// cannot be re-driven is skipped and stays kept.
    pub async fn redrive<F, Fut>(&self, topic: &str, publish: F) -> Result<RedriveSummary>
    where
        F: Fn(Message) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let _one = self.redriving.lock().await;
        let dlq = dead_letter_topic(topic);
        let mut done = RedriveSummary::default();
        for dead in self.snapshot(&dlq) {
            match revive(&dead, topic) {
                Ok(revived) => {
                    publish(revived).await?;
                    self.forget(&dlq, &dead);
                    done.moved += 1;
                }
                Err(reason) => {
                    skipped(&dlq, "kept in memory", &dead.meta.id, &reason);
                    done.skipped += 1;
                }
            }
        }
        Ok(done)
    }
}
