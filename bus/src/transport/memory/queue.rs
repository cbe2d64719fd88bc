//! The queue of one partition in one consumer group: many publishers, one
//! partition task, a bound on the messages it holds.
//!
//! Not a `tokio::sync::mpsc` channel: a bounded channel's receiver gives
//! back one semaphore permit per message under a mutex, and its sender takes
//! one; in `memory_fanout` those were a sixth of the profile. Here a
//! publisher takes a short lock to push, and the partition task takes every
//! queued message in one lock, hands them out, and gives their room back to
//! publishers a few at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};

use tokio::sync::Notify;

use crate::message::Message;
use crate::transport::Waiting;

/// Messages a partition task hands out before it gives their room back
/// (sooner when its run ends or waits; see [`Queue::release`]).
pub(super) const RELEASE_BATCH: usize = 32;

pub(super) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    /// Publishers waiting for room, so that the partition task wakes them
    /// only when there are some.
    waiting: AtomicUsize,
    room: Notify,
    /// Written by the partition task only, on a cache line of its own: a
    /// publisher on another core reads it without the two taking turns
    /// to write one line for every message.
    released: Released,
}

/// Messages the partition task has given the room of back, ever.
#[repr(align(128))]
struct Released(AtomicUsize);

struct State {
    messages: VecDeque<Message>,
    /// Messages ever pushed. `pushed - released` (wrapping) is what the
    /// bound limits: the messages queued here, taken into a [`Taker`], or
    /// handed out and not yet released.
    pushed: usize,
    /// The partition task, while it waits for a message.
    task: Option<Waker>,
    /// The partition task was woken and has not yet come for its messages;
    /// when it does, it passes a wake on (`pass_wake` in the parent).
    woken: bool,
    closed: bool,
}

/// What became of the partition task when [`Queue::try_push`] queued a
/// message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// It was not waiting for one.
    Busy,
    /// It is woken (now or before) and will pass a wake on.
    Woken,
    /// It waits still, left for [`Queue::wake_waiting`].
    Left,
}

/// Why a push did not queue the message.
pub(super) enum Refused {
    Full(Message),
    Closed(Message),
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                messages: VecDeque::new(),
                pushed: 0,
                task: None,
                woken: false,
                closed: false,
            }),
            capacity: capacity.max(1),
            waiting: AtomicUsize::new(0),
            room: Notify::new(),
            released: Released(AtomicUsize::new(0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `message` if there is room. When the partition task waits
    /// for a message, wakes it if `wake` is set and otherwise leaves it for
    /// [`Queue::wake_waiting`].
    pub fn try_push(&self, message: Message, wake: bool) -> Result<Pushed, Refused> {
        let (pushed, task) = {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed(message));
            }
            // SeqCst: against the partition task's release and its read of
            // `waiting` (see `push`).
            let held = state
                .pushed
                .wrapping_sub(self.released.0.load(Ordering::SeqCst));
            if held >= self.capacity {
                return Err(Refused::Full(message));
            }
            state.pushed = state.pushed.wrapping_add(1);
            state.messages.push_back(message);
            match state.task.take() {
                Some(task) if wake => {
                    state.woken = true;
                    (Pushed::Woken, Some(task))
                }
                Some(task) => {
                    state.task = Some(task);
                    (Pushed::Left, None)
                }
                None if state.woken => (Pushed::Woken, None),
                None => (Pushed::Busy, None),
            }
        };
        // Outside the lock: the woken task takes it at once.
        if let Some(task) = task {
            task.wake();
        }
        Ok(pushed)
    }

    /// Whether the partition task was woken and has not yet come for its
    /// messages (and so passed a wake on).
    pub fn passes_wake(&self) -> bool {
        self.lock().woken
    }

    /// Wakes the partition task if it waits although messages are queued
    /// (left by [`Queue::try_push`] without `wake`); returns whether it did.
    pub fn wake_waiting(&self) -> bool {
        let task = {
            let mut state = self.lock();
            if state.messages.is_empty() {
                return false;
            }
            let task = state.task.take();
            state.woken |= task.is_some();
            task
        };
        match task {
            Some(task) => {
                task.wake();
                true
            }
            None => false,
        }
    }

    /// Queues `message`, waiting for room; gives it back if the queue closed.
    pub async fn push(&self, mut message: Message) -> Result<(), Message> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Counted before the re-check: either the check sees the room
            // the partition task made, or the task sees this count and wakes
            // the `room` registered above.
            let _waiting = Waiting::new(&self.waiting);
            match self.try_push(message, true) {
                Ok(_) => return Ok(()),
                Err(Refused::Closed(message)) => return Err(message),
                Err(Refused::Full(refused)) => {
                    message = refused;
                    room.await;
                }
            }
        }
    }

    /// No more messages: drops the queued ones, refuses pushes, wakes
    /// waiting publishers (which get theirs back) and the partition task.
    pub fn close(&self) {
        let (messages, task) = {
            let mut state = self.lock();
            state.closed = true;
            (std::mem::take(&mut state.messages), state.task.take())
        };
        drop(messages);
        self.room.notify_waiters();
        if let Some(task) = task {
            task.wake();
        }
    }

    /// `n` messages handed out left the queue for good: room for as many.
    /// Called by the partition task only.
    pub fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        // A load and a store, not an atomic add: only this task writes it.
        let released = self.released.0.load(Ordering::Relaxed);
        self.released
            .0
            .store(released.wrapping_add(n), Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }
}

