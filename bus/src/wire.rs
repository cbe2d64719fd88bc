//! The header set of a message on the wire (CloudEvents binary mode plus
//! topicbus's own headers), shared by every transport. docs/wire.md documents it.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use crate::message::{header, Headers, MessageId, Meta};

/// CloudEvents attribute headers (binary content mode, Kafka protocol binding).
pub(crate) mod ce {
    pub const SPECVERSION: &str = "ce_specversion";
    pub const ID: &str = "ce_id";
    pub const SOURCE: &str = "ce_source";
    pub const TYPE: &str = "ce_type";
    pub const TIME: &str = "ce_time";
}

/// Which CloudEvents attributes a Kafka producer writes as headers.
///
/// ```
/// use topicbus::WireProfile;
///
/// assert_eq!("LEAN".parse(), Ok(WireProfile::Lean));
/// assert_eq!(WireProfile::default().to_string(), "full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WireProfile {
    /// `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time` and
    /// `content-type` (the default).
    #[default]
    Full,
    /// Only the attributes CloudEvents requires (`ce_specversion`, `ce_id`,
    /// `ce_source`, `ce_type`): the record's timestamp stands in for
    /// `ce_time` and the topic's codec for `content-type`.
    Lean,
}

impl fmt::Display for WireProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireProfile::Full => "full",
            WireProfile::Lean => "lean",
        })
    }
}

impl std::str::FromStr for WireProfile {
    type Err = String;

    /// `full` or `lean`, in any case.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(WireProfile::Full),
            "lean" => Ok(WireProfile::Lean),
            _ => Err(format!("`{text}`: expected full or lean")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for WireProfile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// All headers of a message as another client sees them.
pub(crate) fn headers(meta: &Meta) -> Headers {
    fold_headers(meta, Headers::new(), |mut out, name, value| {
        out.insert(static_name(name), value);
        out
    })
}

/// Folds `f` over every header of a message as another client sees it, in
/// wire order, each name once. The values are formatted on the stack, so a
/// producer copies them into its own header list with no owned list in
/// between.
///
/// An application header named like one of topicbus's own (a malformed one
/// kept as received, or one set by the publisher) replaces it in place.
pub(crate) fn fold_headers<A>(meta: &Meta, init: A, f: impl FnMut(A, &str, &[u8]) -> A) -> A {
    fold_profile_headers(meta, WireProfile::Full, init, f)
}

/// [`fold_headers`] for a producer writing `profile`: the lean one leaves
/// out `ce_time` and `content-type` (an application header of either name
/// is still written).
pub(crate) fn fold_profile_headers<A>(
    meta: &Meta,
    profile: WireProfile,
    init: A,
    mut f: impl FnMut(A, &str, &[u8]) -> A,
) -> A {
    let full = profile == WireProfile::Full;
    let app = &meta.headers;
    let mut own = |acc, name: &str, value: &[u8]| f(acc, name, app.get(name).unwrap_or(value));
    let mut acc = own(init, ce::SPECVERSION, b"1.0");
    acc = id_text(&meta.id, |id| own(acc, ce::ID, id));
    acc = own(acc, ce::SOURCE, meta.source.as_bytes());
    acc = own(acc, ce::TYPE, meta.topic.as_bytes());
    if full {
        acc = own(acc, ce::TIME, Rfc3339Millis::new(meta.time).as_bytes());
        if let Some(content_type) = &meta.content_type {
            acc = own(acc, header::CONTENT_TYPE, content_type.as_bytes());
        }
    }
    if let Some(id) = &meta.correlation_id {
        acc = id_text(id, |id| own(acc, header::CORRELATION_ID, id));
    }
    if let Some(reply_to) = &meta.reply_to {
        acc = own(acc, header::REPLY_TO, reply_to.as_bytes());
    }
    let written = |name: &str| match name {
        ce::SPECVERSION | ce::ID | ce::SOURCE | ce::TYPE => true,
        ce::TIME => full,
        header::CONTENT_TYPE => full && meta.content_type.is_some(),
        header::CORRELATION_ID => meta.correlation_id.is_some(),
        header::REPLY_TO => meta.reply_to.is_some(),
        _ => false,
    };
    app.iter()
        .filter(|(name, _)| !written(name))
        .fold(acc, |acc, (name, value)| f(acc, name, value))
}

/// `name` for a [`Headers`] list, borrowed when it is one of topicbus's own.
fn static_name(name: &str) -> Cow<'static, str> {
    const OWN: [&str; 8] = [
        ce::SPECVERSION,
        ce::ID,
        ce::SOURCE,
        ce::TYPE,
        ce::TIME,
        header::CONTENT_TYPE,
        header::CORRELATION_ID,
        header::REPLY_TO,
    ];
    match OWN.iter().find(|own| **own == name) {
        Some(own) => Cow::Borrowed(own),
        None => Cow::Owned(name.to_owned()),
    }
}

/// Calls `f` with the text of `id`, formatted on the stack when it is a UUID.
fn id_text<R>(id: &MessageId, f: impl FnOnce(&[u8]) -> R) -> R {
    match id.as_uuid() {
        Some(uuid) => f(uuid
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes()),
        None => f(id.to_string().as_bytes()),
    }
}

/// A `ce_time` value, RFC 3339 in UTC with milliseconds, on the stack.
struct Rfc3339Millis {
    text: [u8; 24],
}

impl Rfc3339Millis {
    fn new(time: SystemTime) -> Self {
        thread_local! {
            // Messages published together mostly share their millisecond.
            static LAST: Cell<Option<(i64, [u8; 24])>> = const { Cell::new(None) };
        }
        // Times come from the clock, from RFC 3339 text or from a bounded
        // envelope timestamp, so they lie in the years 0000 to 9999 that
        // RFC 3339 writes, in exactly 24 bytes; one outside is clamped.
        let at = jiff::Timestamp::try_from(time)
            .unwrap_or(jiff::Timestamp::MIN)
            .clamp(first_rfc3339_instant(), jiff::Timestamp::MAX);
        let millis = at.as_millisecond();
        if let Some((last, text)) = LAST.get() {
            if last == millis {
                return Self { text };
            }
        }
        let utc = jiff::tz::Offset::UTC.to_datetime(at);
        let mut text = [0; 24];
        let written = write!(
            &mut text[..],
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            utc.year(),
            utc.month(),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second(),
            utc.millisecond()
        );
        debug_assert!(written.is_ok(), "24 bytes hold every year 0000 to 9999");
        LAST.set(Some((millis, text)));
        Self { text }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text
    }
}

/// 0000-01-01T00:00:00Z, the first instant RFC 3339 can write.
fn first_rfc3339_instant() -> jiff::Timestamp {
    jiff::Timestamp::from_second(-62_167_219_200).expect("in jiff's range")
}

/// Reads an RFC 3339 time with any offset (`Z`, `z`, `+02:00`, `-05:00`),
/// `T`, `t` or a space between date and time, and 0 to 9 digits of a
/// second's fraction. The offset is applied: the result is the instant.
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    let at: jiff::Timestamp = text
        .parse()
        .map_err(|error: jiff::Error| error.to_string())?;
    SystemTime::try_from(at).map_err(|error| error.to_string())
}

