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

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(feature = "bincode")]
mod bincode;
mod json;
#[cfg(feature = "postcard")]
mod postcard;

#[cfg(feature = "bincode")]
pub use self::bincode::Bincode;
pub use self::json::Json;
#[cfg(feature = "postcard")]
pub use self::postcard::Postcard;

/// Turns payloads into bytes and back.
///
/// Implement it for a unit struct to plug in another format, then name the
/// struct in `#[topic(codec = MyCodec)]`.
pub trait Codec: Send + Sync + 'static {
    /// Short name used in errors and metrics, e.g. `json`.
    const NAME: &'static str;
    /// The `content-type` header value, e.g. `application/json`.
    const CONTENT_TYPE: &'static str;

    /// Appends the encoding of `value` to `out`.
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a whole value from `bytes`.
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
