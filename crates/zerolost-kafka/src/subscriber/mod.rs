//! [`KafkaSubscriber`]: manual commits of contiguous done offsets, local redelivery of
//! handed-back messages, key-ordered hand-out, and rebalance handling. One concern per
//! file: `state.rs` (lanes, the ready queue, group events), `tracker.rs` (offsets per
//! partition), `rebalance.rs`, `commit.rs`, `ack.rs`, `record.rs`.

mod ack;
mod commit;
mod rebalance;
mod record;
mod state;
mod tracker;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::debug;
use zerolost_core::{Delivery, Error, Subscriber};

use crate::{KafkaConfig, KafkaError};
use ack::KafkaAck;
use commit::{commit_done, commit_loop};
use rebalance::Context;
use record::incoming;
pub(crate) use record::record;
pub use record::{OFFSET_HEADER, PARTITION_HEADER, TOPIC_HEADER};
pub use state::{GroupEvent, Ordering};
use state::{Lane, Pending, Shared, State};

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
    closed: bool,
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
            closed: false,
        })
    }

    /// Commits every done offset now.
    pub async fn commit(&self) -> Result<(), Error> {
        commit_done(&self.consumer, &self.shared).await
    }

    /// Messages handed out and not yet done.
    pub fn in_flight(&self) -> usize {
        self.shared.state().tracker.in_flight()
    }

    /// Assignments, revocations and commits of this member so far (the latest 10,000).
    /// Run a consumer on `&mut subscriber` to read them after the run.
    pub fn events(&self) -> Vec<GroupEvent> {
        self.shared.events()
    }

    /// The underlying consumer (positions, committed offsets, metadata).
    pub fn consumer(&self) -> &StreamConsumer<impl rdkafka::consumer::ConsumerContext> {
        &*self.consumer
    }

    /// Takes a record from Kafka into the state; returns it if it may go out now.
    fn admit(&self, message: &BorrowedMessage<'_>) -> Option<Pending> {
        let partition = (message.topic().to_owned(), message.partition());
        let offset = message.offset();
        let incoming = incoming(message);
        let mut state = self.shared.state();
        let generation = state.tracker.received(&partition, offset);
        let lane = Lane::of(self.ordering, &partition, generation, message.key());
        state.admit(Pending {
            incoming,
            partition,
            offset,
            generation,
            lane,
            deliveries: 1,
        })
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

impl Drop for KafkaSubscriber {
    fn drop(&mut self) {
        self.committer.abort();
    }
}

#[async_trait]
impl Subscriber for KafkaSubscriber {
    async fn next(&mut self) -> Result<Delivery, Error> {
        loop {
            if self.closed {
                return Err(Error::Closed("the Kafka subscriber was closed".into()));
            }
            let ready = self.shared.state().take_ready();
            if let Some(pending) = ready {
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

    /// Commits the done offsets and leaves the group. Messages still in flight are not
    /// committed: they come back to whichever consumer gets their partition.
    async fn close(&mut self) -> Result<(), Error> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        self.committer.abort();
        let result = commit_done(&self.consumer, &self.shared).await;
        leave(&self.consumer).await;
        result
    }
}

/// How long `close` serves the group's revoke before giving up on a clean leave.
const LEAVE_PATIENCE: Duration = Duration::from_secs(10);

/// Unsubscribes and polls until the revoke is served (the rebalance callback runs only
/// while the consumer is polled), so the group hands the partitions on at once instead of
/// after the session timeout. Records read meanwhile are not handed out or committed.
async fn leave(consumer: &StreamConsumer<Context>) {
    consumer.unsubscribe();
    let deadline = tokio::time::Instant::now() + LEAVE_PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if consumer.assignment().is_ok_and(|list| list.count() == 0) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    debug!("the group's revoke was not served within {LEAVE_PATIENCE:?}");
}
