use serde::{Deserialize, Serialize};
use topicbus::{handler, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

#[handler(timeout = "2 seconds", backoff = "100")]
async fn on_chunk(ev: ChunkCreated) -> Result<(), std::io::Error> {
    println!("{}", ev.chunk_id);
    Ok(())
}

#[handler(timeout = 2, backoff = "1.5s", concurrency = 0, group = "")]
async fn on_chunk_again(ev: ChunkCreated) -> Result<(), std::io::Error> {
    println!("{}", ev.chunk_id);
    Ok(())
}

fn main() {}
