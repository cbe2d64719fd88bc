//! The header set of a message on the wire (CloudEvents binary mode plus
//! topicbus's own headers), shared by every transport. WIRE.md documents it.

use std::borrow::Cow;
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

/// All headers of a message as another client sees them.
pub(crate) fn headers(meta: &Meta) -> Headers {
    let mut out = Headers::new();
    out.insert(ce::SPECVERSION, "1.0");
    out.insert(ce::ID, meta.id.to_string());
    out.insert(ce::SOURCE, meta.source.to_string());
    out.insert(ce::TYPE, meta.topic.to_string());
    out.insert(
        ce::TIME,
        humantime::format_rfc3339_millis(meta.time).to_string(),
    );
    if let Some(content_type) = &meta.content_type {
        out.insert(header::CONTENT_TYPE, content_type.to_string());
    }
    if let Some(id) = &meta.correlation_id {
        out.insert(header::CORRELATION_ID, id.to_string());
    }
    if let Some(reply_to) = &meta.reply_to {
        out.insert(header::REPLY_TO, reply_to.to_string());
    }
    for (name, value) in meta.headers.iter() {
        out.insert(name.to_owned(), value.to_vec());
    }
    out
}

/// Metadata from wire headers; what is missing is filled in (a new id, now,
/// `default_source`). The CloudEvents and routing headers are taken out of
/// the application headers. One that is present but unreadable (not UTF-8,
/// a `ce_time` that is not RFC 3339, a `reply_to` that is no topic name) is
/// kept in the headers as received and named in `Meta::malformed`.
pub(crate) fn meta(
    topic: Cow<'static, str>,
    key: Option<Vec<u8>>,
    mut headers: Headers,
    default_source: &Arc<str>,
) -> Meta {
    let mut problems: Vec<String> = Vec::new();
    let mut text = |headers: &mut Headers, name: &'static str| {
        let value = headers.remove(name)?;
        match String::from_utf8(value) {
            Ok(text) => Some(text),
            Err(error) => {
                problems.push(format!("header `{name}` is not UTF-8"));
                headers.insert(name, error.into_bytes());
                None
            }
        }
    };
    headers.remove(ce::SPECVERSION);
    headers.remove(ce::TYPE);
    let id = text(&mut headers, ce::ID).map_or_else(MessageId::new, |id| MessageId::parse(&id));
    let source =
        text(&mut headers, ce::SOURCE).map_or_else(|| Arc::clone(default_source), Arc::from);
    let time = text(&mut headers, ce::TIME);
    let content_type = text(&mut headers, header::CONTENT_TYPE).map(Cow::Owned);
    let correlation_id = text(&mut headers, header::CORRELATION_ID).map(|id| MessageId::parse(&id));
    let reply_to = text(&mut headers, header::REPLY_TO);
    let time = match time {
        None => SystemTime::now(),
        Some(text) => humantime::parse_rfc3339_weak(&text).unwrap_or_else(|error| {
            problems.push(format!(
                "header `{}` is not an RFC 3339 time ({error}): {text:?}",
                ce::TIME
            ));
            headers.insert(ce::TIME, text);
            SystemTime::now()
        }),
    };
    let reply_to = reply_to.and_then(|name| match crate::topic::validate_topic_name(&name) {
        Ok(()) => Some(Arc::from(name)),
        Err(reason) => {
            problems.push(format!(
                "header `{}` is not a topic name ({reason}): {name:?}",
                header::REPLY_TO
            ));
            headers.insert(header::REPLY_TO, name);
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
        headers,
        malformed,
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
    fn unreadable_headers_are_named_and_kept_as_received() {
        let mut wire = Headers::new();
        wire.insert(ce::ID, vec![0xff, 0xfe]);
        wire.insert(ce::TIME, "yesterday");
        wire.insert(header::REPLY_TO, "no spaces allowed");
        wire.insert("trace", vec![0x00, 0xff]);
        let meta = meta(Cow::Borrowed("t"), None, wire, &Arc::from("x"));
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
}
