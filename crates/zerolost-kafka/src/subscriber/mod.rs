//! [`KafkaSubscriber`]: manual commits of contiguous done offsets, local redelivery of
//! handed-back messages, key-ordered hand-out, and rebalance handling.

mod tracker;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use zerolost_core::{Acknowledger, Delivery, Error, Incoming, Subscriber};

use crate::{KafkaConfig, KafkaError};
use tracker::{Partition, Tracker};

/// Header carrying the record's topic in [`Incoming::headers`] (and so into a DLQ copy).
pub const TOPIC_HEADER: &str = "zerolost-kafka-topic";
/// Header carrying the record's partition.
pub const PARTITION_HEADER: &str = "zerolost-kafka-partition";
/// Header carrying the record's offset.
pub const OFFSET_HEADER: &str = "zerolost-kafka-offset";

/// Which messages of one partition may be handled at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Messages with the same key are handled one after another, in offset order; other
    /// keys (and keyless messages) run concurrently. The default.
    #[default]
    PerKey,
    /// One message of a partition at a time, in offset order.
    PerPartition,
    /// Any message may run at any time (the handler must not care about order).
    Unordered,
}

/// How the subscriber commits and orders.
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    /// How often done offsets are committed (also on [`KafkaSubscriber::close`] and on
    /// rebalance). Default 1 s.
    pub commit_interval: Duration,
    /// Which messages may run concurrently. Default [`Ordering::PerKey`].
    pub ordering: Ordering,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        Self {
            commit_interval: Duration::from_secs(1),
            ordering: Ordering::PerKey,
        }
    }
}

/// Messages of one lane run one at a time (see [`Ordering`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Lane {
    partition: Partition,
    generation: u64,
    key: Option<Vec<u8>>,
}

/// A message handed out or waiting to be.
#[derive(Debug, Clone)]
struct Pending {
    incoming: Incoming,
    partition: Partition,
    offset: i64,
    generation: u64,
    lane: Option<Lane>,
    deliveries: u32,
}

#[derive(Default)]
struct State {
    tracker: Tracker,
    /// Messages to hand out before reading more: redeliveries and messages released from
    /// their lane.
    ready: VecDeque<Pending>,
    /// Held lanes: a message of the lane is out; the queue holds the ones waiting.
    lanes: HashMap<Lane, VecDeque<Pending>>,
}

impl State {
    /// Forgets everything of a revoked partition except its commit point (returned).
    fn revoke(&mut self, partition: &Partition) -> Option<i64> {
        self.ready.retain(|p| &p.partition != partition);
        self.lanes.retain(|lane, _| &lane.partition != partition);
        self.tracker.revoke(partition)
    }

    fn current(&self, pending: &Pending) -> bool {
        self.tracker.generation(&pending.partition) == Some(pending.generation)
    }
}

/// What happened to this member's partitions, in order (see [`SubscriberMonitor::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// The group gave this member the partition.
    Assigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// The group took the partition away; `committed` is what was committed for it then.
    Revoked {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The done offset committed on revoke, if it moved.
        committed: Option<i64>,
    },
    /// This member committed `offset` (the next offset to read) for the partition.
    Committed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The committed offset.
        offset: i64,
    },
}

/// How many events a subscriber remembers (the oldest are dropped).
const MAX_EVENTS: usize = 10_000;

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    events: Mutex<VecDeque<GroupEvent>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, event: GroupEvent) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The message is done: its offset may be committed, its lane's next message goes out.
    fn done(&self, pending: &Pending) {
        let mut state = self.state();
        if !state
            .tracker
            .done(&pending.partition, pending.offset, pending.generation)
        {
            return; // revoked meanwhile: nothing of it is ours any more
        }
        let Some(lane) = &pending.lane else {
            return;
        };
        match state.lanes.get_mut(lane).and_then(VecDeque::pop_front) {
            Some(next) => {
                state.ready.push_back(next);
                drop(state);
                self.wake.notify_one(); // the lane's next message is ready to go out
            }
            None => {
                state.lanes.remove(lane);
            }
        }
    }

    /// The message goes out again (its lane stays held, so order is kept).
    fn redeliver(&self, mut pending: Pending) {
        let mut state = self.state();
        if !state.current(&pending) {
            return;
        }
        pending.deliveries += 1;
        state.ready.push_back(pending);
        drop(state);
        self.wake.notify_one();
    }
}

