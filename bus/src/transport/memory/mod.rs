//! The in-process transport: consumer groups, partitions and replies inside
//! one process, without encoding payloads.
//!
//! Each topic has a fixed number of partitions; a message goes to the
//! partition of its key (or round-robin without a key). Every consumer group
//! has one bounded queue per partition and one task per partition that hands
//! the partition's messages, one at a time, to the group member that owns
//! the partition. That gives per-key order within a group, work sharing
//! between members, and backpressure: a publisher waits when a group's queue
//! is full.
//!
//! Several [`Bus`](crate::Bus) instances can share one broker to model
//! several processes or services:
//!
//! ```
//! use topicbus::memory::{MemoryBroker, MemoryConfig};
//! use topicbus::Bus;
//!
//! let broker = MemoryBroker::new(MemoryConfig::default().partitions(4));
//! let indexer_1 = Bus::builder().service("indexer").memory(broker.clone()).build();
//! let indexer_2 = Bus::builder().service("indexer").memory(broker.clone()).build();
//! # drop((indexer_1, indexer_2));
//! ```

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::hash::FastMap;
use crate::message::Message;
use crate::transport::{
    BoxFuture, Capabilities, Feed, GroupMember, Member, Pending, Position, RedriveSummary,
    ReplyInbox, StartFrom, SubscriptionSpec, Transport, TransportMessage,
};

mod dead_letters;
mod queue;
use dead_letters::DeadLetters;
use queue::{Pushed, Queue, Refused, Taker, RELEASE_BATCH};

/// Settings of a [`MemoryBroker`].
///
/// ```
/// let config = topicbus::memory::MemoryConfig::default()
///     .partitions(16)
///     .queue_capacity(256)
///     .retain(10_000)
///     .force_codec(true);
/// # drop(config);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    partitions: usize,
    queue_capacity: usize,
    retain: usize,
    force_codec: bool,
    publish_timeout: Duration,
    max_message_bytes: Option<usize>,
    dead_letter_capacity: usize,
    dead_letter_max_bytes: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            partitions: 8,
            queue_capacity: 1024,
            retain: 0,
            force_codec: false,
            publish_timeout: Duration::from_secs(30),
            max_message_bytes: None,
            dead_letter_capacity: 10_000,
            dead_letter_max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl MemoryConfig {
    /// Partitions of topics that do not set `partitions = N` (default 8).
    pub fn partitions(mut self, partitions: usize) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Messages each group queues per partition before publishers wait
    /// (default 1024).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Keep the last `n` messages of every topic so that a new group can
    /// start from [`StartFrom::Earliest`] or a timestamp (default 0: none).
    pub fn retain(mut self, n: usize) -> Self {
        self.retain = n;
        self
    }

    /// Encode and decode every payload with its codec, as a network
    /// transport would. Tests use it to prove a type survives the wire.
    pub fn force_codec(mut self, on: bool) -> Self {
        self.force_codec = on;
        self
    }

    /// How long a publish waits for room in a full queue before failing
    /// with [`Error::Timeout`] (default 30 s).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Largest payload of buses on this broker that do not set
    /// `Bus::builder().max_message_bytes(..)`; see there. Without either,
    /// encoded payloads (`publish_raw`, [`force_codec`](Self::force_codec))
    /// are limited to 1 000 000 bytes, as on Kafka, and values that travel
    /// unencoded are not measured (measuring one means encoding it).
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = Some(limit.max(1));
        self
    }

    /// Dead letters kept per `*.dlq` topic for [`Bus::redrive`](crate::Bus::redrive)
    /// (default 10 000; past it the oldest is dropped with a warning; 0
    /// keeps none). They are kept in memory: not across restarts.
    pub fn dead_letter_capacity(mut self, capacity: usize) -> Self {
        self.dead_letter_capacity = capacity;
        self
    }

    /// Bytes of dead letters kept per `*.dlq` topic, counting payload, key
    /// and headers (default 64 MiB); past it the oldest are dropped with a
    /// warning, and a dead letter larger than the bound alone is not kept.
    pub fn dead_letter_max_bytes(mut self, max_bytes: usize) -> Self {
        self.dead_letter_max_bytes = max_bytes;
        self
    }
}

/// Keyless messages in a row that go to the same partition while handlers
/// finish without waiting (fewer when the queues hold fewer).
///
/// One partition per message would wake a different partition task for
/// nearly every message whenever the handlers keep up: on tokio's
/// multi-thread runtime each of those wakes moves the task woken before it
/// out of the publishing worker's LIFO slot and unparks the other worker
/// to steal it, and the workers then park and unpark for every few
/// messages (see docs/performance.md). A run of messages wakes the
/// partition's task once; the runs still deal the messages round the
/// partitions, and so round the group's members.
const KEYLESS_RUN: usize = 128;

