//! Message metadata shared by every transport.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use crate::codec::{Codec, CodecError};

/// A message or correlation identifier: a UUID when topicbus made it, any
/// text when another client did.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MessageId(IdRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum IdRepr {
    Uuid(Uuid),
    Text(Arc<str>),
}

impl MessageId {
    /// A new random (v4) identifier.
    pub fn new() -> Self {
        Self(IdRepr::Uuid(Uuid::new_v4()))
    }

    /// A new identifier for a message this process publishes, in the v4
    /// UUID layout: a random v4 UUID drawn once per process with a count
    /// added to its low 62 random bits. Unique within the process (for
    /// 2^62 ids) without drawing random bits per message; across processes
    /// as unlikely to repeat as random v4 UUIDs, since each process starts
    /// at a random one. Not unguessable: one id tells the next, so request
    /// correlation ids, which a forged reply would need, stay [`Self::new`].
    pub(crate) fn next() -> Self {
        Self(IdRepr::Uuid(sequence::next()))
    }

    /// An identifier from its text form; UUID text becomes a UUID.
    pub fn parse(text: &str) -> Self {
        match Uuid::try_parse(text) {
            Ok(uuid) => Self(IdRepr::Uuid(uuid)),
            Err(_) => Self(IdRepr::Text(text.into())),
        }
    }

    /// Whether it is the empty text, which CloudEvents does not allow.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(&self.0, IdRepr::Text(text) if text.is_empty())
    }

    /// The UUID, when the identifier is one.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match &self.0 {
            IdRepr::Uuid(u) => Some(*u),
            IdRepr::Text(_) => None,
        }
    }
}

/// The counts behind [`MessageId::next`].
mod sequence {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use uuid::Uuid;

    /// Counts a thread takes from [`NEXT`] at a time, so that threads that
    /// publish at once do not share one counter's cache line per message.
    const BLOCK: u64 = 1024;
    /// The 62 low bits a v4 UUID fills at random (the two above them hold
    /// its variant).
    const RANDOM_LOW: u64 = (1 << 62) - 1;
    const VARIANT: u64 = 1 << 63;

    static BASE: OnceLock<(u64, u64)> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// This thread's counts: the next one and the end of its block.
        static TAKEN: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }

    pub(super) fn next() -> Uuid {
        let n = TAKEN.with(|taken| {
            let (mut next, mut end) = taken.get();
            if next == end {
                next = NEXT.fetch_add(BLOCK, Ordering::Relaxed);
                end = next + BLOCK;
            }
            taken.set((next + 1, end));
            next
        });
        let (high, low) = *BASE.get_or_init(|| Uuid::new_v4().as_u64_pair());
        Uuid::from_u64_pair(high, (low.wrapping_add(n) & RANDOM_LOW) | VARIANT)
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            IdRepr::Uuid(u) => fmt::Display::fmt(&u.hyphenated(), f),
            IdRepr::Text(t) => f.write_str(t),
        }
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// Application headers of a message: an ordered list of name and value.
///
/// ```
/// let mut headers = topicbus::Headers::new();
/// headers.insert("tenant", "acme");
/// assert_eq!(headers.get_str("tenant"), Some("acme"));
/// assert_eq!(headers.get("missing"), None);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(Cow<'static, str>, Vec<u8>)>);

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Sets `name` to `value`, replacing an earlier value of that name.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Vec<u8>>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The value of `name` when it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Vec<u8>> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }

    /// Headers as received, of which the last of each name counts, in
    /// linear time (a record may carry many: [`Headers::insert`] scans).
    pub(crate) fn from_received(list: Vec<(Cow<'static, str>, Vec<u8>)>) -> Self {
        let mut seen = std::collections::HashSet::with_capacity(list.len());
        let last: Vec<bool> = list
            .iter()
            .rev()
            .map(|(name, _)| seen.insert(name.as_ref()))
            .collect();
        let mut last = last.into_iter().rev();
        let mut list = list;
        list.retain(|_| last.next().unwrap_or(true));
        Self(list)
    }

    /// Removes every header for which `doomed` holds; returns how many.
    pub(crate) fn remove_where(&mut self, mut doomed: impl FnMut(&str, &[u8]) -> bool) -> usize {
        let before = self.0.len();
        self.0.retain(|(name, value)| !doomed(name, value));
        before - self.0.len()
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_slice()))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

