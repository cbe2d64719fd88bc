//! What happens to a delivered message, on every transport: decode, call the
//! handler (contained: errors, panics and timeouts are failures), retry with
//! backoff, reply to requests, dead-letter what cannot be handled.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Notify;
use tower::{Service, ServiceExt};

use crate::bus::BusCore;
use crate::codec::Codec;
use crate::context::Context;
use crate::error::BoxError;
use crate::handler::{Handler, HandlerResult, OutputOf};
use crate::message::{header, Message, Meta, Payload, RawMessage};
use crate::middleware::{CallError, Delivery, ErasedLayer, Handled, HandlerService};
use crate::telemetry::metrics::HandlerMetrics;
use crate::telemetry::trace::{self, Handling};
use crate::topic::Topic;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A member of a consumer group: takes one message at a time per partition.
pub(crate) trait Member: Send + Sync + 'static {
    /// Handles `first`, then, one at a time and in order, the messages
    /// `feed` has ready, in one future: the future is boxed once per run of
    /// queued messages instead of once per message. Gives back the message
    /// it could not take when the member has left.
    fn deliver_run<'a>(
        self: Arc<Self>,
        first: Message,
        feed: &'a mut dyn Feed,
    ) -> BoxFuture<'a, Result<(), Message>>;

    /// Stops taking messages and waits for the ones in flight.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// The messages of one partition that are ready for the member handling a
/// run (see [`Member::deliver_run`]).
pub(crate) trait Feed: Send {
    /// The next message if one is ready now and the member still owns the
    /// partition. `None` ends the run; the transport then waits for the
    /// next message without holding the member.
    fn next(&mut self, cx: &mut std::task::Context<'_>) -> Option<Message>;

    /// The message taken last was handled to the end.
    fn handled(&mut self);

    /// Where the message taken last (or the run's first) is: its partition
    /// and, where the transport keeps them, its offset.
    fn position(&self) -> Position;
}

/// Where a delivered message is in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub partition: u32,
    pub offset: Option<i64>,
}

/// Retry and time limits of one registration, with the bus defaults filled in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Option<Duration>,
    pub concurrency: usize,
}

impl Policy {
    /// Delay before retry number `retry` (1-based): doubling, capped.
    fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Turns a handler's successful output into a reply payload.
pub(crate) type ReplyFn<O> = fn(O, &BusCore, Meta) -> Result<Message, crate::codec::CodecError>;

/// Why a message could not be handled.
pub(crate) struct Failure {
    kind: &'static str,
    reason: String,
    /// Failures that retrying cannot fix (the payload itself is bad).
    permanent: bool,
}

impl Failure {
    fn permanent(kind: &'static str, reason: String) -> Self {
        Self {
            kind,
            reason,
            permanent: true,
        }
    }

    fn transient(kind: &'static str, reason: String) -> Self {
        Self {
            kind,
            reason,
            permanent: false,
        }
    }
}

/// What a member calls: a typed [`Handler`] or a raw-message closure.
pub(crate) trait Invoke: Send + Sync + 'static {
    type Output: Send + 'static;
    type Error: fmt::Display + Send + 'static;
    /// Whether messages must pass [`crate::limit::refuse`] first (typed
    /// handlers; a raw handler, e.g. on a dead-letter topic, takes anything).
    const CHECKS_INPUT: bool;
    /// The media type of the topic's codec, which replies are written in.
    const CONTENT_TYPE: Option<&'static str>;

    /// Starts the handler on `message`; `context` makes its [`Context`],
    /// called only for a handler that takes one.
    fn invoke(
        &self,
        message: &Message,
        context: impl FnOnce() -> Context,
    ) -> Result<impl Future<Output = Result<Self::Output, Self::Error>> + Send, Failure>;
}

/// A typed handler: the payload is decoded (or copied) into its topic type.
pub(crate) struct Typed<H, M>(pub H, pub PhantomData<fn(M)>);

impl<H: Handler<M>, M: 'static> Invoke for Typed<H, M> {
    type Output = OutputOf<H, M>;
    type Error = <H::Result as HandlerResult>::Err;
    const CHECKS_INPUT: bool = true;
    const CONTENT_TYPE: Option<&'static str> =
        Some(<<H::Topic as Topic>::Codec as Codec>::CONTENT_TYPE);

    fn invoke(
        &self,
        message: &Message,
        context: impl FnOnce() -> Context,
    ) -> Result<impl Future<Output = Result<Self::Output, Self::Error>> + Send, Failure> {
        let value = decode::<H::Topic>(message)?;
        let call = self.0.call(value, context);
        Ok(async move { call.await.into_result() })
    }
}