/// How a topic deals keyless messages round its partitions.
///
/// In runs of [`KEYLESS_RUN`] while every delivery run of its groups ends
/// without waiting; one message at a time as soon as one waited (a handler
/// awaiting I/O, a retry's backoff, a full set of delivery slots), so that
/// a few keyless messages to slow handlers are still worked on in parallel.
struct Keyless {
    next: AtomicUsize,
    run: usize,
    in_runs: AtomicBool,
}

impl Keyless {
    fn new(run: usize) -> Self {
        Self {
            next: AtomicUsize::new(0),
            run: run.max(1),
            // Until a delivery shows that handlers do not wait.
            in_runs: AtomicBool::new(false),
        }
    }

    fn partition(&self, partitions: usize) -> usize {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.in_runs.load(Ordering::Relaxed) {
            (n / self.run) % partitions
        } else {
            n % partitions
        }
    }

    /// A delivery run of one of the topic's groups ended.
    fn ran(&self, waited: bool) {
        // Loaded first: the common case writes nothing to the shared line.
        if self.in_runs.load(Ordering::Relaxed) == waited {
            self.in_runs.store(!waited, Ordering::Relaxed);
        }
    }
}

/// An in-process broker. Cloning gives another handle to the same broker.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<BrokerInner>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct BrokerInner {
    config: MemoryConfig,
    topics: RwLock<FastMap<String, Arc<TopicState>>>,
    inboxes: RwLock<FastMap<Arc<str>, Weak<Pending>>>,
    dead_letters: DeadLetters,
}

impl Drop for BrokerInner {
    fn drop(&mut self) {
        let topics = self.topics.get_mut().unwrap_or_else(|e| e.into_inner());
        for topic in topics.values() {
            for group in topic.groups().iter() {
                group.stop();
            }
        }
    }
}

struct TopicState {
    partitions: usize,
    /// Shared with the topic's groups, whose delivery runs tell it whether
    /// handlers wait.
    keyless: Arc<Keyless>,
    /// Copy-on-write so that publishers take a snapshot with one atomic
    /// increment; a read lock, so that publishers do not wait for each
    /// other.
    groups: RwLock<Arc<[Arc<GroupState>]>>,
    /// The kept messages. Publishers that keep messages, and groups that
    /// join, hold this lock while they read or change `groups`: a new group
    /// then gets each message either in its backlog or in its queue.
    retained: Mutex<VecDeque<(usize, Message)>>,
}

