//! The bus: publish, subscribe, serve, request, shut down.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use tracing::Instrument;

use crate::codec::{Codec, CodecError};
use crate::dispatch::{BoxFuture, HandlerMember, Invoke, Member, Policy, Raw, ReplyFn, Typed};
use crate::error::{BoxError, Error, Result};
use crate::handler::{Handler, HandlerOptions, HandlerResult, NamedHandler, OutputOf};
use crate::memory::MemoryBroker;
use crate::message::{encode_erased, Headers, Message, MessageId, Meta, RawMessage};
use crate::middleware::{Delivery, ErasedLayer, Handled, HandlerService};
use crate::reply::topics::ReplyTopics;
use crate::reply::ReplyKey;
use crate::request::{Outcome, Pending};
use crate::telemetry::metrics::BusMetrics;
use crate::telemetry::trace;
use crate::topic::{sanitize_name, validate_topic_name, Request, Topic};
use crate::transport::{StartFrom, SubscriptionSpec, Transport};
use crate::{wire, Context};
use tower::{Layer, Service};

mod raw_request;
pub use raw_request::RawRequestCall;

/// A handle to a message bus. Cheap to clone; all clones are one instance.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use topicbus::{Bus, Topic};
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "index.chunk.created", key = chunk_id)]
/// struct ChunkCreated { chunk_id: String, text: String }
///
/// # async fn demo() -> topicbus::Result<()> {
/// let bus = Bus::memory();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// bus.group("indexer")
///     .subscribe(move |ev: ChunkCreated| {
///         let tx = tx.clone();
///         async move { tx.send(ev.chunk_id).map_err(|e| e.to_string()) }
///     })
///     .await?;
/// bus.publish(&ChunkCreated { chunk_id: "c-1".into(), text: "hello".into() }).await?;
/// assert_eq!(rx.recv().await.as_deref(), Some("c-1"));
/// bus.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Bus {
    handle: Arc<Handle>,
}

/// Detaches the instance from its transport when the last clone is dropped
/// without a shutdown, so its handlers stop taking messages.
struct Handle {
    core: Arc<BusCore>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.core.draining.swap(true, Ordering::AcqRel) {
            self.core.closed.store(true, Ordering::Release);
            self.core.detach();
        }
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("service", &self.handle.core.service)
            .field("settings", &self.handle.core.settings)
            .finish_non_exhaustive()
    }
}

/// Counters of one bus instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Requests waiting for their reply now.
    pub pending_requests: usize,
    /// Replies that arrived after their request had given up.
    pub late_replies: u64,
    /// Replies dropped because their MAC did not hold (with a
    /// [`ReplyKey`]): forged, altered, or from a responder without the key.
    pub rejected_replies: u64,
    /// Replies read on a `{topic}.response` topic (Kafka in Go-envelope
    /// mode, where every requester of `topic` reads the Go bus's replies)
    /// that no request of this instance waits for: replies to other
    /// instances, and late replies of its own (which cannot be told apart
    /// there).
    pub foreign_replies: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    request_timeout: Duration,
    shutdown_timeout: Duration,
    retries: u32,
    request_retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    concurrency: usize,
    max_pending_requests: usize,
    event_log: Option<crate::EventLog>,
    /// Set with the builder; else the transport config's (both 1 MB by default).
    max_message_bytes: Option<usize>,
    /// Reply topics answered besides those under the reply topic prefix.
    allowed_reply_topics: Vec<String>,
    reply_key: Option<ReplyKey>,
    pub(crate) header_limits: wire::HeaderLimits,
    /// Around every handler call of every subscription, the first outermost.
    layers: Vec<ErasedLayer>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            retries: 3,
            request_retries: 0,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            concurrency: 16,
            max_pending_requests: 65_536,
            event_log: None,
            header_limits: wire::HeaderLimits::default(),
            max_message_bytes: None,
            allowed_reply_topics: Vec::new(),
            reply_key: None,
            layers: Vec::new(),
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
    service: String,
    settings: Settings,
    transport: T,
}

/// The builder's transport: memory, on a given or a new private broker.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct MemoryChoice(Option<MemoryBroker>);

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
        self.settings.layers.push(ErasedLayer::new(layer));
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
    /// [`Error::Unavailable`] (default 65 536).
    pub fn max_pending_requests(mut self, limit: usize) -> Self {
        self.settings.max_pending_requests = limit.max(1);
        self
    }

    /// Records every message this instance publishes and every message its
    /// handlers are handed in `log` (see [`EventLog`](crate::EventLog)).
    pub fn event_log(mut self, log: crate::EventLog) -> Self {
        self.settings.event_log = Some(log);
        self
    }

    /// Largest payload, in bytes, this instance publishes and hands to its
    /// typed handlers (default 1 000 000, librdkafka's default
    /// `message.max.bytes`; overrides [`MemoryConfig::max_message_bytes`]
    /// and `KafkaConfig::max_message_bytes`).
    ///
    /// A bigger publish fails with [`Error::TooLarge`] naming the size and
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
    /// ([`BusStats::rejected_replies`]). Requests and replies then travel
    /// encoded on the memory transport too (the MAC covers their bytes).
    pub fn reply_key(mut self, key: ReplyKey) -> Self {
        self.settings.reply_key = Some(key);
        self
    }

    /// Bounds on the headers of a received message: at most `count`
    /// headers and `bytes` bytes of names and values in all (default 256
    /// and 64 KiB). The headers past either are dropped and counted in
    /// [`header::HEADERS_DROPPED`](crate::header::HEADERS_DROPPED); a typed
    /// handler's message is then dead-lettered (kind `header`), a raw
    /// handler gets the rest.
    pub fn max_headers(mut self, count: usize, bytes: usize) -> Self {
        self.settings.header_limits = wire::HeaderLimits {
            count: count.max(1),
            bytes: bytes.max(1),
        };
        self
    }

    /// Runs on `broker` (shared with other instances); without it, on a new
    /// private broker.
    pub fn memory(self, broker: MemoryBroker) -> BusBuilder<MemoryChoice> {
        BusBuilder {
            service: self.service,
            settings: self.settings,
            transport: MemoryChoice(Some(broker)),
        }
    }

    /// Runs on Kafka; finish with [`BusBuilder::connect`].
    #[cfg(feature = "kafka")]
    pub fn kafka(self, config: crate::kafka::KafkaConfig) -> BusBuilder<crate::kafka::KafkaConfig> {
        BusBuilder {
            service: self.service,
            settings: self.settings,
            transport: config,
        }
    }
}

