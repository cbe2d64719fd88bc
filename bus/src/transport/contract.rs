//! What a transport implements and what it is given: the consumer-group
//! member it delivers to, the feed of one partition's ready messages, where
//! a group starts reading, and what a re-drive reports.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::message::{Headers, Message, MessageId};
use crate::transport::Pending;
use crate::wire::HeaderLimits;

/// A boxed future that can move between threads: what the methods of
/// [`Transport`] return, so that the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
/// run (see [`GroupMember::deliver_run`]). A transport implements it for
/// each run it starts; the member pulls from it until it returns `None`.
pub trait Feed: Send {
    /// The next message if one is ready now and the member still owns the
    /// partition. `None` ends the run; the transport then waits for the
    /// next message without holding the member. `cx` is the waker of the
    /// task running the member, for a transport that spends the task's
    /// cooperative budget.
    fn next(&mut self, cx: &mut std::task::Context<'_>) -> Option<TransportMessage>;

    /// The message taken last was handled to the end.
    fn handled(&mut self);

    /// Where the message taken last (or the run's first) is: its partition
    /// and, where the transport keeps them, its offset.
    fn position(&self) -> Position;
}

/// Where a delivered message is in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Position {
    /// The partition the message was read from.
    pub partition: u32,
    /// Its offset (or sequence number), where the transport keeps them.
    pub offset: Option<i64>,
}

impl Position {
    /// The position of a message of `partition`, at `offset` where the
    /// transport keeps offsets.
    pub const fn new(partition: u32, offset: Option<i64>) -> Self {
        Self { partition, offset }
    }
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
    /// at the newest message. On Kafka and transports that report
    /// [`Capabilities::keeps_offsets`]; the memory transport keeps no
    /// offsets, and it and the others refuse it with
    /// [`Error::Config`](crate::Error::Config).
    Offsets(Vec<(u32, u64)>),
}

/// What a consumer-group registration asks of the transport (see
/// [`Transport::join`]).
#[derive(Debug)]
pub struct SubscriptionSpec {
    pub(crate) topic: Cow<'static, str>,
    pub(crate) group: Arc<str>,
    pub(crate) start: StartFrom,
    pub(crate) partitions: Option<u32>,
    /// A broadcast registration's own group, which ends with it.
    pub(crate) ephemeral: bool,
    /// The bus's bounds on a received message's headers.
    pub(crate) header_limits: HeaderLimits,
}

impl SubscriptionSpec {
    /// The topic to read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The consumer group: each message of the topic goes to one member of
    /// each group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Where the group starts reading if it is new.
    pub fn start(&self) -> &StartFrom {
        &self.start
    }

    /// The partitions the topic gets if this registration creates it;
    /// `None` for the transport's default.
    pub fn partitions(&self) -> Option<u32> {
        self.partitions
    }

    /// Whether the group belongs to this registration alone (a broadcast
    /// member: every instance gets every message). The transport forgets
    /// the group, and anything it kept for it, when the member leaves.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The bus's bounds on the headers of a received message
    /// ([`BusBuilder::max_headers`](crate::BusBuilder::max_headers)): a
    /// transport that reads the group's messages off the wire rebuilds them
    /// with [`TransportMessage::from_wire_with`] and these limits.
    pub fn header_limits(&self) -> HeaderLimits {
        self.header_limits
    }
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

/// A message as a transport moves it: opaque, with the accessors a
/// transport needs to route and store it.
///
/// On a transport that carries values ([`Capabilities::carries_values`])
/// the message may hold the publisher's value unencoded; pass it on as it
/// is. A transport that writes messages out reads their bytes with
/// [`TransportMessage::payload_bytes`] and their headers with
/// [`TransportMessage::headers`].
#[derive(Clone)]
#[repr(transparent)]
pub struct TransportMessage(pub(crate) Message);

impl TransportMessage {
    /// A message read off the wire: `headers` and `payload` as
    /// [`TransportMessage::headers`] and [`TransportMessage::payload_bytes`]
    /// gave them to the transport that wrote it (or as another client
    /// wrote them). topicbus's own headers become the message's id, source,
    /// time, correlation id, reply-to and content type again; what is
    /// missing is filled in (a new id, now, source `unknown`), and one that
    /// is unreadable is kept as received and dead-letters the message for
    /// a typed handler. Past 256 headers or 64 KiB of them the rest are
    /// dropped, the default of
    /// [`BusBuilder::max_headers`](crate::BusBuilder::max_headers); a
    /// transport applies the bus's own limits with
    /// [`TransportMessage::from_wire_with`].
    ///
    /// ```
    /// use topicbus::transport::TransportMessage;
    /// use topicbus::Headers;
    ///
    /// let mut headers = Headers::new();
    /// headers.insert("trace", "abc");
    /// let message = TransportMessage::from_wire("orders", None, &headers, "{}".into());
    /// let again = TransportMessage::from_wire(
    ///     message.topic(),
    ///     None,
    ///     &message.headers(),
    ///     message.payload_bytes().unwrap(),
    /// );
    /// assert_eq!(again.id(), message.id());
    /// assert_eq!(again.headers().get_str("trace"), Some("abc"));
    /// ```
    pub fn from_wire(
        topic: impl Into<String>,
        key: Option<Vec<u8>>,
        headers: &Headers,
        payload: Bytes,
    ) -> TransportMessage {
        Self::from_wire_with(topic, key, headers, payload, HeaderLimits::default())
    }

