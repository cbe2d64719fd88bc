//! The Kafka transport, over librdkafka (`rdkafka`).
//!
//! - Publishing: one idempotent producer per instance (`acks=all`,
//!   `enable.idempotence=true`, `linger.ms=0` so an awaited publish never
//!   waits for a batch timer; batches pipeline their sends instead). A
//!   publish returns once the broker acknowledged it.
//! - Consuming: one consumer per registration, in its consumer group, whose
//!   group events are polled on a thread of its own. Each assigned
//!   partition is split off onto its own librdkafka queue and gets a task
//!   that reads it, hands its messages in order to the handler and has the
//!   offset stored only after the handler succeeded or the message was
//!   dead-lettered; stored offsets are committed every 100 ms while busy,
//!   on partition revocation and at shutdown. A task reads only when its
//!   handler is ready, and librdkafka stops fetching for a partition whose
//!   queue holds 10 000 messages or 8 MiB, so memory stays bounded.
//! - Replies: every instance reads its own single-partition reply topic
//!   (`{reply_topic_prefix}.{service}.{instance}`), assigned at its end
//!   offset before its first request is sent, so a first reply cannot be
//!   missed and a reply always reaches the instance that asked. In
//!   Go-envelope mode it also reads every partition of `{topic}.response`
//!   of each topic it sends requests to, likewise assigned at their end
//!   before its first request there, and takes the replies whose
//!   correlation id one of its requests waits for.
//!
//! docs/wire.md documents the headers; docs/kafka.md the operational side.

mod admin;
mod config;
mod consume;
mod envelope;
mod error;
mod inbox;
mod observe;
mod produce;
mod redrive;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

pub use self::config::KafkaConfig;
pub(crate) use self::config::{builtin_features, missing_in, Lacking};
pub(crate) use self::error::unavailable;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::transport::{Member, Pending, SubscriptionSpec};

/// A connected Kafka transport. Cloning shares the connection.
#[derive(Clone)]
pub(crate) struct KafkaTransport {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: produce::KafkaProducer,
    admin: AdminClient<DefaultClientContext>,
    /// The reply topic's name, fixed at `connect`.
    inbox_topic: String,
    /// Its reader, opened by the first request (an instance that never
    /// makes a request creates no reply topic).
    inbox: tokio::sync::OnceCell<inbox::Inbox>,
    /// In Go-envelope mode, the readers of `{topic}.response`.
    responses: inbox::ResponseReaders,
    pending: Arc<Pending>,
    /// Set by `close`: no inbox is opened after it.
    closed: std::sync::atomic::AtomicBool,
    consumers: Mutex<Vec<consume::GroupConsumer>>,
    /// Topics created (or found) together with their dead-letter topic.
    ensured: Mutex<HashSet<String>>,
    /// Topics created (or found) alone: response and dead-letter topics.
    ensured_alone: Mutex<HashSet<String>>,
}

