//! Reading a reply at the requester: a reply is a received record like any
//! other, so it passes the checks a delivered message passes before a typed
//! handler sees it (headers, size, content type), and it is decoded with
//! panics contained. A reply that fails them fails its request with an
//! error; it never panics or aborts the caller.

use std::panic::AssertUnwindSafe;

use crate::codec::{Codec, CodecError};
use crate::error::{Error, Result};
use crate::message::{header, Message, Meta, Payload};
use crate::topic::Request;

/// Fails with [`Error::Remote`] when `reply` is an error reply to a request
/// on `topic`.
pub(crate) fn remote_error(topic: &str, reply: &Message) -> Result<()> {
    match reply_error(&reply.meta) {
        Some(message) => Err(Error::Remote {
            topic: topic.to_owned(),
            message,
        }),
        None => Ok(()),
    }
}

/// The response of the request topic `T` in `reply`, after the checks of a
/// delivery against this requester's `limit` (`max_message_bytes`).
///
/// Unreadable headers and a content type of another codec fail with
/// [`Error::Codec`], a payload over the limit with [`Error::TooLarge`]
/// (naming the reply topic), an error reply with [`Error::Remote`], a
/// payload that does not decode, or whose decoding panics, with
/// [`Error::Codec`].
pub(crate) fn typed<T: Request>(reply: Message, limit: usize) -> Result<T::Response> {
    let codec_error = |e| Error::codec(T::NAME, <T::Codec as Codec>::NAME, e);
    if let Some((kind, reason)) = crate::limit::refuse(&reply, limit) {
        return Err(match kind {
            "too_large" => Error::TooLarge {
                topic: reply.meta.topic.to_string(),
                size: reply.payload().size(),
                limit,
            },
            _ => codec_error(CodecError::new(format!(
                "the reply cannot be read ({kind}): {reason}"
            ))),
        });
    }
    remote_error(T::NAME, &reply)?;
    let reply = match reply.take_value::<T::Response>() {
        Ok(value) => return Ok(value),
        Err(shared) => shared,
    };
    match reply.payload() {
        Payload::Value { value, encode, .. } => {
            if !value.is::<Option<T::Response>>() {
                return Err(codec_error(CodecError::new(format!(
                    "the reply is not a `{}`",
                    std::any::type_name::<T::Response>()
                ))));
            }
            let bytes = encode(value).map_err(codec_error)?;
            decode::<T>(&bytes).map_err(codec_error)
        }
        Payload::Bytes(bytes) => {
            if let Some(content_type) = &reply.meta.content_type {
                crate::wire::check_content_type(
                    content_type,
                    <T::Codec as Codec>::NAME,
                    <T::Codec as Codec>::CONTENT_TYPE,
                )
                .map_err(|why| codec_error(CodecError::new(format!("the reply's {why}"))))?;
            }
            decode::<T>(bytes).map_err(codec_error)
        }
    }
}

/// Decodes a response, a panic in its `Deserialize` included.
fn decode<T: Request>(bytes: &[u8]) -> std::result::Result<T::Response, CodecError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        <T::Codec as Codec>::decode::<T::Response>(bytes)
    })) {
        Ok(decoded) => decoded,
        Err(panic) => Err(CodecError::new(format!(
            "decoding the reply as a `{}` panicked: {}",
            std::any::type_name::<T::Response>(),
            crate::error::panic_message(&*panic)
        ))),
    }
}

/// Reads the error headers of a reply, if it is an error reply.
pub(crate) fn reply_error(meta: &Meta) -> Option<String> {
    meta.headers.get_str(header::ERROR).map(str::to_owned)
}
