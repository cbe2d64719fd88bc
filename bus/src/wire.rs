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
/// the application headers.
pub(crate) fn meta(
    topic: Cow<'static, str>,
    key: Option<Vec<u8>>,
    mut headers: Headers,
    default_source: &Arc<str>,
) -> Meta {
    let text = |headers: &mut Headers, name: &str| {
        headers.remove(name).and_then(|v| String::from_utf8(v).ok())
    };
    headers.remove(ce::SPECVERSION);
    headers.remove(ce::TYPE);
    let id = text(&mut headers, ce::ID).map_or_else(MessageId::new, |id| MessageId::parse(&id));
    let source =
        text(&mut headers, ce::SOURCE).map_or_else(|| Arc::clone(default_source), Arc::from);
    let time = text(&mut headers, ce::TIME)
        .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
        .unwrap_or_else(SystemTime::now);
    let content_type = text(&mut headers, header::CONTENT_TYPE).map(Cow::Owned);
    let correlation_id = text(&mut headers, header::CORRELATION_ID).map(|id| MessageId::parse(&id));
    let reply_to = text(&mut headers, header::REPLY_TO).map(Arc::from);
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
    }
}
