//! The transports a bus runs on, behind one type.

use std::sync::Arc;

use crate::error::Result;
use crate::message::Message;
#[cfg(feature = "kafka")]
use crate::transport::kafka::KafkaTransport;
use crate::transport::memory::MemoryBroker;
use crate::transport::{
    self as contract, Capabilities, GroupMember, Member, RedriveSummary, SubscriptionSpec,
    TransportMessage,
};

/// The transports a bus can run on. The built-in ones are variants, so that
/// static dispatch keeps the memory path free of boxing; any other
/// implementation of the public contract is `Custom`.
#[derive(Clone)]
pub(crate) enum Transport {
    Memory(MemoryBroker),
    #[cfg(feature = "kafka")]
    Kafka(KafkaTransport),
    Custom(Custom),
}

/// A transport given to [`BusBuilder::transport`](crate::BusBuilder::transport),
/// with the capabilities it reported when the bus was built.
#[derive(Clone)]
pub(crate) struct Custom {
    pub(crate) transport: Arc<dyn contract::Transport>,
    pub(crate) capabilities: Capabilities,
}

impl Custom {
    pub(crate) fn new(transport: Arc<dyn contract::Transport>) -> Self {
        let capabilities = transport.capabilities();
        Self {
            transport,
            capabilities,
        }
    }
}

impl Transport {
    /// Whether in-process values can travel without encoding.
    pub fn carries_values(&self) -> bool {
        match self {
            Transport::Memory(m) => !m.forces_codec(),
            #[cfg(feature = "kafka")]
            Transport::Kafka(_) => false,
            Transport::Custom(c) => c.capabilities.carries_values,
        }
    }

    /// Publishes one message; returns once the transport accepted it.
    pub async fn publish(&self, message: Message) -> Result<()> {
        match self {
            Transport::Memory(m) => m.publish(message).await,
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.publish(message).await,
            Transport::Custom(c) => c.transport.publish(TransportMessage(message)).await,
        }
    }

    /// Publishes messages in order, each made when its turn comes; a
    /// network transport pipelines them. Ends at the first error.
    pub async fn publish_batch(
        &self,
        messages: impl IntoIterator<Item = Result<Message>>,
    ) -> Result<()> {
        match self {
            Transport::Memory(m) => {
                for message in messages {
                    m.publish(message?).await?;
                }
                Ok(())
            }
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.publish_batch(messages).await,
            Transport::Custom(c) => {
                for message in messages {
                    c.transport.publish(TransportMessage(message?)).await?;
                }
                Ok(())
            }
        }
    }

    /// Adds a member to a consumer group; returns once it takes messages.
    pub async fn join(&self, spec: SubscriptionSpec, member: Arc<dyn Member>) -> Result<()> {
        match self {
            Transport::Memory(m) => m.join(spec, member),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.join(spec, member).await,
            Transport::Custom(c) => {
                c.capabilities
                    .refuse_start(c.transport.name(), &spec.start)?;
                c.transport.join(spec, GroupMember(member)).await
            }
        }
    }

    /// Removes a member from its group. On Kafka this also waits for its
    /// in-flight messages and commits their offsets.
    pub async fn leave(&self, topic: &str, group: &str, member: &Arc<dyn Member>) {
        match self {
            Transport::Memory(m) => m.leave(topic, group, member),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => {
                let _ = (topic, group);
                k.leave(member).await
            }
            Transport::Custom(c) => {
                c.transport
                    .leave(topic, group, &GroupMember(Arc::clone(member)))
                    .await
            }
        }
    }

    /// Removes a member without waiting (the bus was dropped).
    pub fn leave_now(&self, topic: &str, group: &str, member: &Arc<dyn Member>) {
        match self {
            Transport::Memory(m) => m.leave(topic, group, member),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => {
                let _ = (topic, group);
                k.leave_now(member)
            }
            Transport::Custom(c) => {
                c.transport
                    .leave_now(topic, group, &GroupMember(Arc::clone(member)))
            }
        }
    }

    /// Waits until the group has no queued or in-flight messages, if the
    /// transport holds them in this process; returns whether it had to wait.
    pub async fn drain(&self, topic: &str, group: &str) -> bool {
        match self {
            Transport::Memory(m) => m.drain(topic, group).await,
            #[cfg(feature = "kafka")]
            Transport::Kafka(_) => false,
            Transport::Custom(c) => c.transport.drain(topic, group).await,
        }
    }