/// Metadata from wire headers; what is missing is filled in (a new id, now,
/// `default_source`). The CloudEvents and routing headers are taken out of
/// the application headers. One that is present but unreadable (not UTF-8,
/// a `ce_time` that is not RFC 3339, a `reply_to` that is no topic name) is
/// kept in the headers as received and named in `Meta::malformed`.
pub(crate) fn meta(
    topic: Cow<'static, str>,
    key: Option<Vec<u8>>,
    headers: Headers,
    default_source: &Arc<str>,
    limits: HeaderLimits,
) -> Meta {
    read_meta(
        topic,
        key,
        headers.iter(),
        &mut Recent::new(Arc::clone(default_source), limits),
    )
}

/// Bounds on the headers of a received message: how many, and how many
/// bytes of names and values in all, as
/// [`BusBuilder::max_headers`](crate::BusBuilder::max_headers) sets them
/// (default 256 headers and 64 KiB). Past either, the rest are dropped,
/// counted in [`header::HEADERS_DROPPED`], and a typed consumer
/// dead-letters the message (kind `header`).
///
/// A transport that reads messages off the wire gets the bus's limits with
/// each consumer group ([`SubscriptionSpec::header_limits`]) and reply
/// inbox ([`ReplyInbox::header_limits`]), and applies them with
/// [`TransportMessage::from_wire_with`].
///
/// [`SubscriptionSpec::header_limits`]: crate::transport::SubscriptionSpec::header_limits
/// [`ReplyInbox::header_limits`]: crate::transport::ReplyInbox::header_limits
/// [`TransportMessage::from_wire_with`]: crate::transport::TransportMessage::from_wire_with
///
/// ```
/// use topicbus::transport::HeaderLimits;
/// let limits = HeaderLimits::new(16, 4096);
/// assert_eq!((limits.count(), limits.bytes()), (16, 4096));
/// assert_eq!(HeaderLimits::default(), HeaderLimits::new(256, 64 * 1024));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    pub(crate) count: usize,
    pub(crate) bytes: usize,
}