impl BusBuilder<MemoryChoice> {
    /// Builds a bus on the memory transport.
    pub fn build(self) -> Bus {
        let pending = Pending::new(
            self.settings.max_pending_requests,
            self.settings.reply_key.clone(),
        );
        let broker = self.transport.0.unwrap_or_default();
        let inbox = broker.open_inbox(&self.service, &pending);
        // Values are measured (encoded) only against a limit someone set.
        let (max_message_bytes, measure_values) = match self
            .settings
            .max_message_bytes
            .or_else(|| broker.max_message_bytes())
        {
            Some(limit) => (limit, true),
            None => (crate::limit::DEFAULT_MAX_MESSAGE_BYTES, false),
        };
        Bus::from_parts(
            self.service,
            self.settings,
            Transport::Memory(broker),
            Parts {
                pending,
                inbox,
                reply_topic_prefix: crate::request::REPLY_TOPIC_PREFIX,
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

#[cfg(feature = "kafka")]
impl BusBuilder<crate::kafka::KafkaConfig> {
    /// Connects to Kafka: fails with [`Error::Unavailable`] naming the
    /// brokers when none answers within the connect timeout, and with
    /// [`Error::Config`] naming the property librdkafka refused.
    pub async fn connect(self) -> Result<Bus> {
        let pending = Pending::new(
            self.settings.max_pending_requests,
            self.settings.reply_key.clone(),
        );
        let mut config = self.transport;
        if let Some(limit) = self.settings.max_message_bytes {
            config = config.max_message_bytes(limit);
        }
        config.header_limits = self.settings.header_limits;
        let max_message_bytes = config.max_message_bytes;
        let reply_topic_prefix = config.reply_topic_prefix.clone();
        let (kafka, inbox) =
            crate::kafka::KafkaTransport::connect(config, &self.service, &pending).await?;
        Ok(Bus::from_parts(
            self.service,
            self.settings,
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

/// What a transport's builder hands to [`Bus::from_parts`].
struct Parts<'a> {
    pending: Arc<Pending>,
    /// This instance's reply topic.
    inbox: Arc<str>,
    /// What the reply topics of topicbus requesters on this transport start
    /// with (before a `.`).
    reply_topic_prefix: &'a str,
    max_message_bytes: usize,
    measure_values: bool,
}

pub(crate) struct BusCore {
    pub transport: Transport,
    pub service: Arc<str>,
    settings: Settings,
    pending: Arc<Pending>,
    inbox: Arc<str>,
    /// Where this instance's responders answer.
    reply_topics: ReplyTopics,
    metrics: BusMetrics,
    /// Largest payload published or handed to a typed handler.
    pub max_message_bytes: usize,
    /// Whether payloads that travel as values are measured against
    /// `max_message_bytes` (memory, with a limit set by the user).
    measure_values: bool,
    /// Set when shutdown begins: no new registrations.
    draining: AtomicBool,
    /// Set when shutdown has finished with the handlers: no publishing.
    closed: AtomicBool,
    registrations: Mutex<Vec<Registration>>,
    /// The public handle, for handlers that publish or request themselves.
    handle: Weak<Handle>,
}

struct Registration {
    topic: Cow<'static, str>,
    group: Arc<str>,
    member: Arc<dyn Member>,
}

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
            transport: MemoryChoice::default(),
        }
    }

    fn from_parts(service: String, settings: Settings, transport: Transport, parts: Parts) -> Bus {
        crate::telemetry::metrics::describe();
        let reply_topics =
            ReplyTopics::new(parts.reply_topic_prefix, &settings.allowed_reply_topics);
        Bus {
            handle: Arc::new_cyclic(|handle| Handle {
                core: Arc::new(BusCore {
                    transport,
                    service: service.into(),
                    settings,
                    pending: parts.pending,
                    inbox: parts.inbox,
                    reply_topics,
                    metrics: BusMetrics::default(),
                    max_message_bytes: parts.max_message_bytes,
                    measure_values: parts.measure_values,
                    draining: AtomicBool::new(false),
                    closed: AtomicBool::new(false),
                    registrations: Mutex::new(Vec::new()),
                    handle: handle.clone(),
                }),
            }),
        }
    }

    pub(crate) fn core(&self) -> &Arc<BusCore> {
        &self.handle.core
    }

    /// The service name of this instance.
    pub fn service(&self) -> &str {
        &self.core().service
    }

    /// Publishes `message` to its topic; returns once the transport took it,
    /// with the message's id (what its handlers see as [`Context::id`]).
    pub async fn publish(&self, message: &dyn Publishable) -> Result<MessageId> {
        self.publish_message(message, None, Headers::new()).await
    }

    /// Publishes `message` with application headers; returns its id.
    pub async fn publish_with(
        &self,
        message: &dyn Publishable,
        headers: Headers,
    ) -> Result<MessageId> {
        self.publish_message(message, None, headers).await
    }

    /// Publishes `message` under an id of the caller's (`ce_id` on the
    /// wire), with application headers: a producer that derives ids from
    /// its input (a database row, an upstream event) republishes the same
    /// event under the same id, so that consumers can tell a repeat by its
    /// id. An empty id is refused with [`Error::Config`].
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, topicbus::Topic)]
    /// # #[topic(name = "index.chunk.created")]
    /// # struct ChunkCreated { chunk_id: String }
    /// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
    /// use topicbus::{Headers, MessageId};
    ///
    /// let chunk = ChunkCreated { chunk_id: "c-17".into() };
    /// let id = MessageId::parse(&format!("chunk-created-{}", chunk.chunk_id));
    /// bus.publish_with_id(&chunk, id, Headers::new()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_with_id(
        &self,
        message: &dyn Publishable,
        id: MessageId,
        headers: Headers,
    ) -> Result<MessageId> {
        if id.is_empty() {
            return Err(Error::Config {
                key: "ce_id".into(),
                message: format!(
                    "the id of a message on `{}` must not be empty",
                    message.__topic()
                ),
            });
        }
        self.publish_message(message, Some(id), headers).await
    }

    // Not generic: `publish` takes `&dyn Publishable`, so that a type that
    // is not a topic is one error at the argument, not also one at the
    // returned future and one at its `.await`.
    async fn publish_message(
        &self,
        message: &dyn Publishable,
        id: Option<MessageId>,
        mut headers: Headers,
    ) -> Result<MessageId> {
        let core = self.core();
        let topic = message.__topic();
        // A publish span lasts as long as the publish; it is not entered,
        // since wrapping the publish would make every publish future larger.
        let span = trace::publish_span(topic);
        trace::inject(&span, &mut headers);
        let published = async {
            core.check_open()?;
            core.ensure_topic(topic, message.__partitions()).await?;
            let message = message.__build(Outgoing { core, headers, id })?.0;
            trace::record_message(&span, &message.meta);
            let id = message.meta.id.clone();
            core.publish(message).await?;
            Ok(id)
        }
        .await;
        core.metrics.published(topic, 1, published.is_ok());
        published
    }

    /// Publishes several messages of one topic, in order.
    ///
    /// Each message is encoded when the transport is ready for it: on Kafka
    /// at most 8 192 are encoded and waiting for their acknowledgement at a
    /// time, however long the batch, so memory does not grow with it. The
    /// first error ends the batch: one that cannot be encoded, or is too
    /// large, fails it once the messages before it are published, and none
    /// after it is sent.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Serialize, Deserialize, topicbus::Topic)]
    /// # #[topic(name = "index.chunk.created")]
    /// # struct ChunkCreated { chunk_id: String }
    /// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
    /// let chunks: Vec<ChunkCreated> = (0..3).map(|i| ChunkCreated { chunk_id: i.to_string() }).collect();
    /// bus.publish_batch(&chunks).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_batch<'a, T: Topic>(
        &self,
        messages: impl IntoIterator<Item = &'a T>,
    ) -> Result<()> {
        let core = self.core();
        let span = trace::publish_span(T::NAME);
        let mut headers = Headers::new();
        trace::inject(&span, &mut headers);
        // The values only: each is encoded when the transport is ready for
        // it, so a long batch is never held encoded all at once.
        let values: Vec<&T> = messages.into_iter().collect();
        let count = values.len();
        let published = async {
            core.check_open()?;
            core.ensure_topic(T::NAME, T::PARTITIONS).await?;
            let messages = Encoding {
                values: values.iter(),
                core,
                headers: &headers,
            };
            core.publish_batch(messages).await
        }
        .await;
        core.metrics.published(T::NAME, count, published.is_ok());
        published
    }

