//! Handler middleware in the style of [tower]: layers that wrap every
//! handler call of a subscription, or of every subscription of a bus.
//!
//! A handler call is a [`tower::Service`] from a [`Delivery`] (the message's
//! [`Context`]) to [`Handled`]. Layers are added with
//! [`BusBuilder::layer`](crate::BusBuilder::layer), which wraps every
//! subscription of the bus, and [`Subscribe::layer`](crate::Subscribe::layer),
//! which wraps one; the bus's layers are outside the subscription's, and
//! the layer added first is the outermost, as with tower's
//! `ServiceBuilder`. Each subscription gets its own instance of each layer
//! (`Layer::layer` is called once per subscription), so a rate limit or a
//! circuit breaker holds per subscription.
//!
//! The stack wraps each *attempt*: topicbus's retries with backoff,
//! dead-lettering and replies stay outside it. A layer that fails a call
//! makes the attempt fail (it is retried, then dead-lettered or answered
//! with the error, like a handler error); a layer that waits in
//! `poll_ready` holds the delivery, and so the partition, which is how
//! consumption pauses; a layer that answers [`Handled::skipped`] ends the
//! delivery as handled without calling the handler (no reply is sent for a
//! skipped request).
//!
//! tower's own layers work unchanged (`tower::timeout::TimeoutLayer`,
//! `tower::limit::RateLimitLayer`, `ConcurrencyLimitLayer`,
//! `tower::load_shed::LoadShedLayer`, ...). This module adds three that a
//! consumer of a broker needs and tower lacks: [`CircuitBreakerLayer`],
//! [`DedupLayer`] and [`ThrottleLayer`].
//!
//! ```
//! use std::time::Duration;
//! use topicbus::middleware::{CircuitBreakerLayer, DedupLayer, ThrottleLayer};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, topicbus::Topic)]
//! # #[topic(name = "index.chunk.created")]
//! # struct ChunkCreated { chunk_id: String }
//!
//! # async fn demo() -> topicbus::Result<()> {
//! let bus = topicbus::Bus::builder()
//!     // every subscription: skip a message id seen in the last 10 000
//!     .layer(DedupLayer::new(10_000))
//!     .build();
//! bus.group("indexer")
//!     .subscribe(|chunk: ChunkCreated| async move {
//!         println!("{}", chunk.chunk_id);
//!         Ok::<(), std::io::Error>(())
//!     })
//!     // this one: at most 200 calls a second, and a pause of 5 s after
//!     // 10 failures in a row
//!     .layer(ThrottleLayer::per_second(200))
//!     .layer(CircuitBreakerLayer::new(10, Duration::from_secs(5)))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! A layer of one's own is a [`tower::Layer`] over [`HandlerService`]:
//! see `examples/middleware.rs`.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use tower::util::BoxService;
use tower::{Layer, Service, ServiceExt};

use crate::context::Context;
use crate::error::BoxError;

mod breaker;
mod dedup;
mod throttle;

pub use breaker::{CircuitBreaker, CircuitBreakerLayer};
pub use dedup::{Dedup, DedupLayer};
pub use throttle::{Throttle, ThrottleLayer};

/// One handler call, as a layer sees it: the message's [`Context`].
pub struct Delivery {
    context: Context,
}

impl Delivery {
    pub(crate) fn new(context: Context) -> Self {
        Self { context }
    }

    /// The message's metadata: id, topic, group, key, headers, attempt.
    pub fn context(&self) -> &Context {
        &self.context
    }

    pub(crate) fn into_context(self) -> Context {
        self.context
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.context.topic())
            .field("id", self.context.id())
            .field("attempt", &self.context.attempt())
            .finish_non_exhaustive()
    }
}

/// What a handler call ended with: the handler's output (a request's
/// response), or nothing when a layer skipped the handler.
pub struct Handled {
    output: Option<Box<dyn Any + Send>>,
}

impl Handled {
    /// The call was not made: the delivery counts as handled, and a
    /// request gets no reply (for a duplicate, the first delivery answered).
    pub fn skipped() -> Self {
        Self { output: None }
    }

    /// Whether a layer skipped the handler.
    pub fn is_skipped(&self) -> bool {
        self.output.is_none()
    }

    pub(crate) fn output(output: Box<dyn Any + Send>) -> Self {
        Self {
            output: Some(output),
        }
    }

    pub(crate) fn into_output(self) -> Option<Box<dyn Any + Send>> {
        self.output
    }
}

impl fmt::Debug for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handled")
            .field("skipped", &self.is_skipped())
            .finish()
    }
}

/// The error of the innermost service, the handler call itself: the
/// handler's error, a panic, the handler's time limit, or a payload that
/// cannot be read. Layers get it as a [`BoxError`] and may look at it with
/// `downcast_ref::<CallError>()`; errors that layers make themselves pass
/// through topicbus as failures of kind `middleware`.
#[derive(Debug, Clone)]
pub struct CallError {
    pub(crate) kind: &'static str,
    pub(crate) reason: String,
    pub(crate) permanent: bool,
}

impl CallError {
    /// The failure kind written to dead letters (`topicbus_error_kind`):
    /// `handler`, `panic`, `timeout`, `decode`, `type`, `too_large`, ...
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// Whether retrying cannot help: the message itself is bad (it cannot
    /// be decoded, it is too large). A circuit breaker does not count these
    /// as a failing dependency.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}

impl std::error::Error for CallError {}

/// A handler call as a boxed service: what every layer wraps.
pub type HandlerService = BoxService<Delivery, Handled, BoxError>;

/// A layer of the stack, with its service type erased.
#[derive(Clone)]
pub(crate) struct ErasedLayer(Arc<dyn Fn(HandlerService) -> HandlerService + Send + Sync>);

impl ErasedLayer {
    pub(crate) fn new<L>(layer: L) -> Self
    where
        L: Layer<HandlerService> + Send + Sync + 'static,
        L::Service: Service<Delivery, Response = Handled> + Send + 'static,
        <L::Service as Service<Delivery>>::Error: Into<BoxError>,
        <L::Service as Service<Delivery>>::Future: Send + 'static,
    {
        Self(Arc::new(move |inner| {
            BoxService::new(layer.layer(inner).map_err(Into::into))
        }))
    }

    /// Wraps `inner` in `layers`, the first outermost.
    pub(crate) fn stack(layers: &[ErasedLayer], inner: HandlerService) -> HandlerService {
        layers
            .iter()
            .rev()
            .fold(inner, |service, layer| (layer.0)(service))
    }
}

impl fmt::Debug for ErasedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Layer")
    }
}
