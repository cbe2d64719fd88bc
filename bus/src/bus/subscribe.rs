//! Registering handlers: what [`Bus::subscribe`](crate::Bus::subscribe),
//! [`Bus::serve`](crate::Bus::serve) and [`Bus::group`](crate::Bus::group)
//! set up, and the registration itself.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tower::{Layer, Service};

use crate::core::payload::reply_payload;
use crate::core::{BusCore, Registration};
use crate::delivery::{HandlerMember, Invoke, Policy, Raw, ReplyFn, Typed};
use crate::error::{BoxError, Error, Result};
use crate::handler::{Handler, HandlerOptions, HandlerResult, OutputOf};
use crate::message::RawMessage;
use crate::middleware::{Delivery, ErasedLayer, Handled, HandlerService};
use crate::topic::{validate_topic_name, Request, Topic};
use crate::transport::{BoxFuture, Member, StartFrom, SubscriptionSpec};
use crate::Context;

/// Where a bus's registrations go: its core, and its layers (outside each
/// subscription's own).
#[derive(Clone, Copy)]
pub(super) struct Registry<'a> {
    pub(super) core: &'a Arc<BusCore>,
    pub(super) layers: &'a [ErasedLayer],
}

/// Marker: the registration handles events.
#[doc(hidden)]
pub struct Event;
/// Marker: the registration answers requests, with replies made by its
/// function (the request topic's codec).
#[doc(hidden)]
pub struct Serve<O>(ReplyFn<O>);

impl<O> Serve<O> {
    pub(super) fn of<T: Request<Response = O>>() -> Self {
        Serve(reply_payload::<T> as ReplyFn<O>)
    }
}
/// Marker: the registration handles raw messages.
#[doc(hidden)]
pub struct RawEvent;

/// Registrations in one named consumer group; made by [`Bus::group`](crate::Bus::group).
///
/// Its registrations can be given any handler: a closure as well as an
/// `async fn` marked `#[handler]`.
#[derive(Clone)]
pub struct Group<'a> {
    bus: Registry<'a>,
    name: Cow<'static, str>,
}

impl<'a> Group<'a> {
    pub(super) fn new(bus: Registry<'a>, name: Cow<'static, str>) -> Self {
        Group { bus, name }
    }

    /// Registers an event handler in this group (see [`Bus::subscribe`](crate::Bus::subscribe)).
    pub fn subscribe<H, M>(&self, handler: H) -> Subscribe<'a, H, M, Event>
    where
        H: Handler<M, Result: HandlerResult<Ok = ()>>,
    {
        Subscribe::new(self.bus, handler, Event).group(self.name.clone())
    }

    /// Registers a request handler in this group (see [`Bus::serve`](crate::Bus::serve)).
    pub fn serve<H, M>(&self, handler: H) -> Subscribe<'a, H, M, Serve<OutputOf<H, M>>>
    where
        H: Handler<M>,
        H::Topic: Request<Response = OutputOf<H, M>>,
    {
        Subscribe::new(self.bus, handler, Serve::of::<H::Topic>()).group(self.name.clone())
    }

    /// Registers a handler of raw messages (bytes and all headers) on any
    /// topic, such as a dead-letter topic `{topic}.dlq`, in this group.
    pub fn subscribe_raw<F, Fut, E>(
        &self,
        topic: impl Into<String>,
        handler: F,
    ) -> Subscribe<'a, RawHandler<F>, (), RawEvent>
    where
        F: Fn(RawMessage, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send,
        E: std::fmt::Display + Send + 'static,
    {
        Subscribe::new(
            self.bus,
            RawHandler {
                topic: topic.into(),
                handler,
            },
            RawEvent,
        )
        .group(self.name.clone())
    }
}

/// A handler registration being set up; `.await` it to register.
///
/// Made by [`Bus::subscribe`](crate::Bus::subscribe),
/// [`Bus::serve`](crate::Bus::serve) and the same methods of
/// [`Bus::group`](crate::Bus::group).
#[must_use = "a registration does nothing until it is awaited"]
pub struct Subscribe<'a, H, M, K> {
    bus: Registry<'a>,
    handler: H,
    options: HandlerOptions,
    broadcast: bool,
    start: StartFrom,
    kind: K,
    layers: Vec<ErasedLayer>,
    marker: PhantomData<fn(M)>,
}