    /// [`TransportMessage::from_wire`] within `limits`: the headers past
    /// `limits.count()` headers or `limits.bytes()` bytes of names and
    /// values are dropped and counted in
    /// [`header::HEADERS_DROPPED`](crate::header::HEADERS_DROPPED), and a
    /// typed handler dead-letters the message (kind `header`); a raw handler
    /// gets the headers kept. Pass the limits the bus gives with each group
    /// ([`SubscriptionSpec::header_limits`]) and reply inbox
    /// ([`ReplyInbox::header_limits`]).
    ///
    /// ```
    /// use topicbus::transport::{HeaderLimits, TransportMessage};
    /// use topicbus::{header, Headers};
    ///
    /// let mut headers = Headers::new();
    /// for name in ["a", "b", "c"] {
    ///     headers.insert(name, "1");
    /// }
    /// let message = TransportMessage::from_wire_with(
    ///     "orders",
    ///     None,
    ///     &headers,
    ///     "{}".into(),
    ///     HeaderLimits::new(2, 1024),
    /// );
    /// let kept = message.headers();
    /// assert_eq!((kept.get_str("b"), kept.get_str("c")), (Some("1"), None));
    /// assert_eq!(kept.get_str(header::HEADERS_DROPPED), Some("1"));
    /// ```
    pub fn from_wire_with(
        topic: impl Into<String>,
        key: Option<Vec<u8>>,
        headers: &Headers,
        payload: Bytes,
        limits: HeaderLimits,
    ) -> TransportMessage {
        let meta = crate::wire::read_meta(
            Cow::Owned(topic.into()),
            key,
            headers.iter(),
            &mut crate::wire::Recent::new(Arc::from("unknown"), limits),
        );
        TransportMessage(Message::bytes(meta, payload))
    }

    /// The message to publish to `topic` for this dead letter, read from
    /// `{topic}.dlq`: what a [`Transport::redrive`] publishes. It keeps the
    /// key, payload and headers (id, time, source, application headers)
    /// but for the dead-letter headers that describe the failure
    /// (`topicbus_error`, `topicbus_error_kind`, `topicbus_attempts`,
    /// `topicbus_original_topic`, `topicbus_group`); it counts the re-drive
    /// in [`header::REDRIVES`](crate::header::REDRIVES) and names the group
    /// that dead-lettered it in
    /// [`header::REDRIVE_GROUP`](crate::header::REDRIVE_GROUP), the only
    /// group that handles it again.
    ///
    /// Fails with [`Error::Codec`] when the dead letter cannot be re-driven,
    /// the error naming why: its `topicbus_redrives` header is not a count
    /// below 1 000 000 (topicbus adds one per re-drive, so the header was
    /// forged or damaged), or its payload, an in-process value, cannot be
    /// encoded. Such a dead letter is skipped: it stays in `{topic}.dlq`.
    ///
    /// ```
    /// use topicbus::transport::TransportMessage;
    /// use topicbus::{header, Error, Headers};
    ///
    /// let mut headers = Headers::new();
    /// headers.insert(header::ERROR, "handler failed: no stock");
    /// headers.insert(header::GROUP, "billing");
    /// let dead = TransportMessage::from_wire("orders.dlq", None, &headers, "{}".into());
    ///
    /// let again = dead.redriven("orders")?;
    /// assert_eq!(again.topic(), "orders");
    /// assert_eq!(again.id(), dead.id());
    /// let sent = again.headers();
    /// assert_eq!(sent.get_str(header::ERROR), None);
    /// assert_eq!(sent.get_str(header::REDRIVES), Some("1"));
    /// assert_eq!(sent.get_str(header::REDRIVE_GROUP), Some("billing"));
    ///
    /// headers.insert(header::REDRIVES, "many");
    /// let forged = TransportMessage::from_wire("orders.dlq", None, &headers, "{}".into());
    /// assert!(matches!(forged.redriven("orders"), Err(Error::Codec { .. })));
    /// # Ok::<(), topicbus::Error>(())
    /// ```
    pub fn redriven(&self, topic: &str) -> Result<TransportMessage> {
        crate::redrive::revive(&self.0, topic).map(TransportMessage)
    }

