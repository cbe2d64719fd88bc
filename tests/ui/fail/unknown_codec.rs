use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", codec = "msgpack")]
struct ChunkCreated {
    chunk_id: String,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.deleted", codec = bincode)]
struct ChunkDeleted {
    chunk_id: String,
}

fn main() {}
