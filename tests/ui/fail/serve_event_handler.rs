use serde::{Deserialize, Serialize};
use topicbus::{handler, Bus, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

#[handler]
async fn on_chunk(ev: ChunkCreated) -> Result<(), std::io::Error> {
    println!("{}", ev.chunk_id);
    Ok(())
}

async fn register(bus: &Bus) -> topicbus::Result<topicbus::Subscription> {
    bus.serve(on_chunk).await
}

fn main() {
    drop(register(&Bus::memory()));
}