/// A raw handler: gets the payload bytes and all headers.
pub(crate) struct Raw<F>(pub F);

impl<F, Fut, E> Invoke for Raw<F>
where
    F: Fn(RawMessage, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: fmt::Display + Send + 'static,
{
    type Output = ();
    type Error = E;
    const CHECKS_INPUT: bool = false;
    const CONTENT_TYPE: Option<&'static str> = None;

    fn invoke(
        &self,
        message: &Message,
        context: impl FnOnce() -> Context,
    ) -> Result<impl Future<Output = Result<(), E>> + Send, Failure> {
        let payload = message.payload().to_bytes().map_err(|error| {
            Failure::permanent("encode", format!("could not encode the payload: {error}"))
        })?;
        let raw = RawMessage {
            topic: message.meta.topic.to_string(),
            key: message.meta.key.clone(),
            payload: payload.to_vec(),
            headers: crate::wire::headers(&message.meta),
        };
        Ok((self.0)(raw, context()))
    }
}

/// A registered handler, as a group member.
pub(crate) struct HandlerMember<I: Invoke> {
    invoke: Arc<I>,
    /// The user's layers around the handler call, when there are any.
    /// Calls wait for it one at a time in `poll_ready`, as tower services
    /// expect, and run their futures side by side.
    stack: Option<tokio::sync::Mutex<HandlerService>>,
    core: Arc<BusCore>,
    group: Arc<str>,
    policy: Policy,
    slots: Slots,
    reply: Option<ReplyFn<I::Output>>,
    metrics: HandlerMetrics,
}

impl<I: Invoke> HandlerMember<I> {
    pub fn new(
        invoke: I,
        core: Arc<BusCore>,
        topic: &str,
        group: Arc<str>,
        policy: Policy,
        reply: Option<ReplyFn<I::Output>>,
        layers: &[ErasedLayer],
    ) -> Self {
        let invoke = Arc::new(invoke);
        let stack = (!layers.is_empty()).then(|| {
            let innermost = HandlerService::new(Innermost {
                invoke: Arc::clone(&invoke),
                timeout: policy.timeout,
            });
            tokio::sync::Mutex::new(ErasedLayer::stack(layers, innermost))
        });
        Self {
            invoke,
            stack,
            core,
            metrics: HandlerMetrics::new(topic, &group),
            group,
            slots: Slots::new(policy.concurrency),
            policy,
            reply,
        }
    }

    fn is_request(&self, message: &Message) -> bool {
        self.reply.is_some() && message.meta.correlation_id.is_some()
    }

    async fn handle(&self, message: &Message, position: Position) {
        if !crate::redrive::is_for(message, &self.group) {
            self.metrics.redrive_skipped();
            return;
        }
        let is_request = self.is_request(message);
        if I::CHECKS_INPUT {
            if let Some((kind, reason)) = crate::limit::refuse(message, self.core.max_message_bytes)
            {
                let failure = Failure::permanent(kind, reason);
                return Box::pin(self.recover(message, position, failure, is_request)).await;
            }
        }
        if is_request {
            // Not answered at all, not even with an error: the answer would
            // go where the request pointed it.
            if let Some(reason) = self.core.refuse_reply_to(message) {
                let failure = Failure::permanent("header", reason);
                return Box::pin(self.recover(message, position, failure, false)).await;
            }
        }
        match self.attempt(message, position, 1).await {
            Ok(output) => {
                self.metrics.handled();
                if let (true, Some(output)) = (is_request, output) {
                    self.send_reply(message, Ok(output)).await;
                }
            }
            // Failures are rare: their retries, error replies and dead
            // letters get a box of their own, so that the future of every
            // delivery stays small (it is boxed once per run of queued
            // messages).
            Err(failure) => Box::pin(self.recover(message, position, failure, is_request)).await,
        }
    }

    /// Retries a failed first attempt with backoff, then answers the
    /// requester with the error or dead-letters the message.
    async fn recover(
        &self,
        message: &Message,
        position: Position,
        mut failure: Failure,
        is_request: bool,
    ) {
        let mut attempt = 1;
        while !failure.permanent && attempt <= self.policy.retries {
            tracing::debug!(
                topic = %message.meta.topic,
                group = %self.group,
                attempt,
                reason = %failure.reason,
                "handler failed; retrying"
            );
            self.metrics.retried();
            tokio::time::sleep(self.policy.delay(attempt)).await;
            attempt += 1;
            match self.attempt(message, position, attempt).await {
                Ok(output) => {
                    self.metrics.handled();
                    if let (true, Some(output)) = (is_request, output) {
                        self.send_reply(message, Ok(output)).await;
                    }
                    return;
                }
                Err(next) => failure = next,
            }
        }
        if is_request {
            self.send_reply(message, Err(&failure)).await;
        }
        if !is_request || failure.permanent {
            self.dead_letter(message, &failure, attempt).await;
            self.metrics.dead_lettered();
        } else {
            self.metrics.error_replied();
        }
    }

    /// One call of the handler, through the layers if there are any: the
    /// output, or `None` when a layer skipped the handler.
    async fn attempt(
        &self,
        message: &Message,
        position: Position,
        attempt: u32,
    ) -> Result<Option<I::Output>, Failure> {
        let context = || Context {
            message: message.clone(),
            position,
            attempt,
            group: Arc::clone(&self.group),
            core: Arc::clone(&self.core),
            trace: trace::current(),
        };
        let _timer = self.metrics.call();
        match &self.stack {
            None => call(&*self.invoke, message, context, self.policy.timeout)
                .await
                .map(Some),
            // Boxed: the future of every unlayered delivery stays as small.
            Some(stack) => Box::pin(call_layered::<I>(stack, Delivery::new(context()))).await,
        }
    }

    async fn send_reply(&self, request: &Message, result: Result<I::Output, &Failure>) {
        let failed = |kind, reason: &str| {
            let meta = self
                .core
                .reply_meta(request, error_headers(kind, reason), I::CONTENT_TYPE);
            Message::bytes(meta, bytes::Bytes::new())
        };
        let reply = match result {
            Ok(output) => {
                let meta = self.core.reply_meta(request, Vec::new(), I::CONTENT_TYPE);
                match (self.reply.expect("requests have a reply fn"))(output, &self.core, meta) {
                    Ok(reply) => reply,
                    Err(error) => {
                        failed("encode", &format!("could not encode the response: {error}"))
                    }
                }
            }
            Err(failure) => failed(failure.kind, &failure.reason),
        };
        self.core.send_reply(request, reply).await;
    }

    async fn dead_letter(&self, message: &Message, failure: &Failure, attempts: u32) {
        tracing::warn!(
            topic = %message.meta.topic,
            group = %self.group,
            id = %message.meta.id,
            attempts,
            reason = %failure.reason,
            "dead-lettering message"
        );
        let mut headers = error_headers(failure.kind, &failure.reason);
        headers.push((header::ATTEMPTS, attempts.to_string()));
        headers.push((header::ORIGINAL_TOPIC, message.meta.topic.to_string()));
        headers.push((header::GROUP, self.group.to_string()));
        self.core.dead_letter(message, headers).await;
    }
}

impl<I: Invoke> HandlerMember<I> {
    /// Handles `message` to the end; the caller holds a delivery slot.
    async fn deliver_one(&self, message: Message, position: Position) {
        if let Some(log) = self.core.event_log() {
            if let Some(wait) = log.delivered(&message, &self.group) {
                wait.await;
            }
        }
        let _in_flight = self.metrics.delivered();
        match Handling::start(&message.meta, &self.group, self.is_request(&message)) {
            None => self.handle(&message, position).await,
            // Boxed: traced deliveries are the rarer kind, and the
            // span and scope would make every delivery's future larger.
            Some(traced) => Box::pin(traced.run(self.handle(&message, position))).await,
        }
    }
}

impl<I: Invoke> Member for HandlerMember<I> {
    fn deliver_run<'a>(
        self: Arc<Self>,
        first: Message,
        feed: &'a mut dyn Feed,
    ) -> BoxFuture<'a, Result<(), Message>> {
        Box::pin(async move {
            let mut message = first;
            let Some(mut slot) = self.slots.acquire().await else {
                return Err(message);
            };
            loop {
                self.deliver_one(message, feed.position()).await;
                feed.handled();
                match std::future::poll_fn(|cx| std::task::Poll::Ready(feed.next(cx))).await {
                    Some(next) => message = next,
                    None => return Ok(()),
                }
                // The run keeps its slot from one message to the next (two
                // atomic operations fewer per message) unless another
                // delivery waits for one or the member closes: it then
                // queues for a slot again, as every delivery did.
                if self.slots.wanted() {
                    drop(slot);
                    slot = match self.slots.acquire().await {
                        Some(slot) => slot,
                        None => return Err(message),
                    };
                }
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.slots.close())
    }
}

/// The delivery slots of one member: at most `limit` deliveries at once.
///
/// A counter rather than a semaphore, because every message takes and gives
/// back a slot: both are one atomic operation, and the `Notify` is touched
/// only when someone waits (a delivery finding every slot taken, or
/// `close`).
struct Slots {
    /// Deliveries in flight, plus [`Slots::CLOSED`] once the member closed.
    state: AtomicUsize,
    limit: usize,
    /// Tasks in the slow path of `acquire` or in `close`.
    waiters: AtomicUsize,
    freed: Notify,
}

/// What `Slots::try_take` found.
enum Take {
    Taken,
    Full,
    Closed,
}

impl Slots {
    const CLOSED: usize = 1 << (usize::BITS - 1);

    fn new(limit: usize) -> Self {
        Self {
            state: AtomicUsize::new(0),
            limit: limit.clamp(1, Self::CLOSED - 1),
            waiters: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    // SeqCst on `state` and `waiters` on both sides: a waiter counts itself
    // before it looks at `state`, a release changes `state` before it looks
    // at `waiters`, so either the release sees the waiter and wakes it, or
    // the waiter sees the freed slot.
    fn try_take(&self) -> Take {
        let mut state = self.state.load(Ordering::SeqCst);
        loop {
            if state & Self::CLOSED != 0 {
                return Take::Closed;
            }
            if state >= self.limit {
                return Take::Full;
            }
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Take::Taken,
                Err(now) => state = now,
            }
        }
    }

    /// A slot, or `None` once the member is closed.
    async fn acquire(&self) -> Option<Slot<'_>> {
        match self.try_take() {
            Take::Taken => return Some(Slot(self)),
            Take::Closed => return None,
            Take::Full => {}
        }
        let _waiting = Waiting::new(&self.waiters);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_take() {
                Take::Taken => return Some(Slot(self)),
                Take::Closed => return None,
                Take::Full => freed.await,
            }
        }
    }

    /// Refuses new deliveries (those waiting for a slot give their message
    /// back) and waits for the ones in flight.
    async fn close(&self) {
        let _waiting = Waiting::new(&self.waiters);
        self.state.fetch_or(Self::CLOSED, Ordering::SeqCst);
        self.freed.notify_waiters();
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.state.load(Ordering::SeqCst) & !Self::CLOSED == 0 {
                return;
            }
            freed.await;
        }
    }

    /// Whether a task waits for a slot (or for `close`), or the member closed.
    fn wanted(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) > 0
            || self.state.load(Ordering::SeqCst) & Self::CLOSED != 0
    }

    fn release(&self) {
        self.state.fetch_sub(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// A delivery slot, given back when dropped (also when the delivery is
/// cancelled).
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Counts a waiting task in `waiters` (`Slots::waiters`, a memory queue's
/// waiting publishers) while it lives, so that whoever frees room wakes
/// waiters only when there are some.
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(crate) fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Self(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Calls the handler on `message`, contained: its error, a panic (also
/// while decoding or before its future exists) and its time limit are
/// failures.
async fn call<I: Invoke>(
    invoke: &I,
    message: &Message,
    context: impl FnOnce() -> Context,
    timeout: Option<Duration>,
) -> Result<I::Output, Failure> {
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| invoke.invoke(message, context)));
    let call = match started {
        Ok(started) => AssertUnwindSafe(started?).catch_unwind(),
        Err(panic) => return Err(panicked(&*panic)),
    };
    let outcome = match timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(Failure::transient(
                    "timeout",
                    format!("handler did not finish within {limit:?}"),
                ))
            }
        },
        None => call.await,
    };
    match outcome {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(Failure::transient("handler", error.to_string())),
        Err(panic) => Err(panicked(&*panic)),
    }
}