impl HeaderLimits {
    /// At most `count` headers and `bytes` bytes of names and values in
    /// all; each at least 1.
    pub const fn new(count: usize, bytes: usize) -> Self {
        Self {
            count: if count == 0 { 1 } else { count },
            bytes: if bytes == 0 { 1 } else { bytes },
        }
    }

    /// How many headers are kept at most.
    pub const fn count(&self) -> usize {
        self.count
    }

    /// How many bytes of header names and values are kept at most.
    pub const fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self::new(256, 64 * 1024)
    }
}

/// At most this many characters of a received value are quoted in a
/// reason (a dead letter's `topicbus_error`, a log line).
const QUOTED_CHARS: usize = 64;

/// `text` quoted for a reason: escaped, and cut after [`QUOTED_CHARS`]
/// characters with the length it had.
pub(crate) fn quote(text: &str) -> String {
    let mut quoted: String = text
        .chars()
        .take(QUOTED_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(QUOTED_CHARS).is_some() {
        quoted.push_str(&format!("… ({} bytes in all)", text.len()));
    }
    format!("\"{quoted}\"")
}

/// The last values one reader read of the headers that repeat from record
/// to record (a producer's `ce_source`, the millisecond in `ce_time` that a
/// batch shares): the same bytes again are taken as read before rather than
/// validated, parsed and allocated again.
pub(crate) struct Recent {
    /// Stands in for an absent `ce_source`.
    missing_source: Arc<str>,
    limits: HeaderLimits,
    source: Option<Arc<str>>,
    time: Option<(Vec<u8>, SystemTime)>,
}

impl Recent {
    pub fn new(missing_source: Arc<str>, limits: HeaderLimits) -> Self {
        Self {
            missing_source,
            limits,
            source: None,
            time: None,
        }
    }

    fn source(&self, value: &[u8]) -> Option<Arc<str>> {
        self.source
            .as_ref()
            .filter(|source| source.as_bytes() == value)
            .cloned()
    }

    fn time(&self, value: &[u8]) -> Option<SystemTime> {
        self.time
            .as_ref()
            .filter(|(text, _)| text == value)
            .map(|(_, time)| *time)
    }

    fn remember_time(&mut self, text: &str, time: SystemTime) {
        let (last, at) = self.time.get_or_insert_with(|| (Vec::new(), time));
        last.clear();
        last.extend_from_slice(text.as_bytes());
        *at = time;
    }
}

/// [`meta`] from borrowed headers, as a consumer reads them off a record:
/// only application headers are copied, the rest is parsed in place.
/// Of repeated names the last one counts, as in a [`Headers`] list.
pub(crate) fn read_meta<'a>(
    topic: Cow<'static, str>,
    key: Option<Vec<u8>>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    recent: &mut Recent,
) -> Meta {
    read_stamped_meta(topic, key, headers, recent, None)
}

