use serde::{Deserialize, Serialize};
use topicbus::Bus;

#[derive(Serialize, Deserialize)]
struct NotATopic {
    id: u64,
}

async fn publish(bus: &Bus, message: &NotATopic) -> topicbus::Result<topicbus::MessageId> {
    bus.publish(message).await
}

fn main() {
    drop(publish(&Bus::memory(), &NotATopic { id: 1 }));
}
