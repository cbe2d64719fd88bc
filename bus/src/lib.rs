//! Typed messaging between services.
//!
//! Bind a payload type to a topic with `#[derive(Topic)]`, then publish,
//! subscribe and make request/reply calls the compiler checks. The same code
//! runs on the in-process memory transport and on Kafka.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use topicbus::{handler, Bus, Topic};
//!
//! #[derive(Clone, Serialize, Deserialize, Topic)]
//! #[topic(name = "ml.embed.request", response = EmbedResponse)]
//! struct EmbedRequest { texts: Vec<String> }
//!
//! #[derive(Clone, Serialize, Deserialize, Topic)]
//! #[topic(name = "ml.embed.response")]
//! struct EmbedResponse { embeddings: Vec<Vec<f32>> }
//!
//! #[handler]
//! async fn embed(req: EmbedRequest) -> Result<EmbedResponse, std::io::Error> {
//!     Ok(EmbedResponse { embeddings: req.texts.iter().map(|t| vec![t.len() as f32]).collect() })
//! }
//!
//! # async fn demo() -> topicbus::Result<()> {
//! let bus = Bus::memory();
//! bus.serve(embed).await?;
//! let reply: EmbedResponse = bus.request(&EmbedRequest { texts: vec!["hi".into()] }).await?;
//! assert_eq!(reply.embeddings, vec![vec![2.0]]);
//! bus.shutdown().await?;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
#![warn(missing_docs)]

mod bus;
pub mod codec;
mod config;
mod context;
mod core;
mod delivery;
mod error;
mod event_log;
mod handler;
mod hash;
mod limit;
mod message;
pub mod middleware;
mod redrive;
mod reply;
mod secret;
pub mod telemetry;
mod topic;
pub mod transport;
mod wire;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

// The traits behind a handler's compile-time checks, named here so that a
// compiler error shows `topicbus::ResponseOf` rather than a path into
// `__private`. Not for use.
#[doc(hidden)]
pub use crate::handler::{assert_response, ResponseOf, Same};

#[cfg(fuzzing)]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

pub use crate::bus::{
    Bus, BusBuilder, BusStats, Group, Publishable, RawHandler, RawRequestCall, RequestCall,
    Subscribe, Subscription,
};
pub use crate::config::{
    BusConfig, BusType, ConfigLoader, SaslMechanism, SecurityProtocol, DEFAULT_ENV_PREFIX,
};
pub use crate::context::Context;
pub use crate::error::{BoxError, Error, ErrorKind, Result};
pub use crate::event_log::{EventLog, EventLogBuilder, ReplaySummary};
pub use crate::handler::{Handler, HandlerOptions, HandlerResult, NamedHandler};
pub use crate::message::{header, Headers, MessageId, RawMessage};
pub use crate::reply::ReplyKey;
pub use crate::telemetry::{TraceContext, TraceParseError};
pub use crate::topic::{validate_topic_name, Request, Topic, TopicKey};
pub use crate::transport::{RedriveSummary, StartFrom};
pub use crate::wire::WireProfile;

#[cfg(feature = "kafka")]
pub use crate::transport::kafka;
pub use crate::transport::memory;

/// Binds a struct or enum to a topic. See [`Topic`] for the options.
pub use topicbus_derive::Topic;

/// Turns an `async fn` into a [`Handler`]. Options: `group = "..."`,
/// `retries = N`, `concurrency = N`, `timeout = "2s"`, `backoff = "100ms"`.
pub use topicbus_derive::handler;

/// The Rust blocks of README.md and docs/*.md, compiled and run as doc tests.
#[cfg(doctest)]
mod markdown {
    #[doc = include_str!("../../README.md")]
    struct Readme;
    #[doc = include_str!("../../docs/topics-and-handlers.md")]
    struct TopicsAndHandlers;
    #[doc = include_str!("../../docs/delivery.md")]
    struct Delivery;
    #[doc = include_str!("../../docs/memory.md")]
    struct Memory;
    #[doc = include_str!("../../docs/middleware.md")]
    struct Middleware;
    #[doc = include_str!("../../docs/transports.md")]
    struct Transports;
    #[cfg(feature = "kafka")]
    #[doc = include_str!("../../docs/kafka.md")]
    struct Kafka;
    #[doc = include_str!("../../docs/wire.md")]
    struct Wire;
    #[cfg(feature = "kafka")]
    #[doc = include_str!("../../docs/migrating-from-go.md")]
    struct MigratingFromGo;
    #[doc = include_str!("../../docs/configuration.md")]
    struct Configuration;
    #[doc = include_str!("../../docs/operations.md")]
    struct Operations;
    #[doc = include_str!("../../docs/failures.md")]
    struct Failures;
    #[doc = include_str!("../../docs/performance.md")]
    struct Performance;
    #[doc = include_str!("../../docs/testing.md")]
    struct Testing;
}
