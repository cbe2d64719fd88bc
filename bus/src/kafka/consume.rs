//! One registration's consumer: a group member polled on its own thread,
//! a task per assigned partition, offsets stored after handling.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use super::produce::config_error;
use super::{unavailable, KafkaConfig};
use crate::dispatch::Member;
use crate::error::{Error, Result};
use crate::message::{Headers, Message, Payload};
use crate::telemetry::metrics::ConsumerLag;
use crate::transport::{StartFrom, SubscriptionSpec};
use crate::wire;

/// How long a poll waits for a message before the thread looks at its
/// stop flag, queues and stored offsets again.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often offsets of handled messages are committed while busy.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Messages queued per partition before the partition is paused.
const PARTITION_QUEUE: usize = 256;
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
        let (offsets_tx, offsets_rx) = std_mpsc::channel();
        let context = GroupContext {
            topic: spec.topic.to_string(),
            start: spec.start,
            timeout: config.connect_timeout,
            assigned: AtomicBool::new(false),
            partitions: Mutex::new(HashMap::new()),
            offsets: Mutex::new(offsets_rx),
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
        let poller = Poller {
            consumer,
            member: Arc::clone(&member),
            runtime: tokio::runtime::Handle::current(),
            offsets: offsets_tx,
            source: Arc::from("unknown"),
            go_envelope: config.go_envelope,
        };
        let stopping = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("topicbus-{}", spec.group))
            .spawn(move || {
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
    offsets: std_mpsc::Sender<(i32, i64)>,
    source: Arc<str>,
    go_envelope: bool,
}

impl Poller {
    fn run(self, stop: &AtomicBool, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut uncommitted = false;
        let mut last_commit = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let context = self.consumer.context();
            // Committing what finished soon (asynchronously, at most every
            // COMMIT_INTERVAL) rather than on the auto-commit timer keeps the
            // redelivery window small when a rebalance's own commit is refused.
            uncommitted |= context.store_finished(&self.consumer);
            if uncommitted && last_commit.elapsed() >= COMMIT_INTERVAL {
                if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Async) {
                    tracing::debug!(%error, "commit after handling failed");
                }
                uncommitted = false;
                last_commit = Instant::now();
            }
            context.flush_stashes(&self.consumer);
            match self.consumer.poll(POLL_INTERVAL) {
                Some(Ok(message)) => self.dispatch(&message),
                Some(Err(error)) => tracing::warn!(%error, topic = %context.topic, "consumer"),
                None => {}
            }
            if context.assigned.load(Ordering::Acquire) {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
        }
        let context = self.consumer.context();
        context.revoke_all(&self.consumer);
        self.consumer.unsubscribe();
        // Dropping the consumer closes it: it leaves the group.
        drop(self.consumer);
    }

    fn dispatch(&self, message: &BorrowedMessage<'_>) {
        let partition = message.partition();
        tracing::trace!(
            topic = message.topic(),
            partition,
            offset = message.offset(),
            "fetched"
        );
        let item = (
            message.offset(),
            to_message(message, &self.source, self.go_envelope),
        );
        let context = self.consumer.context();
        let mut partitions = context.partitions.lock().expect("poisoned");
        let state = partitions.entry(partition).or_default();
        let worker = state.worker.get_or_insert_with(|| {
            Worker::spawn(
                &self.runtime,
                Arc::clone(&self.member),
                partition,
                self.offsets.clone(),
            )
        });
        if !state.stash.is_empty() {
            state.stash.push_back(item);
            return;
        }
        match worker.queue.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                state.stash.push_back(item);
                context.pause(&self.consumer, partition, state);
            }
            // The member closed: the message is not stored and will be
            // redelivered to whoever owns the partition next.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
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
    offsets: Mutex<std_mpsc::Receiver<(i32, i64)>>,
    lag: ConsumerLag,
}

#[derive(Default)]
struct PartitionState {
    worker: Option<Worker>,
    /// Messages fetched while the worker's queue was full, in order.
    stash: VecDeque<(i64, Message)>,
    paused: bool,
}

struct Worker {
    queue: mpsc::Sender<(i64, Message)>,
    revoked: Arc<AtomicBool>,
    /// Disconnects when the worker task has ended.
    done: std_mpsc::Receiver<()>,
}