    /// The topic the message is published to.
    pub fn topic(&self) -> &str {
        &self.0.meta.topic
    }

    /// The message's id.
    pub fn id(&self) -> &MessageId {
        &self.0.meta.id
    }

    /// The partitioning key, if the publisher set one: messages with the
    /// same key must keep their order.
    pub fn key(&self) -> Option<&[u8]> {
        self.0.meta.key.as_deref()
    }

    /// Where a reply to this request goes: a reply inbox name (see
    /// [`Transport::reply`]); `None` when this is not a request.
    pub fn reply_to(&self) -> Option<&str> {
        self.0.meta.reply_to.as_deref()
    }

    /// Every header as another client sees it on the wire: the
    /// application's headers and topicbus's own (id, source, time,
    /// correlation id, reply-to, content type).
    pub fn headers(&self) -> Headers {
        crate::wire::headers(&self.0.meta)
    }

    /// Whether the payload is an in-process value rather than bytes.
    pub fn is_value(&self) -> bool {
        matches!(self.0.payload(), crate::message::Payload::Value { .. })
    }

    /// The payload as bytes, encoded with the publisher's codec when it is
    /// a value; fails with [`Error::Codec`] when the codec refuses it.
    pub fn payload_bytes(&self) -> Result<Bytes> {
        self.0
            .payload()
            .to_bytes()
            .map_err(|e| Error::codec(&self.0.meta.topic, "payload", e))
    }

    /// Whether `self` and `other` are handles to the same message.
    pub fn same(&self, other: &TransportMessage) -> bool {
        self.0.same(&other.0)
    }
}

impl std::fmt::Debug for TransportMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportMessage")
            .field("topic", &self.topic())
            .field("id", self.id())
            .finish_non_exhaustive()
    }
}

/// A member of a consumer group, made by the bus for one handler
/// registration and handed to [`Transport::join`]. The transport delivers
/// each partition's messages to one member at a time, in order, and holds
/// the member while it handles them.
#[derive(Clone)]
pub struct GroupMember(pub(crate) Arc<dyn Member>);

impl GroupMember {
    /// Handles `first`, then the messages `feed` has ready, one at a time
    /// and in order, until the feed returns `None`: the member has then
    /// handled (acknowledged, see [`Feed::handled`]) every message it took.
    /// Gives back the message it could not take when the member has left;
    /// deliver it to another member of the group.
    pub async fn deliver_run(
        &self,
        first: TransportMessage,
        feed: &mut dyn Feed,
    ) -> std::result::Result<(), TransportMessage> {
        Arc::clone(&self.0)
            .deliver_run(first.0, feed)
            .await
            .map_err(TransportMessage)
    }

    /// Stops taking messages and waits for the ones in flight.
    pub async fn close(&self) {
        self.0.close().await
    }

    /// Whether `self` and `other` are the same member (to find the one
    /// [`Transport::leave`] names).
    pub fn same(&self, other: &GroupMember) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMember").finish_non_exhaustive()
    }
}

