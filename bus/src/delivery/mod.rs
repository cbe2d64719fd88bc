//! What happens to a delivered message, on every transport: decode, call the
//! handler (contained: errors, panics and timeouts are failures), retry with
//! backoff, reply to requests, dead-letter what cannot be handled.
//!
//! One step per file: `decode`, `call` (time limit, panic containment,
//! the user's layers), `retry` (backoff), `reply`, `dead_letter`; `slots`
//! bounds a member's deliveries in flight. This file strings them together
//! as the group member a transport delivers to.

use std::sync::Arc;

use crate::context::Context;
use crate::core::BusCore;
use crate::message::Message;
use crate::middleware::{Delivery, ErasedLayer, HandlerService};
use crate::telemetry::metrics::HandlerMetrics;
use crate::telemetry::trace::{self, Handling};
use crate::transport::{BoxFuture, Feed, Member, Position};

mod call;
mod dead_letter;
mod decode;
mod failure;
mod invoke;
mod reply;
mod retry;
mod slots;

use self::call::{call, call_layered, Innermost};
use self::failure::Failure;
pub(crate) use self::invoke::{Invoke, Raw, Typed};
pub(crate) use self::reply::ReplyFn;
pub(crate) use self::retry::Policy;
use self::slots::Slots;

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
                    Some(next) => message = next.0,
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
