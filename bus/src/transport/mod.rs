//! The transport contract: what moves a bus's messages, for a crate that
//! brings its own transport.
//!
//! A bus hands its messages to a [`Transport`] and gets them back from it:
//! it publishes [`TransportMessage`]s, joins consumer groups with a
//! [`GroupMember`] per handler registration, and opens one
//! [`ReplyInbox`] per instance, where the transport hands the replies to
//! this instance's requests. Delivery semantics that do not depend on the
//! transport (decoding, retries, dead-lettering, replies, panics) are the
//! bus's. The built-in transports, [`memory`] and `kafka`, implement the
//! same contract; [`BusBuilder::transport`](crate::BusBuilder::transport)
//! takes any other.
//!
//! # What a transport does
//!
//! - [`Transport::publish`] takes a message and resolves once it is
//!   accepted (stored, queued): that is the publisher's acknowledgement.
//! - [`Transport::join`] adds a member to a consumer group. Each message of
//!   the topic goes to one member of each group; a partition's messages go
//!   to one member at a time, in order. The transport calls
//!   [`GroupMember::deliver_run`] with the first message and a [`Feed`] of
//!   the partition's next ready ones; [`Feed::handled`] acknowledges each.
//!   A broadcast member comes with its own group
//!   ([`SubscriptionSpec::is_ephemeral`]).
//! - [`Capabilities`] say what the transport keeps: a start position it
//!   cannot honour ([`StartFrom::Offsets`] without offsets,
//!   [`StartFrom::Earliest`] without replay) is refused by the bus with
//!   [`Error::Config`](crate::Error::Config).
//! - [`Transport::open_inbox`], [`Transport::reply`]: replies reach the
//!   instance that asked.
//! - [`Transport::ensure_topic`] provisions topics where they must exist
//!   first; [`Transport::close`] and [`Transport::leave`] drain on shutdown.
//! - A transport that moves messages over a network writes
//!   [`TransportMessage::headers`] and [`TransportMessage::payload_bytes`]
//!   and rebuilds the message with [`TransportMessage::from_wire_with`],
//!   within the bus's [`HeaderLimits`] (given with each
//!   [`SubscriptionSpec`] and [`ReplyInbox`]).
//! - [`Transport::redrive`], where the transport keeps dead letters, moves
//!   them back with [`TransportMessage::redriven`], which applies the bus's
//!   re-drive rules.
//!
//! # A minimal transport
//!
//! This one wraps the memory broker and counts what is published through
//! it; a transport of its own would route the messages itself.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! use topicbus::memory::MemoryBroker;
//! use topicbus::transport::{
//!     BoxFuture, Capabilities, GroupMember, ReplyInbox, SubscriptionSpec, Transport,
//!     TransportMessage,
//! };
//! use topicbus::{Bus, RawMessage, Result};
//!
//! #[derive(Default)]
//! struct Counting {
//!     inner: MemoryBroker,
//!     published: AtomicU64,
//! }
//!
//! impl Transport for Counting {
//!     fn name(&self) -> &str {
//!         "counting"
//!     }
//!     fn capabilities(&self) -> Capabilities {
//!         self.inner.capabilities()
//!     }
//!     fn publish(&self, message: TransportMessage) -> BoxFuture<'_, Result<()>> {
//!         self.published.fetch_add(1, Ordering::Relaxed);
//!         self.inner.publish(message)
//!     }
//!     fn join(&self, spec: SubscriptionSpec, member: GroupMember) -> BoxFuture<'_, Result<()>> {
//!         self.inner.join(spec, member)
//!     }
//!     fn leave<'a>(&'a self, topic: &'a str, group: &'a str, member: &'a GroupMember)
//!         -> BoxFuture<'a, ()> {
//!         self.inner.leave(topic, group, member)
//!     }
//!     fn leave_now(&self, topic: &str, group: &str, member: &GroupMember) {
//!         self.inner.leave_now(topic, group, member)
//!     }
//!     fn drain<'a>(&'a self, topic: &'a str, group: &'a str) -> BoxFuture<'a, bool> {
//!         self.inner.drain(topic, group)
//!     }
//!     fn local_members(&self, topic: &str, group: &str) -> Option<usize> {
//!         self.inner.local_members(topic, group)
//!     }
//!     fn open_inbox(&self, name: &str, inbox: ReplyInbox) -> Result<()> {
//!         self.inner.open_inbox(name, inbox)
//!     }
//!     fn reply(&self, reply_to: &str, reply: TransportMessage) -> Result<()> {
//!         self.inner.reply(reply_to, reply)
//!     }
//!     fn close<'a>(&'a self, inbox: &'a str) -> BoxFuture<'a, ()> {
//!         self.inner.close(inbox)
//!     }
//!     fn close_now(&self, inbox: &str) {
//!         self.inner.close_now(inbox)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> topicbus::Result<()> {
//! let transport = Arc::new(Counting::default());
//! let bus = Bus::builder().transport(Arc::clone(&transport)).connect().await?;
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! bus.group("greeters")
//!     .subscribe_raw("greetings", move |message: RawMessage, _ctx| {
//!         let tx = tx.clone();
//!         async move { tx.send(message.payload).map_err(|_| "receiver gone") }
//!     })
//!     .await?;
//! bus.publish_raw(RawMessage::new("greetings", b"hello".to_vec())).await?;
//! assert_eq!(rx.recv().await.unwrap(), b"hello".as_slice());
//! assert_eq!(transport.published.load(Ordering::Relaxed), 1);
//! bus.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod contract;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
pub(crate) mod pending;

pub use self::contract::{
    BoxFuture, Capabilities, Feed, GroupMember, Position, RedriveSummary, ReplyInbox, StartFrom,
    SubscriptionSpec, Transport, TransportMessage,
};
pub(crate) use self::contract::{Member, Waiting};
pub(crate) use self::pending::{inbox_name, Outcome, Pending, REPLY_TOPIC_PREFIX};
pub use crate::wire::HeaderLimits;