impl<'a, H, M, K> Subscribe<'a, H, M, K> {
    pub(super) fn new(bus: Registry<'a>, handler: H, kind: K) -> Self {
        Self {
            bus,
            handler,
            options: HandlerOptions::new(),
            broadcast: false,
            start: StartFrom::Latest,
            kind,
            layers: Vec::new(),
            marker: PhantomData,
        }
    }

    /// Wraps every call of this handler in `layer`, inside the bus's layers
    /// (see [`middleware`](crate::middleware)); the layer added first is
    /// the outermost.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<HandlerService> + Send + Sync + 'static,
        L::Service: Service<Delivery, Response = Handled> + Send + 'static,
        <L::Service as Service<Delivery>>::Error: Into<BoxError>,
        <L::Service as Service<Delivery>>::Future: Send + 'static,
    {
        self.layers.push(ErasedLayer::new(layer));
        self
    }

    /// Joins this consumer group instead of the default one. Instances
    /// registering in the same group share its messages; each group sees
    /// every message.
    pub fn group(mut self, group: impl Into<Cow<'static, str>>) -> Self {
        self.options = self.options.group(group);
        self
    }

    /// Every instance sees every message: the registration gets a consumer
    /// group of its own.
    pub fn broadcast(mut self) -> Self {
        self.broadcast = true;
        self
    }

    /// Where a new group starts reading (default: newest).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Retries before dead-lettering (or returning the error to a requester).
    pub fn retries(mut self, retries: u32) -> Self {
        self.options = self.options.retries(retries);
        self
    }

    /// Messages handled at once by this registration.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.options = self.options.concurrency(concurrency);
        self
    }

    /// Time limit of one handler call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.timeout(timeout);
        self
    }

    /// First retry delay.
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.options = self.options.backoff(backoff);
        self
    }

    async fn register<I: Invoke>(
        self,
        topic: Cow<'static, str>,
        partitions: Option<u32>,
        handler_options: HandlerOptions,
        handler_name: &str,
        make: impl FnOnce(H) -> I,
        reply: Option<ReplyFn<I::Output>>,
    ) -> Result<Subscription> {
        let core = self.bus.core;
        if core.draining.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        validate_topic_name(&topic).map_err(|reason| Error::InvalidTopic {
            topic: topic.to_string(),
            reason,
        })?;
        let options = self.options.or(handler_options);
        let mut group = options
            .group
            .clone()
            .map_or_else(|| core.default_group(handler_name), Cow::into_owned);
        if self.broadcast {
            group = format!("{group}.{}", uuid::Uuid::new_v4().simple());
        }
        let group: Arc<str> = group.into();
        if reply.is_some() {
            core.transport
                .ensure_response_topic(&topic, partitions)
                .await?;
        }
        let policy = policy(core, &options, reply.is_some());
        let member: Arc<dyn Member> = Arc::new(HandlerMember::new(
            make(self.handler),
            Arc::clone(core),
            &topic,
            Arc::clone(&group),
            policy,
            reply,
            &[self.bus.layers, &self.layers[..]].concat(),
        ));
        let spec = SubscriptionSpec {
            topic: topic.clone(),
            group: Arc::clone(&group),
            start: self.start,
            partitions,
            ephemeral: self.broadcast,
            header_limits: core.settings.header_limits,
        };
        core.transport.join(spec, Arc::clone(&member)).await?;
        let registration = Registration {
            topic,
            group,
            member,
        };
        let subscription = Subscription {
            core: Arc::clone(core),
            topic: registration.topic.clone(),
            group: Arc::clone(&registration.group),
            member: Arc::clone(&registration.member),
        };
        core.registrations
            .lock()
            .expect("poisoned")
            .push(registration);
        Ok(subscription)
    }
}

