//! What a handler knows about the message it handles.

use std::sync::Arc;
use std::time::SystemTime;

use crate::core::BusCore;
use crate::message::{Headers, Message, MessageId};
use crate::telemetry::TraceContext;
use crate::transport::Position;

/// Metadata of the message being handled: take it as the second argument of a
/// handler.
///
/// ```
/// use topicbus::{handler, Context, Topic};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Serialize, Deserialize, Topic)]
/// # #[topic(name = "index.chunk.created", key = chunk_id)]
/// # struct ChunkCreated { chunk_id: String }
///
/// #[handler(retries = 2)]
/// async fn on_chunk(ev: ChunkCreated, ctx: Context) -> Result<(), std::io::Error> {
///     println!("{} attempt {} in group {}", ctx.id(), ctx.attempt(), ctx.group());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    /// The message handled: its metadata is what this context tells.
    pub(crate) message: Message,
    pub(crate) position: Position,
    pub(crate) attempt: u32,
    pub(crate) group: Arc<str>,
    pub(crate) core: Arc<BusCore>,
    pub(crate) trace: Option<TraceContext>,
}

impl Context {
    /// The message's unique id (`ce_id` on Kafka).
    pub fn id(&self) -> &MessageId {
        &self.message.meta.id
    }

    /// The request's correlation id, for requests and replies.
    pub fn correlation_id(&self) -> Option<&MessageId> {
        self.message.meta.correlation_id.as_ref()
    }

    /// The partition key.
    pub fn key(&self) -> Option<&[u8]> {
        self.message.meta.key.as_deref()
    }

    /// Application headers.
    pub fn headers(&self) -> &Headers {
        &self.message.meta.headers
    }

    /// The partition the message is in.
    pub fn partition(&self) -> u32 {
        self.position.partition
    }

    /// The message's offset in its partition, on a transport that keeps
    /// offsets (Kafka); `None` on the memory transport, which keeps none.
    pub fn offset(&self) -> Option<i64> {
        self.position.offset
    }

    /// Which try this is, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The service that published the message (`ce_source`).
    pub fn source(&self) -> &str {
        &self.message.meta.source
    }

    /// The topic the message was published to.
    pub fn topic(&self) -> &str {
        &self.message.meta.topic
    }

    /// The consumer group handling it.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// When it was published (`ce_time`; on Kafka, a record without it, as
    /// the lean wire profile writes them, gives its timestamp).
    pub fn time(&self) -> SystemTime {
        self.message.meta.time
    }

    /// The trace this handler runs in, when it is traced: the trace id of
    /// the publisher or requester (from the message's `traceparent`), with
    /// the span id of this handling. `None` when the message came without a
    /// trace and the handling span is disabled. Publishes and requests made
    /// from the handler, and its reply, continue this trace.
    pub fn trace(&self) -> Option<TraceContext> {
        self.trace
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("topic", &self.message.meta.topic)
            .field("id", &self.message.meta.id)
            .field("attempt", &self.attempt)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
