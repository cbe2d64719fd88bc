//! The Go bus's JSON envelope: `{"id","type","source","timestamp",
//! "correlation_id","payload"}` in the message value, the payload inline as
//! JSON. Opt-in with [`KafkaConfig::go_envelope`](super::KafkaConfig::go_envelope).
//!
//! The Go bus declares `Timestamp int64` and its services fill it with
//! `time.Now().UnixNano()`, `time.Now().Unix()` or nothing, so it is written
//! as integer nanoseconds and read as an integer in any of those units (or,
//! leniently, as RFC 3339 text).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::message::{MessageId, Meta};

#[derive(Serialize)]
struct Outgoing<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    source: &'a str,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    payload: &'a RawValue,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default)]
    id: Option<String>,
    /// The Go bus's event type; topicbus takes the type from the topic.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    timestamp: Option<Timestamp>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// An envelope's `timestamp`: what the Go bus writes, or what a lenient
/// reader accepts. Any other JSON value reads as "unknown" rather than
/// making the envelope unreadable.
#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Integer(i64),
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl Timestamp {
    /// The instant, or `None` when unknown (0, absent, or unreadable).
    fn instant(&self) -> Option<SystemTime> {
        match self {
            Timestamp::Integer(value) => from_unix(*value),
            Timestamp::Text(text) => crate::wire::parse_time(text).ok(),
            Timestamp::Other(_) => None,
        }
    }
}

/// A Unix time in seconds, milliseconds, microseconds or nanoseconds, told
/// apart by magnitude: a time between 1973 and 5138 is 10 to 11 digits in
/// seconds, 13 to 14 in milliseconds, 16 to 17 in microseconds and 18 to 19
/// in nanoseconds. 0 (Go's zero value) is unknown, as is a negative value.
fn from_unix(value: i64) -> Option<SystemTime> {
    let value = u64::try_from(value).ok().filter(|v| *v > 0)?;
    let since_epoch = match value {
        0..100_000_000_000 => Duration::from_secs(value),
        100_000_000_000..100_000_000_000_000 => Duration::from_millis(value),
        100_000_000_000_000..100_000_000_000_000_000 => Duration::from_micros(value),
        _ => Duration::from_nanos(value),
    };
    SystemTime::UNIX_EPOCH.checked_add(since_epoch)
}