/// One registration (`subscribe`, `serve`, `subscribe_raw`), returned by
/// awaiting it: [`Subscription::stop`] ends it alone, the way
/// [`Bus::shutdown`](crate::Bus::shutdown) ends them all.
///
/// Dropping the handle does not stop the subscription: it lasts until
/// `stop`, the bus's shutdown, or the drop of the bus's last handle.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, topicbus::Topic)]
/// # #[topic(name = "index.chunk.created")]
/// # struct ChunkCreated { chunk_id: String }
/// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
/// let audit = bus
///     .group("audit")
///     .subscribe(|chunk: ChunkCreated| async move {
///         println!("{}", chunk.chunk_id);
///         Ok::<(), std::convert::Infallible>(())
///     })
///     .await?;
/// // ... later: finish what it is handling, leave the group, keep the bus
/// audit.stop().await?;
/// # Ok(()) }
/// ```
pub struct Subscription {
    pub(super) core: Arc<BusCore>,
    pub(super) topic: Cow<'static, str>,
    pub(super) group: Arc<str>,
    pub(super) member: Arc<dyn Member>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Its consumer group (for a broadcast subscription, the group unique
    /// to this instance).
    pub fn group(&self) -> &str {
        &self.group
    }
}

/// How a registration of kind `Self` (events, requests, raw messages) with
/// handler `H` is made. One `IntoFuture` impl covers every kind, so that an
/// unmet bound is reported as itself rather than as "not a future".
#[doc(hidden)]
pub trait Registers<H, M>: Sized + 'static {
    fn start(registration: Subscribe<'_, H, M, Self>) -> BoxFuture<'_, Result<Subscription>>;
}

impl<'a, H, M, K> IntoFuture for Subscribe<'a, H, M, K>
where
    K: Registers<H, M>,
{
    type Output = Result<Subscription>;
    type IntoFuture = BoxFuture<'a, Result<Subscription>>;

    fn into_future(self) -> Self::IntoFuture {
        K::start(self)
    }
}

impl<H, M> Registers<H, M> for Event
where
    H: Handler<M, Result: HandlerResult<Ok = ()>>,
    M: 'static,
{
    fn start(registration: Subscribe<'_, H, M, Self>) -> BoxFuture<'_, Result<Subscription>> {
        let options = registration.handler.options();
        let name = registration.handler.name();
        Box::pin(async move {
            registration
                .register(
                    Cow::Borrowed(<H::Topic as Topic>::NAME),
                    <H::Topic as Topic>::PARTITIONS,
                    options,
                    name,
                    |h| Typed(h, PhantomData),
                    None,
                )
                .await
        })
    }
}

// Only `H: Handler<M>`: the request bound was checked where the reply
// function was made (`serve`), so a handler that is not a request handler
// is one error there, not a second one at `.await`.
impl<H, M> Registers<H, M> for Serve<OutputOf<H, M>>
where
    H: Handler<M>,
    M: 'static,
{
    fn start(registration: Subscribe<'_, H, M, Self>) -> BoxFuture<'_, Result<Subscription>> {
        let options = registration.handler.options();
        let name = registration.handler.name();
        let reply = registration.kind.0;
        Box::pin(async move {
            registration
                .register(
                    Cow::Borrowed(<H::Topic as Topic>::NAME),
                    <H::Topic as Topic>::PARTITIONS,
                    options,
                    name,
                    |h| Typed(h, PhantomData),
                    Some(reply),
                )
                .await
        })
    }
}

/// A raw-message handler on a named topic; made by [`Group::subscribe_raw`].
pub struct RawHandler<F> {
    topic: String,
    handler: F,
}

impl<F, Fut, E> Registers<RawHandler<F>, ()> for RawEvent
where
    F: Fn(RawMessage, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send,
    E: std::fmt::Display + Send + 'static,
{
    fn start(
        registration: Subscribe<'_, RawHandler<F>, (), Self>,
    ) -> BoxFuture<'_, Result<Subscription>> {
        let topic = registration.handler.topic.clone();
        let name = format!("raw.{topic}");
        Box::pin(async move {
            registration
                .register(
                    Cow::Owned(topic),
                    None,
                    HandlerOptions::new(),
                    &name,
                    |raw| Raw(raw.handler),
                    None,
                )
                .await
        })
    }
}

/// The retries, backoff, time limit and concurrency of a handler: its
/// options, else the bus's settings.
fn policy(core: &BusCore, options: &HandlerOptions, serve: bool) -> Policy {
    let default_retries = if serve {
        core.settings.request_retries
    } else {
        core.settings.retries
    };
    Policy {
        retries: options.retries.unwrap_or(default_retries),
        backoff: options.backoff.unwrap_or(core.settings.backoff),
        max_backoff: core.settings.max_backoff,
        timeout: options.timeout,
        concurrency: options.concurrency.unwrap_or(core.settings.concurrency),
    }
}
