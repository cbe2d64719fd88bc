use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Codec, CodecError};

/// JSON through `serde_json`; the default codec, and the one the Go bus spoke.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "json";
    const CONTENT_TYPE: &'static str = "application/json";

    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(CodecError::new)
    }

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(CodecError::new)
    }

    fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
        let mut counter = Counter(0);
        serde_json::to_writer(&mut counter, value).map_err(CodecError::new)?;
        Ok(counter.0)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(CodecError::new)
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A float comes back as the same `f64`: serde_json's default parser
    /// reads its own text of this one as the next value up (found by the
    /// `decode_json` fuzz target).
    #[test]
    fn a_float_survives_encoding_and_decoding() {
        let sent: f64 = "0.222222222722232225".parse().expect("a float");
        let text = Json::encode(&sent).expect("encoded");
        let got: f64 = Json::decode(&text).expect("decoded");
        assert_eq!(
            got.to_bits(),
            sent.to_bits(),
            "{}",
            String::from_utf8_lossy(&text)
        );
        assert_eq!(Json::encode(&got).expect("encoded again"), text);
    }
}
