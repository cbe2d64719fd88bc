//! How many deliveries of one member run at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::transport::Waiting;

/// The delivery slots of one member: at most `limit` deliveries at once.
///
/// A counter rather than a semaphore, because every message takes and gives
/// back a slot: both are one atomic operation, and the `Notify` is touched
/// only when someone waits (a delivery finding every slot taken, or
/// `close`).
pub(super) struct Slots {
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

    pub(super) fn new(limit: usize) -> Self {
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
    pub(super) async fn acquire(&self) -> Option<Slot<'_>> {
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
    pub(super) async fn close(&self) {
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
    pub(super) fn wanted(&self) -> bool {
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
pub(super) struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

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
