use serde::{Deserialize, Serialize};
use topicbus::{handler, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

#[handler]
async fn on_chunk(ev: ChunkCreated, attempt: u32) -> Result<(), std::io::Error> {
    println!("{} {attempt}", ev.chunk_id);
    Ok(())
}

fn main() {}
