//! The cases, one module per subject of the delivery contract.

pub mod failures;
pub mod flow;
pub mod groups;
pub mod middleware;
pub mod order;
pub mod pubsub;
pub mod raw_request;
pub mod request_reply;
pub mod shutdown;
pub mod wire;