impl TopicState {
    fn groups(&self) -> Arc<[Arc<GroupState>]> {
        Arc::clone(&self.groups.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the topic's groups (callers hold `retained`, so one change
    /// at a time), telling each whether groups come after it.
    fn set_groups(&self, groups: Vec<Arc<GroupState>>) {
        let last = groups.len().saturating_sub(1);
        for (at, group) in groups.iter().enumerate() {
            // Before the list is published under the write lock: a publish
            // that reads the list, and so leaves a wake to a group's task,
            // then queues under that group's queue lock, which the task
            // takes before it reads this.
            group.later.store(at < last, Ordering::Relaxed);
        }
        *self.groups.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(groups);
    }

    fn lock_retained(&self) -> std::sync::MutexGuard<'_, VecDeque<(usize, Message)>> {
        self.retained.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn group(&self, name: &str) -> Option<Arc<GroupState>> {
        self.groups().iter().find(|g| &*g.name == name).cloned()
    }

    fn partition_of(&self, key: Option<&[u8]>) -> usize {
        match key {
            Some(key) => {
                let mut hasher = Fnv1a::default();
                key.hash(&mut hasher);
                (hasher.finish() % self.partitions as u64) as usize
            }
            None => self.keyless.partition(self.partitions),
        }
    }
}

struct GroupState {
    name: Arc<str>,
    /// A broadcast registration's own group: removed when its member leaves.
    ephemeral: bool,
    queues: Vec<Queue>,
    members: RwLock<Vec<Arc<dyn Member>>>,
    /// `members.len()`, for readers that need no member.
    member_count: AtomicUsize,
    /// Bumped (under the `members` write lock) at every change of
    /// `members`, so that partition tasks keep their owner until then
    /// instead of reading the list for every message.
    generation: AtomicUsize,
    members_changed: Notify,
    /// Messages queued or in flight in this group. Publishers raise it for
    /// every message: on a cache line of its own, away from what partition
    /// tasks read for every message (`generation`, `queues`).
    outstanding: Padded<AtomicUsize>,
    idle: Notify,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The topic's, told how each delivery run ended.
    keyless: Arc<Keyless>,
    /// Its topic, whose later groups a partition task passes a wake on to
    /// (see [`pass_wake`]).
    topic: Weak<TopicState>,
    /// Whether the topic has groups after this one (set by
    /// `TopicState::set_groups`): when not, there is no wake to pass on.
    later: AtomicBool,
}

impl GroupState {
    /// The member owning `partition` (partitions are dealt round the
    /// members), with the generation of the member list it was read from.
    fn owner(&self, partition: usize) -> Option<(usize, Arc<dyn Member>)> {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        if members.is_empty() {
            None
        } else {
            let generation = self.generation.load(Ordering::Acquire);
            Some((generation, Arc::clone(&members[partition % members.len()])))
        }
    }

    /// Changes the member list and tells the partition tasks.
    fn change_members<R>(&self, change: impl FnOnce(&mut Vec<Arc<dyn Member>>) -> R) -> R {
        let result = {
            let mut members = self.members.write().unwrap_or_else(|e| e.into_inner());
            let result = change(&mut members);
            self.member_count.store(members.len(), Ordering::Release);
            self.generation.fetch_add(1, Ordering::AcqRel);
            result
        };
        self.members_changed.notify_waiters();
        result
    }

    /// Counts `message` as outstanding and queues it on `partition` if the
    /// queue has room, waking the partition task if `wake` (see
    /// [`Queue::try_push`]). Gives the message back, still counted, when the
    /// queue is full.
    fn try_queue(&self, partition: usize, message: Message, wake: bool) -> Result<Pushed, Message> {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        match self.queues[partition].try_push(message, wake) {
            Ok(pushed) => Ok(pushed),
            Err(Refused::Full(rejected)) => Err(rejected),
            // The group was stopped with its broker; nobody will handle it.
            Err(Refused::Closed(_)) => {
                self.settle(1);
                Ok(Pushed::Busy)
            }
        }
    }

    /// `n` messages of this group were handled (or given up).
    fn settle(&self, n: usize) {
        if n > 0 && self.outstanding.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
    }

    fn stop(&self) {
        for queue in &self.queues {
            queue.close();
        }
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl MemoryBroker {
    /// A broker with `config`.
    pub fn new(config: MemoryConfig) -> Self {
        Self {
            inner: Arc::new(BrokerInner {
                topics: RwLock::new(FastMap::default()),
                inboxes: RwLock::new(FastMap::default()),
                dead_letters: DeadLetters::new(
                    config.dead_letter_capacity,
                    config.dead_letter_max_bytes,
                ),
                config,
            }),
        }
    }

    pub(crate) fn max_message_bytes(&self) -> Option<usize> {
        self.inner.config.max_message_bytes
    }

    /// Moves the kept dead letters of `topic` back to it.
    pub(crate) async fn redrive(&self, topic: &str) -> Result<RedriveSummary> {
        self.inner
            .dead_letters
            .redrive(topic, |message| self.publish(message))
            .await
    }

    pub(crate) fn forces_codec(&self) -> bool {
        self.inner.config.force_codec
    }

    fn topic(&self, name: &str, partitions: Option<u32>) -> Arc<TopicState> {
        if let Some(topic) = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Arc::clone(topic);
        }
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        let partitions = partitions
            .map(|p| p as usize)
            .unwrap_or(self.inner.config.partitions)
            .max(1);
        Arc::clone(topics.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(TopicState {
                partitions,
                keyless: Arc::new(Keyless::new(
                    KEYLESS_RUN.min(self.inner.config.queue_capacity),
                )),
                groups: RwLock::new(Arc::from(Vec::new())),
                retained: Mutex::new(VecDeque::new()),
            })
        }))
    }

    fn existing_topic(&self, name: &str) -> Option<Arc<TopicState>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Queues `message` for every group of its topic, in order, while they
    /// have room (the last group gets `message` itself, the others a
    /// handle). The common case ends here: under the read locks, without
    /// taking a reference to the topic's groups. Otherwise returns where the
    /// publish has to wait.
    fn offer(&self, message: Message) -> Option<Blocked> {
        // The common case, a known topic, without cloning its `Arc`.
        if let Some(topic) = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&*message.meta.topic)
        {
            return self.offer_to(topic, message);
        }
        let topic = self.topic(&message.meta.topic, None);
        self.offer_to(&topic, message)
    }

