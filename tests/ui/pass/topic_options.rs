//! Names at Kafka's limits, partitions, options split over two attributes.
use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.request", partitions = 12)]
struct Partitioned {
    n: u32,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "Az09._-")]
struct AllAllowedCharacters;

#[derive(Serialize, Deserialize, Topic)]
#[topic(
    name = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
)]
struct LongestName;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = r"raw.string")]
#[topic(partitions = 1, key = id)]
struct SplitAttributes {
    id: u64,
}

/// Doc comments and other derives sit next to the topic attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[serde(rename_all = "camelCase")]
#[topic(name = "renamed.fields")]
pub struct WithSerdeAttributes {
    chunk_id: String,
}

fn main() {
    assert_eq!(Partitioned::NAME, "ml.embed.request");
    assert_eq!(Partitioned::PARTITIONS, Some(12));
    assert_eq!(Partitioned { n: 1 }.n, 1);
    assert_eq!(AllAllowedCharacters::NAME, "Az09._-");
    assert_eq!(AllAllowedCharacters::PARTITIONS, None);
    assert_eq!(LongestName::NAME.len(), 249);
    let _ = (AllAllowedCharacters, LongestName);
    assert_eq!(SplitAttributes::NAME, "raw.string");
    assert_eq!(SplitAttributes::PARTITIONS, Some(1));
    assert_eq!(SplitAttributes { id: 7 }.key().as_deref(), Some(&b"7"[..]));
    assert_eq!(WithSerdeAttributes::NAME, "renamed.fields");
    let json = serde_json::to_string(&WithSerdeAttributes {
        chunk_id: "c".into(),
    })
    .unwrap();
    assert_eq!(json, r#"{"chunkId":"c"}"#);
}
