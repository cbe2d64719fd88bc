//! Enums are topics too.
use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "index.changed", codec = "postcard")]
enum IndexChanged {
    Created { id: u64 },
    Deleted(u64),
    Cleared,
}

fn main() {
    assert_eq!(IndexChanged::NAME, "index.changed");
    assert_eq!(IndexChanged::Cleared.key(), None);
    let events = [
        IndexChanged::Created { id: 1 },
        IndexChanged::Deleted(1),
        IndexChanged::Cleared,
    ];
    for event in &events {
        assert_eq!(event.__try_clone().as_ref(), Some(event));
    }
}
