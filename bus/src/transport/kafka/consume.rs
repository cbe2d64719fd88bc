//! One registration's consumer: a group member whose poll thread serves the
//! group's events, a task per assigned partition that reads the partition's
//! own librdkafka queue, offsets stored after handling.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::sync::{oneshot, Notify};

use super::config::config_error;
use super::{unavailable, KafkaConfig};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::telemetry::metrics::ConsumerLag;
use crate::transport::{Feed, Member, Position, StartFrom, SubscriptionSpec, TransportMessage};
use crate::wire::{self, Recent};

/// How long a poll waits for a message before the thread looks at its
/// stop flag again.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often offsets of handled messages are stored and committed while
/// busy; also how long the group's poll thread waits for an event.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Messages librdkafka prefetches into each partition's queue before it
/// stops fetching for that partition (`queued.min.messages`); with a queue
/// per partition the limit applies per partition. This is what bounds
/// memory while a handler is slower than its partition: nothing is read
/// from the queue until the handler is ready for it, so fetching stops.
const PREFETCH_MESSAGES: u32 = 10_000;
/// The same bound in bytes, per partition (`queued.max.messages.kbytes`).
const PREFETCH_KBYTES: u32 = 8_192;
/// How long librdkafka waits before it looks again at a partition whose
/// queue it found at the bound above (`fetch.queue.backoff.ms`). Its
/// default, one second, stalled a consumer catching up on a backlog: a
/// worker drains a full queue in tens of milliseconds, then waited out the
/// rest of the second with nothing to read. Short enough that a worker
/// handling a million messages a second does not empty a full queue
/// within it; a partition whose handler is slower costs the broker thread a
/// look every so often, nothing more.
const FULL_QUEUE_BACKOFF: Duration = Duration::from_millis(10);
/// How long an idle partition worker waits for librdkafka's wake-up before
/// it looks at its queue again anyway.
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// How long a stopping consumer waits for the group to take back its
/// partitions before it closes anyway (see [`hand_back`]).
const HAND_BACK_WAIT: Duration = Duration::from_secs(10);
/// How long each poll of that wait waits for the revocation.
const HAND_BACK_POLL: Duration = Duration::from_millis(10);
/// How long a revocation or shutdown waits for in-flight handlers before it
/// commits what has finished; later ones are redelivered to the next owner.
const REVOKE_WAIT: Duration = Duration::from_secs(30);

/// A running group member; [`GroupConsumer::stop`] ends it gracefully.
pub(super) struct GroupConsumer {
    member: Arc<dyn Member>,
    stop: Arc<AtomicBool>,
    finished: oneshot::Receiver<()>,
}

/// The group member's librdkafka consumer, shared by its poll thread and
/// the partition queues of its workers.
type GroupMember = BaseConsumer<GroupContext>;

impl GroupConsumer {
    /// Joins the group and returns once partitions are assigned with their
    /// start offsets resolved, so that anything published afterwards is seen.
    pub async fn start(
        config: &KafkaConfig,
        spec: SubscriptionSpec,
        member: Arc<dyn Member>,
    ) -> Result<Self> {
        let context = GroupContext {
            topic: spec.topic.to_string(),
            start: spec.start,
            timeout: config.connect_timeout,
            assigned: AtomicBool::new(false),
            outstanding: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            cooperative: config.cooperative(),
            workers: Mutex::new(HashMap::new()),
            lag: ConsumerLag::new(&spec.topic, &spec.group),
            reading: Reading {
                topic: spec.topic.clone(),
                go_envelope: config.go_envelope,
                header_limits: config.header_limits,
                member: Arc::clone(&member),
                runtime: tokio::runtime::Handle::current(),
            },
            consumer: OnceLock::new(),
        };
        let consumer: GroupMember = config
            .client_config(&group_settings(config, &spec.group))
            .create_with_context(context)
            .map_err(config_error)?;
        super::config::refresh_tokens_in_background(config, consumer.client())?;
        let consumer = Arc::new(consumer);
        // Before the first poll, so before any rebalance needs it.
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        consumer
            .subscribe(&[&spec.topic])
            .map_err(|e| unavailable(format!("cannot subscribe to `{}`", spec.topic), e))?;

        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (finished_tx, finished) = oneshot::channel();
        let stopping = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("topicbus-{}", spec.group))
            .spawn(move || {
                serve_group(consumer, &stopping, ready_tx);
                let _ = finished_tx.send(());
            })
            .map_err(|e| Error::Unavailable {
                message: format!("cannot start a consumer thread: {e}"),
                source: Some(Box::new(e)),
            })?;

