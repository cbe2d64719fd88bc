//! The one place that decides whether a typed payload travels as its
//! in-process value or encoded with its codec, and that measures it against
//! `max_message_bytes` either way: for publishes and requests
//! ([`BusCore::message`]) and for replies ([`reply_payload`]). Handlers read
//! whichever form arrives (`delivery::decode`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::BusCore;
use crate::codec::{Codec, CodecError};
use crate::error::{Error, Result as BusResult};
use crate::message::{encode_erased, Headers, Message, MessageId, Meta};
use crate::topic::{Request, Topic};

impl BusCore {
    /// Builds the in-flight form of a typed message, with `id` or a new
    /// one; a request (one with a `reply_to`) is correlated by its own id.
    pub(crate) fn message<T: Topic>(
        &self,
        value: &T,
        reply_to: Option<Arc<str>>,
        headers: Headers,
        id: Option<MessageId>,
    ) -> BusResult<Message> {
        // A request's id is its correlation id, which a forged reply
        // would need: random, not the next of this process's ids.
        let id = id.unwrap_or_else(|| match reply_to {
            Some(_) => MessageId::new(),
            None => MessageId::next(),
        });
        let meta = Meta {
            topic: Cow::Borrowed(T::NAME),
            correlation_id: reply_to.as_ref().map(|_| id.clone()),
            id,
            time: SystemTime::now(),
            source: Arc::clone(&self.service),
            key: value.key().map(Cow::into_owned),
            reply_to,
            content_type: Some(Cow::Borrowed(<T::Codec as Codec>::CONTENT_TYPE)),
            headers,
            malformed: None,
        };
        build::<T, T::Codec>(self, meta.reply_to.is_some(), meta, value).map_err(|refused| {
            match refused {
                Refused::Codec(error) => Error::codec(T::NAME, <T::Codec as Codec>::NAME, error),
                Refused::TooLarge(size) => Error::TooLarge {
                    topic: T::NAME.to_owned(),
                    size,
                    limit: self.max_message_bytes,
                },
            }
        })
    }

    /// Whether a typed payload travels as its in-process value: where the
    /// transport carries values, except requests and replies when replies
    /// are authenticated (the MAC covers bytes, so they are encoded once,
    /// not once to send and again to check).
    fn sends_values(&self, exchange: bool) -> bool {
        self.transport.carries_values() && !(exchange && self.settings.reply_key.is_some())
    }
}

/// Why a payload was not made into a message.
pub(crate) enum Refused {
    Codec(CodecError),
    /// Its size, over `max_message_bytes`.
    TooLarge(usize),
}

/// A payload handed to [`build`]: borrowed (a publish, copied only if it
/// travels as a value) or owned (a handler's response).
pub(crate) trait Given<V> {
    fn get(&self) -> &V;
    /// The value to send in process, or `self` back when it cannot be
    /// copied.
    fn take(self) -> Result<V, Self>
    where
        Self: Sized;
}

impl<T: Topic> Given<T> for &T {
    fn get(&self) -> &T {
        self
    }

    fn take(self) -> Result<T, Self> {
        self.__try_clone().ok_or(self)
    }
}

/// An owned payload.
pub(crate) struct Owned<V>(pub(crate) V);

impl<V> Given<V> for Owned<V> {
    fn get(&self) -> &V {
        &self.0
    }

    fn take(self) -> Result<V, Self> {
        Ok(self.0)
    }
}

/// The message of `value` under `meta`: the value itself where it travels
/// as one (see [`BusCore::sends_values`]; `exchange` for requests and
/// replies), else its bytes in codec `C`.
pub(crate) fn build<V, C>(
    core: &BusCore,
    exchange: bool,
    meta: Meta,
    value: impl Given<V>,
) -> Result<Message, Refused>
where
    V: Serialize + Send + Sync + 'static,
    C: Codec,
{
    let limit = core.max_message_bytes;
    let value = if core.sends_values(exchange) {
        match value.take() {
            Ok(copy) => {
                // Values are measured (encoded) only against a limit the
                // user set.
                let size = if core.measure_values {
                    C::encoded_len(&copy).map_err(Refused::Codec)?
                } else {
                    0
                };
                if size > limit {
                    return Err(Refused::TooLarge(size));
                }
                return Ok(Message::value(meta, copy, encode_erased::<V, C>, size));
            }
            Err(value) => value,
        }
    } else {
        value
    };
    let bytes = C::encode(value.get()).map_err(Refused::Codec)?;
    if bytes.len() > limit {
        return Err(Refused::TooLarge(bytes.len()));
    }
    Ok(Message::bytes(meta, bytes.into()))
}

/// The reply of a request topic `T` under `meta`, in the request topic's
/// codec.
pub(crate) fn reply_payload<T: Request>(
    response: T::Response,
    core: &BusCore,
    meta: Meta,
) -> Result<Message, CodecError> {
    build::<T::Response, T::Codec>(core, true, meta, Owned(response)).map_err(|refused| {
        match refused {
            Refused::Codec(error) => error,
            Refused::TooLarge(size) => CodecError::new(format!(
                "the response of {size} bytes exceeds the limit of {} bytes (max_message_bytes)",
                core.max_message_bytes
            )),
        }
    })
}
