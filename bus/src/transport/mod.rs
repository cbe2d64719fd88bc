//! The boundary between the bus and the systems that move its messages.
//!
//! A transport moves [`Message`](crate::message::Message)s between
//! publishers and consumer groups and routes replies to the instance that
//! asked: `contract` holds what a transport implements and is given,
//! `pending` the table that matches replies to waiting requests, and each
//! transport has its folder. Delivery semantics that do not depend on the
//! transport (retries, dead-lettering, replies, panics) live in `delivery`
//! and are shared.

mod contract;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
pub(crate) mod pending;

pub(crate) use self::contract::{BoxFuture, Feed, Member, Position, SubscriptionSpec, Waiting};
pub use self::contract::{RedriveSummary, StartFrom};
pub(crate) use self::pending::{Outcome, Pending, REPLY_TOPIC_PREFIX};