        let limit = config.join_timeout;
        match tokio::time::timeout(limit, ready_rx).await {
            Ok(Ok(())) => Ok(Self {
                member,
                stop,
                finished,
            }),
            _ => {
                stop.store(true, Ordering::Release);
                Err(Error::Unavailable {
                    message: format!(
                        "consumer group `{}` got no partitions of `{}` within {limit:?} (brokers `{}`)",
                        spec.group, spec.topic, config.brokers
                    ),
                    source: None,
                })
            }
        }
    }

    pub fn serves(&self, member: &Arc<dyn Member>) -> bool {
        Arc::ptr_eq(&self.member, member)
    }

    /// Like [`GroupConsumer::stop`], without waiting for it to finish.
    pub fn stop_now(self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Stops fetching, lets in-flight handlers finish, commits, leaves.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.finished.await;
    }
}

/// The librdkafka settings of a group member (the user's properties
/// override them).
fn group_settings(config: &KafkaConfig, group: &str) -> [(&'static str, String); 12] {
    [
        ("group.id", group.to_owned()),
        ("enable.auto.commit", "true".to_owned()),
        ("auto.commit.interval.ms", "1000".to_owned()),
        ("enable.auto.offset.store", "false".to_owned()),
        // Start offsets are resolved explicitly (see `resolve_start`);
        // this only applies to a committed offset that fell out of
        // retention, where reading on from the oldest loses nothing.
        ("auto.offset.reset", "earliest".to_owned()),
        ("session.timeout.ms", "10000".to_owned()),
        ("heartbeat.interval.ms", "1000".to_owned()),
        ("enable.partition.eof", "false".to_owned()),
        ("queued.min.messages", PREFETCH_MESSAGES.to_string()),
        ("queued.max.messages.kbytes", PREFETCH_KBYTES.to_string()),
        (
            "fetch.queue.backoff.ms",
            FULL_QUEUE_BACKOFF.as_millis().to_string(),
        ),
        (
            "statistics.interval.ms",
            config.statistics_interval.as_millis().to_string(),
        ),
    ]
}

/// The group's poll thread: serves librdkafka's events for the group
/// (rebalances, which start and stop the partition workers; statistics;
/// errors), and stores and commits the offsets the workers finished. The
/// messages themselves are read by the workers, each from its partition's
/// own queue, so that reading (librdkafka's header parsing, then ours) runs
/// on as many threads as partitions are busy.
fn serve_group(consumer: Arc<GroupMember>, stop: &AtomicBool, ready: oneshot::Sender<()>) {
    let context = consumer.context();
    let mut ready = Some(ready);
    let mut uncommitted = false;
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Acquire) {
        // Committing what finished soon (asynchronously, at most every
        // COMMIT_INTERVAL) rather than on the auto-commit timer keeps the
        // redelivery window small when a rebalance's own commit is refused.
        uncommitted |= context.store_finished(&consumer);
        if uncommitted && last_commit.elapsed() >= COMMIT_INTERVAL {
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Async) {
                tracing::debug!(%error, "commit after handling failed");
            }
            uncommitted = false;
            last_commit = Instant::now();
        }
        serve_events(&consumer, COMMIT_INTERVAL);
        if context.assigned.load(Ordering::Acquire) {
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        }
    }
    context.revoke_all(&consumer);
    consumer.unsubscribe();
    hand_back(&consumer);
    context.closing.store(true, Ordering::Release);
    // Dropping the last handle closes the consumer: it leaves the group. The
    // workers' partition queues were dropped by `revoke_all`.
    drop(consumer);
}

/// Serves the revocation that unsubscribing causes (or one the group asked
/// for just before), so that the consumer's close finds none waiting.
///
/// librdkafka 2.12's close resets the group's join state when a revocation
/// is still waiting for the application, then finishes without it and stops
/// serving the group's requests: a commit or `unassign` made from that
/// revocation's callback, which the close itself delivers, then waits
/// forever. Served here, while the group still waits for it, it completes.
fn hand_back(consumer: &GroupMember) {
    let context = consumer.context();
    let deadline = Instant::now() + HAND_BACK_WAIT;
    loop {
        serve_events(consumer, HAND_BACK_POLL);
        if !context.outstanding.load(Ordering::Acquire) {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(topic = %context.topic, "the group did not take back its partitions within {HAND_BACK_WAIT:?}; closing anyway");
            return;
        }
    }
}

