use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "ml embed/request")]
struct EmbedRequest {
    texts: Vec<String>,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "..")]
struct DotDot;

fn main() {}
