use serde::{Deserialize, Serialize};
use std::rc::Rc;
use topicbus::{handler, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

async fn store(_chunk_id: &str) {}

#[handler]
async fn on_chunk(ev: ChunkCreated) -> Result<(), std::io::Error> {
    let shared = Rc::new(ev.chunk_id);
    store(&shared).await;
    Ok(())
}

fn main() {}