/// Polls the group's queue for up to `wait`: serves its events (rebalances,
/// statistics) and logs errors. Every partition is read from its own queue
/// from before it is assigned (see `GroupContext::start_workers`), so no
/// message should arrive here; one that does is logged and left unstored,
/// to be read again by the partition's next owner.
fn serve_events(consumer: &GroupMember, wait: Duration) {
    match consumer.poll(wait) {
        Some(Ok(message)) => tracing::error!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            "a message reached the group's queue instead of its partition's; not handled"
        ),
        Some(Err(error)) => {
            tracing::warn!(%error, topic = %consumer.context().topic, "consumer")
        }
        None => {}
    }
}

/// Turns fetched records into messages, reusing what repeats between them.
pub(super) struct Reader {
    /// The subscribed topic, shared by every message read from it.
    topic: Cow<'static, str>,
    recent: Recent,
    go_envelope: bool,
}

impl Reader {
    pub fn new(
        topic: Cow<'static, str>,
        go_envelope: bool,
        header_limits: crate::wire::HeaderLimits,
    ) -> Self {
        Self {
            topic,
            recent: Recent::new(Arc::from("unknown"), header_limits),
            go_envelope,
        }
    }

    /// A fetched Kafka message in the form the dispatcher takes.
    pub fn read(&mut self, message: &BorrowedMessage<'_>) -> Message {
        let own_topic = &self.topic;
        let topic = || match message.topic() {
            same if same == own_topic => own_topic.clone(),
            other => Cow::Owned(other.to_owned()),
        };
        let headers = message.headers();
        let key = || message.key().map(<[u8]>::to_vec);
        // The time of a record without `ce_time` (the lean wire profile's).
        let stamped = message
            .timestamp()
            .to_millis()
            .and_then(|ms| u64::try_from(ms).ok())
            .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
        // rdkafka's header reader unwraps the name as UTF-8 and panics on
        // any other bytes, which a foreign producer can send: that must not
        // end the task or thread that reads. Such a record is read again
        // header by header without the unreadable ones and dead-lettered as
        // malformed.
        let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
            wire::read_stamped_meta(
                topic(),
                key(),
                headers
                    .iter()
                    .flat_map(|headers| headers.iter())
                    .map(|header| (header.key, header.value.unwrap_or_default())),
                &mut self.recent,
                stamped,
            )
        }));
        let mut meta = match read {
            Ok(meta) => meta,
            Err(_) => {
                let readable: Vec<(&str, &[u8])> = headers
                    .iter()
                    .flat_map(|headers| {
                        (0..headers.count()).filter_map(|at| {
                            std::panic::catch_unwind(AssertUnwindSafe(|| headers.try_get(at)))
                                .ok()
                                .flatten()
                                .map(|header| (header.key, header.value.unwrap_or_default()))
                        })
                    })
                    .collect();
                let mut meta =
                    wire::read_stamped_meta(topic(), key(), readable, &mut self.recent, stamped);
                let problem = "a header name is not UTF-8";
                meta.malformed = Some(match meta.malformed.take() {
                    Some(other) => Arc::from(format!("{problem}; {other}")),
                    None => Arc::from(problem),
                });
                meta
            }
        };
        let value = message.payload().unwrap_or_default();
        let unwrapped = if self.go_envelope {
            super::envelope::unwrap(&mut meta, value).map(Bytes::from)
        } else {
            None
        };
        Message::bytes(
            meta,
            unwrapped.unwrap_or_else(|| Bytes::copy_from_slice(value)),
        )
    }
}

/// The consumer's callbacks and the partitions' workers, shared by the poll
/// thread and the rebalance callback (which runs inside `poll`).
struct GroupContext {
    topic: String,
    start: StartFrom,
    timeout: Duration,
    assigned: AtomicBool,
    /// Whether librdkafka holds an assignment it will revoke through this
    /// context: set by an assignment, cleared by the revocation that gives
    /// it back (under the cooperative protocol, the one leaving nothing).
    outstanding: AtomicBool,
    /// Set while the consumer closes (see [`serve_group`]): rebalances are
    /// then only acknowledged.
    closing: AtomicBool,
    /// The group's rebalance protocol is cooperative (from the configured
    /// assignors, so that no callback has to ask librdkafka for it).
    cooperative: bool,
    workers: Mutex<HashMap<i32, Worker>>,
    lag: ConsumerLag,
    reading: Reading,
    /// The consumer itself, whose partition queues the rebalance callback
    /// splits off. Weak: the consumer owns this context.
    consumer: OnceLock<Weak<GroupMember>>,
}

