use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Codec, CodecError};

/// bincode 2.x (standard configuration) through its serde layer.
///
/// bincode 2.x is marked unmaintained (RUSTSEC-2025-0141) and the 3.0.0
/// release on crates.io is an empty crate; prefer [`Postcard`](super::Postcard)
/// for new binary topics. This codec exists for payloads already written with
/// bincode.
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
        let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(CodecError::new)?;
        if read != bytes.len() {
            return Err(CodecError::new(format!(
                "{} trailing bytes after the value",
                bytes.len() - read
            )));
        }
        Ok(value)
    }
}
