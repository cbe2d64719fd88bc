//! The state one bus instance shares between its facade and its delivery:
//! the transport, the settings, the table of pending requests, and the ways
//! a message leaves the instance (publish, reply, dead letter).

use std::any::Any;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::error::{Error, Result};
use crate::event_log::EventLog;
use crate::message::Message;
use crate::reply::topics::ReplyTopics;
use crate::reply::ReplyKey;
use crate::telemetry::metrics::BusMetrics;
use crate::topic::sanitize_name;
use crate::transport::{Member, Outcome, Pending};
use crate::wire;

pub(crate) mod payload;
mod transports;

pub(crate) use self::transports::{Custom, Transport};

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) request_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) request_retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) concurrency: usize,
    pub(crate) max_pending_requests: usize,
    pub(crate) event_log: Option<EventLog>,
    /// Set with the builder; else the transport config's (both 1 MB by default).
    pub(crate) max_message_bytes: Option<usize>,
    /// Reply topics answered besides those under the reply topic prefix.
    pub(crate) allowed_reply_topics: Vec<String>,
    pub(crate) reply_key: Option<ReplyKey>,
    pub(crate) header_limits: wire::HeaderLimits,
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
        }
    }
}

/// What a transport's builder hands to [`BusCore::new`].
pub(crate) struct Parts<'a> {
    pub(crate) pending: Arc<Pending>,
    /// This instance's reply topic.
    pub(crate) inbox: Arc<str>,
    /// What the reply topics of topicbus requesters on this transport start
    /// with (before a `.`).
    pub(crate) reply_topic_prefix: &'a str,
    pub(crate) max_message_bytes: usize,
    pub(crate) measure_values: bool,
}

/// One bus instance's shared state.
pub(crate) struct BusCore {
    pub(crate) transport: Transport,
    pub(crate) service: Arc<str>,
    pub(crate) settings: Settings,
    pub(crate) pending: Arc<Pending>,
    pub(crate) inbox: Arc<str>,
    /// Where this instance's responders answer.
    pub(crate) reply_topics: ReplyTopics,
    pub(crate) metrics: BusMetrics,
    /// Largest payload published or handed to a typed handler.
    pub(crate) max_message_bytes: usize,
    /// Whether payloads that travel as values are measured against
    /// `max_message_bytes` (memory, with a limit set by the user).
    pub(crate) measure_values: bool,
    /// Set when shutdown begins: no new registrations.
    pub(crate) draining: AtomicBool,
    /// Set when shutdown has finished with the handlers: no publishing.
    pub(crate) closed: AtomicBool,
    pub(crate) registrations: Mutex<Vec<Registration>>,
    /// The bus handle that owns this core, for handlers that publish or
    /// request themselves. Typed by its owner (the facade), which this
    /// layer does not know.
    owner: Weak<dyn Any + Send + Sync>,
}

/// One handler registration: a member of a group on a topic.
pub(crate) struct Registration {
    pub(crate) topic: Cow<'static, str>,
    pub(crate) group: Arc<str>,
    pub(crate) member: Arc<dyn Member>,
}

impl BusCore {
    pub(crate) fn new(
        service: String,
        settings: Settings,
        transport: Transport,
        parts: Parts,
        owner: Weak<dyn Any + Send + Sync>,
    ) -> BusCore {
        crate::telemetry::metrics::describe();
        let reply_topics =
            ReplyTopics::new(parts.reply_topic_prefix, &settings.allowed_reply_topics);
        BusCore {
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
            owner,
        }
    }

    /// The handle that owns this core, while the bus is open.
    pub(crate) fn owner(&self) -> Result<Arc<dyn Any + Send + Sync>> {
        self.check_open()?;
        self.owner.upgrade().ok_or(Error::Closed)
    }

    /// Handles what is queued for the groups this instance is the last member
    /// of. Their handlers may publish to one another, so it repeats until one
    /// pass finds every such group idle.
    pub(crate) async fn drain_last_members(&self, registrations: &[Registration]) {
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
    pub(crate) async fn ensure_topic(&self, topic: &str, partitions: Option<u32>) -> Result<()> {
        if self.transport.provisions_topics() {
            self.transport.ensure_topic(topic, partitions).await?;
        }
        Ok(())
    }

    /// Publishes a message of this bus's making, to a topic made sure of
    /// first where the transport provisions topics (`partitions` from its
    /// type).
    pub(crate) async fn publish_new(
        &self,
        partitions: Option<u32>,
        message: Message,
    ) -> Result<()> {
        // One future fewer for the common case: the memory broker
        // provisions no topics.
        if let Some(memory) = self.unlogged_memory() {
            return memory.publish(message).await;
        }
        self.ensure_topic(&message.meta.topic, partitions).await?;
        self.publish(message).await
    }

    /// The memory broker, when publishes go to it directly: on the memory
    /// transport without an event log. Through `Transport::publish`, whose
    /// future has a `Custom` state too, each message would pay for one more
    /// state machine and its drop (about 35 instructions).
    fn unlogged_memory(&self) -> Option<&crate::memory::MemoryBroker> {
        match &self.transport {
            Transport::Memory(memory) if self.event_log().is_none() => Some(memory),
            _ => None,
        }
    }

    /// Publishes through the transport; with an event log, records the
    /// message once the transport took it.
    pub(crate) async fn publish(&self, message: Message) -> Result<()> {
        if let Some(memory) = self.unlogged_memory() {
            return memory.publish(message).await;
        }
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
    pub(crate) async fn publish_batch(
        &self,
        messages: impl Iterator<Item = Result<Message>>,
    ) -> Result<()> {
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
    pub(crate) fn event_log(&self) -> Option<&EventLog> {
        self.settings.event_log.as_ref()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Leaves every group at once, without waiting (the bus was dropped).
    pub(crate) fn detach(&self) {
        let registrations = std::mem::take(&mut *self.registrations.lock().expect("poisoned"));
        for reg in &registrations {
            self.transport
                .leave_now(&reg.topic, &reg.group, &reg.member);
        }
        self.pending.close_all();
        self.transport.close_now(&self.inbox);
    }

    /// The default consumer group of a handler: `{service}.{name}`, with the
    /// name's `::` turned into `.` and other characters outside
    /// `[A-Za-z0-9._-]` into `_`.
    pub(crate) fn default_group(&self, handler_name: &str) -> String {
        let name = sanitize_name(&handler_name.replace("::", "."));
        format!("{}.{}", self.service, name)
    }

    /// Why the request `message` must not be answered: its `reply_to`
    /// names a topic outside this instance's reply topics.
    pub(crate) fn refuse_reply_to(&self, message: &Message) -> Option<String> {
        self.reply_topics.refuse(&message.meta)
    }
}