    fn offer_to(&self, topic: &TopicState, message: Message) -> Option<Blocked> {
        let partition = topic.partition_of(message.meta.key.as_deref());
        // Kept messages: held while the groups are read, so that a joining
        // group gets each message in its backlog or its queue.
        let _retained = (self.inner.config.retain > 0).then(|| {
            let mut retained = topic.lock_retained();
            if retained.len() == self.inner.config.retain {
                retained.pop_front();
            }
            retained.push_back((partition, message.clone()));
            retained
        });
        let groups = topic.groups.read().unwrap_or_else(|e| e.into_inner());
        let last = groups.len().checked_sub(1)?;
        let blocked = |at: usize, rejected: Message, rest: Option<Message>| Blocked {
            partition,
            groups: Arc::clone(&groups),
            at,
            rejected,
            rest,
        };
        if last == 0 {
            // One group: its task is the only one to wake.
            let rejected = groups[0].try_queue(partition, message, true).err()?;
            return Some(blocked(0, rejected, None));
        }
        let mut wakes = Wakes::default();
        for (at, group) in groups[..last].iter().enumerate() {
            match wakes.queue(group, partition, message.clone()) {
                Ok(()) => {}
                Err(rejected) => {
                    wakes.finish(&groups, partition);
                    return Some(blocked(at, rejected, Some(message)));
                }
            }
        }
        let queued = wakes.queue(&groups[last], partition, message);
        wakes.finish(&groups, partition);
        Some(blocked(last, queued.err()?, None))
    }

    pub(crate) async fn publish(&self, message: Message) -> Result<()> {
        // Spends the task's cooperative budget as a bounded channel's `send`
        // does: a task that publishes in a loop yields now and then instead
        // of only when a queue is full, so that the handlers keep up and the
        // queues (and the memory they hold) stay short.
        std::future::poll_fn(|cx| tokio::task::coop::poll_proceed(cx).map(|c| c.made_progress()))
            .await;
        self.inner.dead_letters.keep(&message);
        let Some(Blocked {
            partition,
            groups,
            at,
            rejected,
            rest,
        }) = self.offer(message)
        else {
            return Ok(());
        };
        self.wait_for_room(&groups[at], partition, rejected).await?;
        if let Some(message) = rest {
            // Each woken here: outside the topic's lock, a group left
            // meanwhile (its tasks stopped) could not pass a wake on.
            for group in &groups[at + 1..] {
                if let Err(rejected) = group.try_queue(partition, message.clone(), true) {
                    self.wait_for_room(group, partition, rejected).await?;
                }
            }
        }
        Ok(())
    }

    /// Queues `waiting` (counted as outstanding already) once `group` has
    /// room on `partition`, for at most the publish timeout.
    async fn wait_for_room(
        &self,
        group: &GroupState,
        partition: usize,
        waiting: Message,
    ) -> Result<()> {
        let topic = waiting.meta.topic.clone();
        // Settles the count unless the message gets queued, also when this
        // future is dropped while it waits for room.
        let mut enqueuing = Enqueuing {
            group,
            queued: false,
        };
        let limit = self.inner.config.publish_timeout;
        // Boxed: waiting for room is rare, and its timer would make every
        // publish future several times larger.
        let push = Box::pin(tokio::time::timeout(
            limit,
            group.queues[partition].push(waiting),
        ));
        match push.await {
            Ok(pushed) => {
                enqueuing.queued = pushed.is_ok();
                Ok(())
            }
            Err(_) => Err(Error::Timeout {
                topic: topic.into_owned(),
                after: limit,
            }),
        }
    }

