use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", partition = 3)]
struct ChunkCreated {
    chunk_id: String,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.deleted", serializer = "json")]
struct ChunkDeleted {
    chunk_id: String,
}

fn main() {}