    /// Publishes bytes and headers as they are, to any topic. Consumers of a
    /// typed topic decode the bytes with the topic's codec; what they cannot
    /// decode is dead-lettered.
    pub async fn publish_raw(&self, mut message: RawMessage) -> Result<()> {
        let core = self.core();
        let topic = message.topic.clone();
        let span = trace::publish_span(&topic);
        trace::inject(&span, &mut message.headers);
        let published = async {
            core.check_open()?;
            validate_topic_name(&message.topic).map_err(|reason| Error::InvalidTopic {
                topic: message.topic.clone(),
                reason,
            })?;
            crate::limit::check_size(
                &message.topic,
                message.payload.len(),
                core.max_message_bytes,
            )?;
            let meta = wire::meta(
                Cow::Owned(message.topic),
                message.key,
                message.headers,
                &core.service,
                core.settings.header_limits,
            );
            trace::record_message(&span, &meta);
            core.publish(Message::bytes(meta, message.payload.into()))
                .await
        }
        .await;
        core.metrics.published_raw(&topic, 1, published.is_ok());
        published
    }

    /// Registers an event handler in its consumer group.
    ///
    /// The default group of an `async fn` marked `#[handler]` is
    /// `{service}.{function path}`: instances of one service share the
    /// work, different handlers each see every message. Set another with
    /// `.group(..)`, or `.broadcast()` so that every instance sees every
    /// message. A closure has no name to derive a group from: register it
    /// in a named group with [`Bus::group`].
    pub fn subscribe<H, M>(&self, handler: H) -> Subscribe<'_, H, M, Event>
    where
        H: Handler<M, Result: HandlerResult<Ok = ()>>,
        M: NamedHandler,
    {
        Subscribe::new(self, handler, Event)
    }

    /// Registers a request handler: its result is the reply. Groups work as
    /// for [`Bus::subscribe`].
    pub fn serve<H, M>(&self, handler: H) -> Subscribe<'_, H, M, Serve<OutputOf<H, M>>>
    where
        H: Handler<M>,
        H::Topic: Request<Response = OutputOf<H, M>>,
        M: NamedHandler,
    {
        Subscribe::new(self, handler, Serve::of::<H::Topic>())
    }

