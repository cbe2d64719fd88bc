//! Re-driving dead letters back to their topic.

use super::Bus;
use crate::error::{Error, Result};
use crate::topic::{validate_topic_name, Topic};
use crate::transport::RedriveSummary;

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
