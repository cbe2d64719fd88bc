//! Requests waiting for their reply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::Counter;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::message::{Message, MessageId};

/// The requests of one bus instance that wait for a reply, by correlation id.
///
/// Every entry is removed by the [`PendingGuard`] of the call that made it,
/// whether the call got its reply, timed out or was cancelled, so no entry
/// outlives its request.
pub(crate) struct Pending {
    waiting: Mutex<FastMap<MessageId, oneshot::Sender<Message>>>,
    limit: usize,
    late_replies: AtomicU64,
    late_replies_metric: Counter,
}

impl Pending {
    pub fn new(limit: usize) -> Self {
        Self {
            waiting: Mutex::new(FastMap::default()),
            limit,
            late_replies: AtomicU64::new(0),
            late_replies_metric: crate::telemetry::metrics::late_replies(),
        }
    }

    /// Registers a request; fails when `limit` requests already wait.
    pub fn register(
        self: &Arc<Self>,
        id: MessageId,
    ) -> Result<(PendingGuard, oneshot::Receiver<Message>)> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().expect("pending map poisoned");
        if waiting.len() >= self.limit {
            return Err(Error::Unavailable {
                message: format!(
                    "{} requests already wait for a reply (the configured limit)",
                    self.limit
                ),
                source: None,
            });
        }
        waiting.insert(id.clone(), tx);
        Ok((
            PendingGuard {
                pending: Arc::clone(self),
                id,
                armed: true,
            },
            rx,
        ))
    }

    /// Hands a reply to its waiting request, or counts it as late.
    pub fn complete(&self, reply: Message) {
        let waiter = reply.meta.correlation_id.as_ref().and_then(|id| {
            self.waiting
                .lock()
                .expect("pending map poisoned")
                .remove(id)
        });
        let delivered = match waiter {
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        };
        if !delivered {
            self.late_replies.fetch_add(1, Ordering::Relaxed);
            self.late_replies_metric.increment(1);
            tracing::debug!("dropped a reply nobody waits for");
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.lock().expect("pending map poisoned").len()
    }

    pub fn late_replies(&self) -> u64 {
        self.late_replies.load(Ordering::Relaxed)
    }

    /// Fails every waiting request with `closed` (their senders drop).
    pub fn close_all(&self) {
        self.waiting.lock().expect("pending map poisoned").clear();
    }
}

/// Removes its pending entry when dropped.
pub(crate) struct PendingGuard {
    pending: Arc<Pending>,
    id: MessageId,
    armed: bool,
}

impl PendingGuard {
    /// The entry is gone already (its reply was handed over): spares the
    /// second lookup.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.pending
            .waiting
            .lock()
            .expect("pending map poisoned")
            .remove(&self.id);
    }
}
