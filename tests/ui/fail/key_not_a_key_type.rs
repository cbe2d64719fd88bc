use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "ml.embedding", key = vector)]
struct Embedding {
    vector: Vec<f32>,
}

fn main() {}
