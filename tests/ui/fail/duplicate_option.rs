use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", codec = "json")]
#[topic(name = "index.chunk.updated")]
struct ChunkCreated {
    chunk_id: String,
}

fn main() {}