/// The reply inbox of one bus instance, handed to
/// [`Transport::open_inbox`]: the transport gives it the replies sent to
/// the inbox's name, and it wakes the request each answers (a reply nobody
/// waits for any more is counted and dropped).
#[derive(Clone)]
pub struct ReplyInbox {
    pub(crate) pending: Arc<Pending>,
    pub(crate) header_limits: HeaderLimits,
}

impl ReplyInbox {
    /// Hands a reply that arrived for this inbox to its request.
    pub fn deliver(&self, reply: TransportMessage) {
        self.pending.complete(reply.0);
    }

    /// The bus's bounds on the headers of a received message
    /// ([`BusBuilder::max_headers`](crate::BusBuilder::max_headers)): a
    /// transport that reads replies off the wire rebuilds them with
    /// [`TransportMessage::from_wire_with`] and these limits.
    pub fn header_limits(&self) -> HeaderLimits {
        self.header_limits
    }
}

impl std::fmt::Debug for ReplyInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyInbox").finish_non_exhaustive()
    }
}

/// What a transport can do, as [`Transport::capabilities`] reports it.
/// The bus refuses what a transport lacks with [`Error::Config`] (for
/// example [`StartFrom::Offsets`] on a transport that keeps no offsets)
/// before asking the transport.
///
/// ```
/// use topicbus::transport::Capabilities;
/// let caps = Capabilities::new().carries_values(true).replay(true);
/// assert!(caps.carries_values && caps.replay && !caps.keeps_offsets);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// In-process values travel unencoded: the transport passes messages
    /// on within this process. When `false`, the bus encodes every payload
    /// before [`Transport::publish`].
    pub carries_values: bool,
    /// The transport keeps offsets, so a group can start at
    /// [`StartFrom::Offsets`].
    pub keeps_offsets: bool,
    /// The transport keeps published messages, so a new group can start at
    /// [`StartFrom::Earliest`] or [`StartFrom::Timestamp`].
    pub replay: bool,
    /// Topics must be created before use: the bus calls
    /// [`Transport::ensure_topic`] before publishing to or consuming from a
    /// topic, and its dead-letter topic.
    pub provisions_topics: bool,
}

impl Capabilities {
    /// None of the capabilities.
    pub const fn new() -> Self {
        Self {
            carries_values: false,
            keeps_offsets: false,
            replay: false,
            provisions_topics: false,
        }
    }

    /// Sets [`Capabilities::carries_values`].
    pub const fn carries_values(mut self, on: bool) -> Self {
        self.carries_values = on;
        self
    }

    /// Sets [`Capabilities::keeps_offsets`].
    pub const fn keeps_offsets(mut self, on: bool) -> Self {
        self.keeps_offsets = on;
        self
    }

    /// Sets [`Capabilities::replay`].
    pub const fn replay(mut self, on: bool) -> Self {
        self.replay = on;
        self
    }

    /// Sets [`Capabilities::provisions_topics`].
    pub const fn provisions_topics(mut self, on: bool) -> Self {
        self.provisions_topics = on;
        self
    }

    /// Why a group cannot start at `start` here: the [`Error::Config`] the
    /// bus returns before asking the transport.
    pub(crate) fn refuse_start(&self, transport: &str, start: &StartFrom) -> Result<()> {
        let lacks = match start {
            StartFrom::Offsets(_) if !self.keeps_offsets => "keeps no offsets",
            StartFrom::Earliest | StartFrom::Timestamp(_) if !self.replay => {
                "keeps no published messages to replay"
            }
            _ => return Ok(()),
        };
        Err(Error::Config {
            key: "start_from".to_owned(),
            message: format!("the `{transport}` transport {lacks}; it cannot start at {start:?}"),
        })
    }
}

