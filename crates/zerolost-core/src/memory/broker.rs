//! An in-process broker with at-least-once delivery and manual acknowledgement.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use super::faults::{FaultInjector, FaultKind};
use super::state::lock;
use crate::{
    Acknowledger, Delivery, Envelope, Error, Incoming, MessageId, Publisher, Receipt, Subscriber,
};

/// Largest message the in-memory broker accepts by default (like a broker's size limit).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

struct Stored {
    message: Incoming,
    deliveries: u32,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Stored>,
    unacked: HashMap<u64, Stored>,
    next_tag: u64,
    /// Every message ever stored here, in order: the broker's own ledger.
    log: Vec<MessageId>,
}

#[derive(Default)]
struct QueueCell {
    queue: Mutex<Queue>,
    arrived: Notify,
}

impl QueueCell {
    fn push(&self, stored: Stored) {
        lock(&self.queue).ready.push_back(stored);
        self.arrived.notify_waiters();
    }

    fn requeue(&self, tag: u64) {
        let mut queue = lock(&self.queue);
        if let Some(mut stored) = queue.unacked.remove(&tag) {
            stored.deliveries += 1;
            queue.ready.push_back(stored);
            drop(queue);
            self.arrived.notify_waiters();
        }
    }
}

struct BrokerInner {
    queues: Mutex<HashMap<String, Arc<QueueCell>>>,
    faults: Arc<FaultInjector>,
    max_message_bytes: usize,
    closed: AtomicBool,
}

