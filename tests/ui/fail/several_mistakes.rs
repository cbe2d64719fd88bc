use serde::{Deserialize, Serialize};
use topicbus::Topic;

// Three mistakes, three errors, one build.
#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "ml embed", codec = "yaml", key = chunkid)]
struct ChunkCreated {
    chunk_id: String,
}

fn main() {}