/// Header names topicbus reads and writes on dead-lettered messages and error
/// replies. The same names are used on every transport.
pub mod header {
    /// Why a message was dead-lettered or a request failed.
    pub const ERROR: &str = "topicbus_error";
    /// The kind of failure: `handler`, `decode`, `panic`, `timeout`, `type`,
    /// `encode`, `too_large` (payload over the consumer's size limit),
    /// `header` (a CloudEvents or routing header that cannot be read, headers
    /// past the bound on received headers, or a `reply_to` outside the reply
    /// topics a responder answers).
    pub const ERROR_KIND: &str = "topicbus_error_kind";
    /// How many times the handler was tried.
    pub const ATTEMPTS: &str = "topicbus_attempts";
    /// The topic the message was first published to.
    pub const ORIGINAL_TOPIC: &str = "topicbus_original_topic";
    /// The consumer group that gave up on the message.
    pub const GROUP: &str = "topicbus_group";
    /// On a dead letter the broker refused as too large: the size of the
    /// payload that was left out (it is still in the original topic).
    pub const PAYLOAD_OMITTED: &str = "topicbus_payload_omitted";
    /// On a received message: how many of its headers were dropped for
    /// passing the bound on headers (count or bytes); such a message is
    /// dead-lettered by a typed consumer (kind `header`).
    pub const HEADERS_DROPPED: &str = "topicbus_headers_dropped";
    /// How many times the message was moved back from its dead-letter topic
    /// by [`Bus::redrive`](crate::Bus::redrive).
    pub const REDRIVES: &str = "topicbus_redrives";
    /// On a re-driven message: the consumer group that dead-lettered it, the
    /// only group that handles it again (the others acknowledge it unhandled).
    pub const REDRIVE_GROUP: &str = "topicbus_redrive_group";
    /// Correlates a reply with its request (the Go bus's name).
    pub const CORRELATION_ID: &str = "correlation_id";
    /// Where a requester reads its replies.
    pub const REPLY_TO: &str = "reply_to";
    /// The payload's content type.
    pub const CONTENT_TYPE: &str = "content-type";
    /// On a reply of a responder with a [`ReplyKey`](crate::ReplyKey): the
    /// HMAC-SHA256 that binds the reply to its request, as 64 lower-case
    /// hexadecimal digits (docs/wire.md, "Authenticated replies").
    pub const REPLY_MAC: &str = "topicbus_reply_mac";
    /// The W3C trace context of a traced message (see
    /// [`TraceContext`](crate::TraceContext)).
    pub const TRACEPARENT: &str = "traceparent";
}

/// Everything about a message except its payload.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub topic: Cow<'static, str>,
    pub id: MessageId,
    pub time: SystemTime,
    pub source: Arc<str>,
    pub key: Option<Vec<u8>>,
    pub correlation_id: Option<MessageId>,
    pub reply_to: Option<Arc<str>>,
    pub content_type: Option<Cow<'static, str>>,
    pub headers: Headers,
    /// Why the wire headers could not be read (a typed handler dead-letters
    /// such a message); the unreadable values stay in `headers` as received.
    pub malformed: Option<Arc<str>>,
}

/// A message in flight: its metadata and its payload in one shared
/// allocation, cheap to clone for fan-out. It derefs to its [`Envelope`].
#[derive(Clone)]
pub(crate) struct Message(Arc<Envelope>);

/// What a [`Message`] shares: metadata, how the payload travels, and the
/// typed value when it travels as one.
pub(crate) struct Envelope<V: ?Sized = dyn Any + Send + Sync> {
    pub meta: Meta,
    body: Body,
    /// `Option<T>` for a payload that travels as a `T` (`None` only once
    /// its sole owner took it); `()` for one that travels as bytes.
    value: V,
}

/// How a payload travels.
enum Body {
    /// As its value (in [`Envelope::value`]).
    Value {
        encode: EncodeFn,
        /// The length of its encoding, as measured for the publisher's size
        /// limit (0 when the publisher measures no values).
        size: usize,
    },
    /// Encoded.
    Bytes(Bytes),
}

/// A message's payload, as [`Message::payload`] lends it.
#[derive(Clone, Copy)]
pub(crate) enum Payload<'a> {
    /// The typed value: an `Option<T>`, `Some` while anybody can see it.
    Value {
        value: &'a (dyn Any + Send + Sync),
        encode: EncodeFn,
        size: usize,
    },
    Bytes(&'a Bytes),
}