/// What every partition worker of a group needs.
struct Reading {
    topic: Cow<'static, str>,
    go_envelope: bool,
    header_limits: crate::wire::HeaderLimits,
    member: Arc<dyn Member>,
    runtime: tokio::runtime::Handle,
}

/// The poll thread's handle on a partition's worker task.
struct Worker {
    shared: Arc<WorkerState>,
    /// The last offset stored for the partition.
    stored: i64,
    /// Disconnects when the worker task has ended.
    done: std_mpsc::Receiver<()>,
}

/// What a partition's worker and the poll thread share.
struct WorkerState {
    /// The partition's own librdkafka queue; taken away when the partition
    /// is revoked, even from a worker whose handler outlived the wait.
    queue: Mutex<Option<PartitionQueue<GroupContext>>>,
    /// Notified by librdkafka when the queue gets a message while empty,
    /// and when the partition is revoked.
    arrived: Notify,
    /// Set when the partition is revoked or the consumer stops: the worker
    /// ends after its in-flight message, leaving the rest unstored.
    closed: AtomicBool,
    /// The offset of the last message handled (or dead-lettered), -1 before
    /// the first. Messages are handled in order, so all before it are too.
    handled: AtomicI64,
}

impl Worker {
    /// Starts the worker of a partition read from `queue`.
    fn spawn(reading: &Reading, partition: i32, mut queue: PartitionQueue<GroupContext>) -> Self {
        let shared = Arc::new(WorkerState {
            queue: Mutex::new(None),
            arrived: Notify::new(),
            closed: AtomicBool::new(false),
            handled: AtomicI64::new(-1),
        });
        let wake = Arc::downgrade(&shared);
        // Runs on a librdkafka thread, with the queue locked: it only wakes.
        queue.set_nonempty_callback(move || {
            if let Some(shared) = wake.upgrade() {
                shared.arrived.notify_one();
            }
        });
        *shared.lock_queue() = Some(queue);
        let (done_tx, done) = std_mpsc::channel::<()>();
        let mut reader = Reader::new(
            reading.topic.clone(),
            reading.go_envelope,
            reading.header_limits,
        );
        let member = Arc::clone(&reading.member);
        let state = Arc::clone(&shared);
        reading.runtime.spawn(async move {
            let _done = done_tx;
            loop {
                // A run that ended on an exhausted cooperative budget (see
                // `WorkerFeed::next`) yields here before the next one.
                tokio::task::coop::consume_budget().await;
                if state.closed.load(Ordering::Acquire) {
                    break;
                }
                let Some((offset, message)) = state.next(&mut reader) else {
                    // librdkafka notifies when the empty queue gets a
                    // message; a permit left by `notify_one` makes this
                    // return at once if one came after the poll above.
                    // The notification is edge-triggered, so the worker
                    // looks again after IDLE_RECHECK anyway: were one ever
                    // missed, the partition would stall until a rebalance.
                    let _ = tokio::time::timeout(IDLE_RECHECK, state.arrived.notified()).await;
                    continue;
                };
                let mut feed = WorkerFeed {
                    state: &state,
                    reader: &mut reader,
                    partition,
                    offset,
                };
                if Arc::clone(&member)
                    .deliver_run(message, &mut feed)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Self {
            shared,
            stored: -1,
            done,
        }
    }
}

impl WorkerState {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Option<PartitionQueue<GroupContext>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partition's next message, with its offset, if one is there now.
    fn next(&self, reader: &mut Reader) -> Option<(i64, Message)> {
        let queue = self.lock_queue();
        loop {
            match queue.as_ref()?.poll(Duration::ZERO)? {
                Ok(record) => {
                    tracing::trace!(
                        topic = record.topic(),
                        partition = record.partition(),
                        offset = record.offset(),
                        "fetched"
                    );
                    return Some((record.offset(), reader.read(&record)));
                }
                Err(error) => tracing::warn!(%error, "consumer"),
            }
        }
    }

    /// Ends the worker after its in-flight message.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.arrived.notify_one();
    }
}

/// The [`Feed`] of one run of a partition worker: the partition's messages,
/// one at a time, until its queue is empty or the partition revoked.
struct WorkerFeed<'a> {
    state: &'a WorkerState,
    reader: &'a mut Reader,
    partition: i32,
    /// The offset of the message taken last.
    offset: i64,
}

impl Feed for WorkerFeed<'_> {
    fn next(&mut self, cx: &mut std::task::Context<'_>) -> Option<TransportMessage> {
        // Closed: the run ends after its in-flight message.
        if self.state.closed.load(Ordering::Acquire) {
            return None;
        }
        // Spends the task's cooperative budget, so that a long run still
        // yields to other tasks.
        let std::task::Poll::Ready(coop) = tokio::task::coop::poll_proceed(cx) else {
            return None;
        };
        let (offset, message) = self.state.next(self.reader)?;
        coop.made_progress();
        self.offset = offset;
        Some(TransportMessage(message))
    }

