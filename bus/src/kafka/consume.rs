//! One registration's consumer: a group member polled on its own thread,
//! a task per assigned partition, offsets stored after handling.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::sync::{oneshot, Notify};

use super::produce::config_error;
use super::{unavailable, KafkaConfig};
use crate::dispatch::{Feed, Member};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::telemetry::metrics::ConsumerLag;
use crate::transport::{StartFrom, SubscriptionSpec};
use crate::wire::{self, Recent};

/// How long a poll waits for a message before the thread looks at its
/// stop flag, queues and stored offsets again.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often offsets of handled messages are committed while busy.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Messages queued per partition before the partition is paused.
const PARTITION_QUEUE: usize = 256;
/// At most this many messages are taken from librdkafka before they are
/// handed to the partition workers, so a worker is woken once per batch
/// rather than once per message.
const POLL_BATCH: usize = 64;
/// How long the poll thread waits for a full partition queue to drain to
/// half before it pauses the partition instead. A pause discards what
/// librdkafka prefetched for the partition and fetches it again on resume,
/// which costs far more than this wait when the handler keeps up; a handler
/// slower than that (under ~25 000 messages a second) is paused after it.
const ROOM_WAIT: Duration = Duration::from_millis(5);
/// How long a revocation or shutdown waits for in-flight handlers before it
/// commits what has finished; later ones are redelivered to the next owner.
const REVOKE_WAIT: Duration = Duration::from_secs(30);