/// Calls the handler through the layers of `stack`; a panic in a layer is
/// contained like one in the handler.
async fn call_layered<I: Invoke>(
    stack: &tokio::sync::Mutex<HandlerService>,
    delivery: Delivery,
) -> Result<Option<I::Output>, Failure> {
    let through = async {
        let mut service = stack.lock().await;
        service.ready().await?;
        let call = service.call(delivery);
        drop(service);
        call.await
    };
    match AssertUnwindSafe(through).catch_unwind().await {
        Ok(Ok(handled)) => match handled.into_output() {
            None => Ok(None),
            Some(output) => output
                .downcast::<I::Output>()
                .map(|output| Some(*output))
                .map_err(|_| {
                    Failure::permanent(
                        "middleware",
                        "a layer answered with an output the handler does not make".to_owned(),
                    )
                }),
        },
        Ok(Err(error)) => Err(match error.downcast::<CallError>() {
            Ok(call) => Failure {
                kind: call.kind,
                reason: call.reason,
                permanent: call.permanent,
            },
            Err(other) => Failure::transient("middleware", other.to_string()),
        }),
        Err(panic) => Err(panicked(&*panic)),
    }
}

/// The innermost service of a layered handler: the handler call itself.
struct Innermost<I> {
    invoke: Arc<I>,
    timeout: Option<Duration>,
}

