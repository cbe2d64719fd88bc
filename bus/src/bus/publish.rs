//! Publishing: [`Bus::publish`] and its variants.

use std::borrow::Cow;

use super::Bus;
use crate::core::BusCore;
use crate::error::{Error, Result};
use crate::message::{Headers, Message, MessageId, RawMessage};
use crate::telemetry::trace;
use crate::topic::{validate_topic_name, Topic};
use crate::wire;

impl Bus {
    /// Publishes `message` to its topic; returns once the transport took it,
    /// with the message's id (what its handlers see as [`Context::id`](crate::Context::id)).
    pub async fn publish(&self, message: &dyn Publishable) -> Result<MessageId> {
        self.publish_message(message, None, Headers::new()).await
    }

    /// Publishes `message` with application headers; returns its id.
    pub async fn publish_with(
        &self,
        message: &dyn Publishable,
        headers: Headers,
    ) -> Result<MessageId> {
        self.publish_message(message, None, headers).await
    }

    /// Publishes `message` under an id of the caller's (`ce_id` on the
    /// wire), with application headers: a producer that derives ids from
    /// its input (a database row, an upstream event) republishes the same
    /// event under the same id, so that consumers can tell a repeat by its
    /// id. An empty id is refused with [`Error::Config`].
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, topicbus::Topic)]
    /// # #[topic(name = "index.chunk.created")]
    /// # struct ChunkCreated { chunk_id: String }
    /// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
    /// use topicbus::{Headers, MessageId};
    ///
    /// let chunk = ChunkCreated { chunk_id: "c-17".into() };
    /// let id = MessageId::parse(&format!("chunk-created-{}", chunk.chunk_id));
    /// bus.publish_with_id(&chunk, id, Headers::new()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_with_id(
        &self,
        message: &dyn Publishable,
        id: MessageId,
        headers: Headers,
    ) -> Result<MessageId> {
        if id.is_empty() {
            return Err(Error::Config {
                key: "ce_id".into(),
                message: format!(
                    "the id of a message on `{}` must not be empty",
                    message.__topic()
                ),
            });
        }
        self.publish_message(message, Some(id), headers).await
    }

    // Not generic: `publish` takes `&dyn Publishable`, so that a type that
    // is not a topic is one error at the argument, not also one at the
    // returned future and one at its `.await`.
    async fn publish_message(
        &self,
        message: &dyn Publishable,
        id: Option<MessageId>,
        mut headers: Headers,
    ) -> Result<MessageId> {
        let core = self.core();
        let (topic, partitions) = (message.__topic(), message.__partitions());
        // A publish span lasts as long as the publish; it is not entered,
        // since wrapping the publish would make every publish future larger.
        let span = trace::publish_span(topic);
        trace::inject(&span, &mut headers);
        // Built before the one wait, and no inner future: each nested state
        // machine costs every publish its set-up and drop.
        let built = core
            .check_open()
            .and_then(|()| message.__build(Outgoing { core, headers, id }));
        let published = match built {
            Ok(Built(message)) => {
                trace::record_message(&span, &message.meta);
                let id = message.meta.id.clone();
                core.publish_new(partitions, message).await.map(|()| id)
            }
            Err(error) => Err(error),
        };
        core.metrics.published(topic, 1, published.is_ok());
        published
    }

    /// Publishes several messages of one topic, in order.
    ///
    /// Each message is encoded when the transport is ready for it: on Kafka
    /// at most 8 192 are encoded and waiting for their acknowledgement at a
    /// time, however long the batch, so memory does not grow with it. The
    /// first error ends the batch: one that cannot be encoded, or is too
    /// large, fails it once the messages before it are published, and none
    /// after it is sent.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Serialize, Deserialize, topicbus::Topic)]
    /// # #[topic(name = "index.chunk.created")]
    /// # struct ChunkCreated { chunk_id: String }
    /// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
    /// let chunks: Vec<ChunkCreated> = (0..3).map(|i| ChunkCreated { chunk_id: i.to_string() }).collect();
    /// bus.publish_batch(&chunks).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_batch<'a, T: Topic>(
        &self,
        messages: impl IntoIterator<Item = &'a T>,
    ) -> Result<()> {
        let core = self.core();
        let span = trace::publish_span(T::NAME);
        let mut headers = Headers::new();
        trace::inject(&span, &mut headers);
        // The values only: each is encoded when the transport is ready for
        // it, so a long batch is never held encoded all at once.
        let values: Vec<&T> = messages.into_iter().collect();
        let count = values.len();
        let published = async {
            core.check_open()?;
            core.ensure_topic(T::NAME, T::PARTITIONS).await?;
            let messages = Encoding {
                values: values.iter(),
                core,
                headers: &headers,
            };
            core.publish_batch(messages).await
        }
        .await;
        core.metrics.published(T::NAME, count, published.is_ok());
        published
    }

    /// Publishes bytes and headers as they are, to any topic. Consumers of a
    /// typed topic decode the bytes with the topic's codec; what they cannot
    /// decode is dead-lettered.
    pub async fn publish_raw(&self, mut message: RawMessage) -> Result<()> {
        let core = self.core();
        let topic = message.topic.clone();
        let span = trace::publish_span(&topic);
        trace::inject(&span, &mut message.headers);
        let published = async {
            core.check_open()?;
            validate_topic_name(&message.topic).map_err(|reason| Error::InvalidTopic {
                topic: message.topic.clone(),
                reason,
            })?;
            crate::limit::check_size(
                &message.topic,
                message.payload.len(),
                core.max_message_bytes,
            )?;
            let meta = wire::meta(
                Cow::Owned(message.topic),
                message.key,
                message.headers,
                &core.service,
                core.settings.header_limits,
            );
            trace::record_message(&span, &meta);
            core.publish(Message::bytes(meta, message.payload.into()))
                .await
        }
        .await;
        core.metrics.published_raw(&topic, 1, published.is_ok());
        published
    }

    /// Creates `T`'s topic and its dead-letter topic where they are missing
    /// (Kafka; partitions from `partitions = N` or the transport default).
    /// Subscribing does this too; call it for topics this instance only
    /// publishes to. A refused creation is an error naming the topic.
    pub async fn ensure_topic<T: Topic>(&self) -> Result<()> {
        self.core()
            .transport
            .ensure_topic(T::NAME, T::PARTITIONS)
            .await
    }
}

