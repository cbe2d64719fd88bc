//! The bus: the handle (here, with the entry points whose bounds compiler
//! errors name) and its verbs, one file each: building (`builder`,
//! `connect`), `publish`, `subscribe`, `request`, `raw_request`,
//! `shutdown`, re-driving and replaying (`redrive`, `replay`).

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::core::{BusCore, Parts, Settings, Transport};
use crate::error::Result;
use crate::handler::{Handler, HandlerResult, NamedHandler, OutputOf};
use crate::middleware::ErasedLayer;
use crate::topic::Request;
use crate::Context;

mod builder;
mod connect;
mod publish;
mod raw_request;
mod redrive;
mod replay;
mod request;
mod shutdown;
mod subscribe;

pub use self::builder::BusBuilder;
pub use self::publish::Publishable;
pub use self::raw_request::RawRequestCall;
pub use self::request::RequestCall;
use self::subscribe::{Event, Registry, Serve};
pub use self::subscribe::{Group, RawHandler, Subscribe, Subscription};

/// A handle to a message bus. Cheap to clone; all clones are one instance.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use topicbus::{Bus, Topic};
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "index.chunk.created", key = chunk_id)]
/// struct ChunkCreated { chunk_id: String, text: String }
///
/// # async fn demo() -> topicbus::Result<()> {
/// let bus = Bus::memory();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// bus.group("indexer")
///     .subscribe(move |ev: ChunkCreated| {
///         let tx = tx.clone();
///         async move { tx.send(ev.chunk_id).map_err(|e| e.to_string()) }
///     })
///     .await?;
/// bus.publish(&ChunkCreated { chunk_id: "c-1".into(), text: "hello".into() }).await?;
/// assert_eq!(rx.recv().await.as_deref(), Some("c-1"));
/// bus.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Bus {
    handle: Arc<Handle>,
}

/// Detaches the instance from its transport when the last clone is dropped
/// without a shutdown, so its handlers stop taking messages.
struct Handle {
    core: Arc<BusCore>,
    /// Around every handler call of every subscription, the first outermost.
    layers: Vec<ErasedLayer>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.core.draining.swap(true, Ordering::AcqRel) {
            self.core.closed.store(true, Ordering::Release);
            self.core.detach();
        }
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("service", &self.handle.core.service)
            .field("settings", &self.handle.core.settings)
            .finish_non_exhaustive()
    }
}

/// Counters of one bus instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Requests waiting for their reply now.
    pub pending_requests: usize,
    /// Replies that arrived after their request had given up.
    pub late_replies: u64,
    /// Replies dropped because their MAC did not hold (with a
    /// [`ReplyKey`](crate::ReplyKey)): forged, altered, or from a responder without the key.
    pub rejected_replies: u64,
    /// Replies read on a `{topic}.response` topic (Kafka in Go-envelope
    /// mode, where every requester of `topic` reads the Go bus's replies)
    /// that no request of this instance waits for: replies to other
    /// instances, and late replies of its own (which cannot be told apart
    /// there).
    pub foreign_replies: u64,
}

impl Bus {
    fn from_parts(
        service: String,
        settings: Settings,
        layers: Vec<ErasedLayer>,
        transport: Transport,
        parts: Parts,
    ) -> Bus {
        Bus {
            handle: Arc::new_cyclic(|handle: &Weak<Handle>| Handle {
                core: Arc::new(BusCore::new(
                    service,
                    settings,
                    transport,
                    parts,
                    handle.clone(),
                )),
                layers,
            }),
        }
    }

    /// The bus `core` belongs to, while it is open.
    fn of(core: &BusCore) -> Result<Bus> {
        let handle = core.owner()?.downcast::<Handle>();
        Ok(Bus {
            handle: handle.expect("a core's owner is the bus handle that made it"),
        })
    }

    pub(crate) fn core(&self) -> &Arc<BusCore> {
        &self.handle.core
    }

    /// The service name of this instance.
    pub fn service(&self) -> &str {
        &self.core().service
    }

    /// Counters of this instance.
    pub fn stats(&self) -> BusStats {
        let core = self.core();
        BusStats {
            pending_requests: core.pending.len(),
            late_replies: core.pending.late_replies(),
            rejected_replies: core.pending.rejected_replies(),
            foreign_replies: core.pending.foreign_replies(),
        }
    }
}

// The verbs whose bounds a compiler error names are in the module that
// defines `Bus`: rustc then calls them `Bus::subscribe`, not
// `topicbus::bus::subscribe::<impl Bus>::subscribe`.
impl Bus {
    /// Registers an event handler in its consumer group.
    ///
    /// The default group of an `async fn` marked `#[handler]` is
    /// `{service}.{function path}`: instances of one service share the
    /// work, different handlers each see every message. Set another with
    /// `.group(..)`, or `.broadcast()` so that every instance sees every
    /// message. A closure has no name to derive a group from: register it
    /// in a named group with [`Bus::group`].
    pub fn subscribe<H, M>(&self, handler: H) -> Subscribe<'_, H, M, Event>
    where
        H: Handler<M, Result: HandlerResult<Ok = ()>>,
        M: NamedHandler,
    {
        Subscribe::new(self.registry(), handler, Event)
    }

    /// Registers a request handler: its result is the reply. Groups work as
    /// for [`Bus::subscribe`].
    pub fn serve<H, M>(&self, handler: H) -> Subscribe<'_, H, M, Serve<OutputOf<H, M>>>
    where
        H: Handler<M>,
        H::Topic: Request<Response = OutputOf<H, M>>,
        M: NamedHandler,
    {
        Subscribe::new(self.registry(), handler, Serve::of::<H::Topic>())
    }

    /// Registrations in the consumer group `group`: the way to register a
    /// closure handler, and a raw handler.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use topicbus::{Bus, Topic};
    /// # #[derive(Clone, Serialize, Deserialize, Topic)]
    /// # #[topic(name = "index.chunk.created")]
    /// # struct ChunkCreated { chunk_id: String }
    /// # async fn demo() -> topicbus::Result<()> {
    /// let bus = Bus::memory();
    /// bus.group("indexer.audit")
    ///     .subscribe(|ev: ChunkCreated| async move {
    ///         println!("chunk {}", ev.chunk_id);
    ///         Ok::<_, std::io::Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn group(&self, group: impl Into<Cow<'static, str>>) -> Group<'_> {
        Group::new(self.registry(), group.into())
    }

    /// Sends a request and waits for its reply (default timeout 30 s; set
    /// another per call with `.timeout(..)`).
    pub fn request<'a, T: Request>(&'a self, request: &'a T) -> RequestCall<'a, T, T::Response> {
        RequestCall::new(self.core(), request)
    }

    /// Where this bus's registrations go.
    fn registry(&self) -> Registry<'_> {
        Registry {
            core: &self.handle.core,
            layers: &self.handle.layers,
        }
    }
}

impl Context {
    /// The bus that delivered the message, to publish or request from a
    /// handler. Fails with [`Error::Closed`](crate::Error::Closed) once it
    /// shuts down.
    pub fn bus(&self) -> Result<Bus> {
        Bus::of(&self.core)
    }
}