impl<I: Invoke> tower::Service<Delivery> for Innermost<I> {
    type Response = Handled;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Handled, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let (invoke, timeout) = (Arc::clone(&self.invoke), self.timeout);
        Box::pin(async move {
            let context = delivery.into_context();
            let message = context.message.clone();
            match call(&*invoke, &message, move || context, timeout).await {
                Ok(output) => Ok(Handled::output(Box::new(output))),
                Err(failure) => Err(Box::new(CallError {
                    kind: failure.kind,
                    reason: failure.reason,
                    permanent: failure.permanent,
                }) as BoxError),
            }
        })
    }
}

/// The payload as a `T`: a copy of the in-process value, or decoded bytes.
fn decode<T: Topic>(message: &Message) -> Result<T, Failure> {
    match message.payload() {
        Payload::Value { value, .. } => value
            .downcast_ref::<Option<T>>()
            .and_then(Option::as_ref)
            .and_then(T::__try_clone)
            .ok_or_else(|| {
                Failure::permanent(
                    "type",
                    format!(
                        "in-process payload is not a `{}`",
                        std::any::type_name::<T>()
                    ),
                )
            }),
        Payload::Bytes(bytes) => {
            if let Some(content_type) = &message.meta.content_type {
                crate::wire::check_content_type(
                    content_type,
                    <T::Codec as Codec>::NAME,
                    <T::Codec as Codec>::CONTENT_TYPE,
                )
                .map_err(|why| Failure::permanent("decode", why))?;
            }
            <T::Codec as Codec>::decode(bytes).map_err(|error| {
                Failure::permanent(
                    "decode",
                    format!(
                        "{} codec could not decode a `{}`: {error}",
                        <T::Codec as Codec>::NAME,
                        std::any::type_name::<T>()
                    ),
                )
            })
        }
    }
}

