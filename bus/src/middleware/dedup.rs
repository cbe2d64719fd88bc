//! Skips a message whose id was handled lately.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use super::{Delivery, Handled};
use crate::error::BoxError;
use crate::message::MessageId;

/// Skips a delivery whose message id (`ce_id`) was handled successfully by
/// the same subscription among the last `window` ids: at-least-once
/// delivery, redeliveries after a rebalance and a producer's retries then
/// reach the handler once. Ids are remembered only once handled, so a
/// failed attempt is retried as usual; the window is bounded, so an id
/// older than `window` others is handled again.
#[derive(Debug, Clone)]
pub struct DedupLayer {
    window: usize,
    skipped: Arc<AtomicU64>,
}

impl DedupLayer {
    /// Remembers the last `window` (at least 1) handled ids of each
    /// subscription.
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            skipped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Deliveries skipped so far by the subscriptions of this layer.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for DedupLayer {
    type Service = Dedup<S>;

    fn layer(&self, inner: S) -> Dedup<S> {
        Dedup {
            inner,
            seen: Arc::new(Mutex::new(Window {
                ids: HashSet::new(),
                order: VecDeque::new(),
                capacity: self.window,
            })),
            skipped: Arc::clone(&self.skipped),
        }
    }
}

/// The service of [`DedupLayer`].
#[derive(Debug)]
pub struct Dedup<S> {
    inner: S,
    seen: Arc<Mutex<Window>>,
    skipped: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Window {
    ids: HashSet<MessageId>,
    order: VecDeque<MessageId>,
    capacity: usize,
}

impl Window {
    fn insert(&mut self, id: MessageId) {
        if !self.ids.insert(id.clone()) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }
}

impl<S> Service<Delivery> for Dedup<S>
where
    S: Service<Delivery, Response = Handled>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Handled;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Handled, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let id = delivery.context().id().clone();
        if self.seen.lock().expect("poisoned").ids.contains(&id) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Box::pin(std::future::ready(Ok(Handled::skipped())));
        }
        let call = self.inner.call(delivery);
        let seen = Arc::clone(&self.seen);
        Box::pin(async move {
            let handled = call.await.map_err(Into::into)?;
            seen.lock().expect("poisoned").insert(id);
            Ok(handled)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgets_the_oldest_id() {
        let mut window = Window {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: 2,
        };
        let [a, b, c] = ["a", "b", "c"].map(MessageId::parse);
        window.insert(a.clone());
        window.insert(b.clone());
        window.insert(a.clone());
        assert_eq!(window.order.len(), 2, "a repeat takes no second place");
        window.insert(c.clone());
        assert!(!window.ids.contains(&a));
        assert!(window.ids.contains(&b) && window.ids.contains(&c));
    }
}