/// The consumer context: on revoke, commit what is done and forget the partition's
/// in-flight work; on assign, start a new generation.
struct Context {
    shared: Arc<Shared>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut commit = TopicPartitionList::new();
        let mut revoked_now = Vec::new();
        {
            let mut state = self.shared.state();
            for element in revoked.elements() {
                let partition = (element.topic().to_owned(), element.partition());
                let offset = state.revoke(&partition);
                if let Some(offset) = offset {
                    let _ = commit.add_partition_offset(
                        &partition.0,
                        partition.1,
                        Offset::Offset(offset),
                    );
                }
                revoked_now.push((partition, offset));
            }
        }
        let committed = commit.count() == 0
            || {
                let result = consumer.commit(&commit, CommitMode::Sync);
                if let Err(e) = &result {
                    warn!(error = %e, "commit of revoked partitions failed; their done messages come back and are deduplicated");
                }
                result.is_ok()
            };
        for ((topic, partition), offset) in revoked_now {
            self.shared.record(GroupEvent::Revoked {
                topic,
                partition,
                committed: offset.filter(|_| committed),
            });
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let mut state = self.shared.state();
            for element in assigned.elements() {
                state
                    .tracker
                    .assign((element.topic().to_owned(), element.partition()));
                self.shared.record(GroupEvent::Assigned {
                    topic: element.topic().to_owned(),
                    partition: element.partition(),
                });
            }
        }
    }
}

/// A [`Subscriber`] on a Kafka consumer group, with `enable.auto.commit=false` and
/// `enable.auto.offset.store=false`.
///
/// Per partition it commits only the offset below which **every** message is done
/// (acknowledged, or dead-lettered and acknowledged), every `commit_interval`, on
/// rebalance and on [`close`](Self::close). A handed-back message (`nack(true)`, or a
/// delivery dropped unsettled) is handed out again by this subscriber — its offset stays
/// uncommitted, so after a crash Kafka redelivers it too. On revoke the partition's done
/// offsets are committed and its in-flight work is dropped without committing past it.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::Subscriber;
/// use zerolost_kafka::{KafkaConfig, KafkaSubscriber};
/// let mut subscriber = KafkaSubscriber::new(&KafkaConfig::new("127.0.0.1:9092"), "billing", &["orders"])?;
/// let delivery = subscriber.next().await?;
/// delivery.ack().await?; // committed with the next contiguous commit
/// subscriber.close().await?;
/// # Ok(()) }
/// ```
pub struct KafkaSubscriber {
    consumer: Arc<StreamConsumer<Context>>,
    shared: Arc<Shared>,
    ordering: Ordering,
    committer: JoinHandle<()>,
}

impl std::fmt::Debug for KafkaSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscriber")
            .field("ordering", &self.ordering)
            .finish_non_exhaustive()
    }
}

impl KafkaSubscriber {
    /// Joins consumer group `group` on `topics` with the default options.
    pub fn new(config: &KafkaConfig, group: &str, topics: &[&str]) -> Result<Self, Error> {
        Self::with_options(config, group, topics, SubscriberOptions::default())
    }