/// A running group member; [`GroupConsumer::stop`] ends it gracefully.
pub(super) struct GroupConsumer {
    member: Arc<dyn Member>,
    stop: Arc<AtomicBool>,
    finished: oneshot::Receiver<()>,
}

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
            partitions: Mutex::new(HashMap::new()),
            lag: ConsumerLag::new(&spec.topic, &spec.group),
        };
        let consumer: BaseConsumer<GroupContext> = config
            .client_config(&[
                ("group.id", spec.group.to_string()),
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
                (
                    "statistics.interval.ms",
                    config.statistics_interval.as_millis().to_string(),
                ),
            ])
            .create_with_context(context)
            .map_err(config_error)?;
        consumer
            .subscribe(&[&spec.topic])
            .map_err(|e| unavailable(format!("cannot subscribe to `{}`", spec.topic), e))?;

        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (finished_tx, finished) = oneshot::channel();
        let reader = Reader::new(spec.topic.clone(), config.go_envelope);
        let member_of_poller = Arc::clone(&member);
        let runtime = tokio::runtime::Handle::current();
        let stopping = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("topicbus-{}", spec.group))
            .spawn(move || {
                let poller = Poller {
                    consumer,
                    member: member_of_poller,
                    runtime,
                    reader,
                    thread: std::thread::current(),
                };
                poller.run(&stopping, ready_tx);
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

/// What the poll thread owns.
struct Poller {
    consumer: BaseConsumer<GroupContext>,
    member: Arc<dyn Member>,
    runtime: tokio::runtime::Handle,
    reader: Reader,
    /// The poll thread itself, unparked by a worker it waits on.
    thread: Thread,
}

impl Poller {
    fn run(self, stop: &AtomicBool, ready: oneshot::Sender<()>) {
        let Poller {
            consumer,
            member,
            runtime,
            mut reader,
            thread,
        } = self;
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
            let mut wait = POLL_INTERVAL;
            for _ in 0..POLL_BATCH {
                match consumer.poll(wait) {
                    Some(Ok(message)) => {
                        let partition = message.partition();
                        tracing::trace!(
                            topic = message.topic(),
                            partition,
                            offset = message.offset(),
                            "fetched"
                        );
                        let item = (message.offset(), reader.read(&message));
                        context.take(partition, item, || {
                            Worker::spawn(&runtime, Arc::clone(&member), &thread)
                        });
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, topic = %context.topic, "consumer")
                    }
                    None => break,
                }
                // The rest of a batch is what librdkafka already holds.
                wait = Duration::ZERO;
            }
            context.hand_over(&consumer);
            if context.assigned.load(Ordering::Acquire) {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
        }
        context.revoke_all(&consumer);
        consumer.unsubscribe();
        // Dropping the consumer closes it: it leaves the group.
        drop(consumer);
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
    pub fn new(topic: Cow<'static, str>, go_envelope: bool) -> Self {
        Self {
            topic,
            recent: Recent::new(Arc::from("unknown")),
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
        // rdkafka's header reader unwraps the name as UTF-8 and panics on
        // any other bytes, which a foreign producer can send: that must not
        // end the poll thread. Such a record is read again header by header
        // without the unreadable ones and dead-lettered as malformed.
        let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
            wire::read_meta(
                topic(),
                key(),
                headers
                    .iter()
                    .flat_map(|headers| headers.iter())
                    .map(|header| (header.key, header.value.unwrap_or_default())),
                &mut self.recent,
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
                let mut meta = wire::read_meta(topic(), key(), readable, &mut self.recent);
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

/// The consumer's callbacks and the partitions' state, shared by the poll
/// thread and the rebalance callback (which runs inside `poll`).
struct GroupContext {
    topic: String,
    start: StartFrom,
    timeout: Duration,
    assigned: AtomicBool,
    partitions: Mutex<HashMap<i32, PartitionState>>,
    lag: ConsumerLag,
}

#[derive(Default)]
struct PartitionState {
    worker: Option<Worker>,
    /// Messages fetched but not yet in the worker's queue, in order.
    stash: VecDeque<(i64, Message)>,
    paused: bool,
}

/// The poll thread's handle on a partition's worker task.
struct Worker {
    queue: Arc<Queue>,
    /// The last offset stored for the partition.
    stored: i64,
    /// Disconnects when the worker task has ended.
    done: std_mpsc::Receiver<()>,
}

/// A partition's messages on their way from the poll thread to its worker,
/// and what the worker has finished.
struct Queue {
    items: Mutex<VecDeque<(i64, Message)>>,
    /// Wakes the worker when messages arrive or the queue closes.
    arrived: Notify,
    /// Set when the partition is revoked or the consumer stops: the worker
    /// ends after its in-flight message, leaving the rest unstored.
    closed: AtomicBool,
    /// The offset of the last message handled (or dead-lettered), -1 before
    /// the first. Messages are handled in order, so all before it are too.
    handled: AtomicI64,
    /// Set while the poll thread waits for this queue to drain to half.
    waited_on: AtomicBool,
    poller: Thread,
}

impl Worker {
    fn spawn(runtime: &tokio::runtime::Handle, member: Arc<dyn Member>, poller: &Thread) -> Self {
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::with_capacity(PARTITION_QUEUE)),
            arrived: Notify::new(),
            closed: AtomicBool::new(false),
            handled: AtomicI64::new(-1),
            waited_on: AtomicBool::new(false),
            poller: poller.clone(),
        });
        let (done_tx, done) = std_mpsc::channel::<()>();
        let shared = Arc::clone(&queue);
        runtime.spawn(async move {
            let _done = done_tx;
            let queue = shared;
            loop {
                // A run that ended on an exhausted cooperative budget (see
                // `WorkerFeed::next`) yields here before the next one.
                tokio::task::coop::consume_budget().await;
                if queue.closed.load(Ordering::Acquire) {
                    break;
                }
                let next = queue.next();
                let Some((offset, message)) = next else {
                    // A permit left by `notify_one` makes this return at once
                    // if messages (or the close) came after the check above.
                    queue.arrived.notified().await;
                    continue;
                };
                let mut feed = WorkerFeed {
                    queue: &queue,
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
            queue,
            stored: -1,
            done,
        }
    }
}

/// The [`Feed`] of one run of a partition worker: the partition's queued
/// messages, one at a time, until the queue is empty or closed.
struct WorkerFeed<'a> {
    queue: &'a Queue,
    /// The offset of the message taken last.
    offset: i64,
}

impl Feed for WorkerFeed<'_> {
    fn next(&mut self, cx: &mut std::task::Context<'_>) -> Option<Message> {
        // Closed: the run ends after its in-flight message.
        if self.queue.closed.load(Ordering::Acquire) {
            return None;
        }
        // Spends the task's cooperative budget, so that a long run still
        // yields to other tasks.
        let std::task::Poll::Ready(coop) = tokio::task::coop::poll_proceed(cx) else {
            return None;
        };
        let (offset, message) = self.queue.next()?;
        coop.made_progress();
        self.offset = offset;
        Some(message)
    }

    fn handled(&mut self) {
        self.queue.handled.store(self.offset, Ordering::Release);
    }
}

impl Queue {
    /// The next message for the worker; wakes the poll thread when it waits
    /// for this queue and the queue is now down to half.
    fn next(&self) -> Option<(i64, Message)> {
        let (next, left) = {
            let mut items = self.items.lock().expect("poisoned");
            let next = items.pop_front();
            (next, items.len())
        };
        // SeqCst with the poll thread's: either it sees the shorter queue
        // or this sees that it waits.
        if left <= PARTITION_QUEUE / 2 && self.waited_on.swap(false, Ordering::SeqCst) {
            self.poller.unpark();
        }
        next
    }

    /// Moves messages from `stash` into the queue while it has room; wakes
    /// the worker once if any moved.
    fn fill(&self, stash: &mut VecDeque<(i64, Message)>) {
        let moved = {
            let mut items = self.items.lock().expect("poisoned");
            let room = PARTITION_QUEUE.saturating_sub(items.len());
            let moved = room.min(stash.len());
            items.extend(stash.drain(..moved));
            moved
        };
        if moved > 0 {
            self.arrived.notify_one();
        }
    }

    fn len(&self) -> usize {
        self.items.lock().expect("poisoned").len()
    }

    /// Waits until the queue is down to half, at most until `deadline`.
    /// Returns whether it is.
    fn drain_to_half(&self, deadline: Instant) -> bool {
        loop {
            self.waited_on.store(true, Ordering::SeqCst);
            if self.len() <= PARTITION_QUEUE / 2 {
                self.waited_on.store(false, Ordering::SeqCst);
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.waited_on.store(false, Ordering::SeqCst);
                return false;
            }
            std::thread::park_timeout(left);
        }
    }

    /// Ends the worker after its in-flight message.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.arrived.notify_one();
    }
}

impl ClientContext for GroupContext {
    /// librdkafka's statistics (every `statistics.interval.ms`, on the poll
    /// thread): the consumer lag of each partition of the topic.
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (partition, stats) in &topic.partitions {
                self.lag.set(*partition, stats.consumer_lag);
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
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let pinned = self.resolve_start(consumer, partitions);
                tracing::debug!(topic = %self.topic, assignment = ?partitions, cooperative, "assigned");
                let assigned = if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                };
                if let Err(error) = assigned {
                    tracing::error!(%error, topic = %self.topic, "cannot take the assigned partitions");
                }
                if pinned.count() > 0 {
                    if let Err(error) = consumer.commit(&pinned, CommitMode::Sync) {
                        tracing::warn!(%error, topic = %self.topic, "cannot commit the group's start offsets");
                    }
                }
                // A partition paused for backpressure before a rebalance must
                // not stay paused: its queue state was dropped on revocation.
                if let Err(error) = consumer.resume(partitions) {
                    tracing::warn!(%error, topic = %self.topic, "cannot resume assigned partitions");
                }
                self.assigned.store(true, Ordering::Release);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::debug!(topic = %self.topic, revoked = ?partitions, cooperative, "revoked");
                let given_up = if cooperative {
                    self.revoke(consumer, Some(partitions));
                    consumer.incremental_unassign(partitions)
                } else {
                    self.revoke_all(consumer);
                    consumer.unassign()
                };
                if let Err(error) = given_up {
                    tracing::error!(%error, topic = %self.topic, "cannot give up partitions");
                }
            }
            other => {
                tracing::error!(error = ?other, topic = %self.topic, "rebalance failed");
                self.revoke_all(consumer);
                let _ = consumer.unassign();
            }
        }
    }
}

