//! The call step: the handler (through the user's layers, if any), with
//! its time limit, its errors and panics contained as failures.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tower::{Service, ServiceExt};

use super::failure::{panicked, Failure};
use super::invoke::Invoke;
use crate::context::Context;
use crate::error::BoxError;
use crate::handler::HandlerResult;
use crate::message::Message;
use crate::middleware::{CallError, Delivery, Handled, HandlerService};
use crate::transport::BoxFuture;

/// Calls the handler on `message`, contained: its error, a panic (also
/// while decoding or before its future exists) and its time limit are
/// failures.
pub(super) async fn call<I: Invoke>(
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
    match outcome.map(HandlerResult::into_result) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(Failure::transient("handler", error.to_string())),
        Err(panic) => Err(panicked(&*panic)),
    }
}

/// Calls the handler through the layers of `stack`; a panic in a layer is
/// contained like one in the handler.
pub(super) async fn call_layered<I: Invoke>(
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
pub(super) struct Innermost<I> {
    pub(super) invoke: Arc<I>,
    pub(super) timeout: Option<Duration>,
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
