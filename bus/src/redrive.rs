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
//! it the first time) acknowledge it without calling their handler.
//!
//! Kafka reads the dead-letter topic with a consumer group of its own,
//! `topicbus.redrive.{topic}`, from its committed offsets up to the end
//! offsets seen when the re-drive started, and commits what it moved only
//! after the broker acknowledged the republished messages (at-least-once:
//! a re-drive that fails half-way moves the rest, and at worst some of the
//! last batch again, on its next run). The memory transport keeps the
//! messages of every `*.dlq` topic for this (`MemoryConfig::dead_letter_capacity`).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Mutex;

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::message::{header, Message};
use crate::topic::{validate_topic_name, Topic};

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

/// The message to publish to `topic` for the dead letter `dead`.
pub(crate) fn revive(dead: &Message, topic: &str) -> Result<Message> {
    let mut meta = dead.meta.clone();
    meta.topic = Cow::Owned(topic.to_owned());
    let group = meta.headers.get_str(header::GROUP).map(str::to_owned);
    let redrives = meta
        .headers
        .get_str(header::REDRIVES)
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    for name in FAILURE_HEADERS {
        meta.headers.remove(name);
    }
    meta.headers
        .insert(header::REDRIVES, (redrives + 1).to_string());
    match group {
        Some(group) => meta.headers.insert(header::REDRIVE_GROUP, group),
        None => {
            meta.headers.remove(header::REDRIVE_GROUP);
        }
    }
    dead.with_meta(meta)
        .map_err(|e| crate::Error::codec(topic, "payload", e))
}

/// Whether a registration of `group` handles `message`: not when it was
/// re-driven for another group.
pub(crate) fn is_for(message: &Message, group: &str) -> bool {
    match message.meta.headers.get(header::REDRIVE_GROUP) {
        Some(target) => target == group.as_bytes(),
        None => true,
    }
}

impl Bus {
    /// Moves every message now in `{topic}.dlq` back to `topic` and returns
    /// how many it moved. Use it after fixing what made a handler fail.
    /// `topic` may also be given as the dead-letter topic's name
    /// (`"{topic}.dlq"`).
    ///
    /// The messages keep their key, payload and headers, minus the
    /// dead-letter headers describing the failure; `topicbus_redrives`
    /// counts the re-drives, and only the consumer group that dead-lettered
    /// a message handles it again. Messages dead-lettered while the
    /// re-drive runs stay for the next one. Run one re-drive of a topic at a
    /// time. On Kafka the dead-letter topic is read with the consumer group
    /// `topicbus.redrive.{topic}` and what was moved is committed once the
    /// broker acknowledged it; on the memory transport, the broker keeps the
    /// last `MemoryConfig::dead_letter_capacity` dead letters of each topic
    /// (in memory, so not across restarts).
    ///
    /// ```
    /// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
    /// let moved = bus.redrive("index.chunk.created").await?;
    /// println!("re-drove {moved} messages");
    /// # Ok(()) }
    /// ```
    pub async fn redrive(&self, topic: &str) -> Result<u64> {
        let core = self.core();
        core.check_open()?;
        let topic = topic.strip_suffix(".dlq").unwrap_or(topic);
        validate_topic_name(topic).map_err(|reason| Error::InvalidTopic {
            topic: topic.to_owned(),
            reason,
        })?;
        let moved = core.transport.redrive(topic).await?;
        tracing::info!(topic, moved, "re-drove dead letters");
        Ok(moved)
    }

    /// [`Bus::redrive`] for the topic of `T`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Serialize, Deserialize, topicbus::Topic)]
    /// # #[topic(name = "index.chunk.created")]
    /// # struct ChunkCreated { chunk_id: String }
    /// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
    /// let moved = bus.redrive_topic::<ChunkCreated>().await?;
    /// # Ok(()) }
    /// ```
    pub async fn redrive_topic<T: Topic>(&self) -> Result<u64> {
        self.redrive(T::NAME).await
    }
}

/// The dead letters a memory broker keeps for re-drives: the last
/// `capacity` messages of each `*.dlq` topic.
pub(crate) struct DeadLetters {
    capacity: usize,
    kept: Mutex<FastMap<String, VecDeque<Message>>>,
    /// One re-drive at a time per broker.
    redriving: tokio::sync::Mutex<()>,
}

impl DeadLetters {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            kept: Mutex::new(FastMap::default()),
            redriving: tokio::sync::Mutex::new(()),
        }
    }

    /// Keeps `message` if it goes to a dead-letter topic.
    pub fn keep(&self, message: &Message) {
        if self.capacity == 0 || !message.meta.topic.ends_with(".dlq") {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let queue = kept.entry(message.meta.topic.to_string()).or_default();
        if queue.len() == self.capacity {
            queue.pop_front();
            tracing::warn!(topic = %message.meta.topic, capacity = self.capacity, "dropped the oldest kept dead letter (dead_letter_capacity)");
        }
        queue.push_back(message.clone());
    }

    fn front(&self, dlq: &str) -> Option<Message> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(dlq).and_then(|q| q.front().cloned())
    }

    fn len(&self, dlq: &str) -> usize {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(dlq).map_or(0, VecDeque::len)
    }

    /// Forgets `message` (it was re-driven).
    fn forget(&self, dlq: &str, message: &Message) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = kept.get_mut(dlq) {
            if let Some(at) = queue.iter().position(|m| m.same(message)) {
                queue.remove(at);
            }
        }
    }

    /// Moves the dead letters of `topic` kept now back to `topic` through
    /// `publish`; each is forgotten only once `publish` took it.
    pub async fn redrive<F, Fut>(&self, topic: &str, publish: F) -> Result<u64>
    where
        F: Fn(Message) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let _one = self.redriving.lock().await;
        let dlq = dead_letter_topic(topic);
        let mut moved = 0;
        for _ in 0..self.len(&dlq) {
            let Some(dead) = self.front(&dlq) else {
                break;
            };
            publish(revive(&dead, topic)?).await?;
            self.forget(&dlq, &dead);
            moved += 1;
        }
        Ok(moved)
    }
}
