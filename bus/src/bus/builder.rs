//! Building a bus: [`BusBuilder`].

use std::sync::Arc;
use std::time::Duration;

use tower::{Layer, Service};

use super::Bus;
use crate::core::{Custom, Parts, Settings, Transport};
use crate::error::{BoxError, Result};
use crate::event_log::EventLog;
use crate::middleware::{Delivery, ErasedLayer, Handled, HandlerService};
use crate::reply::ReplyKey;
use crate::transport::memory::MemoryBroker;
use crate::transport::{inbox_name, Pending, ReplyInbox, REPLY_TOPIC_PREFIX};
use crate::wire;

impl Bus {
    /// A bus on a new private in-process broker, with default settings.
    pub fn memory() -> Bus {
        Bus::builder().build()
    }

    /// A builder for a bus with other settings or a shared broker.
    pub fn builder() -> BusBuilder {
        BusBuilder {
            service: "topicbus".to_owned(),
            settings: Settings::default(),
            layers: Vec::new(),
            transport: MemoryChoice::default(),
        }
    }
}

/// Builds a [`Bus`] with non-default settings.
///
/// ```
/// use std::time::Duration;
/// use topicbus::{memory::MemoryBroker, Bus};
///
/// let bus = Bus::builder()
///     .service("search")
///     .request_timeout(Duration::from_secs(5))
///     .retries(5)
///     .memory(MemoryBroker::default())
///     .build();
/// assert_eq!(bus.service(), "search");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BusBuilder<T = MemoryChoice> {
    pub(super) service: String,
    pub(super) settings: Settings,
    /// Around every handler call of every subscription, the first outermost.
    pub(super) layers: Vec<ErasedLayer>,
    pub(super) transport: T,
}

/// The builder's transport: memory, on a given or a new private broker.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct MemoryChoice(pub(super) Option<MemoryBroker>);

/// The builder's transport: one given to [`BusBuilder::transport`].
#[doc(hidden)]
#[derive(Clone)]
pub struct CustomChoice(Arc<dyn crate::transport::Transport>);

impl std::fmt::Debug for CustomChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CustomChoice").field(&self.0.name()).finish()
    }
}

impl<T> BusBuilder<T> {
    /// The service name: the `ce_source` of what this instance publishes and
    /// the prefix of its default consumer groups (default `topicbus`).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Default time a request waits for its reply (default 30 s, as the Go bus).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// Wraps every handler call of every subscription of the bus in
    /// `layer`, outside the subscription's own layers (see
    /// [`middleware`](crate::middleware)). Each subscription gets its own
    /// instance of the layer's service.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<HandlerService> + Send + Sync + 'static,
        L::Service: Service<Delivery, Response = Handled> + Send + 'static,
        <L::Service as Service<Delivery>>::Error: Into<BoxError>,
        <L::Service as Service<Delivery>>::Future: Send + 'static,
    {
        self.layers.push(ErasedLayer::new(layer));
        self
    }

    /// How long [`Bus::shutdown`] waits for in-flight handlers (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Default retries of event handlers before dead-lettering (default 3).
    pub fn retries(mut self, retries: u32) -> Self {
        self.settings.retries = retries;
        self
    }

    /// Default retries of request handlers before the error is returned to
    /// the requester (default 0: the caller decides whether to retry).
    pub fn request_retries(mut self, retries: u32) -> Self {
        self.settings.request_retries = retries;
        self
    }

