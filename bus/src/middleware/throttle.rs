//! A rate limit in calls per second that waits instead of failing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// At most `n` handler calls a second per subscription, each call waiting
/// for its turn (the partition waits with it); `burst` calls may go at once
/// after a quiet spell. Retries count as calls.
///
/// Unlike `tower::limit::RateLimitLayer`, which admits a whole period's
/// calls at its start, the calls are spread evenly: one every `1/n` s.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLayer {
    interval: Duration,
    burst: u32,
}

impl ThrottleLayer {
    /// `n` calls a second (at least 1), one at a time.
    pub fn per_second(n: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / n.max(1),
            burst: 1,
        }
    }

    /// Lets up to `burst` calls (at least 1) go at once after a quiet spell.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            interval: self.interval,
            slack: self.interval * (self.burst - 1),
            next: None,
            sleep: None,
        }
    }
}

/// The service of [`ThrottleLayer`].
pub struct Throttle<S> {
    inner: S,
    interval: Duration,
    /// How far ahead of its time a call may go: `(burst - 1)` intervals.
    slack: Duration,
    /// When the next call is due, on an even schedule.
    next: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Throttle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("inner", &self.inner)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl<S, R> Service<R> for Throttle<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let now = Instant::now();
        if let Some(next) = self.next {
            let due = next.checked_sub(self.slack).unwrap_or(next);
            if due > now {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                sleep.as_mut().reset(due);
                if Pin::new(sleep).poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        // GCRA: `next` is the theoretical time of the next call; a call may
        // come `slack` before it, so after a quiet spell (`next` in the
        // past) `burst` calls go at once and then one every interval.
        let now = Instant::now();
        let base = self.next.map_or(now, |next| next.max(now));
        self.next = Some(base + self.interval);
        self.inner.call(request)
    }
}