/// The headers of an error reply or a dead letter, the reason bounded: a
/// handler's error of any length must not make the reply too large to send.
fn error_headers(kind: &'static str, reason: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            header::ERROR,
            crate::limit::bounded_reason(reason.to_owned()),
        ),
        (header::ERROR_KIND, kind.to_owned()),
    ]
}

/// The failure of a handler call that panicked.
fn panicked(panic: &(dyn Any + Send)) -> Failure {
    Failure::transient(
        "panic",
        format!("handler panicked: {}", panic_message(panic)),
    )
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

/// Reads the error headers of a reply, if it is an error reply.
pub(crate) fn reply_error(meta: &Meta) -> Option<String> {
    meta.headers.get_str(header::ERROR).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = Policy {
            retries: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            timeout: None,
            concurrency: 1,
        };
        assert_eq!(policy.delay(1), Duration::from_millis(100));
        assert_eq!(policy.delay(2), Duration::from_millis(200));
        assert_eq!(policy.delay(4), Duration::from_millis(800));
        assert_eq!(policy.delay(5), Duration::from_secs(1));
        assert_eq!(policy.delay(64), Duration::from_secs(1));
    }

    #[test]
    fn slots_limit_deliveries_and_close_waits_for_them() {
        let slots = Slots::new(2);
        let first = slots
            .acquire()
            .now_or_never()
            .flatten()
            .expect("a free slot");
        let second = slots
            .acquire()
            .now_or_never()
            .flatten()
            .expect("a free slot");
        let mut waiting = Box::pin(slots.acquire());
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "every slot is taken"
        );
        drop(first);
        let third = (&mut waiting)
            .now_or_never()
            .flatten()
            .expect("the freed slot goes to the waiting delivery");

        let mut waiting = Box::pin(slots.acquire());
        assert!((&mut waiting).now_or_never().is_none());
        let mut close = Box::pin(slots.close());
        assert!((&mut close).now_or_never().is_none(), "two are in flight");
        assert!(
            matches!(waiting.now_or_never(), Some(None)),
            "a delivery waiting for a slot gives its message back"
        );
        assert!(matches!(slots.acquire().now_or_never(), Some(None)));
        drop(second);
        assert!((&mut close).now_or_never().is_none(), "one is in flight");
        drop(third);
        assert!(close.now_or_never().is_some());
    }
}