    pub(crate) fn join(&self, spec: SubscriptionSpec, member: Arc<dyn Member>) -> Result<()> {
        if let StartFrom::Offsets(_) = spec.start {
            return Err(Error::Config {
                key: "start_from".to_owned(),
                message:
                    "the memory transport keeps no offsets; start from Earliest or a Timestamp"
                        .to_owned(),
            });
        }
        let topic = self.topic(&spec.topic, spec.partitions);
        let retained = topic.lock_retained();
        let groups = topic.groups();
        if let Some(group) = groups.iter().find(|g| g.name == spec.group) {
            group.change_members(|members| members.push(member));
            return Ok(());
        }
        let mut backlog: Vec<Vec<Message>> = vec![Vec::new(); topic.partitions];
        let replay = |m: &Message| match &spec.start {
            StartFrom::Latest | StartFrom::Offsets(_) => false,
            StartFrom::Earliest => true,
            StartFrom::Timestamp(since) => m.meta.time >= *since,
        };
        for (partition, message) in retained.iter().filter(|(_, m)| replay(m)) {
            backlog[*partition].push(message.clone());
        }
        let queues = (0..topic.partitions)
            .map(|_| Queue::new(self.inner.config.queue_capacity))
            .collect();
        let backlog_len = backlog.iter().map(Vec::len).sum();
        let group = Arc::new(GroupState {
            name: Arc::clone(&spec.group),
            ephemeral: spec.ephemeral,
            queues,
            members: RwLock::new(vec![member]),
            member_count: AtomicUsize::new(1),
            generation: AtomicUsize::new(0),
            members_changed: Notify::new(),
            outstanding: Padded(AtomicUsize::new(backlog_len)),
            keyless: Arc::clone(&topic.keyless),
            topic: Arc::downgrade(&topic),
            later: AtomicBool::new(false),
            idle: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = backlog
            .into_iter()
            .enumerate()
            .map(|(partition, backlog)| {
                tokio::spawn(run_partition(Arc::clone(&group), partition, backlog)).abort_handle()
            })
            .collect();
        *group.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        let mut groups = groups.to_vec();
        groups.push(group);
        topic.set_groups(groups);
        Ok(())
    }

    pub(crate) fn leave(&self, topic: &str, group: &str, member: &Arc<dyn Member>) {
        let Some(topic) = self.existing_topic(topic) else {
            return;
        };
        let Some(group) = topic.group(group) else {
            return;
        };
        let now_empty = group.change_members(|members| {
            members.retain(|m| !Arc::ptr_eq(m, member));
            members.is_empty()
        });
        if group.ephemeral && now_empty {
            // Nobody can ever rejoin a broadcast group: drop it, so that its
            // queue does not fill up and hold back publishers.
            let retained = topic.lock_retained();
            let groups: Vec<_> = topic
                .groups()
                .iter()
                .filter(|g| !Arc::ptr_eq(g, &group))
                .cloned()
                .collect();
            topic.set_groups(groups);
            drop(retained);
            group.stop();
            // Its partition tasks may have been woken to pass a wake on
            // (`pass_wake`) and stopped before they did. Publishes that left
            // a wake to be passed on did so under the topic's read lock,
            // so before `set_groups` above.
            for group in topic.groups().iter() {
                for queue in &group.queues {
                    queue.wake_waiting();
                }
            }
        }
    }

    pub(crate) fn member_count(&self, topic: &str, group: &str) -> usize {
        self.existing_topic(topic)
            .and_then(|t| t.group(group))
            .map_or(0, |g| {
                g.members.read().unwrap_or_else(|e| e.into_inner()).len()
            })
    }

    /// Waits until the group has nothing queued or in flight; returns
    /// whether it had to wait.
    pub(crate) async fn drain(&self, topic: &str, group: &str) -> bool {
        let Some(group) = self.existing_topic(topic).and_then(|t| t.group(group)) else {
            return false;
        };
        let mut waited = false;
        loop {
            let idle = group.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if group.outstanding.load(Ordering::Acquire) == 0 {
                return waited;
            }
            waited = true;
            idle.await;
        }
    }

    /// Whether some group of `topic` has a member to handle a message now.
    pub(crate) fn has_members(&self, topic: &str) -> bool {
        // Asked before every request: read in place, without taking a
        // reference to the topic or its groups.
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.get(topic).is_some_and(|t| {
            t.groups
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|g| g.member_count.load(Ordering::Acquire) > 0)
        })
    }

    /// Opens the reply inbox of an instance of `service`, named as a Kafka
    /// reply topic is: `topicbus.reply.{service}.{uuid}`.
    pub(crate) fn open_inbox(&self, service: &str, pending: &Arc<Pending>) -> Arc<str> {
        let name = crate::transport::inbox_name(service);
        self.open_named_inbox(Arc::clone(&name), pending);
        name
    }

    fn open_named_inbox(&self, name: Arc<str>, pending: &Arc<Pending>) {
        self.inner
            .inboxes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, Arc::downgrade(pending));
    }

    pub(crate) fn close_inbox(&self, inbox: &str) {
        self.inner
            .inboxes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(inbox);
    }

    pub(crate) fn reply(&self, reply_to: &str, message: Message) {
        let pending = self
            .inner
            .inboxes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(reply_to)
            .and_then(Weak::upgrade);
        match pending {
            Some(pending) => pending.complete(message),
            None => tracing::debug!(reply_to, "dropped a reply to an inbox that is gone"),
        }
    }
}