/// A time as the Go bus writes it: Unix nanoseconds, saturating outside
/// the years 1678 to 2262 that an `int64` of nanoseconds holds.
fn unix_nanos(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Wraps a JSON payload in the envelope. `None` when the payload is not
/// JSON (the envelope can only carry JSON topics).
pub(super) fn wrap(meta: &Meta, payload: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(payload).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    let outgoing = Outgoing {
        id: meta.id.to_string(),
        kind: &meta.topic,
        source: &meta.source,
        timestamp: unix_nanos(meta.time),
        correlation_id: meta.correlation_id.as_ref().map(ToString::to_string),
        payload: raw,
    };
    serde_json::to_vec(&outgoing).ok()
}

/// Unwraps an enveloped value: fills `meta` from the envelope and returns
/// the inner payload. `None` for a plain (not enveloped) value.
pub(super) fn unwrap(meta: &mut Meta, value: &[u8]) -> Option<Vec<u8>> {
    let incoming: Incoming<'_> = serde_json::from_slice(value).ok()?;
    // A plain payload that happens to have a `payload` field is only taken
    // for an envelope when it also carries the envelope's identity fields.
    if incoming.id.is_none() && incoming.kind.is_none() {
        return None;
    }
    if let Some(id) = &incoming.id {
        meta.id = MessageId::parse(id);
    }
    if let Some(source) = incoming.source {
        meta.source = Arc::from(source);
    }
    if let Some(time) = incoming.timestamp.as_ref().and_then(Timestamp::instant) {
        meta.time = time;
    }
    if let Some(id) = incoming.correlation_id.filter(|id| !id.is_empty()) {
        meta.correlation_id = Some(MessageId::parse(&id));
    }
    if meta.content_type.is_none() {
        meta.content_type = Some(Cow::Borrowed("application/json"));
    }
    Some(incoming.payload.get().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::message::Headers;

    fn meta() -> Meta {
        Meta {
            topic: Cow::Borrowed("ml.embed.request"),
            id: MessageId::parse("id-1"),
            time: SystemTime::UNIX_EPOCH,
            source: Arc::from("rust"),
            key: None,
            correlation_id: Some(MessageId::parse("corr-1")),
            reply_to: None,
            content_type: None,
            headers: Headers::new(),
            malformed: None,
        }
    }

    #[test]
    fn envelope_round_trips() {
        let wrapped = wrap(&meta(), br#"{"texts":["a"]}"#).expect("json payload");
        let value: serde_json::Value = serde_json::from_slice(&wrapped).unwrap();
        assert_eq!(value["type"], "ml.embed.request");
        assert_eq!(value["correlation_id"], "corr-1");
        assert_eq!(value["payload"]["texts"][0], "a");

        let mut read = meta();
        read.id = MessageId::new();
        let payload = unwrap(&mut read, &wrapped).expect("enveloped");
        assert_eq!(payload, br#"{"texts":["a"]}"#);
        assert_eq!(read.id, MessageId::parse("id-1"));
        assert_eq!(read.correlation_id, Some(MessageId::parse("corr-1")));
    }

    /// An event exactly as the Go bus's `encoding/json` writes it: fields
    /// in declaration order, no spaces, `<`, `>` and `&` escaped, an `int64`
    /// timestamp, `correlation_id` left out when empty.
    fn from_go(timestamp: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"6f1c0e52-8a1b-4a83-9d43-2b1f6c1e0a77","type":"index.chunk.created","source":"indexer","timestamp":{timestamp},"payload":{{"chunk_id":"c1","text":"a \u003cb\u003e \u0026 c"}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn go_bus_events_are_read_with_integer_timestamps_in_any_unit() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_464_820);
        let cases = [
            ("1796464820", at),
            ("1796464820617", at + std::time::Duration::from_millis(617)),
            (
                "1796464820617123",
                at + std::time::Duration::from_micros(617_123),
            ),
            (
                "1796464820617123456",
                at + std::time::Duration::from_nanos(617_123_456),
            ),
            (
                "\"2026-12-05T12:00:20.617+02:00\"",
                at + std::time::Duration::from_millis(617),
            ),
        ];
        for (timestamp, expected) in cases {
            let mut read = meta();
            read.correlation_id = None;
            let payload = unwrap(&mut read, &from_go(timestamp)).expect("enveloped");
            let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(value["text"], "a <b> & c");
            assert_eq!(&*read.source, "indexer");
            assert_eq!(read.id.to_string(), "6f1c0e52-8a1b-4a83-9d43-2b1f6c1e0a77");
            assert_eq!(read.time, expected, "timestamp {timestamp}");
            assert_eq!(read.correlation_id, None);
        }
    }

    #[test]
    fn an_unknown_go_timestamp_keeps_the_time_already_known() {
        for timestamp in ["0", "-5", "null", "1.5", "\"yesterday\"", "{}"] {
            let mut read = meta();
            let known = read.time;
            unwrap(&mut read, &from_go(timestamp)).expect("still an envelope");
            assert_eq!(read.time, known, "timestamp {timestamp}");
        }
    }

    /// The Go bus's `Event`, field for field with Go's types: what Go's
    /// `json.Unmarshal` accepts, this accepts.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct GoEvent {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        source: String,
        timestamp: i64,
        #[serde(default)]
        correlation_id: String,
        payload: serde_json::Value,
    }

    #[test]
    fn written_envelopes_decode_into_the_go_struct() {
        let mut written = meta();
        written.time =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_796_464_820_617_123_456);
        let wrapped = wrap(&written, br#"{"texts":["a"]}"#).expect("json payload");
        let event: GoEvent = serde_json::from_slice(&wrapped).expect("Go's field types");
        assert_eq!(event.timestamp, 1_796_464_820_617_123_456);
        assert_eq!(event.kind, "ml.embed.request");
        assert_eq!(event.correlation_id, "corr-1");
        assert_eq!(event.payload["texts"][0], "a");
    }

    #[test]
    fn plain_values_are_left_alone() {
        let mut read = meta();
        assert!(unwrap(&mut read, br#"{"chunk_id":"c1"}"#).is_none());
        assert!(unwrap(&mut read, br#"{"payload":1}"#).is_none());
        assert!(unwrap(&mut read, b"\x00\x01").is_none());
        assert!(wrap(&meta(), b"\x00\x01").is_none());
    }
}