    /// First retry delay, doubling per retry up to `max` (default 100 ms, 10 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.settings.backoff = first;
        self.settings.max_backoff = max;
        self
    }

    /// Default number of messages one registration handles at once (default 16).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.settings.concurrency = concurrency.max(1);
        self
    }

    /// Most requests that may wait for a reply at once; more fail with
    /// [`Error::Unavailable`](crate::Error::Unavailable) (default 65 536).
    pub fn max_pending_requests(mut self, limit: usize) -> Self {
        self.settings.max_pending_requests = limit.max(1);
        self
    }

    /// Records every message this instance publishes and every message its
    /// handlers are handed in `log` (see [`EventLog`](crate::EventLog)).
    pub fn event_log(mut self, log: EventLog) -> Self {
        self.settings.event_log = Some(log);
        self
    }

    /// Largest payload, in bytes, this instance publishes and hands to its
    /// typed handlers (default 1 000 000, librdkafka's default
    /// `message.max.bytes`; overrides [`MemoryConfig::max_message_bytes`]
    /// and `KafkaConfig::max_message_bytes`).
    ///
    /// A bigger publish fails with [`Error::TooLarge`](crate::Error::TooLarge) naming the size and
    /// the limit; a bigger delivered message goes to `{topic}.dlq` (error
    /// kind `too_large`) instead of to the handler. On the memory transport
    /// a payload that travels unencoded is measured (by encoding it) only
    /// when a limit was set here or on the
    /// [`MemoryConfig`](crate::memory::MemoryConfig).
    ///
    /// [`MemoryConfig::max_message_bytes`]: crate::memory::MemoryConfig::max_message_bytes
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.settings.max_message_bytes = Some(limit.max(1));
        self
    }

    /// Topics this instance's responders answer on besides the reply topics
    /// of topicbus requesters (those under the reply topic prefix,
    /// `topicbus.reply.` by default) and `{topic}.response` (default: none).
    /// Each entry is a topic name, or a prefix followed by `*`
    /// (`python.replies.*` allows `python.replies.a1`).
    ///
    /// A request whose `reply_to` names any other topic is dead-lettered
    /// (error kind `header`), neither handled nor answered: a client that can
    /// write requests cannot make a responder publish to a topic of its
    /// choosing. An entry that is not a topic name or prefix, and `*` alone,
    /// allow nothing and are logged as errors
    /// ([`BusConfig`](crate::BusConfig) refuses them). See
    /// docs/security-replies.md.
    ///
    /// ```
    /// let bus = topicbus::Bus::builder()
    ///     .allowed_reply_topics(["my-client.replies", "python.replies.*"])
    ///     .build();
    /// # drop(bus);
    /// ```
    pub fn allowed_reply_topics<I>(mut self, topics: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.settings.allowed_reply_topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Authenticates replies with `key`, shared by the requesters and
    /// responders of the system (see [`ReplyKey`]): this instance's
    /// responders put a MAC on their replies, and its requests take only
    /// replies whose MAC holds, dropping and counting the others
    /// ([`BusStats::rejected_replies`](crate::BusStats::rejected_replies)).
    /// Requests and replies then travel encoded on the memory transport too
    /// (the MAC covers their bytes).
    pub fn reply_key(mut self, key: ReplyKey) -> Self {
        self.settings.reply_key = Some(key);
        self
    }

    /// Bounds on the headers of a received message: at most `count`
    /// headers and `bytes` bytes of names and values in all (default 256
    /// and 64 KiB). The headers past either are dropped and counted in
    /// [`header::HEADERS_DROPPED`](crate::header::HEADERS_DROPPED); a typed
    /// handler's message is then dead-lettered (kind `header`), a raw
    /// handler gets the rest. A [custom transport](BusBuilder::transport)
    /// gets these limits with each consumer group and its reply inbox
    /// ([`HeaderLimits`](crate::transport::HeaderLimits)).
    pub fn max_headers(mut self, count: usize, bytes: usize) -> Self {
        self.settings.header_limits = wire::HeaderLimits::new(count, bytes);
        self
    }

    /// Runs on `broker` (shared with other instances); without it, on a new
    /// private broker.
    pub fn memory(self, broker: MemoryBroker) -> BusBuilder<MemoryChoice> {
        BusBuilder {
            service: self.service,
            settings: self.settings,
            layers: self.layers,
            transport: MemoryChoice(Some(broker)),
        }
    }

    /// Runs on `transport`, any implementation of the
    /// [transport contract](crate::transport); finish with
    /// [`BusBuilder::connect`]. The built-in transports have their own
    /// methods ([`BusBuilder::memory`], `kafka`), which dispatch statically.
    pub fn transport(
        self,
        transport: impl crate::transport::Transport,
    ) -> BusBuilder<CustomChoice> {
        BusBuilder {
            service: self.service,
            settings: self.settings,
            layers: self.layers,
            transport: CustomChoice(Arc::new(transport)),
        }
    }

    /// Runs on Kafka; finish with [`BusBuilder::connect`].
    #[cfg(feature = "kafka")]
    pub fn kafka(
        self,
        config: crate::transport::kafka::KafkaConfig,
    ) -> BusBuilder<crate::transport::kafka::KafkaConfig> {
        BusBuilder {
            service: self.service,
            settings: self.settings,
            layers: self.layers,
            transport: config,
        }
    }
}

