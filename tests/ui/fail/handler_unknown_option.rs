use serde::{Deserialize, Serialize};
use topicbus::{handler, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

#[handler(retry = 5, queue = "x", retries = 3, retries = 4)]
async fn on_chunk(ev: ChunkCreated) -> Result<(), std::io::Error> {
    println!("{}", ev.chunk_id);
    Ok(())
}

fn main() {}