/// [`read_meta`] of a record that carries its own time (a Kafka record's
/// timestamp): without a readable `ce_time`, as the lean wire profile
/// writes it, that is the message's time rather than the time of reading.
pub(crate) fn read_stamped_meta<'a>(
    topic: Cow<'static, str>,
    key: Option<Vec<u8>>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    recent: &mut Recent,
    record_time: Option<SystemTime>,
) -> Meta {
    let unstated_time = || record_time.unwrap_or_else(SystemTime::now);
    let limits = recent.limits;
    let mut app: Vec<(Cow<'static, str>, Vec<u8>)> = Vec::new();
    let mut own = Own::default();
    let (mut kept, mut kept_bytes) = (0usize, 0usize);
    let (mut dropped, mut dropped_bytes) = (0usize, 0usize);
    for (name, value) in headers {
        let size = name.len() + value.len();
        if kept == limits.count || kept_bytes + size > limits.bytes {
            dropped += 1;
            dropped_bytes += size;
            continue;
        }
        kept += 1;
        kept_bytes += size;
        let slot = match name {
            ce::SPECVERSION => continue,
            // The type is the topic unless the writer said otherwise (another
            // client's own type, or a dead letter's original topic): that is
            // kept, so it is written on as received.
            ce::TYPE => {
                if value != topic.as_bytes() {
                    app.push((Cow::Borrowed(ce::TYPE), value.to_vec()));
                }
                continue;
            }
            ce::ID => &mut own.id,
            ce::SOURCE => &mut own.source,
            ce::TIME => &mut own.time,
            header::CONTENT_TYPE => &mut own.content_type,
            header::CORRELATION_ID => &mut own.correlation_id,
            header::REPLY_TO => &mut own.reply_to,
            _ => {
                app.push((Cow::Owned(name.to_owned()), value.to_vec()));
                continue;
            }
        };
        *slot = Some(value);
    }
    let mut app = Headers::from_received(app);
    let mut problems: Vec<String> = Vec::new();
    if dropped > 0 {
        problems.push(format!(
            "{dropped} headers ({dropped_bytes} bytes) past the limit of {} headers and {} bytes were dropped (max_headers)",
            limits.count, limits.bytes
        ));
        app.insert(header::HEADERS_DROPPED, dropped.to_string());
    }
    let mut text = |app: &mut Headers, name: &'static str, value: Option<&'a [u8]>| {
        let value = value?;
        match std::str::from_utf8(value) {
            Ok(text) => Some(text),
            Err(_) => {
                problems.push(format!("header `{name}` is not UTF-8"));
                app.insert(name, value);
                None
            }
        }
    };
    let id = text(&mut app, ce::ID, own.id).map_or_else(MessageId::new, MessageId::parse);
    let source = match own.source.and_then(|value| recent.source(value)) {
        Some(same) => same,
        None => match text(&mut app, ce::SOURCE, own.source) {
            Some(text) => Arc::clone(recent.source.insert(Arc::from(text))),
            None => Arc::clone(&recent.missing_source),
        },
    };
    let time = match own.time.and_then(|value| recent.time(value)) {
        Some(same) => Ok(same),
        None => Err(text(&mut app, ce::TIME, own.time)),
    };
    let content_type = text(&mut app, header::CONTENT_TYPE, own.content_type).map(content_type);
    let correlation_id =
        text(&mut app, header::CORRELATION_ID, own.correlation_id).map(MessageId::parse);
    let reply_to = text(&mut app, header::REPLY_TO, own.reply_to);
    let time = match time {
        Ok(same) => same,
        Err(None) => unstated_time(),
        Err(Some(text)) => match parse_time(text) {
            Ok(time) => {
                recent.remember_time(text, time);
                time
            }
            Err(error) => {
                problems.push(format!(
                    "header `{}` is not an RFC 3339 time ({error}): {}",
                    ce::TIME,
                    quote(text)
                ));
                app.insert(ce::TIME, text);
                unstated_time()
            }
        },
    };
    let reply_to = reply_to.and_then(|name| match crate::topic::validate_topic_name(name) {
        Ok(()) => Some(Arc::from(name)),
        Err(reason) => {
            problems.push(format!(
                "header `{}` is not a topic name ({reason}): {}",
                header::REPLY_TO,
                quote(name)
            ));
            app.insert(header::REPLY_TO, name);
            None
        }
    });
    let malformed = (!problems.is_empty()).then(|| Arc::from(problems.join("; ")));
    Meta {
        topic,
        id,
        time,
        source,
        key,
        correlation_id,
        reply_to,
        content_type,
        headers: app,
        malformed,
    }
}

/// The values of topicbus's own headers on a record, as found.
#[derive(Default)]
struct Own<'a> {
    id: Option<&'a [u8]>,
    source: Option<&'a [u8]>,
    time: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
    correlation_id: Option<&'a [u8]>,
    reply_to: Option<&'a [u8]>,
}

/// Checks that a `content-type` value names the media type `expected` (a
/// codec's). Media types compare without their parameters and ignoring
/// case (RFC 9110, section 8.3.1), so `application/json; charset=utf-8`
/// names `application/json`; a `charset` other than UTF-8 is refused, since
/// the codecs read UTF-8 only.
pub(crate) fn check_content_type(value: &str, codec: &str, expected: &str) -> Result<(), String> {
    if value == expected {
        return Ok(());
    }
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case(expected) {
        return Err(format!(
            "content-type `{}` does not match the topic's codec `{codec}` ({expected})",
            value.escape_debug()
        ));
    }
    for parameter in parts {
        let Some((name, charset)) = parameter.split_once('=') else {
            continue;
        };
        let charset = charset.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !charset.eq_ignore_ascii_case("utf-8")
            && !charset.eq_ignore_ascii_case("utf8")
        {
            return Err(format!(
                "content-type `{}` names the charset `{}`; the topic's codec `{codec}` reads UTF-8 only",
                value.escape_debug(),
                charset.escape_debug()
            ));
        }
    }
    Ok(())
}

