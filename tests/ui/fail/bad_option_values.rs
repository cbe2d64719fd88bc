use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = ml.embed, partitions = 0)]
struct Zero {
    id: u64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "a.b", partitions = "12", response = "Reply")]
struct NotANumber {
    id: u64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "a.c", partitions = 4294967296, key)]
struct TooMany {
    id: u64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "a.d", key = chunk.id, partitions = 3)]
#[topic = "a.e"]
struct Nested {
    chunk: u64,
}

fn main() {}
