use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.changed", key = id)]
enum IndexChanged {
    Created { id: u64 },
    Cleared,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "user.seen", key = 0)]
struct UserSeen(u64);

fn main() {}