impl Worker {
    fn spawn(
        runtime: &tokio::runtime::Handle,
        member: Arc<dyn Member>,
        partition: i32,
        offsets: std_mpsc::Sender<(i32, i64)>,
    ) -> Self {
        let (queue, mut inbox) = mpsc::channel::<(i64, Message)>(PARTITION_QUEUE);
        let revoked = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = std_mpsc::channel::<()>();
        let is_revoked = Arc::clone(&revoked);
        runtime.spawn(async move {
            let _done = done_tx;
            while let Some((offset, message)) = inbox.recv().await {
                if is_revoked.load(Ordering::Acquire) {
                    break;
                }
                if Arc::clone(&member).deliver(message).await.is_err() {
                    break;
                }
                let _ = offsets.send((partition, offset));
            }
        });
        Self {
            queue,
            revoked,
            done,
        }
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

    /// Stops every partition worker after its in-flight message, stores the
    /// offsets of what finished and commits them.
    fn revoke_all(&self, consumer: &BaseConsumer<Self>) {
        self.revoke(consumer, None);
    }

    /// Like [`GroupContext::revoke_all`], for the partitions of `which` only
    /// (a cooperative rebalance takes some and leaves the rest running).
    fn revoke(&self, consumer: &BaseConsumer<Self>, which: Option<&TopicPartitionList>) {
        let workers: Vec<Worker> = {
            let mut partitions = self.partitions.lock().expect("poisoned");
            let taken: Vec<i32> = partitions
                .keys()
                .copied()
                .filter(|p| which.is_none_or(|list| list.find_partition(&self.topic, *p).is_some()))
                .collect();
            taken
                .iter()
                .filter_map(|p| partitions.remove(p).and_then(|state| state.worker))
                .collect()
        };
        for worker in &workers {
            worker.revoked.store(true, Ordering::Release);
        }
        let deadline = Instant::now() + REVOKE_WAIT;
        for worker in workers {
            let Worker { queue, done, .. } = worker;
            // Closing the queue ends a worker that waits for its next message.
            drop(queue);
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(std_mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(left) {
                tracing::warn!(topic = %self.topic, "a handler outlived the revocation; its message will be redelivered");
            }
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
        let offsets = self.offsets.lock().expect("poisoned");
        let mut stored = false;
        // librdkafka commits the stored offset + 1: the next to read.
        while let Ok((partition, handled)) = offsets.try_recv() {
            match consumer.store_offset(&self.topic, partition, handled) {
                Ok(()) => stored = true,
                Err(error) => {
                    tracing::debug!(%error, partition, "offset not stored (partition revoked)")
                }
            }
        }
        stored
    }

    /// Moves stashed messages into their worker queues as room frees up and
    /// resumes partitions whose stash emptied.
    fn flush_stashes(&self, consumer: &BaseConsumer<Self>) {
        let mut partitions = self.partitions.lock().expect("poisoned");
        for (partition, state) in partitions.iter_mut() {
            let Some(worker) = &state.worker else {
                continue;
            };
            while let Some(item) = state.stash.pop_front() {
                match worker.queue.try_send(item) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(item)) => {
                        state.stash.push_front(item);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            // Resume only once the queue is half empty: librdkafka drops what
            // it prefetched when a partition pauses and fetches it again on
            // resume, so pausing on every few messages costs a refetch each.
            let drained = worker.queue.capacity() >= PARTITION_QUEUE / 2;
            if state.stash.is_empty() && state.paused && drained {
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

/// A fetched Kafka message in the form the dispatcher takes.
pub(super) fn to_message(
    message: &BorrowedMessage<'_>,
    source: &Arc<str>,
    go_envelope: bool,
) -> Message {
    let mut headers = Headers::new();
    if let Some(borrowed) = message.headers() {
        for header in borrowed.iter() {
            headers.insert(
                header.key.to_owned(),
                header.value.unwrap_or_default().to_vec(),
            );
        }
    }
    let mut meta = wire::meta(
        Cow::Owned(message.topic().to_owned()),
        message.key().map(<[u8]>::to_vec),
        headers,
        source,
    );
    let value = message.payload().unwrap_or_default();
    let unwrapped = if go_envelope {
        super::envelope::unwrap(&mut meta, value).map(Bytes::from)
    } else {
        None
    };
    Message {
        meta: Arc::new(meta),
        payload: Payload::Bytes(unwrapped.unwrap_or_else(|| Bytes::copy_from_slice(value))),
    }
}