impl KafkaTransport {
    /// Connects: checks the brokers answer. The reply inbox is opened by
    /// [`KafkaTransport::open_inbox`], before the first request.
    pub async fn connect(
        config: KafkaConfig,
        service: &str,
        pending: &Arc<Pending>,
    ) -> Result<(Self, Arc<str>)> {
        config.check_features()?;
        let (producer, last_error) = produce::producer(&config)?;
        let admin = admin::client(&config)?;
        produce::check_reachable(&producer, &last_error, &config).await?;
        let inbox_topic = format!(
            "{}.{}.{}",
            config.reply_topic_prefix,
            crate::topic::sanitize_name(service),
            uuid::Uuid::new_v4().simple()
        );
        let transport = Self {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                inbox_topic: inbox_topic.clone(),
                inbox: tokio::sync::OnceCell::new(),
                responses: inbox::ResponseReaders::default(),
                pending: Arc::clone(pending),
                closed: std::sync::atomic::AtomicBool::new(false),
                consumers: Mutex::new(Vec::new()),
                ensured: Mutex::new(HashSet::new()),
                ensured_alone: Mutex::new(HashSet::new()),
            }),
        };
        Ok((transport, inbox_topic.into()))
    }

    /// Creates the reply topic and starts reading it at its end, once; in
    /// Go-envelope mode, does the same for `{request_topic}.response`, where
    /// the Go bus's responders answer. Every reply to a request sent after
    /// this returns is seen.
    pub async fn open_inbox(&self, request_topic: &str) -> Result<()> {
        let inner = &self.inner;
        inner
            .inbox
            .get_or_try_init(|| async {
                if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                    return Err(Error::Closed);
                }
                let topic = &inner.inbox_topic;
                if inner.config.provision_topics {
                    admin::ensure(&inner.admin, &inner.config, &[(topic.clone(), 1)]).await?;
                } else {
                    produce::request_auto_creation(&inner.producer, &inner.config, topic).await?;
                }
                let pending = Arc::clone(&inner.pending);
                inbox::Inbox::open(&inner.config, topic, inbox::Replies::Own, topic, pending).await
            })
            .await?;
        if !inner.config.go_envelope {
            return Ok(());
        }
        let slot = inner.responses.slot(request_topic);
        if slot.initialized() {
            return Ok(());
        }
        let closed = || inner.closed.load(std::sync::atomic::Ordering::Acquire);
        let reader = slot
            .get_or_try_init(|| async {
                if closed() {
                    return Err(Error::Closed);
                }
                let topic = format!("{request_topic}.response");
                self.ensure_one(&topic, None).await?;
                let pending = Arc::clone(&inner.pending);
                let replies = inbox::Replies::Shared;
                inbox::Inbox::open(&inner.config, &topic, replies, &inner.inbox_topic, pending)
                    .await
            })
            .await?;
        // `close` may have run while it opened, and not seen it.
        if closed() {
            reader.stop_now();
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub async fn publish(&self, message: Message) -> Result<()> {
        produce::publish(&self.inner.producer, &self.inner.config, &message).await
    }

    pub async fn publish_batch(
        &self,
        messages: impl IntoIterator<Item = Result<Message>>,
    ) -> Result<()> {
        produce::publish_batch(&self.inner.producer, &self.inner.config, messages).await
    }

    /// Enqueues a reply and returns; its acknowledgement is awaited on a
    /// task of its own, so a responder's partition is not held up by it.
    pub fn reply(&self, reply_to: &str, message: Message) -> Result<()> {
        let acks = produce::reply(&self.inner.producer, &self.inner.config, reply_to, &message)?;
        let inner = Arc::clone(&self.inner);
        let topic = reply_to.to_owned();
        tokio::spawn(async move {
            if let Err(error) = acks.settled(&inner.config).await {
                tracing::warn!(%error, topic, "a reply was not delivered");
            }
        });
        Ok(())
    }

    /// Creates `topic` and its dead-letter topic when they are missing: with
    /// the admin API, or, with provisioning off, by asking for their
    /// metadata as a producer (brokers with auto-creation then create them).
    /// A dead-letter topic gets no dead-letter topic of its own: one is made
    /// when something is dead-lettered there ([`Self::ensure_one`]).
    pub async fn ensure_topic(&self, topic: &str, partitions: Option<u32>) -> Result<()> {
        // Called before every typed publish: the common case is one lookup.
        if self.inner.ensured.lock().expect("poisoned").contains(topic) {
            return Ok(());
        }
        let partitions = self.partitions(partitions);
        let mut wanted = vec![(topic.to_owned(), partitions)];
        if !crate::topic::is_dead_letter_topic(topic) {
            wanted.push((format!("{topic}.dlq"), partitions));
        }
        self.create(&wanted).await?;
        self.inner
            .ensured
            .lock()
            .expect("poisoned")
            .insert(topic.to_owned());
        Ok(())
    }

    /// Creates `topic` alone when it is missing.
    pub async fn ensure_one(&self, topic: &str, partitions: Option<u32>) -> Result<()> {
        if self
            .inner
            .ensured_alone
            .lock()
            .expect("poisoned")
            .contains(topic)
        {
            return Ok(());
        }
        self.create(&[(topic.to_owned(), self.partitions(partitions))])
            .await?;
        self.inner
            .ensured_alone
            .lock()
            .expect("poisoned")
            .insert(topic.to_owned());
        Ok(())
    }

    /// In Go-envelope mode, creates `{topic}.response`, where requests that
    /// name no `reply_to` (the Go bus's) are answered.
    pub async fn ensure_response_topic(&self, topic: &str, partitions: Option<u32>) -> Result<()> {
        if !self.inner.config.go_envelope {
            return Ok(());
        }
        self.ensure_one(&format!("{topic}.response"), partitions)
            .await
    }

    fn partitions(&self, declared: Option<u32>) -> i32 {
        declared.map_or(self.inner.config.default_partitions, |p| {
            i32::try_from(p).unwrap_or(i32::MAX)
        })
    }

    async fn create(&self, wanted: &[(String, i32)]) -> Result<()> {
        if self.inner.config.provision_topics {
            admin::ensure(&self.inner.admin, &self.inner.config, wanted).await
        } else {
            for (name, _) in wanted {
                produce::request_auto_creation(&self.inner.producer, &self.inner.config, name)
                    .await?;
            }
            Ok(())
        }
    }

    pub async fn join(&self, spec: SubscriptionSpec, member: Arc<dyn Member>) -> Result<()> {
        self.ensure_topic(&spec.topic, spec.partitions).await?;
        let consumer = consume::GroupConsumer::start(&self.inner.config, spec, member).await?;
        self.inner
            .consumers
            .lock()
            .expect("poisoned")
            .push(consumer);
        Ok(())
    }

    /// Moves the messages now in `{topic}.dlq` back to `topic`.
    pub async fn redrive(&self, topic: &str) -> Result<crate::RedriveSummary> {
        // The topic may never have been published to by this instance.
        self.ensure_topic(topic, None).await?;
        redrive::run(
            self.inner.producer.clone(),
            self.inner.config.clone(),
            topic,
        )
        .await
    }

    /// Stops the consumer of `member`: its in-flight messages finish, their
    /// offsets are committed, and it leaves the group.
    pub async fn leave(&self, member: &Arc<dyn Member>) {
        let consumer = {
            let mut consumers = self.inner.consumers.lock().expect("poisoned");
            let at = consumers.iter().position(|c| c.serves(member));
            at.map(|at| consumers.remove(at))
        };
        if let Some(consumer) = consumer {
            consumer.stop().await;
        }
    }

    /// Tells the consumer of `member` to stop, without waiting for it.
    pub fn leave_now(&self, member: &Arc<dyn Member>) {
        let mut consumers = self.inner.consumers.lock().expect("poisoned");
        if let Some(at) = consumers.iter().position(|c| c.serves(member)) {
            consumers.remove(at).stop_now();
        }
    }

    /// Stops reading replies, without waiting.
    pub fn close_now(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(inbox) = self.inner.inbox.get() {
            inbox.stop_now();
        }
        self.inner.responses.stop_now();
    }

    /// Flushes the producer and closes the reply readers.
    pub async fn close(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let inner = Arc::clone(&self.inner);
        let flushed = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            let flushed = inner.producer.flush(inner.config.delivery_timeout);
            if let Some(inbox) = inner.inbox.get() {
                inbox.close();
            }
            inner.responses.close();
            flushed
        })
        .await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "could not flush the Kafka producer");
        }
    }
}