/// A value on a cache line (of two, against the adjacent-line prefetcher)
/// of its own.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Where a publish waits for room: the first full group of the topic's
/// groups (counted as outstanding already), the message it refused, and a
/// handle for the groups after it (none when it was the last).
struct Blocked {
    partition: usize,
    groups: Arc<[Arc<GroupState>]>,
    at: usize,
    rejected: Message,
    rest: Option<Message>,
}

/// A message counted as outstanding in a group on its way into the group's
/// queue: unless it got there (the partition task settles it then), dropping
/// this settles it, so that a publish given up while it waited for room does
/// not leave the group busy forever (and its shutdown waiting).
struct Enqueuing<'a> {
    group: &'a GroupState,
    queued: bool,
}

impl Drop for Enqueuing<'_> {
    fn drop(&mut self) {
        if !self.queued {
            self.group.settle(1);
        }
    }
}

/// Hands the messages of one partition of one group, in order, to the member
/// that owns the partition.
async fn run_partition(group: Arc<GroupState>, partition: usize, backlog: Vec<Message>) {
    let mut owner = Owner::default();
    let mut source = Source {
        backlog: backlog.into(),
        queue: Taker::default(),
    };
    loop {
        let first = match source.backlog.pop_front() {
            Some(message) => message,
            None => {
                let queue = &group.queues[partition];
                let next = std::future::poll_fn(|cx| {
                    // Spends the cooperative budget as a channel's `recv` does.
                    let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
                    let next = std::task::ready!(source.queue.poll_take(queue, cx));
                    coop.made_progress();
                    std::task::Poll::Ready(next)
                });
                match next.await {
                    Some(message) => {
                        queue.release(1);
                        pass_wake(&group, partition);
                        message
                    }
                    None => return,
                }
            }
        };
        deliver(&group, partition, &mut owner, first, &mut source).await;
    }
}

/// The wakes of one publish to a topic's groups: only the first partition
/// task that waits for the message is woken, unless one woken before has
/// yet to pass a wake on; the others that wait are left to be woken by the
/// one before them (see [`pass_wake`]).
#[derive(Default)]
struct Wakes<'a> {
    /// The first queue whose task is woken and will pass a wake on.
    passing: Option<&'a Queue>,
    /// The first queue whose waiting task was left to it.
    left: Option<&'a Queue>,
}

impl<'a> Wakes<'a> {
    #[inline]
    fn queue(
        &mut self,
        group: &'a GroupState,
        partition: usize,
        message: Message,
    ) -> Result<(), Message> {
        let queue = &group.queues[partition];
        match group.try_queue(partition, message, self.passing.is_none())? {
            Pushed::Busy => {}
            Pushed::Woken => {
                self.passing.get_or_insert(queue);
            }
            Pushed::Left => {
                self.left.get_or_insert(queue);
            }
        }
        Ok(())
    }

    /// Makes sure that the tasks left waiting are woken: the task that was
    /// to pass the wake on may have come for its messages, and looked at
    /// the later queues, before this publish got to them. (It clears its
    /// flag before it looks; this looks at the flag after it queued.) Then
    /// every group's waiting task with messages queued is woken, not only
    /// the first left one: the wake that task was given before this publish
    /// reached the later queues may already have been passed along and
    /// spent, so none of them would pass this message's wake on.
    fn finish(self, groups: &[Arc<GroupState>], partition: usize) {
        if let (Some(passing), Some(_)) = (self.passing, self.left) {
            if !passing.passes_wake() {
                for group in groups {
                    group.queues[partition].wake_waiting();
                }
            }
        }
    }
}

/// Wakes the partition task of the first group after `group` in its topic
/// that waits although messages are queued for it, which then does the same
/// when it runs.
///
/// A publish to several groups wakes only the first partition task waiting
/// for the message: on tokio's multi-thread runtime a wake from a worker
/// puts the task in the worker's LIFO slot, and a second wake from the same
/// poll moves the first task out to the run queue and unparks another
/// worker to steal it. Passed on, each wake comes from the task woken
/// before, with the slot free.
fn pass_wake(group: &GroupState, partition: usize) {
    // The last group (the only one, for most topics) passes nothing on:
    // one load instead of the topic's lock for every run.
    if !group.later.load(Ordering::Relaxed) {
        return;
    }
    let Some(topic) = group.topic.upgrade() else {
        return;
    };
    let groups = topic.groups.read().unwrap_or_else(|e| e.into_inner());
    let Some(at) = groups.iter().position(|g| std::ptr::eq(&**g, group)) else {
        return;
    };
    for later in &groups[at + 1..] {
        if later.queues[partition].wake_waiting() {
            return;
        }
    }
}