    /// Registrations in the consumer group `group`: the way to register a
    /// closure handler, and a raw handler.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use topicbus::{Bus, Topic};
    /// # #[derive(Clone, Serialize, Deserialize, Topic)]
    /// # #[topic(name = "index.chunk.created")]
    /// # struct ChunkCreated { chunk_id: String }
    /// # async fn demo() -> topicbus::Result<()> {
    /// let bus = Bus::memory();
    /// bus.group("indexer.audit")
    ///     .subscribe(|ev: ChunkCreated| async move {
    ///         println!("chunk {}", ev.chunk_id);
    ///         Ok::<_, std::io::Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn group(&self, group: impl Into<Cow<'static, str>>) -> Group<'_> {
        Group {
            bus: self,
            name: group.into(),
        }
    }

    /// Sends a request and waits for its reply (default timeout 30 s; set
    /// another per call with `.timeout(..)`).
    pub fn request<'a, T: Request>(&'a self, request: &'a T) -> RequestCall<'a, T, T::Response> {
        RequestCall {
            bus: self,
            request,
            timeout: None,
            headers: Headers::new(),
            run: RequestCall::<'a, T, T::Response>::run,
        }
    }

    /// Creates `T`'s topic and its dead-letter topic where they are missing
    /// (Kafka; partitions from `partitions = N` or the transport default).
    /// Subscribing does this too; call it for topics this instance only
    /// publishes to. A refused creation is an error naming the topic.
    pub async fn ensure_topic<T: Topic>(&self) -> Result<()> {
        self.core()
            .transport
            .ensure_topic(T::NAME, T::PARTITIONS)
            .await
    }

    /// Counters of this instance.
    pub fn stats(&self) -> BusStats {
        let core = self.core();
        BusStats {
            pending_requests: core.pending.len(),
            late_replies: core.pending.late_replies(),
            rejected_replies: core.pending.rejected_replies(),
            foreign_replies: core.pending.foreign_replies(),
        }
    }

    /// Stops gracefully, waiting at most the shutdown timeout:
    ///
    /// 1. new registrations are refused;
    /// 2. the groups this instance is the last member of are drained: what is
    ///    queued for them is handled (handlers may still publish and request);
    /// 3. the instance leaves its groups, so other members take over, and
    ///    waits for its in-flight handlers;
    /// 4. publishes and requests are then rejected with [`Error::Closed`],
    ///    and requests still waiting for a reply fail with it.
    ///
    /// Past the timeout it leaves anyway and returns [`Error::Timeout`].
    pub async fn shutdown(&self) -> Result<()> {
        let core = self.core();
        if core.draining.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let registrations = std::mem::take(&mut *core.registrations.lock().expect("poisoned"));
        let limit = core.settings.shutdown_timeout;
        let stop = async {
            core.drain_last_members(&registrations).await;
            join_all(registrations.iter().map(|reg| async {
                core.transport
                    .leave(&reg.topic, &reg.group, &reg.member)
                    .await;
                reg.member.close().await;
            }))
            .await;
        };
        let finished = tokio::time::timeout(limit, stop).await.is_ok();
        if !finished {
            for reg in &registrations {
                core.transport
                    .leave_now(&reg.topic, &reg.group, &reg.member);
            }
        }
        core.closed.store(true, Ordering::Release);
        core.pending.close_all();
        core.transport.close(&core.inbox).await;
        let synced = match core.event_log() {
            Some(log) => log.sync().await,
            None => Ok(()),
        };
        if finished {
            synced
        } else {
            Err(Error::Timeout {
                topic: "(shutdown)".to_owned(),
                after: limit,
            })
        }
    }
}

impl BusCore {
    /// Handles what is queued for the groups this instance is the last member
    /// of. Their handlers may publish to one another, so it repeats until one
    /// pass finds every such group idle.
    async fn drain_last_members(&self, registrations: &[Registration]) {
        let ours = |reg: &Registration| {
            registrations
                .iter()
                .filter(|other| other.topic == reg.topic && other.group == reg.group)
                .count()
        };
        let last: Vec<&Registration> = registrations
            .iter()
            .filter(|reg| {
                self.transport
                    .local_members(&reg.topic, &reg.group)
                    .is_some_and(|members| members <= ours(reg))
            })
            .collect();
        loop {
            let busy = join_all(
                last.iter()
                    .map(|reg| self.transport.drain(&reg.topic, &reg.group)),
            )
            .await;
            if !busy.into_iter().any(|waited| waited) {
                return;
            }
        }
    }

    /// Creates a topic before its first publish where the transport needs
    /// topics to exist (Kafka without auto-creation); a no-op on memory.
    async fn ensure_topic(&self, topic: &str, partitions: Option<u32>) -> Result<()> {
        if self.transport.provisions_topics() {
            self.transport.ensure_topic(topic, partitions).await?;
        }
        Ok(())
    }

    /// Publishes through the transport; with an event log, records the
    /// message once the transport took it.
    async fn publish(&self, message: Message) -> Result<()> {
        let Some(log) = self.event_log() else {
            return self.transport.publish(message).await;
        };
        let logged = message.clone();
        self.transport.publish(message).await?;
        if let Some(wait) = log.published(&logged) {
            wait.await;
        }
        Ok(())
    }

    /// [`BusCore::publish`] for several messages, pipelined.
    async fn publish_batch(&self, messages: impl Iterator<Item = Result<Message>>) -> Result<()> {
        let Some(log) = self.event_log() else {
            return self.transport.publish_batch(messages).await;
        };
        let logged = messages.collect::<Result<Vec<_>>>()?;
        self.transport
            .publish_batch(logged.iter().cloned().map(Ok))
            .await?;
        for message in &logged {
            if let Some(wait) = log.published(message) {
                wait.await;
            }
        }
        Ok(())
    }

    /// Sends `request` (with its correlation id and `reply_to` set) and
    /// waits at most `limit` for the reply, which comes back as received
    /// (an error reply too: see [`crate::reply::read`]); `sent` learns
    /// whether the transport took the request. No pending entry outlives
    /// the call.
    pub(crate) async fn exchange(
        &self,
        request: Message,
        limit: Duration,
        sent: impl FnOnce(bool),
    ) -> Result<Message> {
        let topic = request.meta.topic.clone();
        self.transport.open_inbox(&topic).await?;
        let now = Instant::now();
        // Past what an `Instant` holds, a request waits as good as forever.
        let deadline = now
            .checked_add(limit)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        let (mut guard, reply) = self.pending.register(&request, deadline)?;
        let published = self.publish(request).await;
        sent(published.is_ok());
        published?;
        let outcome = reply.await;
        // Whatever ended the wait removed the entry.
        guard.disarm();
        match outcome {
            Ok(Outcome::Reply(reply)) => Ok(reply),
            Ok(Outcome::Expired) => Err(Error::Timeout {
                topic: topic.into_owned(),
                after: limit,
            }),
            Err(_) => Err(Error::Closed),
        }
    }

    /// The event log, when this instance keeps one.
    pub(crate) fn event_log(&self) -> Option<&crate::EventLog> {
        self.settings.event_log.as_ref()
    }

