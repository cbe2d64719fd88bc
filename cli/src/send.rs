//! `topicbus publish` and `topicbus request`: JSON in, through topicbus.

use std::io::Read;

use topicbus::{header, Bus, Error, MessageId, RawMessage};

use crate::cluster::Cluster;
use crate::show;
use crate::Failure;

/// The CloudEvents id header (docs/wire.md).
const CE_ID: &str = "ce_id";

/// Publishes `json` to `topic` and prints its message id.
pub async fn publish(
    cluster: Cluster,
    topic: String,
    json: &str,
    key: Option<String>,
    headers: Vec<(String, String)>,
) -> Result<(), Failure> {
    let message = message(&topic, json, key, headers)?;
    let id = message
        .headers
        .get_str(CE_ID)
        .unwrap_or_default()
        .to_owned();
    cluster.require_topic(&topic).await?;
    let bus = cluster.bus().await?;
    let published = bus.publish_raw(message).await;
    close(&bus).await;
    published?;
    println!("{id}");
    Ok(())
}

/// Sends `json` as a request to `topic` and prints the reply's payload
/// (shown as `view` says when it is JSON).
pub async fn request(
    cluster: Cluster,
    topic: String,
    json: &str,
    key: Option<String>,
    headers: Vec<(String, String)>,
    view: show::Json,
) -> Result<(), Failure> {
    let message = message(&topic, json, key, headers)?;
    cluster.require_topic(&topic).await?;
    let bus = cluster.bus().await?;
    eprintln!(
        "sending the request to `{topic}`; waiting up to {} for the reply",
        humantime::format_duration(cluster.timeout)
    );
    let replied = bus.request_raw(message).timeout(cluster.timeout).await;
    close(&bus).await;
    let reply = replied.map_err(|error| match error {
        Error::Timeout { topic, after } => Failure(format!(
            "no reply to the request on `{topic}` within {}: is a responder serving it?",
            humantime::format_duration(after)
        )),
        Error::Remote { topic, message } => {
            Failure(format!("the responder on `{topic}` failed: {message}"))
        }
        other => other.into(),
    })?;
    let shown = |name| reply.headers.get(name).map(show::text);
    eprintln!(
        "reply from `{}` (correlation id {})",
        shown("ce_source").unwrap_or_else(|| "unknown".to_owned()),
        shown(header::CORRELATION_ID).unwrap_or_else(|| "-".to_owned())
    );
    let content_type = reply.headers.get_str(header::CONTENT_TYPE);
    match show::json_or_bytes(content_type, &reply.payload, view) {
        Ok(json) => println!("{json}"),
        Err(described) => println!("{described}"),
    }
    Ok(())
}

/// A JSON message with a fresh `ce_id` and `content-type: application/json`;
/// `headers` given on the command line come on top (and may replace those).
fn message(
    topic: &str,
    json: &str,
    key: Option<String>,
    headers: Vec<(String, String)>,
) -> Result<RawMessage, Failure> {
    let payload = payload(json)?;
    let mut message = RawMessage::new(topic, payload);
    message.key = key.map(String::into_bytes);
    message.headers.insert(CE_ID, MessageId::new().to_string());
    message
        .headers
        .insert(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        message.headers.insert(name, value);
    }
    Ok(message)
}

/// The payload bytes of a `<json>` argument (`-`: stdin), checked to be JSON.
fn payload(json: &str) -> Result<Vec<u8>, Failure> {
    let text = if json == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure(format!("cannot read the payload from stdin: {e}")))?;
        text
    } else {
        json.to_owned()
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| Failure(format!("the payload is not valid JSON: {e}")))?;
    Ok(text.into_bytes())
}

/// Shuts the instance down, flushing what it sent; a failure only warns,
/// since the outcome of the command is already known.
pub async fn close(bus: &Bus) {
    if let Err(error) = bus.shutdown().await {
        show::warn(&format!("shutting down: {error}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_an_id_json_content_type_key_and_headers() {
        let message = message(
            "orders",
            r#"{"id":1}"#,
            Some("o-1".into()),
            vec![("tenant".into(), "acme".into())],
        )
        .expect("valid");
        assert_eq!(message.payload, br#"{"id":1}"#);
        assert_eq!(message.key.as_deref(), Some(&b"o-1"[..]));
        assert_eq!(
            message.headers.get_str("content-type"),
            Some("application/json")
        );
        assert_eq!(message.headers.get_str("tenant"), Some("acme"));
        let id = message.headers.get_str(CE_ID).expect("an id");
        assert!(MessageId::parse(id).as_uuid().is_some(), "{id}");
    }

    #[test]
    fn invalid_json_is_refused_with_the_parser_error() {
        let error = message("orders", "{oops", None, Vec::new()).unwrap_err();
        assert!(
            error
                .0
                .starts_with("the payload is not valid JSON: key must be a string"),
            "{error}"
        );
    }
}
