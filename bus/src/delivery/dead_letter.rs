//! The dead-letter step: what cannot be handled goes to `{topic}.dlq` with
//! the reason, and its partition moves on.

use std::borrow::Cow;

use super::failure::{error_headers, Failure};
use super::invoke::Invoke;
use super::HandlerMember;
use crate::core::BusCore;
use crate::error::Error;
use crate::message::{header, Message};
use crate::wire;

impl<I: Invoke> HandlerMember<I> {
    pub(super) async fn dead_letter(&self, message: &Message, failure: &Failure, attempts: u32) {
        tracing::warn!(
            topic = %message.meta.topic,
            group = %self.group,
            id = %message.meta.id,
            attempts,
            reason = %failure.reason,
            "dead-lettering message"
        );
        let mut headers = error_headers(failure.kind, &failure.reason);
        headers.push((header::ATTEMPTS, attempts.to_string()));
        headers.push((header::ORIGINAL_TOPIC, message.meta.topic.to_string()));
        headers.push((header::GROUP, self.group.to_string()));
        write(&self.core, message, headers).await;
    }
}

/// Writes `message` to `{topic}.dlq` with the failure `headers`, retrying
/// until the transport takes it: the message is acknowledged only then.
async fn write(core: &BusCore, message: &Message, headers: Vec<(&'static str, String)>) {
    let mut meta = message.meta.clone();
    if meta.headers.get(wire::ce::TYPE).is_none() {
        // The dead letter keeps the type it had, not its new topic's.
        meta.headers
            .insert(wire::ce::TYPE, message.meta.topic.clone().into_owned());
    }
    meta.topic = Cow::Owned(format!("{}.dlq", message.meta.topic));
    meta.reply_to = None;
    // Routes a re-driven message on its topic only.
    meta.headers.remove(crate::header::REDRIVE_GROUP);
    for (name, value) in headers {
        meta.headers
            .insert(name, crate::limit::bounded_reason(value));
    }
    let payload = match message.payload().to_bytes() {
        Ok(bytes) => bytes,
        Err(error) => {
            meta.headers.insert(
                crate::header::ERROR,
                crate::limit::bounded_reason(format!(
                    "could not encode the payload for the dead-letter topic: {error}"
                )),
            );
            bytes::Bytes::new()
        }
    };
    if crate::topic::is_dead_letter_topic(&message.meta.topic) {
        // A dead-letter topic has no dead-letter topic until something
        // fails there.
        if let Err(error) = core.transport.ensure_dead_letter_topic(&meta.topic).await {
            tracing::warn!(topic = %meta.topic, %error, "could not create the dead-letter topic");
        }
    }
    let mut dead = Message::bytes(meta, payload);
    let mut delay = core.settings.backoff;
    loop {
        let error = match core.transport.publish(dead.clone()).await {
            Ok(()) => return,
            Err(error) => error,
        };
        if let Error::TooLarge { size, limit, .. } = error {
            // "Too large" is permanent: a smaller form is written, never
            // the same one again.
            match crate::limit::smaller_dead_letter(&dead) {
                Some(smaller) => {
                    tracing::error!(topic = %dead.meta.topic, size, limit, "dead letter too large; writing it without what does not fit");
                    dead = smaller;
                    continue;
                }
                None => {
                    // Acknowledged, so its partition moves on; the
                    // message stays in its topic until retention ends.
                    tracing::error!(topic = %dead.meta.topic, size, limit, original = %message.meta.topic, id = %message.meta.id, "dead letter too large even without payload and application headers; not written");
                    metrics::counter!(
                        crate::telemetry::metrics::names::DEAD_LETTERS_TOO_LARGE,
                        "topic" => message.meta.topic.to_string()
                    )
                    .increment(1);
                    return;
                }
            }
        }
        tracing::error!(topic = %dead.meta.topic, %error, "could not dead-letter; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(core.settings.max_backoff);
    }
}