/// A transport: what moves a bus's messages between its publishers, its
/// consumer groups and its reply inboxes. Give one to
/// [`BusBuilder::transport`](crate::BusBuilder::transport); see the
/// [module documentation](crate::transport) for a walk-through.
///
/// Methods that wait return a [`BoxFuture`], so that the bus can hold any
/// transport as `Arc<dyn Transport>`.
pub trait Transport: Send + Sync + 'static {
    /// A short name for errors and logs (`"memory"`, `"nats"`).
    fn name(&self) -> &str;

    /// What this transport can do; the bus reads it once, when it is built.
    fn capabilities(&self) -> Capabilities;

    /// Publishes one message; the future ends when the transport accepted
    /// it (the acknowledgement: a broker stored it, a queue took it).
    fn publish(&self, message: TransportMessage) -> BoxFuture<'_, Result<()>>;

    /// Adds `member` to the group `spec` names on its topic; the future
    /// ends once the member takes messages. Each message published after
    /// (or kept from `spec.start()`, where the transport replays) goes to
    /// one member of each group, a partition's messages in order, through
    /// [`GroupMember::deliver_run`]. A group whose spec
    /// [is ephemeral](SubscriptionSpec::is_ephemeral) has this one member.
    fn join(&self, spec: SubscriptionSpec, member: GroupMember) -> BoxFuture<'_, Result<()>>;

    /// Removes `member` from `group` on `topic`; the future ends when its
    /// messages in flight are handled and acknowledged. Its partitions go
    /// to the group's other members.
    fn leave<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        member: &'a GroupMember,
    ) -> BoxFuture<'a, ()>;

    /// [`Transport::leave`] without waiting: the bus was dropped.
    fn leave_now(&self, topic: &str, group: &str, member: &GroupMember);

    /// Waits until `group` on `topic` has no queued or in-flight messages,
    /// where the transport holds them in this process; returns whether it
    /// had to wait. Shutdown calls it for groups whose last member is here.
    /// By default the broker holds them: returns `false` at once.
    fn drain<'a>(&'a self, topic: &'a str, group: &'a str) -> BoxFuture<'a, bool> {
        let _ = (topic, group);
        Box::pin(async { false })
    }

    /// How many members `group` on `topic` has, where the transport keeps
    /// the group in this process; `None` (the default) where a broker does.
    fn local_members(&self, topic: &str, group: &str) -> Option<usize> {
        let _ = (topic, group);
        None
    }

    /// `Some(false)` when the transport knows nobody consumes `topic` (a
    /// request then fails at once with
    /// [`Error::NoResponders`](crate::Error::NoResponders)); `None`, the
    /// default, when it cannot know.
    fn has_consumers(&self, topic: &str) -> Option<bool> {
        let _ = topic;
        None
    }

    /// Creates `topic` where topics are provisioned
    /// ([`Capabilities::provisions_topics`]); by default does nothing.
    fn ensure_topic<'a>(
        &'a self,
        topic: &'a str,
        partitions: Option<u32>,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (topic, partitions);
        Box::pin(async { Ok(()) })
    }

    /// Opens this bus instance's reply inbox under `name`: from now on a
    /// message sent with [`Transport::reply`] to `name`, by any instance on
    /// the same broker, goes to `inbox`. Called once, when the bus is
    /// built.
    fn open_inbox(&self, name: &str, inbox: ReplyInbox) -> Result<()>;

    /// Sends `reply` to the inbox named `reply_to` without waiting for it
    /// to arrive; a reply that cannot be delivered is logged (its
    /// requester times out).
    fn reply(&self, reply_to: &str, reply: TransportMessage) -> Result<()>;

    /// Closes the inbox named `inbox` and flushes what is still being
    /// sent; the bus calls it last, when it shuts down.
    fn close<'a>(&'a self, inbox: &'a str) -> BoxFuture<'a, ()>;

    /// [`Transport::close`] without waiting: the bus was dropped.
    fn close_now(&self, inbox: &str);

    /// Moves the kept dead letters of `topic` (from `{topic}.dlq`) back to
    /// it, for [`Bus::redrive`](crate::Bus::redrive). By default fails with
    /// [`Error::Config`]: the transport keeps no dead letters to move.
    ///
    /// A transport that keeps them reads the messages of `{topic}.dlq`
    /// there now (the ones dead-lettered meanwhile can wait for the next
    /// re-drive) and for each calls [`TransportMessage::redriven`] with
    /// `topic`, which applies the bus's re-drive rules:
    ///
    /// - on `Ok`, publishes the message it returns to `topic`, as
    ///   [`Transport::publish`] would, and only once that is acknowledged
    ///   removes the dead letter (or moves its read position past it), then
    ///   counts it in [`RedriveSummary::moved`];
    /// - on `Err`, leaves the dead letter where it is, logs it at error
    ///   level with the error, which says why, and counts it in
    ///   [`RedriveSummary::skipped`]; then goes on with the next one.
    ///
    /// It fails (with [`Error::Unavailable`], say) only when it cannot go
    /// on: what it moved before stays moved. One re-drive of a topic runs at
    /// a time.
    ///
    /// ```
    /// use topicbus::transport::{Transport, TransportMessage};
    /// use topicbus::{RedriveSummary, Result};
    ///
    /// /// Moves `dead`, the messages kept in `{topic}.dlq`, back to `topic`
    /// /// through `transport`; what cannot be re-driven stays in `dead`.
    /// async fn redrive(
    ///     transport: &dyn Transport,
    ///     topic: &str,
    ///     dead: &mut Vec<TransportMessage>,
    /// ) -> Result<RedriveSummary> {
    ///     let mut done = RedriveSummary::default();
    ///     let mut at = 0;
    ///     while at < dead.len() {
    ///         match dead[at].redriven(topic) {
    ///             Ok(again) => {
    ///                 transport.publish(again).await?;
    ///                 dead.remove(at);
    ///                 done.moved += 1;
    ///             }
    ///             Err(error) => {
    ///                 tracing::error!(
    ///                     topic = %format!("{topic}.dlq"),
    ///                     id = %dead[at].id(),
    ///                     %error,
    ///                     "re-drive skipped a dead letter; it stays in the dead-letter topic"
    ///                 );
    ///                 done.skipped += 1;
    ///                 at += 1;
    ///             }
    ///         }
    ///     }
    ///     Ok(done)
    /// }
    /// ```
    fn redrive<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<RedriveSummary>> {
        let name = self.name().to_owned();
        let _ = topic;
        Box::pin(async move {
            Err(Error::Config {
                key: "redrive".to_owned(),
                message: format!("the `{name}` transport cannot re-drive dead letters"),
            })
        })
    }

    /// The largest payload this transport takes, if it has a limit; the
    /// bus checks it before publishing (unless
    /// [`BusBuilder::max_message_bytes`](crate::BusBuilder::max_message_bytes)
    /// sets another).
    fn max_message_bytes(&self) -> Option<usize> {
        None
    }
}

