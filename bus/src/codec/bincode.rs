use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{bounded, Codec, CodecError};

/// bincode 2.x (standard configuration) through its serde layer.
///
/// bincode 2.x is marked unmaintained (RUSTSEC-2025-0141) and the 3.0.0
/// release on crates.io is an empty crate; prefer [`Postcard`](super::Postcard)
/// for new binary topics. This codec exists for payloads already written with
/// bincode.
///
/// Decoding is bounded (see [the module docs](super#hostile-input)): depth
/// [`MAX_DEPTH`](super::MAX_DEPTH), and no allocation for a declared length
/// beyond the payload's bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

impl Codec for Bincode {
    const NAME: &'static str = "bincode";
    const CONTENT_TYPE: &'static str = "application/x-bincode";

    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(drop)
            .map_err(CodecError::new)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        // Borrowed from the slice: the owned decoder allocates a string's
        // declared length before it reads the bytes.
        let (value, read) = bounded::decode(bytes.len(), |root| {
            bincode::serde::seed_decode_from_slice(root, bytes, bincode::config::standard())
        })?;
        if read != bytes.len() {
            return Err(CodecError::new(format!(
                "{} trailing bytes after the value",
                bytes.len() - read
            )));
        }
        Ok(value)
    }
}