/// An in-process broker: named queues (declare before use: publishing to an undeclared
/// destination is *unroutable*, like mandatory routing), at-least-once delivery, manual
/// ack, redelivery of nacked and dropped deliveries with a delivery count, and faults
/// from a [`FaultInjector`].
///
/// Subscribers of one destination compete for its messages (a queue, not a fan-out).
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<BrokerInner>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// A broker without faults.
    pub fn new() -> Self {
        Self::with_faults(Arc::new(FaultInjector::disabled()))
    }

    /// A broker whose publishes and acks suffer `faults`.
    pub fn with_faults(faults: Arc<FaultInjector>) -> Self {
        Self::build(faults, DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// The same broker with another message size limit (builder; call before use).
    pub fn with_max_message_bytes(self, max: usize) -> Self {
        Self::build(self.inner.faults.clone(), max)
    }

    fn build(faults: Arc<FaultInjector>, max_message_bytes: usize) -> Self {
        Self {
            inner: Arc::new(BrokerInner {
                queues: Mutex::new(HashMap::new()),
                faults,
                max_message_bytes,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The fault injector in use.
    pub fn faults(&self) -> &Arc<FaultInjector> {
        &self.inner.faults
    }

    /// Declares a destination (idempotent).
    pub fn declare(&self, destination: &str) {
        lock(&self.inner.queues)
            .entry(destination.to_owned())
            .or_default();
    }

    /// A confirmed publisher.
    pub fn publisher(&self) -> MemoryPublisher {
        MemoryPublisher {
            broker: self.clone(),
            crash_hook: None,
            closed: Arc::default(),
        }
    }

    /// A publisher that may "crash" mid-batch ([`FaultKind::RelayCrash`]): it publishes part
    /// of a batch, sends on `hook`, and never returns, so the owner can abort the relay
    /// task and start another (the crashed relay's leases expire).
    pub fn crashing_publisher(&self, hook: mpsc::UnboundedSender<()>) -> MemoryPublisher {
        MemoryPublisher {
            broker: self.clone(),
            crash_hook: Some(hook),
            closed: Arc::default(),
        }
    }

    /// A subscriber competing for `destination`'s messages.
    pub fn subscribe(&self, destination: &str) -> Result<MemorySubscriber, Error> {
        Ok(MemorySubscriber {
            cell: self.cell(destination)?,
            broker: self.clone(),
            closed: false,
        })
    }

    /// Ids of every message ever stored in `destination`, in order (duplicates included).
    pub fn stored_ids(&self, destination: &str) -> Vec<MessageId> {
        self.cell(destination)
            .map(|c| lock(&c.queue).log.clone())
            .unwrap_or_default()
    }

    /// The messages in `destination` now (ready and unacknowledged), e.g. to read a DLQ.
    pub fn messages(&self, destination: &str) -> Vec<Incoming> {
        let Ok(cell) = self.cell(destination) else {
            return Vec::new();
        };
        let queue = lock(&cell.queue);
        let mut unacked: Vec<_> = queue.unacked.iter().collect();
        unacked.sort_by_key(|(tag, _)| **tag);
        queue
            .ready
            .iter()
            .chain(unacked.into_iter().map(|(_, s)| s))
            .map(|s| s.message.clone())
            .collect()
    }

    /// Removes ready messages with these ids from `destination`; returns how many.
    fn remove_ready(&self, destination: &str, ids: &[MessageId]) -> usize {
        let Ok(cell) = self.cell(destination) else {
            return 0;
        };
        let wanted: std::collections::HashSet<&MessageId> = ids.iter().collect();
        let mut queue = lock(&cell.queue);
        let before = queue.ready.len();
        queue.ready.retain(|stored| {
            let id = stored
                .message
                .headers
                .get(crate::MESSAGE_ID_HEADER)
                .and_then(|v| v.parse::<MessageId>().ok());
            !id.is_some_and(|id| wanted.contains(&id))
        });
        before - queue.ready.len()
    }

    /// `(ready, unacknowledged)` message counts of `destination`.
    pub fn depth(&self, destination: &str) -> (usize, usize) {
        self.cell(destination)
            .map(|c| {
                let q = lock(&c.queue);
                (q.ready.len(), q.unacked.len())
            })
            .unwrap_or((0, 0))
    }

    /// Closes the broker: subscribers get [`Error::Closed`], publishes fail.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        for cell in lock(&self.inner.queues).values() {
            cell.arrived.notify_waiters();
        }
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    fn cell(&self, destination: &str) -> Result<Arc<QueueCell>, Error> {
        lock(&self.inner.queues)
            .get(destination)
            .cloned()
            .ok_or_else(|| Error::Unroutable {
                destination: destination.to_owned(),
            })
    }
}

/// Publishes to a [`MemoryBroker`]; `Ok` means stored.
#[derive(Clone)]
pub struct MemoryPublisher {
    broker: MemoryBroker,
    crash_hook: Option<mpsc::UnboundedSender<()>>,
    /// Shared by clones: closing one closes them all.
    closed: Arc<AtomicBool>,
}

impl MemoryPublisher {
    async fn publish_one(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        let broker = &self.broker;
        if broker.is_closed() || self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed("memory broker".into()));
        }
        if envelope.payload.len() > broker.inner.max_message_bytes {
            return Err(Error::Rejected {
                reason: format!(
                    "message of {} bytes exceeds the broker's limit of {} bytes",
                    envelope.payload.len(),
                    broker.inner.max_message_bytes
                ),
            });
        }
        let cell = broker.cell(&envelope.destination)?;
        let faults = &broker.inner.faults;
        if faults.strike(FaultKind::PublishFailed) {
            return Err(Error::unavailable(
                "memory broker",
                "connection reset before the message was stored (injected)",
            ));
        }
        let position = {
            let mut queue = lock(&cell.queue);
            queue.log.push(envelope.id);
            queue.log.len() - 1
        };
        cell.push(Stored {
            message: Incoming::from_envelope(envelope),
            deliveries: 0,
        });
        if faults.strike(FaultKind::LostConfirm) {
            return Err(Error::NotConfirmed {
                reason: "the confirm was lost after the broker stored the message (injected)"
                    .into(),
            });
        }
        if faults.strike(FaultKind::ConfirmTimeout) {
            let after = faults.config().confirm_timeout_after;
            tokio::time::sleep(after).await;
            return Err(Error::Timeout {
                operation: "waiting for the broker's confirm (injected)".into(),
                after,
            });
        }
        Ok(Receipt {
            id: envelope.id,
            destination: envelope.destination.clone(),
            position: Some(position.to_string()),
        })
    }
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        self.publish_one(envelope).await
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        let faults = &self.broker.inner.faults;
        if let Some(hook) = &self.crash_hook
            && faults.strike(FaultKind::RelayCrash)
        {
            let survivors = faults.pick(envelopes.len() + 1);
            for envelope in &envelopes[..survivors] {
                let _ = self.publish_one(envelope).await;
            }
            let _ = hook.send(());
            // The relay "died" here: it never learns the outcome and never marks its rows.
            std::future::pending::<()>().await;
        }
        futures::future::join_all(envelopes.iter().map(|e| self.publish_one(e))).await
    }

    async fn close(&self) -> Result<(), Error> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Receives from one [`MemoryBroker`] destination.
pub struct MemorySubscriber {
    cell: Arc<QueueCell>,
    broker: MemoryBroker,
    closed: bool,
}

impl MemorySubscriber {
    fn take(&self) -> Option<Delivery> {
        let mut queue = lock(&self.cell.queue);
        let stored = queue.ready.pop_front()?;
        let tag = queue.next_tag;
        queue.next_tag += 1;
        let message = stored.message.clone();
        let deliveries = stored.deliveries;
        queue.unacked.insert(tag, stored);
        drop(queue);
        let acker = MemoryAcker {
            cell: self.cell.clone(),
            faults: self.broker.inner.faults.clone(),
            tag,
            settled: false,
        };
        Some(Delivery::new(
            message,
            deliveries > 0,
            Some(deliveries + 1),
            Box::new(acker),
        ))
    }
}

#[async_trait]
impl Subscriber for MemorySubscriber {
    async fn next(&mut self) -> Result<Delivery, Error> {
        loop {
            let arrived = self.cell.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.broker.is_closed() || self.closed {
                return Err(Error::Closed("memory broker".into()));
            }
            if let Some(delivery) = self.take() {
                return Ok(delivery);
            }
            arrived.await;
        }
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.closed = true;
        Ok(())
    }
}

/// Settles one in-memory delivery; dropping it unsettled requeues the message.
pub struct MemoryAcker {
    cell: Arc<QueueCell>,
    faults: Arc<FaultInjector>,
    tag: u64,
    settled: bool,
}

#[async_trait]
impl Acknowledger for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), Error> {
        self.settled = true;
        if self.faults.strike(FaultKind::CrashBeforeAck) {
            self.cell.requeue(self.tag);
            return Err(Error::unavailable(
                "memory broker",
                "the consumer crashed before its ack reached the broker (injected)",
            ));
        }
        lock(&self.cell.queue).unacked.remove(&self.tag);
        Ok(())
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), Error> {
        self.settled = true;
        if requeue {
            self.cell.requeue(self.tag);
        } else {
            lock(&self.cell.queue).unacked.remove(&self.tag);
        }
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if !self.settled {
            self.cell.requeue(self.tag);
        }
    }
}

