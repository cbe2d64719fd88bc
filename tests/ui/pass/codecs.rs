//! Every built-in codec and a custom codec path.
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use topicbus::codec::{Codec, CodecError};
use topicbus::Topic;

mod wire {
    use super::*;

    /// A custom codec: JSON with a different content type.
    pub struct Text;

    impl Codec for Text {
        const NAME: &'static str = "text";
        const CONTENT_TYPE: &'static str = "text/plain";

        fn encode_into<T: Serialize + ?Sized>(
            value: &T,
            out: &mut Vec<u8>,
        ) -> Result<(), CodecError> {
            serde_json::to_writer(out, value).map_err(CodecError::new)
        }

        fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
            serde_json::from_slice(bytes).map_err(CodecError::new)
        }
    }
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "codec.default")]
struct Default {
    n: u32,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "codec.json", codec = "json")]
struct Json {
    n: u32,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "codec.bincode", codec = "bincode")]
struct Bincode {
    n: u32,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "codec.postcard", codec = "postcard")]
struct Postcard {
    n: u32,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "codec.custom", codec = wire::Text)]
struct Custom {
    n: u32,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "codec.custom.absolute", codec = crate::wire::Text)]
struct CustomAbsolute {
    n: u32,
}

fn codec_of<T: Topic>() -> &'static str {
    <T::Codec as Codec>::NAME
}

fn main() {
    assert_eq!(codec_of::<Default>(), "json");
    assert_eq!(codec_of::<Json>(), "json");
    assert_eq!(codec_of::<Bincode>(), "bincode");
    assert_eq!(codec_of::<Postcard>(), "postcard");
    assert_eq!(codec_of::<Custom>(), "text");
    assert_eq!(codec_of::<CustomAbsolute>(), "text");
    let _ = (Default { n: 1 }.n, Json { n: 1 }.n, Bincode { n: 1 }.n);
    let _ = (
        Postcard { n: 1 }.n,
        Custom { n: 1 }.n,
        CustomAbsolute { n: 1 }.n,
    );
}