/// A shared transport, so that its owner keeps a handle to it (to read
/// what it counted, say) after giving it to the bus.
impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn publish(&self, message: TransportMessage) -> BoxFuture<'_, Result<()>> {
        (**self).publish(message)
    }
    fn join(&self, spec: SubscriptionSpec, member: GroupMember) -> BoxFuture<'_, Result<()>> {
        (**self).join(spec, member)
    }
    fn leave<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        member: &'a GroupMember,
    ) -> BoxFuture<'a, ()> {
        (**self).leave(topic, group, member)
    }
    fn leave_now(&self, topic: &str, group: &str, member: &GroupMember) {
        (**self).leave_now(topic, group, member)
    }
    fn drain<'a>(&'a self, topic: &'a str, group: &'a str) -> BoxFuture<'a, bool> {
        (**self).drain(topic, group)
    }
    fn local_members(&self, topic: &str, group: &str) -> Option<usize> {
        (**self).local_members(topic, group)
    }
    fn has_consumers(&self, topic: &str) -> Option<bool> {
        (**self).has_consumers(topic)
    }
    fn ensure_topic<'a>(
        &'a self,
        topic: &'a str,
        partitions: Option<u32>,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).ensure_topic(topic, partitions)
    }
    fn open_inbox(&self, name: &str, inbox: ReplyInbox) -> Result<()> {
        (**self).open_inbox(name, inbox)
    }
    fn reply(&self, reply_to: &str, reply: TransportMessage) -> Result<()> {
        (**self).reply(reply_to, reply)
    }
    fn close<'a>(&'a self, inbox: &'a str) -> BoxFuture<'a, ()> {
        (**self).close(inbox)
    }
    fn close_now(&self, inbox: &str) {
        (**self).close_now(inbox)
    }
    fn redrive<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<RedriveSummary>> {
        (**self).redrive(topic)
    }
    fn max_message_bytes(&self) -> Option<usize> {
        (**self).max_message_bytes()
    }
}