    /// The bus this core belongs to, while it is open.
    pub(crate) fn bus(&self) -> Result<Bus> {
        self.check_open()?;
        self.handle
            .upgrade()
            .map(|handle| Bus { handle })
            .ok_or(Error::Closed)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Leaves every group at once, without waiting (the bus was dropped).
    fn detach(&self) {
        let registrations = std::mem::take(&mut *self.registrations.lock().expect("poisoned"));
        for reg in &registrations {
            self.transport
                .leave_now(&reg.topic, &reg.group, &reg.member);
        }
        self.pending.close_all();
        self.transport.close_now(&self.inbox);
    }

    /// Builds the in-flight form of a typed message, with `id` or a new
    /// one; a request (one with a `reply_to`) is correlated by its own id.
    fn message<T: Topic>(
        &self,
        value: &T,
        reply_to: Option<Arc<str>>,
        headers: Headers,
        id: Option<MessageId>,
    ) -> Result<Message> {
        let codec_error = |e| Error::codec(T::NAME, <T::Codec as Codec>::NAME, e);
        let as_value = self.sends_values(reply_to.is_some());
        let meta = |key: Option<Vec<u8>>| {
            // A request's id is its correlation id, which a forged reply
            // would need: random, not the next of this process's ids.
            let id = id.unwrap_or_else(|| match reply_to {
                Some(_) => MessageId::new(),
                None => MessageId::next(),
            });
            Meta {
                topic: Cow::Borrowed(T::NAME),
                correlation_id: reply_to.as_ref().map(|_| id.clone()),
                id,
                time: SystemTime::now(),
                source: Arc::clone(&self.service),
                key,
                reply_to,
                content_type: Some(Cow::Borrowed(<T::Codec as Codec>::CONTENT_TYPE)),
                headers,
                malformed: None,
            }
        };
        let key = value.key().map(Cow::into_owned);
        match value.__try_clone() {
            Some(copy) if as_value => {
                let size = if self.measure_values {
                    <T::Codec as Codec>::encoded_len(value).map_err(codec_error)?
                } else {
                    0
                };
                crate::limit::check_size(T::NAME, size, self.max_message_bytes)?;
                Ok(Message::value(
                    meta(key),
                    copy,
                    encode_erased::<T, T::Codec>,
                    size,
                ))
            }
            _ => {
                let bytes = <T::Codec as Codec>::encode(value).map_err(codec_error)?;
                crate::limit::check_size(T::NAME, bytes.len(), self.max_message_bytes)?;
                Ok(Message::bytes(meta(key), bytes.into()))
            }
        }
    }

    /// Whether a typed payload travels as its in-process value: where the
    /// transport carries values, except requests and replies when replies
    /// are authenticated (the MAC covers bytes, so they are encoded once,
    /// not once to send and again to check).
    fn sends_values(&self, exchange: bool) -> bool {
        self.transport.carries_values() && !(exchange && self.settings.reply_key.is_some())
    }

    fn policy(&self, options: &HandlerOptions, serve: bool) -> Policy {
        let default_retries = if serve {
            self.settings.request_retries
        } else {
            self.settings.retries
        };
        Policy {
            retries: options.retries.unwrap_or(default_retries),
            backoff: options.backoff.unwrap_or(self.settings.backoff),
            max_backoff: self.settings.max_backoff,
            timeout: options.timeout,
            concurrency: options.concurrency.unwrap_or(self.settings.concurrency),
        }
    }

    /// The default consumer group of a handler: `{service}.{name}`, with the
    /// name's `::` turned into `.` and other characters outside
    /// `[A-Za-z0-9._-]` into `_`.
    fn default_group(&self, handler_name: &str) -> String {
        let name = sanitize_name(&handler_name.replace("::", "."));
        format!("{}.{}", self.service, name)
    }

    /// The metadata of a reply to `request`, with `headers` (an error's).
    pub(crate) fn reply_meta(
        &self,
        request: &Message,
        headers: Vec<(&'static str, String)>,
        content_type: Option<&'static str>,
    ) -> Meta {
        let mut reply_headers = Headers::new();
        for (name, value) in headers {
            reply_headers.insert(name, value);
        }
        trace::inject_reply(&mut reply_headers);
        let reply_topic = match &request.meta.reply_to {
            // Not `to_string`: it goes through the formatting machinery,
            // a third of the reply's cost in process.
            Some(inbox) => Cow::Owned(String::from(&**inbox)),
            None => Cow::Owned(format!("{}.response", request.meta.topic)),
        };
        Meta {
            topic: reply_topic,
            id: MessageId::new(),
            time: SystemTime::now(),
            source: Arc::clone(&self.service),
            key: request.meta.key.clone(),
            correlation_id: request.meta.correlation_id.clone(),
            reply_to: None,
            content_type: content_type
                .map(Cow::Borrowed)
                .or_else(|| request.meta.content_type.clone()),
            headers: reply_headers,
            malformed: None,
        }
    }

    /// Why the request `message` must not be answered: its `reply_to`
    /// names a topic outside this instance's reply topics.
    pub(crate) fn refuse_reply_to(&self, message: &Message) -> Option<String> {
        self.reply_topics.refuse(&message.meta)
    }

    /// Answers `request` with `reply` (see [`BusCore::reply_meta`]) on its
    /// `reply_to`, or on `{topic}.response` when it names none (Go bus);
    /// with a reply key, signed.
    pub(crate) async fn send_reply(&self, request: &Message, reply: Message) {
        let reply = match &self.settings.reply_key {
            None => reply,
            Some(key) => match key.sign(request, &reply) {
                Ok(signed) => signed,
                Err(error) => {
                    tracing::error!(topic = %request.meta.topic, %error, "could not sign a reply; not sending it");
                    return;
                }
            },
        };
        // Boxed: publishing to `{topic}.response` is rare, and its future
        // would make every delivery's future larger.
        let sent = match &request.meta.reply_to {
            Some(inbox) => self.transport.reply(inbox, reply),
            None => Box::pin(self.transport.publish(reply)).await,
        };
        if let Err(error) = sent {
            tracing::warn!(topic = %request.meta.topic, %error, "could not send a reply");
        }
    }

    /// Writes `message` to `{topic}.dlq` with the failure `headers`, retrying
    /// until the transport takes it: the message is acknowledged only then.
    pub(crate) async fn dead_letter(
        &self,
        message: &Message,
        headers: Vec<(&'static str, String)>,
    ) {
        let mut meta = message.meta.clone();
        if meta.headers.get(wire::ce::TYPE).is_none() {
            // The dead letter keeps the type it had, not its new topic's.
            meta.headers
                .insert(wire::ce::TYPE, message.meta.topic.clone().into_owned());
        }
        meta.topic = Cow::Owned(format!("{}.dlq", message.meta.topic));
        meta.reply_to = None;
        // Routes a re-driven message on its topic only.
        meta.headers.remove(crate::header::REDRIVE_GROUP);
        for (name, value) in headers {
            meta.headers
                .insert(name, crate::limit::bounded_reason(value));
        }
        let payload = match message.payload().to_bytes() {
            Ok(bytes) => bytes,
            Err(error) => {
                meta.headers.insert(
                    crate::header::ERROR,
                    crate::limit::bounded_reason(format!(
                        "could not encode the payload for the dead-letter topic: {error}"
                    )),
                );
                bytes::Bytes::new()
            }
        };
        if crate::topic::is_dead_letter_topic(&message.meta.topic) {
            // A dead-letter topic has no dead-letter topic until something
            // fails there.
            if let Err(error) = self.transport.ensure_dead_letter_topic(&meta.topic).await {
                tracing::warn!(topic = %meta.topic, %error, "could not create the dead-letter topic");
            }
        }
        let mut dead = Message::bytes(meta, payload);
        let mut delay = self.settings.backoff;
        loop {
            let error = match self.transport.publish(dead.clone()).await {
                Ok(()) => return,
                Err(error) => error,
            };
            if let Error::TooLarge { size, limit, .. } = error {
                // "Too large" is permanent: a smaller form is written, never
                // the same one again.
                match crate::limit::smaller_dead_letter(&dead) {
                    Some(smaller) => {
                        tracing::error!(topic = %dead.meta.topic, size, limit, "dead letter too large; writing it without what does not fit");
                        dead = smaller;
                        continue;
                    }
                    None => {
                        // Acknowledged, so its partition moves on; the
                        // message stays in its topic until retention ends.
                        tracing::error!(topic = %dead.meta.topic, size, limit, original = %message.meta.topic, id = %message.meta.id, "dead letter too large even without payload and application headers; not written");
                        metrics::counter!(
                            crate::telemetry::metrics::names::DEAD_LETTERS_TOO_LARGE,
                            "topic" => message.meta.topic.to_string()
                        )
                        .increment(1);
                        return;
                    }
                }
            }
            tracing::error!(topic = %dead.meta.topic, %error, "could not dead-letter; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.settings.max_backoff);
        }
    }
}

/// Marker: the registration handles events.
#[doc(hidden)]
pub struct Event;
/// Marker: the registration answers requests, with replies made by its
/// function (the request topic's codec).
#[doc(hidden)]
pub struct Serve<O>(ReplyFn<O>);

impl<O> Serve<O> {
    fn of<T: Request<Response = O>>() -> Self {
        Serve(reply_payload::<T> as ReplyFn<O>)
    }
}
/// Marker: the registration handles raw messages.
#[doc(hidden)]
pub struct RawEvent;

/// Registrations in one named consumer group; made by [`Bus::group`].
///
/// Its registrations can be given any handler: a closure as well as an
/// `async fn` marked `#[handler]`.
#[derive(Clone)]
pub struct Group<'a> {
    bus: &'a Bus,
    name: Cow<'static, str>,
}

impl<'a> Group<'a> {
    /// Registers an event handler in this group (see [`Bus::subscribe`]).
    pub fn subscribe<H, M>(&self, handler: H) -> Subscribe<'a, H, M, Event>
    where
        H: Handler<M, Result: HandlerResult<Ok = ()>>,
    {
        Subscribe::new(self.bus, handler, Event).group(self.name.clone())
    }

    /// Registers a request handler in this group (see [`Bus::serve`]).
    pub fn serve<H, M>(&self, handler: H) -> Subscribe<'a, H, M, Serve<OutputOf<H, M>>>
    where
        H: Handler<M>,
        H::Topic: Request<Response = OutputOf<H, M>>,
    {
        Subscribe::new(self.bus, handler, Serve::of::<H::Topic>()).group(self.name.clone())
    }

    /// Registers a handler of raw messages (bytes and all headers) on any
    /// topic, such as a dead-letter topic `{topic}.dlq`, in this group.
    pub fn subscribe_raw<F, Fut, E>(
        &self,
        topic: impl Into<String>,
        handler: F,
    ) -> Subscribe<'a, RawHandler<F>, (), RawEvent>
    where
        F: Fn(RawMessage, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send,
        E: std::fmt::Display + Send + 'static,
    {
        Subscribe::new(
            self.bus,
            RawHandler {
                topic: topic.into(),
                handler,
            },
            RawEvent,
        )
        .group(self.name.clone())
    }
}

/// A handler registration being set up; `.await` it to register.
///
/// Made by [`Bus::subscribe`], [`Bus::serve`] and the same methods of
/// [`Bus::group`].
#[must_use = "a registration does nothing until it is awaited"]
pub struct Subscribe<'a, H, M, K> {
    bus: &'a Bus,
    handler: H,
    options: HandlerOptions,
    broadcast: bool,
    start: StartFrom,
    kind: K,
    layers: Vec<ErasedLayer>,
    marker: PhantomData<fn(M)>,
}

impl<'a, H, M, K> Subscribe<'a, H, M, K> {
    fn new(bus: &'a Bus, handler: H, kind: K) -> Self {
        Self {
            bus,
            handler,
            options: HandlerOptions::new(),
            broadcast: false,
            start: StartFrom::Latest,
            kind,
            layers: Vec::new(),
            marker: PhantomData,
        }
    }

    /// Wraps every call of this handler in `layer`, inside the bus's layers
    /// (see [`middleware`](crate::middleware)); the layer added first is
    /// the outermost.
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

    /// Joins this consumer group instead of the default one. Instances
    /// registering in the same group share its messages; each group sees
    /// every message.
    pub fn group(mut self, group: impl Into<Cow<'static, str>>) -> Self {
        self.options = self.options.group(group);
        self
    }

    /// Every instance sees every message: the registration gets a consumer
    /// group of its own.
    pub fn broadcast(mut self) -> Self {
        self.broadcast = true;
        self
    }

    /// Where a new group starts reading (default: newest).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Retries before dead-lettering (or returning the error to a requester).
    pub fn retries(mut self, retries: u32) -> Self {
        self.options = self.options.retries(retries);
        self
    }

    /// Messages handled at once by this registration.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.options = self.options.concurrency(concurrency);
        self
    }

    /// Time limit of one handler call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.timeout(timeout);
        self
    }

    /// First retry delay.
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.options = self.options.backoff(backoff);
        self
    }

