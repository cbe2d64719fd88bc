//! Pauses handler calls while a dependency fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{CallError, Delivery, Handled};
use crate::error::BoxError;

/// After `failures` failed calls in a row, stops calling the handler for
/// `cool_down`: deliveries wait (and with them their partitions) instead of
/// burning their retries into the dead-letter topic while a database or a
/// downstream service is down. Then one call goes through as a probe: if it
/// succeeds the breaker closes, if it fails it opens for another
/// `cool_down`.
///
/// Failures are the handler's errors, panics and timeouts, and errors of
/// the layers inside this one. A message that cannot be read (a
/// [`CallError::is_permanent`] failure) says nothing about a dependency and
/// is not counted.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    failures: u32,
    cool_down: Duration,
    opened: Arc<AtomicU64>,
}

impl CircuitBreakerLayer {
    /// Opens after `failures` (at least 1) failures in a row, for `cool_down`.
    pub fn new(failures: u32, cool_down: Duration) -> Self {
        Self {
            failures: failures.max(1),
            cool_down,
            opened: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many times the breakers of this layer opened.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker {
            inner,
            shared: Arc::new(Shared {
                state: Mutex::new(BreakerState::Closed { failed: 0 }),
                changed: Notify::new(),
                failures: self.failures,
                cool_down: self.cool_down,
                opened: Arc::clone(&self.opened),
            }),
            waiting: None,
        }
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    /// Calls go through; `failed` failed in a row.
    Closed { failed: u32 },
    /// No calls until `until`; then one, as a probe.
    Open { until: Instant },
    /// The probe is out; the other calls wait for its outcome.
    Probing,
}

struct Shared {
    state: Mutex<BreakerState>,
    changed: Notify,
    failures: u32,
    cool_down: Duration,
    opened: Arc<AtomicU64>,
}

impl Shared {
    /// Records the outcome of a call (`probe`: the one let through after a
    /// cool-down).
    fn record(&self, failed: bool, probe: bool) {
        let mut state = self.state.lock().expect("poisoned");
        let open = |state: &mut BreakerState| {
            *state = BreakerState::Open {
                until: Instant::now() + self.cool_down,
            };
            self.opened.fetch_add(1, Ordering::Relaxed);
        };
        match (*state, failed) {
            (BreakerState::Probing, true) if probe => open(&mut state),
            (BreakerState::Probing, false) if probe => *state = BreakerState::Closed { failed: 0 },
            (BreakerState::Closed { failed }, true) => {
                if failed + 1 >= self.failures {
                    open(&mut state);
                } else {
                    *state = BreakerState::Closed { failed: failed + 1 };
                }
            }
            (BreakerState::Closed { .. }, false) => *state = BreakerState::Closed { failed: 0 },
            // A call that started before the breaker opened: its outcome
            // is old news.
            _ => return,
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

/// The service of [`CircuitBreakerLayer`].
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
    /// What `poll_ready` waits for: the end of a cool-down, or a probe's
    /// outcome.
    waiting: Option<BoxFuture<'static, ()>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<S> CircuitBreaker<S> {
    fn state(&self) -> BreakerState {
        *self.shared.state.lock().expect("poisoned")
    }
}

impl<S> Service<Delivery> for CircuitBreaker<S>
where
    S: Service<Delivery, Response = Handled>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Handled;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Handled, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            if let Some(waiting) = &mut self.waiting {
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.waiting = None;
            }
            let state = self.state();
            match state {
                BreakerState::Closed { .. } => break,
                BreakerState::Open { until } if until <= Instant::now() => break,
                BreakerState::Open { until } => {
                    self.waiting = Some(Box::pin(tokio::time::sleep_until(until)));
                }
                BreakerState::Probing => {
                    let shared = Arc::clone(&self.shared);
                    self.waiting = Some(Box::pin(async move {
                        let changed = shared.changed.notified();
                        tokio::pin!(changed);
                        changed.as_mut().enable();
                        if *shared.state.lock().expect("poisoned") == BreakerState::Probing {
                            changed.await;
                        }
                    }));
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let probe = {
            let mut state = self.shared.state.lock().expect("poisoned");
            match *state {
                BreakerState::Open { .. } => {
                    *state = BreakerState::Probing;
                    true
                }
                _ => false,
            }
        };
        let call = self.inner.call(delivery);
        let mut pending = Pending {
            shared: Arc::clone(&self.shared),
            probe,
            recorded: false,
        };
        Box::pin(async move {
            let outcome = call.await.map_err(Into::into);
            let failed = match &outcome {
                Ok(_) => false,
                Err(error) => !error
                    .downcast_ref::<CallError>()
                    .is_some_and(CallError::is_permanent),
            };
            pending.record(failed);
            outcome
        })
    }
}

/// A call whose outcome the breaker waits for. A probe dropped before its
/// outcome (its delivery cancelled by a shutdown) counts as failed, so that
/// the calls waiting for it are not left waiting.
struct Pending {
    shared: Arc<Shared>,
    probe: bool,
    recorded: bool,
}

impl Pending {
    fn record(&mut self, failed: bool) {
        self.recorded = true;
        self.shared.record(failed, self.probe);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.shared.record(true, true);
        }
    }
}
