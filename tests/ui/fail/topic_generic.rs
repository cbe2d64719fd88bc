use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "envelope")]
struct Envelope<T> {
    payload: T,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "borrowed")]
struct Borrowed<'a> {
    text: &'a str,
}

fn main() {}