    async fn register<I: Invoke>(
        self,
        topic: Cow<'static, str>,
        partitions: Option<u32>,
        handler_options: HandlerOptions,
        handler_name: &str,
        make: impl FnOnce(H) -> I,
        reply: Option<ReplyFn<I::Output>>,
    ) -> Result<Subscription> {
        let core = self.bus.core();
        if core.draining.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        validate_topic_name(&topic).map_err(|reason| Error::InvalidTopic {
            topic: topic.to_string(),
            reason,
        })?;
        let options = self.options.or(handler_options);
        let mut group = options
            .group
            .clone()
            .map_or_else(|| core.default_group(handler_name), Cow::into_owned);
        if self.broadcast {
            group = format!("{group}.{}", uuid::Uuid::new_v4().simple());
        }
        let group: Arc<str> = group.into();
        if reply.is_some() {
            core.transport
                .ensure_response_topic(&topic, partitions)
                .await?;
        }
        let policy = core.policy(&options, reply.is_some());
        let member: Arc<dyn Member> = Arc::new(HandlerMember::new(
            make(self.handler),
            Arc::clone(core),
            &topic,
            Arc::clone(&group),
            policy,
            reply,
            &[&core.settings.layers[..], &self.layers[..]].concat(),
        ));
        let spec = SubscriptionSpec {
            topic: topic.clone(),
            group: Arc::clone(&group),
            start: self.start,
            partitions,
            ephemeral: self.broadcast,
        };
        core.transport.join(spec, Arc::clone(&member)).await?;
        let registration = Registration {
            topic,
            group,
            member,
        };
        let subscription = Subscription {
            core: Arc::clone(core),
            topic: registration.topic.clone(),
            group: Arc::clone(&registration.group),
            member: Arc::clone(&registration.member),
        };
        core.registrations
            .lock()
            .expect("poisoned")
            .push(registration);
        Ok(subscription)
    }
}