/// What a partition task hands out: the kept messages a new group starts
/// with, then its queue.
struct Source {
    backlog: VecDeque<Message>,
    queue: Taker,
}

/// Hands `first` and the messages queued behind it to the owner of the
/// partition, as one run, until the queue is empty or the owner changes.
async fn deliver(
    group: &GroupState,
    partition: usize,
    owner: &mut Owner,
    mut first: Message,
    source: &mut Source,
) {
    let queue = &group.queues[partition];
    loop {
        let (generation, member) = owner.get(group, partition).await;
        let unreleased = AtomicUsize::new(0);
        // A load and a store, not a swap: only this task uses it.
        let release = || {
            queue.release(unreleased.load(Ordering::Relaxed));
            unreleased.store(0, Ordering::Relaxed);
        };
        let mut feed = PartitionFeed {
            group,
            partition,
            generation,
            source: &mut *source,
            handled: 0,
            unreleased: &unreleased,
        };
        let mut waited = false;
        let run = {
            let mut run = member.deliver_run(first, &mut feed);
            std::future::poll_fn(|cx| {
                let poll = run.as_mut().poll(cx);
                if poll.is_pending() {
                    waited = true;
                    // The run may wait for room in this very queue (its
                    // handler publishing to the partition): what it handed
                    // out is room now.
                    release();
                }
                poll
            })
            .await
        };
        release();
        group.keyless.ran(waited);
        group.settle(feed.handled);
        match run {
            Ok(()) => return,
            // The member left while the message waited for it.
            Err(returned) => {
                first = returned;
                owner.forget();
            }
        }
    }
}

/// The [`Feed`] of one run: the partition's next message while the member
/// list (and so the partition's owner) stays as it was when the run began.
struct PartitionFeed<'a> {
    group: &'a GroupState,
    partition: usize,
    generation: usize,
    source: &'a mut Source,
    /// Settled together when the run ends: one atomic operation on the
    /// counter publishers also change, instead of one per message.
    handled: usize,
    /// Messages taken from the queue whose room is not released yet: given
    /// back [`RELEASE_BATCH`] at a time, and when the run waits or ends.
    unreleased: &'a AtomicUsize,
}

impl Feed for PartitionFeed<'_> {
    fn next(&mut self, cx: &mut std::task::Context<'_>) -> Option<TransportMessage> {
        if self.group.generation.load(Ordering::Acquire) != self.generation {
            return None;
        }
        if let Some(message) = self.source.backlog.pop_front() {
            return Some(TransportMessage(message));
        }
        // A run spends the task's cooperative budget as `recv` would, so
        // that a long one still yields to other tasks. Not `poll_take`: on
        // an empty queue it registers a waker, which the partition task
        // then does again.
        let std::task::Poll::Ready(coop) = tokio::task::coop::poll_proceed(cx) else {
            return None;
        };
        let queue = &self.group.queues[self.partition];
        let message = self.source.queue.try_take(queue)?;
        coop.made_progress();
        let unreleased = self.unreleased.load(Ordering::Relaxed) + 1;
        if unreleased == RELEASE_BATCH {
            queue.release(unreleased);
            self.unreleased.store(0, Ordering::Relaxed);
        } else {
            self.unreleased.store(unreleased, Ordering::Relaxed);
        }
        Some(TransportMessage(message))
    }

    fn handled(&mut self) {
        self.handled += 1;
    }

    fn position(&self) -> Position {
        Position {
            partition: u32::try_from(self.partition).unwrap_or(u32::MAX),
            offset: None,
        }
    }
}

/// The member a partition task hands its messages to, kept while the
/// group's member list stays the same.
///
/// Weak, so that the task does not keep a member (and through it its bus
/// and this broker, whose drop stops the task) alive.
#[derive(Default)]
struct Owner(Option<(usize, Weak<dyn Member>)>);

impl Owner {
    /// The owner of `partition` and the generation of the member list it
    /// was read from, waiting for a member when there is none.
    async fn get(&mut self, group: &GroupState, partition: usize) -> (usize, Arc<dyn Member>) {
        loop {
            if let Some((generation, member)) = &self.0 {
                if *generation == group.generation.load(Ordering::Acquire) {
                    if let Some(member) = member.upgrade() {
                        return (*generation, member);
                    }
                }
            }
            let changed = group.members_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some((generation, member)) = group.owner(partition) {
                self.0 = Some((generation, Arc::downgrade(&member)));
                return (generation, member);
            }
            self.0 = None;
            changed.await;
        }
    }