/// The partition task's end of a [`Queue`]: the messages it took in one go.
/// A message it hands out holds its room until [`Queue::release`].
#[derive(Default)]
pub(super) struct Taker {
    taken: VecDeque<Message>,
}

impl Taker {
    /// The next message, if one is queued.
    // Inlined into the feed's `next`, the per-message path of a run.
    #[inline]
    pub fn try_take(&mut self, queue: &Queue) -> Option<Message> {
        if self.taken.is_empty() {
            // Swapped, not drained: the two buffers change places, so that
            // neither allocates again once both have grown.
            std::mem::swap(&mut queue.lock().messages, &mut self.taken);
        }
        self.taken.pop_front()
    }

    /// The next message, waiting for one; `None` once the queue closed.
    pub fn poll_take(
        &mut self,
        queue: &Queue,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Message>> {
        if let Some(message) = self.taken.pop_front() {
            return Poll::Ready(Some(message));
        }
        {
            let mut state = queue.lock();
            state.woken = false;
            if state.messages.is_empty() {
                if state.closed {
                    return Poll::Ready(None);
                }
                match &mut state.task {
                    Some(task) if task.will_wake(cx.waker()) => {}
                    task => *task = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            std::mem::swap(&mut state.messages, &mut self.taken);
        }
        Poll::Ready(self.taken.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::message::{Headers, MessageId, Meta};

    fn message(n: u8) -> Message {
        let meta = Meta {
            topic: Cow::Borrowed("t"),
            id: MessageId::new(),
            time: SystemTime::now(),
            source: Arc::from("s"),
            key: None,
            correlation_id: None,
            reply_to: None,
            content_type: None,
            headers: Headers::new(),
            malformed: None,
        };
        Message::bytes(meta, vec![n].into())
    }

    fn byte(message: &Message) -> u8 {
        match message.payload() {
            crate::message::Payload::Bytes(bytes) => bytes[0],
            crate::message::Payload::Value { .. } => panic!("bytes expected"),
        }
    }

    /// A queue of capacity 1 holding message 0, and a task pushing message
    /// 1 into it (its result: the byte of a message given back).
    fn full_queue_and_waiting_publisher() -> (Arc<Queue>, tokio::task::JoinHandle<Result<(), u8>>) {
        let queue = Arc::new(Queue::new(1));
        queue.try_push(message(0), true).ok().expect("room");
        let waiting = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.push(message(1)).await.map_err(|m| byte(&m)) }
        });
        (queue, waiting)
    }

    #[tokio::test]
    async fn holds_at_most_its_capacity_counting_messages_handed_out_until_released() {
        let queue = Queue::new(2);
        let mut taker = Taker::default();
        assert!(queue.try_push(message(0), true).is_ok());
        assert!(queue.try_push(message(1), true).is_ok());
        assert!(matches!(
            queue.try_push(message(2), true),
            Err(Refused::Full(_))
        ));
        // Taking moves both out of the queue, and handing one out frees no
        // room; releasing it does, for one.
        assert_eq!(taker.try_take(&queue).as_ref().map(byte), Some(0));
        assert!(matches!(
            queue.try_push(message(2), true),
            Err(Refused::Full(_))
        ));
        queue.release(1);
        assert!(queue.try_push(message(2), true).is_ok());
        assert!(matches!(
            queue.try_push(message(3), true),
            Err(Refused::Full(_))
        ));
        assert_eq!(taker.try_take(&queue).as_ref().map(byte), Some(1));
        assert_eq!(taker.try_take(&queue).as_ref().map(byte), Some(2));
        assert!(taker.try_take(&queue).is_none());
        queue.release(2);
        assert!(queue.try_push(message(3), true).is_ok());
        assert!(queue.try_push(message(4), true).is_ok());
        assert!(matches!(
            queue.try_push(message(5), true),
            Err(Refused::Full(_))
        ));
    }

    #[tokio::test]
    async fn a_waiting_publisher_gets_in_once_a_message_is_released() {
        let (queue, waiting) = full_queue_and_waiting_publisher();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "waits while the queue is full");
        let mut taker = Taker::default();
        assert_eq!(taker.try_take(&queue).as_ref().map(byte), Some(0));
        queue.release(1);
        assert_eq!(
            waiting.await.expect("publisher"),
            Ok(()),
            "queued after the release"
        );
        assert_eq!(taker.try_take(&queue).as_ref().map(byte), Some(1));
    }

    #[tokio::test]
    async fn closing_gives_waiting_publishers_their_message_back_and_ends_the_taker() {
        let (queue, waiting) = full_queue_and_waiting_publisher();
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.close();
        assert_eq!(waiting.await.expect("publisher"), Err(1));
        assert!(matches!(
            queue.try_push(message(2), true),
            Err(Refused::Closed(_))
        ));
        let mut taker = Taker::default();
        let next = std::future::poll_fn(|cx| taker.poll_take(&queue, cx)).await;
        assert!(next.is_none(), "a closed queue hands out nothing");
    }
}