/// A `content-type` value; the built-in codecs' are not copied.
fn content_type(text: &str) -> Cow<'static, str> {
    use crate::codec::Codec as _;
    const KNOWN: &[&str] = &[
        crate::codec::Json::CONTENT_TYPE,
        #[cfg(feature = "postcard")]
        crate::codec::Postcard::CONTENT_TYPE,
        #[cfg(feature = "bincode")]
        crate::codec::Bincode::CONTENT_TYPE,
    ];
    match KNOWN.iter().find(|known| **known == text) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_through_meta() {
        let mut app = Headers::new();
        app.insert("tenant", "acme");
        let original = Meta {
            topic: Cow::Borrowed("ml.embed.request"),
            id: MessageId::new(),
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            source: Arc::from("search"),
            key: Some(b"k".to_vec()),
            correlation_id: Some(MessageId::parse("abc")),
            reply_to: Some(Arc::from("inbox")),
            content_type: Some(Cow::Borrowed("application/json")),
            headers: app,
            malformed: None,
        };
        let wire = headers(&original);
        assert_eq!(wire.get_str(ce::SPECVERSION), Some("1.0"));
        assert_eq!(wire.get_str(ce::TIME), Some("2023-11-14T22:13:20.123Z"));
        let back = meta(
            original.topic.clone(),
            original.key.clone(),
            wire,
            &Arc::from("x"),
            HeaderLimits::default(),
        );
        assert_eq!(back.id, original.id);
        assert_eq!(back.time, original.time);
        assert_eq!(&*back.source, "search");
        assert_eq!(back.correlation_id, original.correlation_id);
        assert_eq!(back.reply_to, original.reply_to);
        assert_eq!(back.content_type, original.content_type);
        assert_eq!(back.headers, original.headers);
        assert!(back.malformed.is_none());
    }

    #[test]
    fn an_application_header_replaces_its_namesake_in_place() {
        let mut app = Headers::new();
        app.insert(ce::SOURCE, "from-the-publisher");
        app.insert("tenant", "acme");
        let meta = Meta {
            headers: app,
            ..meta(
                Cow::Borrowed("t"),
                None,
                Headers::new(),
                &Arc::from("x"),
                HeaderLimits::default(),
            )
        };
        let wire = fold_headers(&meta, Vec::new(), |mut wire, name, value| {
            wire.push((name.to_owned(), value.to_vec()));
            wire
        });
        let names: Vec<&str> = wire.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                ce::SPECVERSION,
                ce::ID,
                ce::SOURCE,
                ce::TYPE,
                ce::TIME,
                "tenant"
            ]
        );
        assert_eq!(wire[2].1, b"from-the-publisher");
    }

    #[test]
    fn read_headers_keep_the_last_of_a_name_and_reuse_what_repeats() {
        let id = MessageId::new().to_string();
        let record = [
            (ce::SOURCE, &b"first"[..]),
            (ce::ID, id.as_bytes()),
            (ce::SOURCE, b"search"),
            ("tenant", b"a"),
            ("tenant", b"b"),
            (header::CONTENT_TYPE, b"application/json"),
            (ce::TIME, b"2023-11-14T22:13:20.123Z"),
        ];
        let mut recent = Recent::new(Arc::from("unknown"), HeaderLimits::default());
        let one = read_meta(Cow::Borrowed("t"), None, record, &mut recent);
        let two = read_meta(Cow::Borrowed("t"), None, record, &mut recent);
        assert_eq!(&*one.source, "search");
        assert!(Arc::ptr_eq(&one.source, &two.source));
        assert_eq!(one.id, MessageId::parse(&id));
        assert_eq!(one.headers.get_str("tenant"), Some("b"));
        assert_eq!(one.headers.len(), 1);
        assert!(matches!(
            one.content_type,
            Some(Cow::Borrowed("application/json"))
        ));
        assert!(one.malformed.is_none());
        assert_eq!(one.time, two.time);
        assert_eq!(
            one.time,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123)
        );
        // What was read before only stands in for the very same bytes.
        let later = [(ce::SOURCE, &b"search\xff"[..]), (ce::TIME, b"2023-11-14")];
        let three = read_meta(Cow::Borrowed("t"), None, later, &mut recent);
        let why = three.malformed.as_deref().expect("malformed");
        assert!(why.contains(ce::SOURCE) && why.contains(ce::TIME), "{why}");
    }

    #[test]
    fn unreadable_headers_are_named_and_kept_as_received() {
        let mut wire = Headers::new();
        wire.insert(ce::ID, vec![0xff, 0xfe]);
        wire.insert(ce::TIME, "yesterday");
        wire.insert(header::REPLY_TO, "no spaces allowed");
        wire.insert("trace", vec![0x00, 0xff]);
        let meta = meta(
            Cow::Borrowed("t"),
            None,
            wire,
            &Arc::from("x"),
            HeaderLimits::default(),
        );
        let why = meta.malformed.as_deref().expect("malformed");
        for name in [ce::ID, ce::TIME, header::REPLY_TO] {
            assert!(why.contains(name), "{why}");
        }
        assert!(
            !why.contains("trace"),
            "application headers may be binary: {why}"
        );
        assert_eq!(meta.headers.get(ce::ID), Some(&[0xff, 0xfe][..]));
        assert_eq!(meta.headers.get_str(ce::TIME), Some("yesterday"));
        assert_eq!(meta.reply_to, None);
        // Sent on (to a dead-letter topic), the received values win over
        // the ones made up in their place.
        let out = headers(&meta);
        assert_eq!(out.get(ce::ID), Some(&[0xff, 0xfe][..]));
        assert_eq!(out.get_str(ce::TIME), Some("yesterday"));
    }

    fn millis(text: &str) -> i128 {
        let time = parse_time(text).unwrap_or_else(|e| panic!("`{text}`: {e}"));
        jiff::Timestamp::try_from(time).unwrap().as_nanosecond() / 1_000_000
    }

    #[test]
    fn rfc3339_times_are_read_with_their_offset_and_any_fraction() {
        let utc = 1_796_464_820_000; // 2026-12-05T10:00:20Z
        assert_eq!(millis("2026-12-05T10:00:20Z"), utc);
        assert_eq!(millis("2026-12-05T12:00:20+02:00"), utc);
        assert_eq!(millis("2026-12-05T05:00:20-05:00"), utc);
        assert_eq!(millis("2026-12-05t10:00:20z"), utc);
        assert_eq!(
            millis("2026-12-05T10:00:20.617+02:00"),
            utc - 7_200_000 + 617
        );
        for digits in 0..=9 {
            let fraction = if digits == 0 {
                String::new()
            } else {
                format!(".{}", "1".repeat(digits))
            };
            let text = format!("2026-12-05T10:00:20{fraction}Z");
            let nanos = jiff::Timestamp::try_from(parse_time(&text).unwrap())
                .unwrap()
                .subsec_nanosecond();
            let expected: i32 = format!("{:0<9}", "1".repeat(digits)).parse().unwrap();
            assert_eq!(nanos, expected, "{text}");
        }
        for bad in ["yesterday", "2026-12-05", "2026-12-05T10:00:20", ""] {
            assert!(parse_time(bad).is_err(), "`{bad}` read as a time");
        }
    }

    #[test]
    fn a_time_before_1970_is_written_not_panicked_on() {
        let old = parse_time("1960-01-01T00:00:00.250Z").unwrap();
        assert_eq!(
            Rfc3339Millis::new(old).as_bytes(),
            b"1960-01-01T00:00:00.250Z"
        );
        let ancient =
            SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(400 * 365 * 86_400 * 100);
        assert_eq!(
            Rfc3339Millis::new(ancient).as_bytes(),
            b"0000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn media_types_compare_without_parameters_and_case() {
        let json = "application/json";
        for same in [
            json,
            "application/json; charset=utf-8",
            "APPLICATION/Json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            "application/json;version=2",
            " application/json ",
        ] {
            assert_eq!(check_content_type(same, "json", json), Ok(()), "{same}");
        }
        let other = check_content_type("text/plain", "json", json).unwrap_err();
        assert!(other.contains("`json` (application/json)"), "{other}");
        let latin =
            check_content_type("application/json; charset=latin1", "json", json).unwrap_err();
        assert!(latin.contains("charset `latin1`"), "{latin}");
    }
}
