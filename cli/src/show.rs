//! How records, headers and payloads are printed.

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, UNIX_EPOCH};

use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};

/// Payload bytes shown in hex before the rest is elided.
const HEX_LIMIT: usize = 1024;

/// A record as read from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the record has a timestamp.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub payload: Option<Vec<u8>>,
}

impl Record {
    pub fn from_kafka(message: &BorrowedMessage<'_>) -> Self {
        // rdkafka's header reader panics on a name that is not UTF-8 (it
        // unwraps the conversion); such a header is shown under a stand-in
        // name rather than ending the tool.
        let headers = message
            .headers()
            .map(|headers| {
                (0..headers.count())
                    .filter_map(|at| {
                        match std::panic::catch_unwind(AssertUnwindSafe(|| headers.try_get(at))) {
                            Ok(header) => {
                                header.map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            }
                            Err(_) => Some(("(header name not UTF-8)".to_owned(), None)),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            headers,
            payload: message.payload().map(<[u8]>::to_vec),
        }
    }

    /// The value of header `name` as text (the last one, as Kafka clients
    /// read repeated headers).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().map_or_else(|| "(null)".to_owned(), text))
    }

    /// The record: a heading line, then one line per header except
    /// `featured` ones (shown first, under their label), then the payload.
    pub fn render(&self, featured: &[(&str, &str)]) -> String {
        let mut out = format!(
            "{}  partition {}  offset {}  key {}",
            self.topic,
            self.partition,
            self.offset,
            self.key.as_deref().map_or_else(|| "-".to_owned(), quoted),
        );
        if let Some(ms) = self.timestamp.and_then(|ms| u64::try_from(ms).ok()) {
            let time = UNIX_EPOCH + Duration::from_millis(ms);
            let _ = write!(out, "  time {}", humantime::format_rfc3339_millis(time));
        }
        out.push('\n');
        for (name, label) in featured {
            let value = self.header(name).unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(out, "  {label}: {value}");
        }
        for (name, value) in &self.headers {
            if featured.iter().any(|(f, _)| f == name) {
                continue;
            }
            let value = value.as_deref().map_or_else(|| "(null)".to_owned(), text);
            let _ = writeln!(out, "  {name}: {value}");
        }
        let content_type = self.header("content-type");
        let _ = writeln!(
            out,
            "  {}",
            payload(content_type.as_deref(), self.payload.as_deref())
        );
        out
    }
}

/// Writes `text` to `out`; `Ok(false)` when the reader went away (a closed
/// pipe, as with `| head`), so the caller stops quietly.
pub fn emit(out: &mut impl std::io::Write, text: &str) -> Result<bool, crate::Failure> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(crate::Failure(format!("cannot write to stdout: {error}"))),
    }
}

/// Bytes as text when they are UTF-8, else as `hex:...`.
pub fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("hex:{}", hex(bytes)),
    }
}

fn quoted(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("hex:{}", hex(bytes)),
    }
}

fn hex(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(HEX_LIMIT)];
    let mut out = String::with_capacity(shown.len() * 2 + 24);
    for byte in shown {
        let _ = write!(out, "{byte:02x}");
    }
    if bytes.len() > shown.len() {
        let _ = write!(out, "... ({} more bytes)", bytes.len() - shown.len());
    }
    out
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
}

/// The payload as compact JSON when it is JSON (by its content type, or,
/// without one, because it parses), else as its length and hex.
pub fn json_or_bytes(content_type: Option<&str>, bytes: &[u8]) -> Result<String, String> {
    let declared = content_type.is_some_and(is_json);
    if declared || content_type.is_none() {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(value) => return Ok(value.to_string()),
            Err(error) if declared => {
                return Err(format!(
                    "({} bytes, {}, not valid JSON: {error}) hex:{}",
                    bytes.len(),
                    content_type.unwrap_or_default(),
                    hex(bytes)
                ))
            }
            Err(_) => {}
        }
    }
    Err(format!(
        "({} bytes, {}) hex:{}",
        bytes.len(),
        content_type.unwrap_or("no content-type"),
        hex(bytes)
    ))
}

/// The `payload ...` line of a record.
pub fn payload(content_type: Option<&str>, payload: Option<&[u8]>) -> String {
    match payload {
        None => "payload: none (tombstone)".to_owned(),
        Some([]) => "payload: empty".to_owned(),
        Some(bytes) => match json_or_bytes(content_type, bytes) {
            Ok(json) => format!("payload: {json}"),
            Err(described) => format!("payload {described}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_decoded_and_others_shown_as_length_and_hex() {
        assert_eq!(
            payload(Some("application/json"), Some(br#"{ "a" : 1 }"#)),
            r#"payload: {"a":1}"#
        );
        assert_eq!(
            payload(
                Some("application/cloudevents+json; charset=utf-8"),
                Some(b"[1]")
            ),
            "payload: [1]"
        );
        assert_eq!(
            payload(Some("application/x-postcard"), Some(&[0x01, 0xff])),
            "payload (2 bytes, application/x-postcard) hex:01ff"
        );
        assert!(payload(Some("application/json"), Some(b"{oops"))
            .starts_with("payload (5 bytes, application/json, not valid JSON: "));
        assert_eq!(payload(None, Some(b"[true]")), "payload: [true]");
        assert_eq!(
            payload(None, Some(b"abc")),
            "payload (3 bytes, no content-type) hex:616263"
        );
        assert_eq!(payload(None, None), "payload: none (tombstone)");
    }

    #[test]
    fn long_binary_payloads_are_elided_with_their_length() {
        let shown = payload(Some("application/octet-stream"), Some(&[7u8; 1500]));
        assert!(shown.starts_with("payload (1500 bytes, application/octet-stream) hex:0707"));
        assert!(shown.ends_with("... (476 more bytes)"), "{shown}");
    }

    #[test]
    fn a_record_shows_featured_headers_first_then_the_rest() {
        let record = Record {
            topic: "orders.dlq".into(),
            partition: 1,
            offset: 7,
            timestamp: Some(1_700_000_000_123),
            key: Some(b"o-1".to_vec()),
            headers: vec![
                ("content-type".into(), Some(b"application/json".to_vec())),
                ("topicbus_error".into(), Some(b"boom".to_vec())),
                ("raw".into(), Some(vec![0xff])),
            ],
            payload: Some(br#"{"id":1}"#.to_vec()),
        };
        assert_eq!(
            record.render(&[
                ("topicbus_error", "reason"),
                ("topicbus_attempts", "attempts")
            ]),
            "orders.dlq  partition 1  offset 7  key \"o-1\"  time 2023-11-14T22:13:20.123Z\n\
             \x20 reason: boom\n\
             \x20 attempts: -\n\
             \x20 content-type: application/json\n\
             \x20 raw: hex:ff\n\
             \x20 payload: {\"id\":1}\n"
        );
    }
}