    /// Joins consumer group `group` on `topics`.
    pub fn with_options(
        config: &KafkaConfig,
        group: &str,
        topics: &[&str],
        options: SubscriberOptions,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            events: Mutex::new(VecDeque::new()),
        });
        let consumer: StreamConsumer<Context> = config
            .consumer_config(group)?
            .create_with_context(Context {
                shared: shared.clone(),
            })
            .map_err(KafkaError::Config)?;
        consumer
            .subscribe(topics)
            .map_err(|source| KafkaError::Client {
                operation: "subscribe",
                source,
            })?;
        let consumer = Arc::new(consumer);
        let committer = tokio::spawn(commit_loop(
            consumer.clone(),
            shared.clone(),
            options.commit_interval,
        ));
        Ok(Self {
            consumer,
            shared,
            ordering: options.ordering,
            committer,
        })
    }

    /// Commits every done offset now.
    pub async fn commit(&self) -> Result<(), Error> {
        commit_done(&self.consumer, &self.shared).await
    }

    /// Commits the done offsets and leaves the group. Messages still in flight are not
    /// committed: they come back to whichever consumer gets their partition.
    pub async fn close(self) -> Result<(), Error> {
        self.committer.abort();
        let result = commit_done(&self.consumer, &self.shared).await;
        self.consumer.unsubscribe();
        result
    }

    /// Messages handed out and not yet done.
    pub fn in_flight(&self) -> usize {
        self.shared.state().tracker.in_flight()
    }

    /// A handle that outlives the subscriber being moved into a consumer: commit, events.
    pub fn monitor(&self) -> SubscriberMonitor {
        SubscriberMonitor {
            consumer: self.consumer.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The underlying consumer (positions, committed offsets, metadata).
    pub fn consumer(&self) -> &StreamConsumer<impl ConsumerContext> {
        &*self.consumer
    }

    fn lane_of(&self, partition: &Partition, generation: u64, key: Option<&[u8]>) -> Option<Lane> {
        let key = match self.ordering {
            Ordering::Unordered => return None,
            Ordering::PerPartition => None,
            Ordering::PerKey => Some(key?.to_vec()),
        };
        Some(Lane {
            partition: partition.clone(),
            generation,
            key,
        })
    }

    /// Takes a record from Kafka into the state; returns it if it may go out now.
    fn admit(&self, message: &BorrowedMessage<'_>) -> Option<Pending> {
        let partition = (message.topic().to_owned(), message.partition());
        let offset = message.offset();
        let incoming = incoming(message);
        let mut state = self.shared.state();
        let generation = state.tracker.received(&partition, offset);
        let lane = self.lane_of(&partition, generation, message.key());
        let pending = Pending {
            incoming,
            partition,
            offset,
            generation,
            lane: lane.clone(),
            deliveries: 1,
        };
        match lane {
            Some(lane) => match state.lanes.get_mut(&lane) {
                Some(waiting) => {
                    waiting.push_back(pending);
                    None
                }
                None => {
                    state.lanes.insert(lane, VecDeque::new());
                    Some(pending)
                }
            },
            None => Some(pending),
        }
    }

    fn take_ready(&self) -> Option<Pending> {
        let mut state = self.shared.state();
        while let Some(pending) = state.ready.pop_front() {
            if state.current(&pending) {
                return Some(pending);
            }
        }
        None
    }

    fn delivery(&self, pending: Pending) -> Delivery {
        let message = pending.incoming.clone();
        let deliveries = pending.deliveries;
        Delivery::new(
            message,
            deliveries > 1,
            Some(deliveries),
            Box::new(KafkaAck {
                shared: self.shared.clone(),
                pending: Some(pending),
            }),
        )
    }
}

/// Watches and commits for a [`KafkaSubscriber`] after it was handed to a consumer.
///
/// ```no_run
/// # async fn demo(subscriber: zerolost_kafka::KafkaSubscriber) -> Result<(), zerolost_core::Error> {
/// let monitor = subscriber.monitor();
/// // consumer.run(subscriber, shutdown).await?;
/// monitor.commit().await?; // the last done offsets, after the run
/// println!("{:?}", monitor.events());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SubscriberMonitor {
    consumer: Arc<StreamConsumer<Context>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SubscriberMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberMonitor").finish_non_exhaustive()
    }
}

impl SubscriberMonitor {
    /// Commits every done offset now.
    pub async fn commit(&self) -> Result<(), Error> {
        commit_done(&self.consumer, &self.shared).await
    }