/// Encodes a type-erased value with the codec of its topic.
pub(crate) type EncodeFn = fn(&(dyn Any + Send + Sync)) -> Result<Vec<u8>, CodecError>;

/// The [`EncodeFn`] of values of type `T` in codec `C` (kept as `Option<T>`).
pub(crate) fn encode_erased<T: Serialize + 'static, C: Codec>(
    value: &(dyn Any + Send + Sync),
) -> Result<Vec<u8>, CodecError> {
    match value.downcast_ref::<Option<T>>() {
        Some(Some(value)) => C::encode(value),
        Some(None) => Err(CodecError::new("the value was taken")),
        None => Err(CodecError::new("value of an unexpected type")),
    }
}

impl Message {
    /// A message whose payload is `bytes`.
    pub fn bytes(meta: Meta, bytes: Bytes) -> Self {
        Self(Arc::new(Envelope {
            meta,
            body: Body::Bytes(bytes),
            value: (),
        }))
    }

    /// A message whose payload travels as `value`; `encode` encodes it
    /// (see [`encode_erased`]), `size` is its measured length (or 0).
    pub fn value<T: Send + Sync + 'static>(
        meta: Meta,
        value: T,
        encode: EncodeFn,
        size: usize,
    ) -> Self {
        Self(Arc::new(Envelope {
            meta,
            body: Body::Value { encode, size },
            value: Some(value),
        }))
    }

    /// The same payload under other metadata: shared when it is bytes,
    /// encoded when it is a value (a rare path: dead letters, redrives).
    pub fn with_meta(&self, meta: Meta) -> Result<Self, CodecError> {
        Ok(Self::bytes(meta, self.payload().to_bytes()?))
    }

    /// The payload.
    pub fn payload(&self) -> Payload<'_> {
        match &self.0.body {
            Body::Value { encode, size } => Payload::Value {
                value: &self.0.value,
                encode: *encode,
                size: *size,
            },
            Body::Bytes(bytes) => Payload::Bytes(bytes),
        }
    }

    /// The value of type `T`, moved out when this is the message's only
    /// handle; `Err(self)` when it is shared or not a `T`.
    pub fn take_value<T: 'static>(mut self) -> Result<T, Self> {
        let taken = Arc::get_mut(&mut self.0)
            .and_then(|envelope| envelope.value.downcast_mut::<Option<T>>())
            .and_then(Option::take);
        taken.ok_or(self)
    }

    /// Whether `self` and `other` are handles to the same message.
    pub fn same(&self, other: &Message) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for Message {
    type Target = Envelope;

    fn deref(&self) -> &Envelope {
        &self.0
    }
}

impl Payload<'_> {
    /// The payload as bytes, encoding a value when needed.
    pub fn to_bytes(self) -> Result<Bytes, CodecError> {
        match self {
            Payload::Value { value, encode, .. } => encode(value).map(Bytes::from),
            Payload::Bytes(bytes) => Ok(bytes.clone()),
        }
    }

    /// The length of the encoded payload (for a value: as measured when it
    /// was published, 0 if it was not).
    pub fn size(self) -> usize {
        match self {
            Payload::Value { size, .. } => size,
            Payload::Bytes(bytes) => bytes.len(),
        }
    }
}

/// A message as bytes and headers, for topics without a Rust type (dead-letter
/// topics, foreign producers) and for tools.
///
/// ```
/// let mut raw = topicbus::RawMessage::new("ml.embed.request", br#"{"texts":[]}"#.to_vec());
/// raw.headers.insert("content-type", "application/json");
/// assert_eq!(raw.topic, "ml.embed.request");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RawMessage {
    /// The topic it was read from or is published to.
    pub topic: String,
    /// The partition key.
    pub key: Option<Vec<u8>>,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// All headers, including `content-type` and the `topicbus_*` ones.
    pub headers: Headers,
}

impl RawMessage {
    /// A message with no key and no headers.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            payload: payload.into(),
            headers: Headers::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn published_ids_are_distinct_v4_uuids_across_threads() {
        let ids: Vec<Uuid> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..3000).map(|_| MessageId::next()).collect::<Vec<_>>()))
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("thread"))
                .map(|id| id.as_uuid().expect("a UUID"))
                .collect()
        });
        let distinct: HashSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), ids.len(), "every id differs");
        for id in &ids {
            assert_eq!(id.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(MessageId::parse(&id.to_string()).as_uuid(), Some(*id));
        }
    }
}
