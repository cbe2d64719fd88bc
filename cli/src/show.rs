//! How records, headers and payloads are printed.
//!
//! Everything received (topic, key, header names and values, payloads,
//! error texts of replies) goes through [`escape`] before it reaches the
//! terminal, so that a record cannot move the cursor, recolour the screen,
//! set the window title or forge lines of output.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, UNIX_EPOCH};

use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use serde_json::value::RawValue;

/// Payload bytes shown in hex before the rest is elided.
const HEX_LIMIT: usize = 1024;

/// How JSON payloads are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Json {
    /// The text as sent, on one line.
    AsSent,
    /// Indented, one member per line, in the order sent.
    Pretty,
}

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

    /// The raw value of header `name` (the last one, as Kafka clients read
    /// repeated headers); `Some(None)` for a null value.
    fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// The record: a heading line, then one line per header except
    /// `featured` ones (shown first, under their label), then the payload.
    pub fn render(&self, featured: &[(&str, &str)], json: Json) -> String {
        let mut out = format!(
            "{}  partition {}  offset {}  key {}",
            escape(&self.topic),
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
            let value = self.header(name).map_or_else(|| "-".to_owned(), value);
            let _ = writeln!(out, "  {label}: {value}");
        }
        for (name, raw) in &self.headers {
            if featured.iter().any(|(f, _)| f == name) {
                continue;
            }
            let _ = writeln!(out, "  {}: {}", escape(name), value(raw.as_deref()));
        }
        // A content type that is not UTF-8 is as good as none.
        let content_type = self
            .header("content-type")
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok());
        let payload = payload(content_type, self.payload.as_deref(), json);
        let _ = writeln!(out, "  {}", payload.replace('\n', "\n  "));
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

/// Prints a warning to stderr, its text escaped (it may quote what a
/// broker or another client sent).
pub fn warn(message: &str) {
    eprintln!("topicbus: warning: {}", escape(message));
}

/// `text` safe to print on a terminal: control characters (C0 such as ESC
/// and BEL, DEL, C1 such as CSI) and the invisible format characters that
/// reorder or hide text (bidirectional overrides, zero-width characters)
/// become `\u{..}` escapes; tab, carriage return and line feed become
/// `\t`, `\r` and `\n`, so that one received value stays on one line.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_on_a_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if unsafe_on_a_terminal(c) => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn unsafe_on_a_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// Received bytes as printable text: UTF-8 [`escape`]d, else `hex:` and
/// the bytes.
pub fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => escape(text).into_owned(),
        Err(_) => format!("hex:{}", hex(bytes)),
    }
}

/// A header value as shown: its [`text`], or `(null)`.
fn value(raw: Option<&[u8]>) -> String {
    raw.map_or_else(|| "(null)".to_owned(), text)
}

