//! The reply step: a request's answer (the handler's output, or its
//! failure), signed when replies are, sent to the requester's inbox.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use super::failure::{error_headers, Failure};
use super::invoke::Invoke;
use super::HandlerMember;
use crate::core::BusCore;
use crate::message::{Headers, Message, MessageId, Meta};
use crate::telemetry::trace;

/// Turns a handler's successful output into a reply payload.
pub(crate) type ReplyFn<O> = fn(O, &BusCore, Meta) -> Result<Message, crate::codec::CodecError>;

impl<I: Invoke> HandlerMember<I> {
    pub(super) async fn send_reply(&self, request: &Message, result: Result<I::Output, &Failure>) {
        let failed = |kind, reason: &str| {
            let meta = reply_meta(
                &self.core,
                request,
                error_headers(kind, reason),
                I::CONTENT_TYPE,
            );
            Message::bytes(meta, bytes::Bytes::new())
        };
        let reply = match result {
            Ok(output) => {
                let meta = reply_meta(&self.core, request, Vec::new(), I::CONTENT_TYPE);
                match (self.reply.expect("requests have a reply fn"))(output, &self.core, meta) {
                    Ok(reply) => reply,
                    Err(error) => {
                        failed("encode", &format!("could not encode the response: {error}"))
                    }
                }
            }
            Err(failure) => failed(failure.kind, &failure.reason),
        };
        send(&self.core, request, reply).await;
    }
}

/// The metadata of a reply to `request`, with `headers` (an error's).
fn reply_meta(
    core: &BusCore,
    request: &Message,
    headers: Vec<(&'static str, String)>,
    content_type: Option<&'static str>,
) -> Meta {
    let mut reply_headers = Headers::new();
    for (name, value) in headers {
        reply_headers.insert(name, value);
    }
    trace::inject_reply(&mut reply_headers);
    let reply_topic = match &request.meta.reply_to {
        // Not `to_string`: it goes through the formatting machinery,
        // a third of the reply's cost in process.
        Some(inbox) => Cow::Owned(String::from(&**inbox)),
        None => Cow::Owned(format!("{}.response", request.meta.topic)),
    };
    Meta {
        topic: reply_topic,
        id: MessageId::new(),
        time: SystemTime::now(),
        source: Arc::clone(&core.service),
        key: request.meta.key.clone(),
        correlation_id: request.meta.correlation_id.clone(),
        reply_to: None,
        content_type: content_type
            .map(Cow::Borrowed)
            .or_else(|| request.meta.content_type.clone()),
        headers: reply_headers,
        malformed: None,
    }
}

/// Answers `request` with `reply` (see [`reply_meta`]) on its
/// `reply_to`, or on `{topic}.response` when it names none (Go bus);
/// with a reply key, signed.
async fn send(core: &BusCore, request: &Message, reply: Message) {
    let reply = match &core.settings.reply_key {
        None => reply,
        Some(key) => match key.sign(request, &reply) {
            Ok(signed) => signed,
            Err(error) => {
                tracing::error!(topic = %request.meta.topic, %error, "could not sign a reply; not sending it");
                return;
            }
        },
    };
    // Boxed: publishing to `{topic}.response` is rare, and its future
    // would make every delivery's future larger.
    let sent = match &request.meta.reply_to {
        Some(inbox) => core.transport.reply(inbox, reply),
        None => Box::pin(core.transport.publish(reply)).await,
    };
    if let Err(error) = sent {
        tracing::warn!(topic = %request.meta.topic, %error, "could not send a reply");
    }
}
