//! The one error type of the crate.

use std::time::Duration;

use crate::codec::CodecError;

/// A boxed error from a lower layer (the broker client, the OS).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong on a bus, one variant per kind a caller may
/// want to handle differently. Match on the variant, or on [`Error::kind`].
///
/// ```
/// # async fn demo() {
/// use serde::{Deserialize, Serialize};
/// use topicbus::{Bus, Error, Topic};
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "search.request", response = SearchResponse)]
/// struct SearchRequest { query: String }
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "search.response")]
/// struct SearchResponse { hits: Vec<String> }
///
/// let bus = Bus::memory();
/// match bus.request(&SearchRequest { query: "rust".into() }).await {
///     Err(Error::NoResponders { topic }) => assert_eq!(topic, "search.request"),
///     other => panic!("unexpected: {:?}", other.map(|r| r.hits)),
/// }
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport cannot be reached or refused the operation.
    #[error("transport unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// No answer or acknowledgement within the allowed time.
    #[error("timed out after {after:?} waiting on topic `{topic}`")]
    Timeout {
        /// The topic of the request or publish.
        topic: String,
        /// The limit that passed.
        after: Duration,
    },
    /// A request was sent to a topic that nobody serves.
    #[error("no responders for topic `{topic}`")]
    NoResponders {
        /// The request topic.
        topic: String,
    },
    /// The responder's handler failed; its error message came back.
    #[error("handler for `{topic}` failed: {message}")]
    Remote {
        /// The request topic.
        topic: String,
        /// The handler's error, as text.
        message: String,
    },
    /// A payload, or a header topicbus reads, could not be encoded or
    /// decoded: a reply that cannot be read as the request's response, a
    /// dead letter that cannot be re-driven
    /// ([`TransportMessage::redriven`](crate::transport::TransportMessage::redriven)).
    #[error("{codec} codec failed on topic `{topic}`: {source}")]
    Codec {
        /// The topic the payload belongs to.
        topic: String,
        /// The codec's name (`json`, `bincode`, ...).
        codec: &'static str,
        /// The serializer's error.
        #[source]
        source: CodecError,
    },
    /// A message is larger than the configured limit.
    #[error("message of {size} bytes on topic `{topic}` exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The topic.
        topic: String,
        /// The encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A topic name the broker would reject.
    #[error("invalid topic name `{topic}`: {reason}")]
    InvalidTopic {
        /// The name given.
        topic: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// The bus was shut down.
    #[error("the bus is shut down")]
    Closed,
    /// A configuration value is wrong.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The offending key, as the user wrote it (e.g. `TOPICBUS_KAFKA_BROKERS`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The kind of an [`Error`], for matching without fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Timeout`].
    Timeout,
    /// See [`Error::NoResponders`].
    NoResponders,
    /// See [`Error::Remote`].
    Remote,
    /// See [`Error::Codec`].
    Codec,
    /// See [`Error::TooLarge`].
    TooLarge,
    /// See [`Error::InvalidTopic`].
    InvalidTopic,
    /// See [`Error::Closed`].
    Closed,
    /// See [`Error::Config`].
    Config,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::NoResponders { .. } => ErrorKind::NoResponders,
            Error::Remote { .. } => ErrorKind::Remote,
            Error::Codec { .. } => ErrorKind::Codec,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::InvalidTopic { .. } => ErrorKind::InvalidTopic,
            Error::Closed => ErrorKind::Closed,
            Error::Config { .. } => ErrorKind::Config,
        }
    }

    pub(crate) fn codec(topic: &str, codec: &'static str, source: CodecError) -> Self {
        Error::Codec {
            topic: topic.to_owned(),
            codec,
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text a panic was raised with.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}