/// A key as shown: quoted text, or hex.
fn quoted(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(_) => format!("\"{}\"", text(bytes)),
        Err(_) => text(bytes),
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

/// The payload as JSON when it is JSON (by its content type, or, without
/// one, because it parses): its text as sent, or indented; else its length
/// and hex. Either way escaped for the terminal.
pub fn json_or_bytes(
    content_type: Option<&str>,
    bytes: &[u8],
    json: Json,
) -> Result<String, String> {
    let declared = content_type.is_some_and(is_json);
    if declared || content_type.is_none() {
        match serde_json::from_slice::<&RawValue>(bytes) {
            Ok(raw) => {
                return Ok(match json {
                    Json::AsSent => escape(raw.get()).into_owned(),
                    // Indenting leaves the text of strings as it is (JSON
                    // strings hold no raw line breaks): each line is
                    // escaped on its own, keeping the breaks it adds.
                    Json::Pretty => indent(raw.get())
                        .lines()
                        .map(escape)
                        .collect::<Vec<_>>()
                        .join("\n"),
                });
            }
            Err(error) if declared => {
                return Err(format!(
                    "({} bytes, {}, not valid JSON: {error}) hex:{}",
                    bytes.len(),
                    escape(content_type.unwrap_or_default()),
                    hex(bytes)
                ))
            }
            Err(_) => {}
        }
    }
    Err(format!(
        "({} bytes, {}) hex:{}",
        bytes.len(),
        escape(content_type.unwrap_or("no content-type")),
        hex(bytes)
    ))
}

/// Valid JSON text indented by two spaces per level, one member or element
/// per line, keeping the order and the text of every token (serde_json's
/// own pretty printer goes through a map that sorts keys and may rewrite
/// numbers).
fn indent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = json.char_indices().peekable();
    let new_line = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some((at, c)) = rest.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                let next = json[at + 1..].trim_start().chars().next();
                if next == Some(close) {
                    while rest.next().is_some_and(|(_, c)| c != close) {}
                    out.push(close);
                } else {
                    depth += 1;
                    new_line(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                new_line(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                new_line(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
}

/// The `payload ...` line of a record (lines, when indented).
pub fn payload(content_type: Option<&str>, payload: Option<&[u8]>, json: Json) -> String {
    match payload {
        None => "payload: none (tombstone)".to_owned(),
        Some([]) => "payload: empty".to_owned(),
        Some(bytes) => match json_or_bytes(content_type, bytes, json) {
            Ok(json) => format!("payload: {json}"),
            Err(described) => format!("payload {described}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_shown_as_sent_and_others_as_length_and_hex() {
        let shown = |content_type, bytes| payload(content_type, bytes, Json::AsSent);
        assert_eq!(
            shown(
                Some("application/json"),
                Some(&br#"{ "z" : 1, "a": 2 }"#[..])
            ),
            r#"payload: { "z" : 1, "a": 2 }"#
        );
        assert_eq!(
            shown(
                Some("application/cloudevents+json; charset=utf-8"),
                Some(b"[1]")
            ),
            "payload: [1]"
        );
        assert_eq!(
            shown(Some("application/x-postcard"), Some(&[0x01, 0xff])),
            "payload (2 bytes, application/x-postcard) hex:01ff"
        );
        assert!(shown(Some("application/json"), Some(b"{oops"))
            .starts_with("payload (5 bytes, application/json, not valid JSON: "));
        assert_eq!(shown(None, Some(b"[true]")), "payload: [true]");
        assert_eq!(
            shown(None, Some(b"abc")),
            "payload (3 bytes, no content-type) hex:616263"
        );
        assert_eq!(shown(None, None), "payload: none (tombstone)");
    }

    #[test]
    fn pretty_json_keeps_the_order_and_the_text_of_every_token() {
        let sent = br#"{"z":1.50,"a":[1, {}, [ ], "x,\"}:y"],"m":{"k":null}}"#;
        assert_eq!(
            payload(Some("application/json"), Some(sent), Json::Pretty),
            "payload: {\n  \"z\": 1.50,\n  \"a\": [\n    1,\n    {},\n    [],\n    \
             \"x,\\\"}:y\"\n  ],\n  \"m\": {\n    \"k\": null\n  }\n}"
        );
    }

    #[test]
    fn long_binary_payloads_are_elided_with_their_length() {
        let shown = payload(
            Some("application/octet-stream"),
            Some(&[7u8; 1500]),
            Json::AsSent,
        );
        assert!(shown.starts_with("payload (1500 bytes, application/octet-stream) hex:0707"));
        assert!(shown.ends_with("... (476 more bytes)"), "{shown}");
    }

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(
            escape("a\u{1b}[31mred\u{7}\u{9b}2J\t\r\n\u{202e}b\u{200b}"),
            "a\\u{1b}[31mred\\u{7}\\u{9b}2J\\t\\r\\n\\u{202e}b\\u{200b}"
        );
        assert!(matches!(escape("plain é 漢字"), Cow::Borrowed(_)));
        // Raw control characters are not JSON; C1 and format characters are.
        assert_eq!(
            payload(None, Some("[\"\u{9b}\u{202e}\"]".as_bytes()), Json::Pretty),
            "payload: [\n  \"\\u{9b}\\u{202e}\"\n]"
        );
        assert_eq!(
            payload(Some("text/\u{1b}]0;x\u{7}"), Some(b"a"), Json::AsSent),
            "payload (1 bytes, text/\\u{1b}]0;x\\u{7}) hex:61"
        );
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
            record.render(
                &[
                    ("topicbus_error", "reason"),
                    ("topicbus_attempts", "attempts")
                ],
                Json::AsSent
            ),
            "orders.dlq  partition 1  offset 7  key \"o-1\"  time 2023-11-14T22:13:20.123Z\n\
             \x20 reason: boom\n\
             \x20 attempts: -\n\
             \x20 content-type: application/json\n\
             \x20 raw: hex:ff\n\
             \x20 payload: {\"id\":1}\n"
        );
        assert_eq!(
            record.render(&[], Json::Pretty).lines().last(),
            Some("  }"),
            "an indented payload stays under its record"
        );
    }
}
