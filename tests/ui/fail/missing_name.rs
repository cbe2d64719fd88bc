use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(codec = "bincode")]
struct NoName {
    id: u64,
}

#[derive(Serialize, Deserialize, Topic)]
struct NoAttribute {
    id: u64,
}

fn main() {}