/// The pending requests of a new bus: its settings' bound and reply key.
fn pending(settings: &Settings) -> Arc<Pending> {
    Pending::new(settings.max_pending_requests, settings.reply_key.clone())
}

/// A bus's limit on message bytes, and whether the values it hands over in
/// process (`carries_values`) are measured against it: only against a
/// limit someone set (on the builder or the transport), since measuring a
/// value encodes it. Without one, the default limit, and values unmeasured.
fn value_limit(configured: Option<usize>, carries_values: bool) -> (usize, bool) {
    match configured {
        Some(limit) => (limit, carries_values),
        None => (crate::limit::DEFAULT_MAX_MESSAGE_BYTES, false),
    }
}

impl BusBuilder<MemoryChoice> {
    /// Builds a bus on the memory transport.
    pub fn build(self) -> Bus {
        let pending = pending(&self.settings);
        let broker = self.transport.0.unwrap_or_default();
        let inbox = broker.open_inbox(&self.service, &pending);
        let (max_message_bytes, measure_values) = value_limit(
            self.settings
                .max_message_bytes
                .or_else(|| broker.max_message_bytes()),
            true,
        );
        Bus::from_parts(
            self.service,
            self.settings,
            self.layers,
            Transport::Memory(broker),
            Parts {
                pending,
                inbox,
                reply_topic_prefix: REPLY_TOPIC_PREFIX,
                max_message_bytes,
                measure_values,
            },
        )
    }

    /// Builds a bus on the memory transport (never fails; `async` so that
    /// code choosing its transport at run time has one call for both).
    pub async fn connect(self) -> Result<Bus> {
        Ok(self.build())
    }
}

impl BusBuilder<CustomChoice> {
    /// Builds a bus on the transport given to [`BusBuilder::transport`]:
    /// opens this instance's reply inbox there, and fails with the
    /// transport's error if it cannot.
    pub async fn connect(self) -> Result<Bus> {
        let pending = pending(&self.settings);
        let custom = Custom::new(self.transport.0);
        let inbox = inbox_name(&self.service);
        custom.transport.open_inbox(
            &inbox,
            ReplyInbox {
                pending: Arc::clone(&pending),
                header_limits: self.settings.header_limits,
            },
        )?;
        let (max_message_bytes, measure_values) = value_limit(
            self.settings
                .max_message_bytes
                .or_else(|| custom.transport.max_message_bytes()),
            custom.capabilities.carries_values,
        );
        Ok(Bus::from_parts(
            self.service,
            self.settings,
            self.layers,
            Transport::Custom(custom),
            Parts {
                pending,
                inbox,
                reply_topic_prefix: REPLY_TOPIC_PREFIX,
                max_message_bytes,
                measure_values,
            },
        ))
    }
}

#[cfg(feature = "kafka")]
impl BusBuilder<crate::transport::kafka::KafkaConfig> {
    /// Connects to Kafka: fails with [`Error::Unavailable`](crate::Error::Unavailable) naming the
    /// brokers when none answers within the connect timeout, and with
    /// [`Error::Config`](crate::Error::Config) naming the property librdkafka refused.
    pub async fn connect(self) -> Result<Bus> {
        let pending = pending(&self.settings);
        let mut config = self.transport;
        if let Some(limit) = self.settings.max_message_bytes {
            config = config.max_message_bytes(limit);
        }
        config.header_limits = self.settings.header_limits;
        let max_message_bytes = config.max_message_bytes;
        let reply_topic_prefix = config.reply_topic_prefix.clone();
        let (kafka, inbox) =
            crate::transport::kafka::KafkaTransport::connect(config, &self.service, &pending)
                .await?;
        Ok(Bus::from_parts(
            self.service,
            self.settings,
            self.layers,
            Transport::Kafka(kafka),
            Parts {
                pending,
                inbox,
                reply_topic_prefix: &reply_topic_prefix,
                max_message_bytes,
                measure_values: false,
            },
        ))
    }
}
