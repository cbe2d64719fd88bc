use serde::{Deserialize, Serialize};
use topicbus::Topic;

// 250 characters, one over Kafka's limit.
#[derive(Serialize, Deserialize, Topic)]
#[topic(
    name = "ml.embed.request.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
)]
struct Event {
    id: u64,
}

fn main() {}
