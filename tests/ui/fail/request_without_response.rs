use serde::{Deserialize, Serialize};
use topicbus::{Bus, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

async fn ask(bus: &Bus, event: &ChunkCreated) -> topicbus::Result<()> {
    let _reply = bus.request(event).await?;
    Ok(())
}

fn main() {
    let event = ChunkCreated {
        chunk_id: "c-1".into(),
    };
    drop(ask(&Bus::memory(), &event));
}
