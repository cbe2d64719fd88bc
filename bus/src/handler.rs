//! Handlers: plain `async fn`s (marked `#[handler]`) or closures.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::context::Context;
use crate::topic::{Request, Topic};

/// Something that handles messages of one topic.
///
/// You do not implement this trait by hand: mark an `async fn` with
/// [`#[handler]`](crate::handler), or pass a closure taking the payload (and
/// optionally a [`Context`]) and returning a future of `Result<_, E>`. A
/// closure is registered in a named consumer group ([`Bus::group`](crate::Bus::group));
/// see [`NamedHandler`].
///
/// The marker `M` only tells the two closure shapes and the attribute apart.
///
/// ```
/// use topicbus::{Bus, Context, Topic};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Serialize, Deserialize, Topic)]
/// # #[topic(name = "index.chunk.created")]
/// # struct ChunkCreated { chunk_id: String }
/// # async fn demo() -> topicbus::Result<()> {
/// let bus = Bus::memory();
/// bus.group("indexer")
///     .subscribe(|ev: ChunkCreated| async move {
///         println!("chunk {}", ev.chunk_id);
///         Ok::<_, std::io::Error>(())
///     })
///     .await?;
/// bus.group("audit")
///     .subscribe(|ev: ChunkCreated, ctx: Context| async move {
///         println!("chunk {} try {}", ev.chunk_id, ctx.attempt());
///         Ok::<_, std::io::Error>(())
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a topicbus handler",
    label = "expected an `async fn` marked `#[topicbus::handler]`, or a closure",
    note = "a handler takes the payload (a `Topic` type), optionally a `topicbus::Context`, and returns a future of `Result<_, E>` where `E: Display`"
)]
pub trait Handler<M>: Send + Sync + 'static {
    /// The topic it handles.
    type Topic: Topic;
    /// What its future resolves to: `Result<(), E>` for events,
    /// `Result<Response, E>` for requests (see [`HandlerResult`]).
    type Result: HandlerResult;

    /// Handles one message. `context` makes the message's [`Context`]: a
    /// handler that takes one calls it, one that does not skips that work.
    fn call(
        &self,
        message: Self::Topic,
        context: impl FnOnce() -> Context,
    ) -> impl Future<Output = Self::Result> + Send;

    /// Options set on `#[handler(...)]`.
    fn options(&self) -> HandlerOptions {
        HandlerOptions::new()
    }

    /// A name stable across processes of one build, used for the default
    /// consumer group.
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

/// Options of a handler registration. `#[handler(...)]` sets them; the
/// `subscribe`/`serve` builders override them.
///
/// ```
/// use std::time::Duration;
/// let opts = topicbus::HandlerOptions::new()
///     .group("indexer")
///     .retries(5)
///     .concurrency(4)
///     .timeout(Duration::from_secs(2));
/// assert_eq!(opts.get_retries(), Some(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct HandlerOptions {
    pub(crate) group: Option<Cow<'static, str>>,
    pub(crate) retries: Option<u32>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) backoff: Option<Duration>,
}

impl HandlerOptions {
    /// No options set: the bus defaults apply.
    pub const fn new() -> Self {
        Self {
            group: None,
            retries: None,
            concurrency: None,
            timeout: None,
            backoff: None,
        }
    }

    /// The consumer group (default: `{service}.{handler name}`).
    pub fn group(mut self, group: impl Into<Cow<'static, str>>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Retries after the first failure before dead-lettering.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// How many messages this registration handles at once (across partitions).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = Some(concurrency.max(1));
        self
    }

    /// Time limit for one handler call; a call over it counts as a failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// First retry delay; it doubles on each further retry.
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// The retries set, if any.
    pub fn get_retries(&self) -> Option<u32> {
        self.retries
    }

    /// Fills the options not set here from `other`.
    pub(crate) fn or(self, other: HandlerOptions) -> Self {
        Self {
            group: self.group.or(other.group),
            retries: self.retries.or(other.retries),
            concurrency: self.concurrency.or(other.concurrency),
            timeout: self.timeout.or(other.timeout),
            backoff: self.backoff.or(other.backoff),
        }
    }
}

