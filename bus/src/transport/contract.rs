//! What a transport implements and what it is given: the consumer-group
//! member it delivers to, the feed of one partition's ready messages, where
//! a group starts reading, and what a re-drive reports.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::message::Message;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A member of a consumer group: takes one message at a time per partition.
pub(crate) trait Member: Send + Sync + 'static {
    /// Handles `first`, then, one at a time and in order, the messages
    /// `feed` has ready, in one future: the future is boxed once per run of
    /// queued messages instead of once per message. Gives back the message
    /// it could not take when the member has left.
    fn deliver_run<'a>(
        self: Arc<Self>,
        first: Message,
        feed: &'a mut dyn Feed,
    ) -> BoxFuture<'a, Result<(), Message>>;

    /// Stops taking messages and waits for the ones in flight.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// The messages of one partition that are ready for the member handling a
/// run (see [`Member::deliver_run`]).
pub(crate) trait Feed: Send {
    /// The next message if one is ready now and the member still owns the
    /// partition. `None` ends the run; the transport then waits for the
    /// next message without holding the member.
    fn next(&mut self, cx: &mut std::task::Context<'_>) -> Option<Message>;

    /// The message taken last was handled to the end.
    fn handled(&mut self);

    /// Where the message taken last (or the run's first) is: its partition
    /// and, where the transport keeps them, its offset.
    fn position(&self) -> Position;
}

/// Where a delivered message is in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub partition: u32,
    pub offset: Option<i64>,
}

/// Counts a waiting task in `waiters` (`Slots::waiters`, a memory queue's
/// waiting publishers) while it lives, so that whoever frees room wakes
/// waiters only when there are some.
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(crate) fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Self(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a new consumer group starts reading. A group that already exists
/// keeps its position.
///
/// ```
/// use topicbus::StartFrom;
/// let replay = StartFrom::Earliest;
/// assert_ne!(replay, StartFrom::default());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartFrom {
    /// Only messages published after the group joined (the default).
    #[default]
    Latest,
    /// The oldest message the transport still keeps.
    Earliest,
    /// The first kept message published at or after this time.
    Timestamp(SystemTime),
    /// These offsets, as `(partition, offset)`; partitions not listed start
    /// at the newest message. Kafka only: the memory transport keeps no
    /// offsets and refuses it with [`Error::Config`](crate::Error::Config).
    Offsets(Vec<(u32, u64)>),
}

/// What a consumer-group registration asks of the transport.
pub(crate) struct SubscriptionSpec {
    pub topic: Cow<'static, str>,
    pub group: Arc<str>,
    pub start: StartFrom,
    pub partitions: Option<u32>,
    /// A broadcast registration's own group, which ends with it.
    pub ephemeral: bool,
}

/// What [`Bus::redrive`](crate::Bus::redrive) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RedriveSummary {
    /// Dead letters moved back to the topic.
    pub moved: u64,
    /// Dead letters that cannot be re-driven, each logged at error level
    /// with its reason; they stay in the dead-letter topic.
    pub skipped: u64,
}
