//! The decode step: the payload as the handler's type.

use super::failure::Failure;
use crate::codec::Codec;
use crate::message::{Message, Payload};
use crate::topic::Topic;

/// The payload as a `T`: a copy of the in-process value, or decoded bytes.
pub(super) fn decode<T: Topic>(message: &Message) -> Result<T, Failure> {
    match message.payload() {
        Payload::Value { value, .. } => value
            .downcast_ref::<Option<T>>()
            .and_then(Option::as_ref)
            .and_then(T::__try_clone)
            .ok_or_else(|| {
                Failure::permanent(
                    "type",
                    format!(
                        "in-process payload is not a `{}`",
                        std::any::type_name::<T>()
                    ),
                )
            }),
        Payload::Bytes(bytes) => {
            if let Some(content_type) = &message.meta.content_type {
                crate::wire::check_content_type(
                    content_type,
                    <T::Codec as Codec>::NAME,
                    <T::Codec as Codec>::CONTENT_TYPE,
                )
                .map_err(|why| Failure::permanent("decode", why))?;
            }
            <T::Codec as Codec>::decode(bytes).map_err(|error| {
                Failure::permanent(
                    "decode",
                    format!(
                        "{} codec could not decode a `{}`: {error}",
                        <T::Codec as Codec>::NAME,
                        std::any::type_name::<T>()
                    ),
                )
            })
        }
    }
}
