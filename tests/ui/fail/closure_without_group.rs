use serde::{Deserialize, Serialize};
use topicbus::{Bus, Topic};

#[derive(Clone, Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

// Two closures of one function would share a default group named after
// their common type: a closure must be registered in a named group.
async fn register(bus: &Bus) -> topicbus::Result<topicbus::Subscription> {
    bus.subscribe(|ev: ChunkCreated| async move {
        println!("{}", ev.chunk_id);
        Ok::<_, std::io::Error>(())
    })
    .await
}

fn main() {
    drop(register(&Bus::memory()));
}
