//! Codecs: how a payload becomes bytes on the wire.
//!
//! A topic picks its codec with `codec = "json" | "bincode" | "postcard"` or
//! `codec = path::To::Custom` in `#[topic(...)]`. Codecs are zero-sized types
//! with static functions, so calling one costs what calling the underlying
//! serializer costs.
//!
//! ```
//! use topicbus::codec::{Codec, Json};
//!
//! let bytes = Json::encode(&vec![1, 2, 3]).unwrap();
//! assert_eq!(bytes, b"[1,2,3]");
//! let back: Vec<i32> = Json::decode(&bytes).unwrap();
//! assert_eq!(back, [1, 2, 3]);
//! assert_eq!(Json::CONTENT_TYPE, "application/json");
//! ```
//!
//! # Hostile input
//!
//! Any client that can write to a topic can write any bytes, so decoding is
//! bounded; a payload past a bound fails with a [`CodecError`] naming the
//! bound, and the message is dead-lettered with kind `decode`:
//!
//! - [`Json`]: serde_json's recursion limit (128 nested arrays and objects);
//!   strings and arrays grow only with the bytes read.
//! - [`Postcard`] and [`Bincode`]: a value nests at most [`MAX_DEPTH`]
//!   levels; a string's or byte string's declared length is checked against
//!   the bytes present before anything is allocated for it; a collection
//!   reserves room for no more elements than the payload has bytes left
//!   (counted over the whole payload); the sequences and maps of a payload
//!   hold at most 1 048 576 elements in all, or as many as the payload has
//!   bytes if that is more (only zero-sized elements, as in `Vec<()>`, take
//!   no byte each).
//!
//! A payload is at most `max_message_bytes` long before it is decoded
//! (larger ones are refused as `too_large`), so these bounds tie what one
//! message can make a decoder do to that size. A custom [`Codec`] is
//! responsible for bounding its own decoder in the same way.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(feature = "bincode")]
mod bincode;
#[cfg(any(feature = "bincode", feature = "postcard"))]
mod bounded;
mod json;
#[cfg(feature = "postcard")]
mod postcard;

#[cfg(feature = "bincode")]
pub use self::bincode::Bincode;
pub use self::json::Json;
#[cfg(feature = "postcard")]
pub use self::postcard::Postcard;

/// How many levels a value decoded by [`Postcard`] or [`Bincode`] may nest.
///
/// Each sequence, tuple, struct, map, enum, `Some` and newtype struct on the
/// way down is a level; deeper payloads fail to decode instead of
/// overflowing the decoding thread's stack. serde_json's limit for [`Json`]
/// is also 128, counting only arrays and objects.
pub const MAX_DEPTH: usize = 128;

/// Turns payloads into bytes and back.
///
/// Implement it for a unit struct to plug in another format, then name the
/// struct in `#[topic(codec = MyCodec)]`. `decode` reads bytes from any
/// client that can write to the topic: a custom codec bounds its own
/// nesting depth and what a declared length may allocate (see
/// [Hostile input](self#hostile-input)).
pub trait Codec: Send + Sync + 'static {
    /// Short name used in errors and metrics, e.g. `json`.
    const NAME: &'static str;
    /// The `content-type` header value, e.g. `application/json`.
    const CONTENT_TYPE: &'static str;

    /// Appends the encoding of `value` to `out`.
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a whole value from `bytes`, which may be hostile.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;

    /// The length of `value`'s encoding, for the message size limit
    /// (`Bus::builder().max_message_bytes(..)`) of payloads that travel in
    /// process without being encoded. The default encodes into a reused
    /// per-thread buffer; a format that can count without writing may
    /// override it.
    fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buffer) => {
                buffer.clear();
                let len = Self::encode_into(value, &mut buffer).map(|()| buffer.len());
                if buffer.capacity() > 1 << 20 {
                    *buffer = Vec::new();
                }
                len
            }
            // A `Serialize` impl that measures another value while it is
            // being measured.
            Err(_) => Self::encode(value).map(|bytes| bytes.len()),
        })
    }

    /// Encodes `value` into a new buffer.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        // Room for a typical small message, so that it is not grown from
        // a few bytes by doubling (serde_json's `to_vec` starts the same).
        let mut out = Vec::with_capacity(128);
        Self::encode_into(value, &mut out)?;
        Ok(out)
    }
}

/// A payload that could not be encoded or decoded.
///
/// [`Error::Codec`](crate::Error::Codec) wraps it with the topic and codec.
#[derive(Debug)]
pub struct CodecError(Box<dyn std::error::Error + Send + Sync>);

impl CodecError {
    /// Wraps the underlying serializer's error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(source.into())
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
