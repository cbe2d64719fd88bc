//! What a member calls: a typed handler or a raw-message closure.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use super::decode::decode;
use super::failure::Failure;
use crate::codec::Codec;
use crate::context::Context;
use crate::handler::{Handler, HandlerResult, OutputOf};
use crate::message::{Message, RawMessage};
use crate::topic::Topic;

/// What a member calls: a typed [`Handler`] or a raw-message closure.
pub(crate) trait Invoke: Send + Sync + 'static {
    type Output: Send + 'static;
    type Error: fmt::Display + Send + 'static;
    /// What the handler's future resolves to; read with `into_result`
    /// once awaited, rather than through a wrapping future.
    type Result: HandlerResult<Ok = Self::Output, Err = Self::Error>;
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
    ) -> Result<impl Future<Output = Self::Result> + Send, Failure>;
}

/// A typed handler: the payload is decoded (or copied) into its topic type.
pub(crate) struct Typed<H, M>(pub H, pub PhantomData<fn(M)>);

impl<H: Handler<M>, M: 'static> Invoke for Typed<H, M> {
    type Output = OutputOf<H, M>;
    type Error = <H::Result as HandlerResult>::Err;
    type Result = H::Result;
    const CHECKS_INPUT: bool = true;
    const CONTENT_TYPE: Option<&'static str> =
        Some(<<H::Topic as Topic>::Codec as Codec>::CONTENT_TYPE);

    fn invoke(
        &self,
        message: &Message,
        context: impl FnOnce() -> Context,
    ) -> Result<impl Future<Output = H::Result> + Send, Failure> {
        let value = decode::<H::Topic>(message)?;
        Ok(self.0.call(value, context))
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
    type Result = Result<(), E>;
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