    fn handled(&mut self) {
        self.state.handled.store(self.offset, Ordering::Release);
    }

    fn position(&self) -> Position {
        Position {
            partition: u32::try_from(self.partition).unwrap_or_default(),
            offset: Some(self.offset),
        }
    }
}

impl ClientContext for GroupContext {
    /// librdkafka's statistics (every `statistics.interval.ms`, on the poll
    /// thread): the consumer lag of each partition of the topic.
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (partition, stats) in &topic.partitions {
                self.lag
                    .set(*partition, stats.consumer_lag, stats.fetchq_cnt);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    /// Under the eager protocol (librdkafka's default assignors) every
    /// rebalance revokes and reassigns everything; under the cooperative one
    /// (`partition.assignment.strategy=cooperative-sticky`) `partitions` is
    /// only what is added or taken away, and must be applied incrementally.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = self.cooperative;
        if self.closing.load(Ordering::Acquire) {
            // Inside the consumer's close, after `hand_back`: the workers are
            // gone and their offsets committed; only acknowledge, as
            // librdkafka requires (a terminating group treats an assignment
            // as a revocation).
            let acknowledged = match err {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                    self.take(consumer, partitions)
                }
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                    self.give_up(consumer, partitions)
                }
                _ => consumer.unassign(),
            };
            if let Err(error) = acknowledged {
                tracing::debug!(%error, topic = %self.topic, "rebalance while closing");
            }
            return;
        }
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let pinned = self.resolve_start(consumer, partitions);
                tracing::debug!(topic = %self.topic, assignment = ?partitions, cooperative, "assigned");
                // Before the assignment, so that no message of these
                // partitions is fetched into the group's queue.
                let unread = self.start_workers(partitions);
                let assigned = self.take(consumer, partitions);
                if let Err(error) = assigned {
                    tracing::error!(%error, topic = %self.topic, "cannot take the assigned partitions");
                }
                if pinned.count() > 0 {
                    if let Err(error) = consumer.commit(&pinned, CommitMode::Sync) {
                        tracing::warn!(%error, topic = %self.topic, "cannot commit the group's start offsets");
                    }
                }
                // A partition paused before (see below) is read again once it
                // has a worker.
                if let Err(error) = consumer.resume(partitions) {
                    tracing::warn!(%error, topic = %self.topic, "cannot resume assigned partitions");
                }
                if unread.count() > 0 {
                    // Not read, so not stored: the group's next owner of
                    // these partitions reads them from the committed offset.
                    tracing::error!(topic = %self.topic, partitions = ?unread, "no queue of their own for these partitions; paused until the next rebalance");
                    if let Err(error) = consumer.pause(&unread) {
                        tracing::error!(%error, topic = %self.topic, "cannot pause the unread partitions");
                    }
                }
                self.assigned.store(true, Ordering::Release);
                self.outstanding.store(
                    !cooperative || self.holds_partitions(consumer),
                    Ordering::Release,
                );
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::debug!(topic = %self.topic, revoked = ?partitions, cooperative, "revoked");
                self.revoke(consumer, cooperative.then_some(&*partitions));
                let given_up = self.give_up(consumer, partitions);
                if let Err(error) = given_up {
                    tracing::error!(%error, topic = %self.topic, "cannot give up partitions");
                }
                self.outstanding.store(
                    cooperative && self.holds_partitions(consumer),
                    Ordering::Release,
                );
            }
            other => {
                tracing::error!(error = ?other, topic = %self.topic, "rebalance failed");
                self.revoke_all(consumer);
                let _ = consumer.unassign();
                self.outstanding.store(false, Ordering::Release);
            }
        }
    }
}

