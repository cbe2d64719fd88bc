use serde::{Deserialize, Serialize};
use topicbus::{handler, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

#[handler]
async fn on_chunk(ev: ChunkCreated) -> Option<()> {
    println!("{}", ev.chunk_id);
    Some(())
}

struct NotDisplay;

#[handler]
async fn on_chunk_again(ev: ChunkCreated) -> Result<(), NotDisplay> {
    println!("{}", ev.chunk_id);
    Ok(())
}

fn main() {}
