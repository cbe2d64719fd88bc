//! In-process delivery clones `Clone` payloads and encodes the others.
use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "cloneable")]
struct Cloneable {
    n: u32,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "not.cloneable")]
struct NotCloneable {
    n: u32,
}

fn main() {
    assert_eq!(Cloneable { n: 1 }.__try_clone(), Some(Cloneable { n: 1 }));
    assert!(NotCloneable { n: 1 }.__try_clone().is_none());
}