    /// Assignments, revocations and commits of this member so far (the latest 10,000).
    pub fn events(&self) -> Vec<GroupEvent> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Drop for KafkaSubscriber {
    fn drop(&mut self) {
        self.committer.abort();
    }
}

#[async_trait]
impl Subscriber for KafkaSubscriber {
    async fn next(&mut self) -> Result<Delivery, Error> {
        loop {
            if let Some(pending) = self.take_ready() {
                return Ok(self.delivery(pending));
            }
            let admitted = tokio::select! {
                received = self.consumer.recv() => match received {
                    Ok(message) => self.admit(&message),
                    Err(source) => {
                        let error = KafkaError::Client { operation: "consume", source };
                        if error.is_retryable() {
                            debug!(%error, "consumer error; librdkafka retries by itself");
                            continue;
                        }
                        return Err(error.into());
                    }
                },
                () = self.shared.wake.notified() => None,
            };
            if let Some(pending) = admitted {
                return Ok(self.delivery(pending));
            }
        }
    }
}

/// Settles one delivery; dropped unsettled, it hands the message out again.
struct KafkaAck {
    shared: Arc<Shared>,
    pending: Option<Pending>,
}

#[async_trait]
impl Acknowledger for KafkaAck {
    async fn ack(mut self: Box<Self>) -> Result<(), Error> {
        if let Some(pending) = self.pending.take() {
            self.shared.done(&pending);
        }
        Ok(())
    }

    /// `requeue = true`: handed out again (retry in place, the partition's later offsets
    /// are not committed past it). `false`: the message is given up and its offset may
    /// be committed (the consumer dead-letters before it acknowledges, so this is only
    /// reached by callers that chose to drop it).
    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), Error> {
        if let Some(pending) = self.pending.take() {
            if requeue {
                self.shared.redeliver(pending);
            } else {
                self.shared.done(&pending);
            }
        }
        Ok(())
    }
}

impl Drop for KafkaAck {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.shared.redeliver(pending);
        }
    }
}

/// A record as zerolost sees it: headers as stored (UTF-8, lossy), key, payload, and its
/// position as `native_id` (`topic/partition/offset`).
pub(crate) fn record(message: &BorrowedMessage<'_>) -> Incoming {
    let mut headers = BTreeMap::new();
    if let Some(record_headers) = message.headers() {
        for header in record_headers.iter() {
            let value = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            headers.insert(header.key.to_owned(), value);
        }
    }
    Incoming {
        destination: message.topic().to_owned(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        native_id: Some(format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        )),
        payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
    }
}

/// A delivered record, with its position also in headers (so a dead-letter copy keeps it).
fn incoming(message: &BorrowedMessage<'_>) -> Incoming {
    let mut incoming = record(message);
    let headers = &mut incoming.headers;
    headers.insert(TOPIC_HEADER.to_owned(), message.topic().to_owned());
    headers.insert(PARTITION_HEADER.to_owned(), message.partition().to_string());
    headers.insert(OFFSET_HEADER.to_owned(), message.offset().to_string());
    incoming
}

async fn commit_loop(consumer: Arc<StreamConsumer<Context>>, shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = commit_done(&consumer, &shared).await {
            debug!(error = %e, "periodic commit failed; the next one retries");
        }
    }
}

/// Commits, synchronously on a blocking thread, each partition's contiguous done offset.
async fn commit_done(
    consumer: &Arc<StreamConsumer<Context>>,
    shared: &Arc<Shared>,
) -> Result<(), Error> {
    let commits = shared.state().tracker.to_commit();
    if commits.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &commits {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|source| KafkaError::Client {
                operation: "commit",
                source,
            })?;
    }
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
        .await
        .map_err(|e| Error::backend("kafka commit task", true, e.to_string()))?
        .map_err(|source| KafkaError::Client {
            operation: "commit",
            source,
        })?;
    let mut state = shared.state();
    for ((topic, partition), offset) in commits {
        state.tracker.committed(&(topic.clone(), partition), offset);
        shared.record(GroupEvent::Committed {
            topic,
            partition,
            offset,
        });
    }
    Ok(())
}
