//! The boundary between the bus and the systems that move its messages.
//!
//! A transport moves [`Message`]s between publishers and consumer groups and
//! routes replies to the instance that asked. Delivery semantics that do not
//! depend on the transport (retries, dead-lettering, replies, panics) live in
//! `dispatch` and are shared.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use crate::dispatch::Member;
use crate::error::Result;
use crate::memory::MemoryBroker;
use crate::message::Message;
use crate::request::Pending;

/// Where a new consumer group starts reading. A group that already exists
/// keeps its position.
///
/// ```
/// use topicbus::StartFrom;
/// let replay = StartFrom::Earliest;
/// assert_ne!(replay, StartFrom::default());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartFrom {
    /// Only messages published after the group joined (the default).
    #[default]
    Latest,
    /// The oldest message the transport still keeps.
    Earliest,
    /// The first kept message published at or after this time.
    Timestamp(SystemTime),
}

/// What a consumer-group registration asks of the transport.
pub(crate) struct SubscriptionSpec {
    pub topic: Cow<'static, str>,
    pub group: Arc<str>,
    pub start: StartFrom,
    pub partitions: Option<u32>,
}

/// The transports a bus can run on. An enum rather than a trait object: the
/// set is closed and static dispatch keeps the memory path free of boxing.
#[derive(Clone)]
pub(crate) enum Transport {
    Memory(MemoryBroker),
}

impl Transport {
    /// Whether in-process values can travel without encoding.
    pub fn carries_values(&self) -> bool {
        match self {
            Transport::Memory(m) => !m.forces_codec(),
        }
    }

    /// Publishes one message; returns once the transport accepted it.
    pub async fn publish(&self, message: Message) -> Result<()> {
        match self {
            Transport::Memory(m) => m.publish(message).await,
        }
    }

    /// Adds a member to a consumer group.
    pub fn join(&self, spec: SubscriptionSpec, member: Arc<dyn Member>) -> Result<()> {
        match self {
            Transport::Memory(m) => m.join(spec, member),
        }
    }

    /// Removes a member from its group. Its in-flight work is the caller's
    /// to wait for.
    pub fn leave(&self, topic: &str, group: &str, member: &Arc<dyn Member>) {
        match self {
            Transport::Memory(m) => m.leave(topic, group, member),
        }
    }

    /// Waits until the group has no queued or in-flight messages, if the
    /// transport holds them in this process; returns whether it had to wait.
    pub async fn drain(&self, topic: &str, group: &str) -> bool {
        match self {
            Transport::Memory(m) => m.drain(topic, group).await,
        }
    }

    /// How many members the group has in this process.
    pub fn member_count(&self, topic: &str, group: &str) -> usize {
        match self {
            Transport::Memory(m) => m.member_count(topic, group),
        }
    }

    /// `Some(false)` when the transport knows nobody consumes `topic`.
    pub fn has_consumers(&self, topic: &str) -> Option<bool> {
        match self {
            Transport::Memory(m) => Some(m.has_groups(topic)),
        }
    }

    /// Opens the reply path of an instance; returns its `reply_to` address.
    /// Ready before it returns, so a first reply cannot be missed.
    pub fn open_inbox(&self, pending: &Arc<Pending>) -> Arc<str> {
        match self {
            Transport::Memory(m) => m.open_inbox(pending),
        }
    }

    /// Closes an inbox opened with [`Transport::open_inbox`].
    pub fn close_inbox(&self, inbox: &str) {
        match self {
            Transport::Memory(m) => m.close_inbox(inbox),
        }
    }

    /// Sends a reply to the inbox named by `reply_to`. A reply to an inbox
    /// that is gone is dropped and counted by the receiver side, if any.
    pub async fn reply(&self, reply_to: &str, message: Message) -> Result<()> {
        match self {
            Transport::Memory(m) => {
                m.reply(reply_to, message);
                Ok(())
            }
        }
    }
}