impl GroupContext {
    /// Hands librdkafka the assigned `partitions`, as the group's protocol
    /// requires: added to what is held (cooperative), or as the whole
    /// assignment (eager).
    fn take(
        &self,
        consumer: &GroupMember,
        partitions: &TopicPartitionList,
    ) -> rdkafka::error::KafkaResult<()> {
        if self.cooperative {
            consumer.incremental_assign(partitions)
        } else {
            consumer.assign(partitions)
        }
    }

    /// Gives the revoked `partitions` back to librdkafka: only those
    /// (cooperative), or the whole assignment (eager).
    fn give_up(
        &self,
        consumer: &GroupMember,
        partitions: &TopicPartitionList,
    ) -> rdkafka::error::KafkaResult<()> {
        if self.cooperative {
            consumer.incremental_unassign(partitions)
        } else {
            consumer.unassign()
        }
    }

    /// Whether librdkafka's assignment of this consumer has partitions
    /// (asked only under the cooperative protocol, where a revocation may
    /// leave some).
    fn holds_partitions(&self, consumer: &GroupMember) -> bool {
        consumer.assignment().map_or(true, |held| held.count() > 0)
    }

    /// Sets an explicit start offset on each partition without a committed
    /// one, so reading starts exactly where `start` says, not wherever the
    /// log ends when the first fetch happens to run. Returns those offsets:
    /// they are committed right after the assignment, which pins the group's
    /// start, so a later rebalance never moves a partition that has not
    /// committed yet to the end of the log (that would skip its messages).
    fn resolve_start(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &mut TopicPartitionList,
    ) -> TopicPartitionList {
        let mut pinned = TopicPartitionList::new();
        let committed = match consumer.committed_offsets(partitions.clone(), self.timeout) {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(%error, topic = %self.topic, "cannot read committed offsets");
                return pinned;
            }
        };
        let by_time = match self.start {
            StartFrom::Timestamp(at) => {
                let millis = at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                let mut query = TopicPartitionList::new();
                for elem in partitions.elements() {
                    let _ = query.add_partition_offset(
                        elem.topic(),
                        elem.partition(),
                        Offset::Offset(millis),
                    );
                }
                consumer.offsets_for_times(query, self.timeout).ok()
            }
            _ => None,
        };
        for elem in committed.elements() {
            let (topic, partition) = (elem.topic(), elem.partition());
            if let Offset::Offset(at) = elem.offset() {
                let _ = partitions.set_partition_offset(topic, partition, Offset::Offset(at));
                continue;
            }
            let (low, high) = match consumer.fetch_watermarks(topic, partition, self.timeout) {
                Ok(marks) => marks,
                Err(error) => {
                    // Left to `auto.offset.reset` (earliest): nothing is skipped.
                    tracing::warn!(%error, topic, partition, "cannot read the partition's offsets");
                    continue;
                }
            };
            let start = match &self.start {
                StartFrom::Latest => high,
                StartFrom::Earliest => low,
                StartFrom::Offsets(offsets) => offsets
                    .iter()
                    .find(|(p, _)| i64::from(*p) == i64::from(partition))
                    .map_or(high, |(_, at)| {
                        i64::try_from(*at).unwrap_or(i64::MAX).clamp(low, high)
                    }),
                StartFrom::Timestamp(_) => by_time
                    .as_ref()
                    .and_then(|t| t.find_partition(topic, partition))
                    .and_then(|e| match e.offset() {
                        Offset::Offset(at) => Some(at),
                        _ => None,
                    })
                    .unwrap_or(high),
            };
            let _ = partitions.set_partition_offset(topic, partition, Offset::Offset(start));
            let _ = pinned.add_partition_offset(topic, partition, Offset::Offset(start));
        }
        pinned
    }

    /// Splits each partition of `partitions` that has no worker yet off the
    /// group's queue and starts its worker. Returns the partitions that
    /// could not be split (librdkafka found no such partition to read).
    fn start_workers(&self, partitions: &TopicPartitionList) -> TopicPartitionList {
        let mut unread = TopicPartitionList::new();
        let consumer = self.consumer.get().and_then(Weak::upgrade);
        let mut workers = self.lock_workers();
        for elem in partitions.elements() {
            let partition = elem.partition();
            if workers.contains_key(&partition) {
                continue;
            }
            match consumer
                .as_ref()
                .and_then(|c| c.split_partition_queue(&self.topic, partition))
            {
                Some(queue) => {
                    workers.insert(partition, Worker::spawn(&self.reading, partition, queue));
                }
                None => {
                    unread.add_partition(&self.topic, partition);
                }
            }
        }
        unread
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every partition worker after its in-flight message, stores the
    /// offsets of what finished and commits them.
    fn revoke_all(&self, consumer: &GroupMember) {
        self.revoke(consumer, None);
    }

    /// Like [`GroupContext::revoke_all`], for the partitions of `which` only
    /// (a cooperative rebalance takes some and leaves the rest running).
    fn revoke(&self, consumer: &GroupMember, which: Option<&TopicPartitionList>) {
        let workers: Vec<(i32, Worker)> = {
            let mut workers = self.lock_workers();
            let taken: Vec<i32> = workers
                .keys()
                .copied()
                .filter(|p| which.is_none_or(|list| list.find_partition(&self.topic, *p).is_some()))
                .collect();
            taken
                .iter()
                .filter_map(|p| Some((*p, workers.remove(p)?)))
                .collect()
        };
        for (_, worker) in &workers {
            worker.shared.close();
        }
        let deadline = Instant::now() + REVOKE_WAIT;
        for (partition, mut worker) in workers {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(std_mpsc::RecvTimeoutError::Timeout) = worker.done.recv_timeout(left) {
                tracing::warn!(topic = %self.topic, "a handler outlived the revocation; its message will be redelivered");
            }
            // The queue goes now, also from a worker still in its handler:
            // it holds the consumer, which must close when the thread ends.
            drop(worker.shared.lock_queue().take());
            self.store(consumer, partition, &mut worker);
        }
        self.store_finished(consumer);
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            // Nothing was handled since the last commit.
            Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(%error, topic = %self.topic, "commit on revocation failed")
            }
        }
        if which.is_none() {
            self.assigned.store(false, Ordering::Release);
        }
    }

    /// Stores the offsets of the messages handled since the last call.
    /// Returns whether there was anything to store.
    fn store_finished(&self, consumer: &GroupMember) -> bool {
        let mut workers = self.lock_workers();
        let mut stored = false;
        for (partition, worker) in workers.iter_mut() {
            stored |= self.store(consumer, *partition, worker);
        }
        stored
    }

    /// Stores the offset of the last message `worker` finished, if it moved
    /// since the last store: one store per partition, however many finished.
    fn store(&self, consumer: &GroupMember, partition: i32, worker: &mut Worker) -> bool {
        let handled = worker.shared.handled.load(Ordering::Acquire);
        if handled <= worker.stored {
            return false;
        }
        worker.stored = handled;
        // librdkafka commits the stored offset + 1: the next to read.
        match consumer.store_offset(&self.topic, partition, handled) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, partition, "offset not stored (partition revoked)");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka stops fetching a partition whose queue holds
    /// `PREFETCH_MESSAGES` and looks at it again after
    /// `fetch.queue.backoff.ms`. A worker that empties the queue before then
    /// waits for the rest of it: with librdkafka's default of one second,
    /// that was the one-second stall of a consumer catching up on a backlog
    /// (benches/kafka_backlog.rs shows it). The backoff must stay below the
    /// time a worker needs to empty a full queue at a million messages a
    /// second.
    #[test]
    fn a_full_partition_queue_is_fetched_again_before_a_worker_can_empty_it() {
        let config = KafkaConfig::new("127.0.0.1:9092");
        let native = config
            .client_config(&group_settings(&config, "group"))
            .create_native_config()
            .expect("valid settings");
        let backoff_ms: u64 = native
            .get("fetch.queue.backoff.ms")
            .expect("a librdkafka property")
            .parse()
            .expect("a number");
        let drained_ms = u64::from(PREFETCH_MESSAGES) / 1_000;
        assert!(
            backoff_ms <= drained_ms,
            "fetch.queue.backoff.ms is {backoff_ms} ms; a full queue of {PREFETCH_MESSAGES} empties in {drained_ms} ms at 1M messages/s"
        );
    }
}