/// What [`Bus::publish`] takes: a value of any [`Topic`] type (derive it).
/// Implemented for every topic type, and only for them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a topic",
    label = "this type is not bound to a topic",
    note = "add `#[derive(topicbus::Topic)]` and `#[topic(name = \"...\")]` to the type's definition"
)]
pub trait Publishable: Sync {
    #[doc(hidden)]
    fn __topic(&self) -> &'static str;
    #[doc(hidden)]
    fn __partitions(&self) -> Option<u32>;
    #[doc(hidden)]
    fn __build(&self, outgoing: Outgoing<'_>) -> Result<Built>;
}

// Not looked through in errors: a type that is not a topic is reported as
// not `Publishable`, with the message above, at the user's argument.
#[diagnostic::do_not_recommend]
impl<T: Topic> Publishable for T {
    fn __topic(&self) -> &'static str {
        T::NAME
    }

    fn __partitions(&self) -> Option<u32> {
        T::PARTITIONS
    }

    fn __build(&self, outgoing: Outgoing<'_>) -> Result<Built> {
        outgoing
            .core
            .message(self, None, outgoing.headers, outgoing.id)
            .map(Built)
    }
}

/// What a publish adds to the value. Not public API.
#[doc(hidden)]
pub struct Outgoing<'a> {
    core: &'a BusCore,
    headers: Headers,
    id: Option<MessageId>,
}

/// A message ready for the transport. Not public API.
#[doc(hidden)]
pub struct Built(Message);

/// The messages of a batch, each encoded when it is taken. (A named type
/// rather than a closure, so that the publish future stays `Send`.)
struct Encoding<'a, T> {
    values: std::slice::Iter<'a, &'a T>,
    core: &'a BusCore,
    headers: &'a Headers,
}

impl<T: Topic> Iterator for Encoding<'_, T> {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        let value = self.values.next()?;
        Some(self.core.message(*value, None, self.headers.clone(), None))
    }
}
