//! The dead letters a memory broker keeps, and their re-drive.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::error::Result;
use crate::hash::FastMap;
use crate::message::Message;
use crate::redrive::{dead_letter_topic, revive, skipped};
use crate::transport::RedriveSummary;

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
    // Inlined: every publish asks, and few are dead letters.
    #[inline]
    pub fn keep(&self, message: &Message) {
        if self.capacity != 0 && message.meta.topic.ends_with(".dlq") {
            self.keep_dead_letter(message);
        }
    }

    fn keep_dead_letter(&self, message: &Message) {
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
                    skipped(&dlq, "kept in memory", &dead.meta.id, &reason.to_string());
                    done.skipped += 1;
                }
            }
        }
        Ok(done)
    }
}