/// The memory broker's DLQs are the destinations `<destination>.dlq`.
#[async_trait::async_trait]
impl crate::redrive::DeadLetterQueue for MemoryBroker {
    async fn list(
        &self,
        destination: &str,
    ) -> Result<Vec<crate::redrive::DeadLetterMessage>, Error> {
        Ok(self
            .messages(&crate::default_dlq_name(destination))
            .into_iter()
            .map(|m| crate::redrive::DeadLetterMessage::from_incoming(destination, m))
            .collect())
    }

    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        Ok(self.remove_ready(&crate::default_dlq_name(destination), ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn undeclared_destination_is_unroutable() {
        let broker = MemoryBroker::new();
        let err = broker
            .publisher()
            .publish(&Envelope::new("nowhere", "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unroutable { .. }));
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn oversize_message_is_rejected_permanently() {
        let broker = MemoryBroker::new().with_max_message_bytes(4);
        broker.declare("d");
        let err = broker
            .publisher()
            .publish(&Envelope::new("d", "12345"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Rejected { .. }), "{err}");
    }

    #[tokio::test]
    async fn dropped_and_nacked_deliveries_come_back_counted() {
        let broker = MemoryBroker::new();
        broker.declare("d");
        let env = Envelope::new("d", "x");
        broker.publisher().publish(&env).await.unwrap();
        let mut sub = broker.subscribe("d").unwrap();
        let first = sub.next().await.unwrap();
        assert!(!first.redelivered);
        drop(first);
        let second = sub.next().await.unwrap();
        assert!(second.redelivered);
        assert_eq!(second.delivery_count, Some(2));
        second.nack(true).await.unwrap();
        let third = sub.next().await.unwrap();
        assert_eq!(third.delivery_count, Some(3));
        third.ack().await.unwrap();
        assert_eq!(broker.depth("d"), (0, 0));
        assert_eq!(broker.stored_ids("d"), vec![env.id]);
    }

    #[tokio::test]
    async fn lost_confirm_stores_the_message_anyway() {
        let faults = Arc::new(FaultInjector::new(crate::memory::FaultConfig {
            lost_confirm: 1.0,
            ..crate::memory::FaultConfig::none()
        }));
        let broker = MemoryBroker::with_faults(faults);
        broker.declare("d");
        let env = Envelope::new("d", "x");
        let err = broker.publisher().publish(&env).await.unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(broker.stored_ids("d"), vec![env.id]);
    }
}
