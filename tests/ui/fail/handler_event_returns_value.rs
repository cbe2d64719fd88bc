use serde::{Deserialize, Serialize};
use topicbus::{handler, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

#[handler]
async fn on_chunk(ev: ChunkCreated) -> Result<usize, std::io::Error> {
    Ok(ev.chunk_id.len())
}

fn main() {}
