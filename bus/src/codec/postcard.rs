use serde::de::{DeserializeOwned, DeserializeSeed as _};
use serde::Serialize;

use super::{bounded, Codec, CodecError};

/// postcard: a compact, maintained binary format with a stable wire spec.
///
/// Decoding is bounded (see [the module docs](super#hostile-input)): depth
/// [`MAX_DEPTH`](super::MAX_DEPTH), and no declared length beyond the
/// payload's bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const NAME: &'static str = "postcard";
    const CONTENT_TYPE: &'static str = "application/x-postcard";

    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        postcard::to_io(value, out)
            .map(drop)
            .map_err(CodecError::new)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let mut deserializer = postcard::Deserializer::from_bytes(bytes);
        let value = bounded::decode(bytes.len(), |root| root.deserialize(&mut deserializer))?;
        let rest = deserializer.finalize().map_err(CodecError::new)?;
        if !rest.is_empty() {
            return Err(CodecError::new(format!(
                "{} trailing bytes after the value",
                rest.len()
            )));
        }
        Ok(value)
    }
}