impl GroupContext {
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

    /// Adds a fetched message to its partition's stash, to be handed to the
    /// partition's worker (started by `spawn` if there is none) after this
    /// batch.
    fn take(&self, partition: i32, item: (i64, Message), spawn: impl FnOnce() -> Worker) {
        let mut partitions = self.partitions.lock().expect("poisoned");
        let state = partitions.entry(partition).or_default();
        state.worker.get_or_insert_with(spawn);
        state.stash.push_back(item);
    }

    /// Stops every partition worker after its in-flight message, stores the
    /// offsets of what finished and commits them.
    fn revoke_all(&self, consumer: &BaseConsumer<Self>) {
        self.revoke(consumer, None);
    }

    /// Like [`GroupContext::revoke_all`], for the partitions of `which` only
    /// (a cooperative rebalance takes some and leaves the rest running).
    fn revoke(&self, consumer: &BaseConsumer<Self>, which: Option<&TopicPartitionList>) {
        let workers: Vec<(i32, Worker)> = {
            let mut partitions = self.partitions.lock().expect("poisoned");
            let taken: Vec<i32> = partitions
                .keys()
                .copied()
                .filter(|p| which.is_none_or(|list| list.find_partition(&self.topic, *p).is_some()))
                .collect();
            taken
                .iter()
                .filter_map(|p| {
                    let worker = partitions.remove(p)?.worker?;
                    Some((*p, worker))
                })
                .collect()
        };
        for (_, worker) in &workers {
            worker.queue.close();
        }
        let deadline = Instant::now() + REVOKE_WAIT;
        for (partition, mut worker) in workers {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(std_mpsc::RecvTimeoutError::Timeout) = worker.done.recv_timeout(left) {
                tracing::warn!(topic = %self.topic, "a handler outlived the revocation; its message will be redelivered");
            }
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
    fn store_finished(&self, consumer: &BaseConsumer<Self>) -> bool {
        let mut partitions = self.partitions.lock().expect("poisoned");
        let mut stored = false;
        for (partition, state) in partitions.iter_mut() {
            if let Some(worker) = &mut state.worker {
                stored |= self.store(consumer, *partition, worker);
            }
        }
        stored
    }

    /// Stores the offset of the last message `worker` finished, if it moved
    /// since the last store: one store per partition, however many finished.
    fn store(&self, consumer: &BaseConsumer<Self>, partition: i32, worker: &mut Worker) -> bool {
        let handled = worker.queue.handled.load(Ordering::Acquire);
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

    /// Moves stashed messages into their worker queues. A partition whose
    /// queue is full gets a short wait for room (see [`ROOM_WAIT`]), and is
    /// paused if that is not enough; a paused one is resumed once its stash
    /// is empty and its queue half empty.
    fn hand_over(&self, consumer: &BaseConsumer<Self>) {
        let mut partitions = self.partitions.lock().expect("poisoned");
        let mut deadline = None;
        for (partition, state) in partitions.iter_mut() {
            let Some(worker) = &state.worker else {
                continue;
            };
            worker.queue.fill(&mut state.stash);
            if !state.paused {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + ROOM_WAIT);
                while !state.stash.is_empty() && worker.queue.drain_to_half(deadline) {
                    worker.queue.fill(&mut state.stash);
                }
                if !state.stash.is_empty() {
                    self.pause(consumer, *partition, state);
                }
            } else if state.stash.is_empty() && worker.queue.len() <= PARTITION_QUEUE / 2 {
                // Only once the queue is half empty: each pause costs a
                // refetch of what librdkafka had prefetched.
                let mut list = TopicPartitionList::new();
                list.add_partition(&self.topic, *partition);
                if consumer.resume(&list).is_ok() {
                    tracing::debug!(partition, "resumed");
                    state.paused = false;
                }
            }
        }
    }

    fn pause(&self, consumer: &BaseConsumer<Self>, partition: i32, state: &mut PartitionState) {
        if state.paused {
            return;
        }
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.topic, partition);
        match consumer.pause(&list) {
            Ok(()) => {
                tracing::debug!(partition, "paused");
                state.paused = true
            }
            Err(error) => tracing::warn!(%error, partition, "cannot pause a full partition"),
        }
    }
}