/// One registration (`subscribe`, `serve`, `subscribe_raw`), returned by
/// awaiting it: [`Subscription::stop`] ends it alone, the way
/// [`Bus::shutdown`] ends them all.
///
/// Dropping the handle does not stop the subscription: it lasts until
/// `stop`, the bus's shutdown, or the drop of the bus's last handle.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, topicbus::Topic)]
/// # #[topic(name = "index.chunk.created")]
/// # struct ChunkCreated { chunk_id: String }
/// # async fn demo(bus: topicbus::Bus) -> topicbus::Result<()> {
/// let audit = bus
///     .group("audit")
///     .subscribe(|chunk: ChunkCreated| async move {
///         println!("{}", chunk.chunk_id);
///         Ok::<(), std::convert::Infallible>(())
///     })
///     .await?;
/// // ... later: finish what it is handling, leave the group, keep the bus
/// audit.stop().await?;
/// # Ok(()) }
/// ```
pub struct Subscription {
    core: Arc<BusCore>,
    topic: Cow<'static, str>,
    group: Arc<str>,
    member: Arc<dyn Member>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Its consumer group (for a broadcast subscription, the group unique
    /// to this instance).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Stops this subscription as [`Bus::shutdown`] stops every one: no new
    /// messages are taken, the handlers in flight finish, and on a transport
    /// that queues in this process (memory) what is queued for its group is
    /// handled first when it is the group's last member here; then it
    /// leaves the group, whose other members (here or elsewhere) take its
    /// share. The bus and its other subscriptions go on.
    ///
    /// Waits at most the bus's shutdown timeout, then leaves at once and
    /// returns [`Error::Timeout`]. Stopping a subscription that the bus
    /// already stopped (a shutdown, a dropped bus) does nothing.
    pub async fn stop(self) -> Result<()> {
        let core = &self.core;
        let registration = {
            let mut registrations = core.registrations.lock().expect("poisoned");
            let Some(at) = registrations
                .iter()
                .position(|reg| Arc::ptr_eq(&reg.member, &self.member))
            else {
                return Ok(());
            };
            registrations.swap_remove(at)
        };
        let limit = core.settings.shutdown_timeout;
        let stop = async {
            core.drain_last_members(std::slice::from_ref(&registration))
                .await;
            core.transport
                .leave(
                    &registration.topic,
                    &registration.group,
                    &registration.member,
                )
                .await;
            registration.member.close().await;
        };
        if tokio::time::timeout(limit, stop).await.is_ok() {
            return Ok(());
        }
        core.transport.leave_now(
            &registration.topic,
            &registration.group,
            &registration.member,
        );
        Err(Error::Timeout {
            topic: registration.topic.into_owned(),
            after: limit,
        })
    }
}

/// How a registration of kind `Self` (events, requests, raw messages) with
/// handler `H` is made. One `IntoFuture` impl covers every kind, so that an
/// unmet bound is reported as itself rather than as "not a future".
#[doc(hidden)]
pub trait Registers<H, M>: Sized + 'static {
    fn start(registration: Subscribe<'_, H, M, Self>) -> BoxFuture<'_, Result<Subscription>>;
}

impl<'a, H, M, K> IntoFuture for Subscribe<'a, H, M, K>
where
    K: Registers<H, M>,
{
    type Output = Result<Subscription>;
    type IntoFuture = BoxFuture<'a, Result<Subscription>>;

    fn into_future(self) -> Self::IntoFuture {
        K::start(self)
    }
}

impl<H, M> Registers<H, M> for Event
where
    H: Handler<M, Result: HandlerResult<Ok = ()>>,
    M: 'static,
{
    fn start(registration: Subscribe<'_, H, M, Self>) -> BoxFuture<'_, Result<Subscription>> {
        let options = registration.handler.options();
        let name = registration.handler.name();
        Box::pin(async move {
            registration
                .register(
                    Cow::Borrowed(<H::Topic as Topic>::NAME),
                    <H::Topic as Topic>::PARTITIONS,
                    options,
                    name,
                    |h| Typed(h, PhantomData),
                    None,
                )
                .await
        })
    }
}

// Only `H: Handler<M>`: the request bound was checked where the reply
// function was made (`serve`), so a handler that is not a request handler
// is one error there, not a second one at `.await`.
impl<H, M> Registers<H, M> for Serve<OutputOf<H, M>>
where
    H: Handler<M>,
    M: 'static,
{
    fn start(registration: Subscribe<'_, H, M, Self>) -> BoxFuture<'_, Result<Subscription>> {
        let options = registration.handler.options();
        let name = registration.handler.name();
        let reply = registration.kind.0;
        Box::pin(async move {
            registration
                .register(
                    Cow::Borrowed(<H::Topic as Topic>::NAME),
                    <H::Topic as Topic>::PARTITIONS,
                    options,
                    name,
                    |h| Typed(h, PhantomData),
                    Some(reply),
                )
                .await
        })
    }
}

/// A raw-message handler on a named topic; made by [`Group::subscribe_raw`].
pub struct RawHandler<F> {
    topic: String,
    handler: F,
}

impl<F, Fut, E> Registers<RawHandler<F>, ()> for RawEvent
where
    F: Fn(RawMessage, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send,
    E: std::fmt::Display + Send + 'static,
{
    fn start(
        registration: Subscribe<'_, RawHandler<F>, (), Self>,
    ) -> BoxFuture<'_, Result<Subscription>> {
        let topic = registration.handler.topic.clone();
        let name = format!("raw.{topic}");
        Box::pin(async move {
            registration
                .register(
                    Cow::Owned(topic),
                    None,
                    HandlerOptions::new(),
                    &name,
                    |raw| Raw(raw.handler),
                    None,
                )
                .await
        })
    }
}

/// The reply of a request topic `T` under `meta`: the value itself in
/// process, else encoded with the request topic's codec.
fn reply_payload<T: Request>(
    response: T::Response,
    core: &BusCore,
    meta: Meta,
) -> std::result::Result<Message, CodecError> {
    let limit = core.max_message_bytes;
    let too_large = |size: usize| {
        CodecError::new(format!(
            "the response of {size} bytes exceeds the limit of {limit} bytes (max_message_bytes)"
        ))
    };
    if core.sends_values(true) {
        let size = if core.measure_values {
            <T::Codec as Codec>::encoded_len(&response)?
        } else {
            0
        };
        if size > limit {
            return Err(too_large(size));
        }
        Ok(Message::value(
            meta,
            response,
            encode_erased::<T::Response, T::Codec>,
            size,
        ))
    } else {
        let bytes = <T::Codec as Codec>::encode(&response)?;
        if bytes.len() > limit {
            return Err(too_large(bytes.len()));
        }
        Ok(Message::bytes(meta, bytes.into()))
    }
}

/// A request being set up; `.await` it for the reply of type `R` (the
/// request topic `T`'s response).
#[must_use = "a request does nothing until it is awaited"]
pub struct RequestCall<'a, T, R> {
    bus: &'a Bus,
    request: &'a T,
    timeout: Option<Duration>,
    headers: Headers,
    // Made by `Bus::request`, where `T: Request<Response = R>` is checked,
    // so that `.await` needs no bound of its own: a request to a topic
    // without a response is one error, at `request`.
    run: fn(Self) -> BoxFuture<'a, Result<R>>,
}

impl<T, R> RequestCall<'_, T, R> {
    /// Waits at most `timeout` for the reply instead of the bus default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request with these application headers.
    pub fn headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

impl<'a, T, R> IntoFuture for RequestCall<'a, T, R> {
    type Output = Result<R>;
    type IntoFuture = BoxFuture<'a, Result<R>>;

    fn into_future(self) -> Self::IntoFuture {
        (self.run)(self)
    }
}

impl<'a, T: Request> RequestCall<'a, T, T::Response> {
    fn run(mut self) -> BoxFuture<'a, Result<T::Response>> {
        Box::pin(async move {
            let core = self.bus.core();
            let started = Instant::now();
            let span = trace::request_span(T::NAME);
            trace::inject(&span, &mut self.headers);
            let result = self.send(&span).instrument(span.clone()).await;
            core.metrics.request(T::NAME, started, &result);
            result
        })
    }

    async fn send(self, span: &tracing::Span) -> Result<T::Response> {
        let core = self.bus.core();
        core.check_open()?;
        if core.transport.has_consumers(T::NAME) == Some(false) {
            return Err(Error::NoResponders {
                topic: T::NAME.to_owned(),
            });
        }
        let limit = self.timeout.unwrap_or(core.settings.request_timeout);
        let message = core.message(
            self.request,
            Some(Arc::clone(&core.inbox)),
            self.headers,
            None,
        )?;
        trace::record_message(span, &message.meta);
        core.ensure_topic(T::NAME, T::PARTITIONS).await?;
        let reply = core
            .exchange(message, limit, |sent| {
                core.metrics.published(T::NAME, 1, sent)
            })
            .await?;
        crate::reply::read::typed::<T>(reply, core.max_message_bytes)
    }
}

/// What [`Bus::publish`] takes: a value of any [`Topic`] type (derive it).
/// Implemented for every topic type, and only for them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a topic",
    label = "this type is not bound to a topic",
    note = "add `#[derive(topicbus::Topic)]` and `#[topic(name = \"...\")]` to the type's definition"
)]
pub trait Publishable: Sync {
    #[doc(hidden)]
    fn __topic(&self) -> &'static str;
    #[doc(hidden)]
    fn __partitions(&self) -> Option<u32>;
    #[doc(hidden)]
    fn __build(&self, outgoing: Outgoing<'_>) -> Result<Built>;
}

// Not looked through in errors: a type that is not a topic is reported as
// not `Publishable`, with the message above, at the user's argument.
#[diagnostic::do_not_recommend]
impl<T: Topic> Publishable for T {
    fn __topic(&self) -> &'static str {
        T::NAME
    }

    fn __partitions(&self) -> Option<u32> {
        T::PARTITIONS
    }

    fn __build(&self, outgoing: Outgoing<'_>) -> Result<Built> {
        outgoing
            .core
            .message(self, None, outgoing.headers, outgoing.id)
            .map(Built)
    }
}

/// What a publish adds to the value. Not public API.
#[doc(hidden)]
pub struct Outgoing<'a> {
    core: &'a BusCore,
    headers: Headers,
    id: Option<MessageId>,
}

/// A message ready for the transport. Not public API.
#[doc(hidden)]
pub struct Built(Message);

/// The messages of a batch, each encoded when it is taken. (A named type
/// rather than a closure, so that the publish future stays `Send`.)
struct Encoding<'a, T> {
    values: std::slice::Iter<'a, &'a T>,
    core: &'a BusCore,
    headers: &'a Headers,
}

impl<T: Topic> Iterator for Encoding<'_, T> {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        let value = self.values.next()?;
        Some(self.core.message(*value, None, self.headers.clone(), None))
    }
}