/// Holds for the handlers whose default consumer group can be derived from
/// a name of their own: `async fn`s marked `#[handler]`.
///
/// A closure's only name is its type's, which every closure of one function
/// shares and which changes when the code is edited: as a default group it
/// would make two closures on one topic share the work instead of each
/// seeing every message, and an edit would move the group's committed
/// offsets. So a closure is registered in a named group, with
/// [`Bus::group`](crate::Bus::group).
#[diagnostic::on_unimplemented(
    message = "a closure handler needs a consumer group name",
    label = "a closure has no name of its own to derive its group from",
    note = "register it in a named group: `bus.group(\"billing.audit\").subscribe(..)` (or `.serve(..)`), or write it as an `async fn` marked `#[topicbus::handler]`"
)]
pub trait NamedHandler {}

impl NamedHandler for Macro {}

/// Marker for closures taking only the payload.
#[doc(hidden)]
pub struct PayloadOnly<T>(std::marker::PhantomData<fn(T)>);
/// Marker for closures taking the payload and a [`Context`].
#[doc(hidden)]
pub struct WithContext<T>(std::marker::PhantomData<fn(T)>);

impl<F, Fut, T> Handler<PayloadOnly<T>> for F
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future + Send,
    Fut::Output: HandlerResult,
    T: Topic,
{
    type Topic = T;
    type Result = Fut::Output;

    fn call(
        &self,
        message: T,
        _context: impl FnOnce() -> Context,
    ) -> impl Future<Output = Fut::Output> + Send {
        self(message)
    }
}

impl<F, Fut, T> Handler<WithContext<T>> for F
where
    F: Fn(T, Context) -> Fut + Send + Sync + 'static,
    Fut: Future + Send,
    Fut::Output: HandlerResult,
    T: Topic,
{
    type Topic = T;
    type Result = Fut::Output;

    fn call(
        &self,
        message: T,
        context: impl FnOnce() -> Context,
    ) -> impl Future<Output = Fut::Output> + Send {
        self(message, context())
    }
}

/// Marker for handlers made by `#[handler]`.
#[doc(hidden)]
pub struct Macro;

/// What a handler's future resolves to: a `Result` whose error can be
/// shown. `Result<(), E>` handles an event, `Result<Response, E>` answers a
/// request; the error's text travels back to requesters and into dead
/// letters.
#[diagnostic::on_unimplemented(
    message = "a handler returns a `Result`, not `{Self}`",
    label = "expected `Result<_, E>` here",
    note = "return `Result<(), E>` to handle an event, or `Result<Response, E>` to answer a request, where `E: Display`"
)]
pub trait HandlerResult: Send + 'static {
    /// `()` for events, the response for requests.
    type Ok: Send + Sync + 'static;
    /// The handler's error.
    type Err: fmt::Display + Send + 'static;

    /// The result as a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<O, E> HandlerResult for Result<O, E>
where
    O: Send + Sync + 'static,
    E: fmt::Display + Send + 'static,
{
    type Ok = O;
    type Err = E;

    fn into_result(self) -> Self {
        self
    }
}

/// What a handler `H` returns on success: `()` for events, the response for
/// requests.
pub(crate) type OutputOf<H, M> = <<H as Handler<M>>::Result as HandlerResult>::Ok;

#[diagnostic::on_unimplemented(
    message = "this handler returns `{Self}`, but `{Req}` is not answered with `{Self}`",
    label = "does not match the `response = ...` type declared in `#[topic(...)]` of `{Req}`",
    note = "a request handler returns `Result<R, E>` where `R` is the request's response type; an event handler returns `Result<(), E>`"
)]
#[doc(hidden)]
pub trait ResponseOf<Req> {}

// Through `Same` rather than `impl ResponseOf<Req> for Req::Response`: a
// mismatch is then an unmet bound, which shows the message above, instead of
// a projection mismatch ("type mismatch resolving ..."), which does not.
impl<Req: Request, Resp: Same<Req::Response>> ResponseOf<Req> for Resp {}

/// `T: Same<U>` holds exactly when `T` and `U` are the same type.
#[doc(hidden)]
pub trait Same<T> {}

impl<T> Same<T> for T {}

/// Compiles only when `Resp` is the response type of `Req`.
#[doc(hidden)]
pub const fn assert_response<Req, Resp: ResponseOf<Req>>() {}
