//! The Go bus's JSON envelope: `{"id","type","source","timestamp",
//! "correlation_id","payload"}` in the message value, the payload inline as
//! JSON. Opt-in with [`KafkaConfig::go_envelope`](super::KafkaConfig::go_envelope).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::message::{MessageId, Meta};

#[derive(Serialize)]
struct Outgoing<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    source: &'a str,
    timestamp: String,
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
    timestamp: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(borrow)]
    payload: &'a RawValue,
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
        timestamp: humantime::format_rfc3339_nanos(meta.time).to_string(),
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
    if let Some(time) = incoming
        .timestamp
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    {
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

    #[test]
    fn go_bus_events_are_read() {
        let from_go = br#"{"id":"0b6c","type":"index.chunk.created","source":"indexer","timestamp":"2024-05-01T10:00:00.123456789Z","correlation_id":"","payload":{"chunk_id":"c1"}}"#;
        let mut read = meta();
        read.correlation_id = None;
        let payload = unwrap(&mut read, from_go).expect("enveloped");
        assert_eq!(payload, br#"{"chunk_id":"c1"}"#);
        assert_eq!(&*read.source, "indexer");
        assert_eq!(read.id, MessageId::parse("0b6c"));
        assert_eq!(read.correlation_id, None, "an empty correlation id is none");
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