    fn forget(&mut self) {
        self.0 = None;
    }
}

/// FNV-1a: a small, stable hash for choosing a key's partition.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The memory transport as a [`Transport`], for a custom transport that
/// wraps it (a bus built with [`BusBuilder::memory`](crate::BusBuilder::memory)
/// calls the broker directly).
impl Transport for MemoryBroker {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .carries_values(!self.forces_codec())
            .replay(true)
    }

    fn publish(&self, message: TransportMessage) -> BoxFuture<'_, Result<()>> {
        Box::pin(MemoryBroker::publish(self, message.0))
    }

    fn join(&self, spec: SubscriptionSpec, member: GroupMember) -> BoxFuture<'_, Result<()>> {
        let joined = MemoryBroker::join(self, spec, member.0);
        Box::pin(async move { joined })
    }

    fn leave<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        member: &'a GroupMember,
    ) -> BoxFuture<'a, ()> {
        MemoryBroker::leave(self, topic, group, &member.0);
        Box::pin(async {})
    }

    fn leave_now(&self, topic: &str, group: &str, member: &GroupMember) {
        MemoryBroker::leave(self, topic, group, &member.0);
    }

    fn drain<'a>(&'a self, topic: &'a str, group: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(MemoryBroker::drain(self, topic, group))
    }

    fn local_members(&self, topic: &str, group: &str) -> Option<usize> {
        Some(self.member_count(topic, group))
    }

    fn has_consumers(&self, topic: &str) -> Option<bool> {
        Some(self.has_members(topic))
    }

    fn open_inbox(&self, name: &str, inbox: ReplyInbox) -> Result<()> {
        self.open_named_inbox(name.into(), &inbox.pending);
        Ok(())
    }

    fn reply(&self, reply_to: &str, reply: TransportMessage) -> Result<()> {
        MemoryBroker::reply(self, reply_to, reply.0);
        Ok(())
    }

    fn close<'a>(&'a self, inbox: &'a str) -> BoxFuture<'a, ()> {
        self.close_inbox(inbox);
        Box::pin(async {})
    }

    fn close_now(&self, inbox: &str) {
        self.close_inbox(inbox);
    }

    fn redrive<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<RedriveSummary>> {
        Box::pin(MemoryBroker::redrive(self, topic))
    }

    fn max_message_bytes(&self) -> Option<usize> {
        MemoryBroker::max_message_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(topic: &TopicState, n: usize) -> Vec<usize> {
        (0..n).map(|_| topic.partition_of(None)).collect()
    }

    /// How many times in a row each partition came up, in order.
    fn runs(picks: &[usize]) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &p in picks {
            match runs.last_mut() {
                Some((last, count)) if *last == p => *count += 1,
                _ => runs.push((p, 1)),
            }
        }
        runs
    }

    #[test]
    fn keyless_messages_go_to_each_partition_in_turn_for_a_run_while_handlers_do_not_wait() {
        let broker = MemoryBroker::default();
        let topic = broker.topic("t", Some(3));
        topic.keyless.ran(false);
        assert_eq!(
            runs(&picks(&topic, 4 * KEYLESS_RUN)),
            [
                (0, KEYLESS_RUN),
                (1, KEYLESS_RUN),
                (2, KEYLESS_RUN),
                (0, KEYLESS_RUN)
            ]
        );
    }

    #[test]
    fn keyless_messages_go_round_one_at_a_time_until_a_run_ends_without_waiting_and_after_one_waited(
    ) {
        let broker = MemoryBroker::default();
        let topic = broker.topic("t", Some(3));
        assert_eq!(picks(&topic, 4), [0, 1, 2, 0], "before any delivery");
        topic.keyless.ran(false);
        topic.keyless.ran(true);
        assert_eq!(picks(&topic, 3), [1, 2, 0], "after a run that waited");
    }

    #[test]
    fn a_keyless_run_is_no_longer_than_a_queue_holds() {
        let broker = MemoryBroker::new(MemoryConfig::default().queue_capacity(2));
        let topic = broker.topic("t", Some(3));
        topic.keyless.ran(false);
        assert_eq!(runs(&picks(&topic, 8)), [(0, 2), (1, 2), (2, 2), (0, 2)]);
    }

    #[test]
    fn keyed_messages_keep_their_partition() {
        let broker = MemoryBroker::default();
        let topic = broker.topic("t", Some(3));
        let first = topic.partition_of(Some(b"k"));
        topic.keyless.ran(false);
        for _ in 0..1000 {
            assert_eq!(topic.partition_of(Some(b"k")), first);
        }
    }
}