    /// How many members the group has in this process, when the transport
    /// keeps the group's queue here (memory); `None` when the broker does.
    pub fn local_members(&self, topic: &str, group: &str) -> Option<usize> {
        match self {
            Transport::Memory(m) => Some(m.member_count(topic, group)),
            #[cfg(feature = "kafka")]
            Transport::Kafka(_) => None,
            Transport::Custom(c) => c.transport.local_members(topic, group),
        }
    }

    /// `Some(false)` when the transport knows nobody consumes `topic` now.
    pub fn has_consumers(&self, topic: &str) -> Option<bool> {
        match self {
            Transport::Memory(m) => Some(m.has_members(topic)),
            #[cfg(feature = "kafka")]
            Transport::Kafka(_) => None,
            Transport::Custom(c) => c.transport.has_consumers(topic),
        }
    }

    /// Whether topics must be created before use (a broker), as opposed to
    /// existing as soon as they are named (memory).
    pub fn provisions_topics(&self) -> bool {
        match self {
            Transport::Memory(_) => false,
            #[cfg(feature = "kafka")]
            Transport::Kafka(_) => true,
            Transport::Custom(c) => c.capabilities.provisions_topics,
        }
    }

    /// Creates `topic` (and its dead-letter topic, unless it is one) where
    /// topics are provisioned.
    pub async fn ensure_topic(&self, topic: &str, partitions: Option<u32>) -> Result<()> {
        match self {
            Transport::Memory(_) => Ok(()),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.ensure_topic(topic, partitions).await,
            Transport::Custom(c) => {
                c.transport.ensure_topic(topic, partitions).await?;
                if topic.ends_with(".dlq") {
                    return Ok(());
                }
                c.transport
                    .ensure_topic(&crate::redrive::dead_letter_topic(topic), None)
                    .await
            }
        }
    }

    /// Creates `topic` alone, where topics are provisioned: a dead-letter
    /// topic about to be written to (`{topic}.dlq.dlq` included).
    pub async fn ensure_dead_letter_topic(&self, topic: &str) -> Result<()> {
        match self {
            Transport::Memory(_) => Ok(()),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.ensure_one(topic, None).await,
            Transport::Custom(c) => c.transport.ensure_topic(topic, None).await,
        }
    }

    /// Prepares the answering of requests on `topic` by a responder: in the
    /// Kafka transport's Go-envelope mode, creates `{topic}.response`.
    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    pub async fn ensure_response_topic(&self, topic: &str, partitions: Option<u32>) -> Result<()> {
        match self {
            Transport::Memory(_) => Ok(()),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.ensure_response_topic(topic, partitions).await,
            Transport::Custom(_) => Ok(()),
        }
    }

    /// Moves the dead letters of `topic` back to it; returns how many it
    /// moved and skipped.
    pub async fn redrive(&self, topic: &str) -> Result<RedriveSummary> {
        match self {
            Transport::Memory(m) => m.redrive(topic).await,
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.redrive(topic).await,
            Transport::Custom(c) => c.transport.redrive(topic).await,
        }
    }

    /// Makes sure replies to this instance's requests on `request_topic`
    /// are read (Kafka opens its reply topic on the first request, and in
    /// Go-envelope mode `{request_topic}.response` on the first request
    /// there); call before sending a request.
    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    pub async fn open_inbox(&self, request_topic: &str) -> Result<()> {
        match self {
            Transport::Memory(_) => Ok(()),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.open_inbox(request_topic).await,
            Transport::Custom(_) => Ok(()),
        }
    }

    /// Closes the reply inbox and flushes what is still being sent.
    pub async fn close(&self, inbox: &str) {
        match self {
            Transport::Memory(m) => m.close_inbox(inbox),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.close().await,
            Transport::Custom(c) => c.transport.close(inbox).await,
        }
    }

    /// Closes the reply inbox without waiting (the bus was dropped).
    pub fn close_now(&self, inbox: &str) {
        match self {
            Transport::Memory(m) => m.close_inbox(inbox),
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.close_now(),
            Transport::Custom(c) => c.transport.close_now(inbox),
        }
    }

    /// Sends a reply to the inbox named by `reply_to` without waiting for it
    /// to arrive: the responder moves on to its next message, and a reply
    /// that cannot be delivered is logged (its requester times out).
    pub fn reply(&self, reply_to: &str, message: Message) -> Result<()> {
        match self {
            Transport::Memory(m) => {
                m.reply(reply_to, message);
                Ok(())
            }
            #[cfg(feature = "kafka")]
            Transport::Kafka(k) => k.reply(reply_to, message),
            Transport::Custom(c) => c.transport.reply(reply_to, TransportMessage(message)),
        }
    }
}
