//! Request/reply: the call [`Bus::request`](crate::Bus::request) sets up.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::core::BusCore;
use crate::error::{Error, Result};
use crate::message::Headers;
use crate::telemetry::trace;
use crate::topic::Request;
use crate::transport::BoxFuture;

/// A request being set up; `.await` it for the reply of type `R` (the
/// request topic `T`'s response).
#[must_use = "a request does nothing until it is awaited"]
pub struct RequestCall<'a, T, R> {
    core: &'a Arc<BusCore>,
    request: &'a T,
    timeout: Option<Duration>,
    headers: Headers,
    // Made by `Bus::request`, where `T: Request<Response = R>` is checked,
    // so that `.await` needs no bound of its own: a request to a topic
    // without a response is one error, at `request`.
    run: fn(Self) -> BoxFuture<'a, Result<R>>,
}

impl<'a, T: Request> RequestCall<'a, T, T::Response> {
    pub(super) fn new(core: &'a Arc<BusCore>, request: &'a T) -> Self {
        RequestCall {
            core,
            request,
            timeout: None,
            headers: Headers::new(),
            run: Self::run,
        }
    }
}

impl<T, R> RequestCall<'_, T, R> {
    /// Waits at most `timeout` for the reply instead of the bus default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request with these application headers.
    pub fn headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

impl<'a, T, R> IntoFuture for RequestCall<'a, T, R> {
    type Output = Result<R>;
    type IntoFuture = BoxFuture<'a, Result<R>>;

    fn into_future(self) -> Self::IntoFuture {
        (self.run)(self)
    }
}

impl<'a, T: Request> RequestCall<'a, T, T::Response> {
    fn run(mut self) -> BoxFuture<'a, Result<T::Response>> {
        Box::pin(async move {
            let core = self.core;
            let started = Instant::now();
            let span = trace::request_span(T::NAME);
            trace::inject(&span, &mut self.headers);
            let result = self.send(&span).instrument(span.clone()).await;
            core.metrics.request(T::NAME, started, &result);
            result
        })
    }

    async fn send(self, span: &tracing::Span) -> Result<T::Response> {
        let core = self.core;
        core.check_open()?;
        if core.transport.has_consumers(T::NAME) == Some(false) {
            return Err(Error::NoResponders {
                topic: T::NAME.to_owned(),
            });
        }
        let limit = self.timeout.unwrap_or(core.settings.request_timeout);
        let message = core.message(
            self.request,
            Some(Arc::clone(&core.inbox)),
            self.headers,
            None,
        )?;
        trace::record_message(span, &message.meta);
        core.ensure_topic(T::NAME, T::PARTITIONS).await?;
        let reply = core
            .exchange(message, limit, |sent| {
                core.metrics.published(T::NAME, 1, sent)
            })
            .await?;
        crate::reply::read::typed::<T>(reply, core.max_message_bytes)
    }
}
