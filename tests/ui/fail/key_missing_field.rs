use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", key = chunkid)]
struct ChunkCreated {
    chunk_id: String,
    text: String,
    position: u32,
}

fn main() {}
