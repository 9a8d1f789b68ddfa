//! What a backend's tests provide to the conformance suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::memory::{MemoryBroker, MemoryDedupe, MemoryOutbox};
use zerolost_core::{
    ConsumerLedger, DeadLetterPublisher, DeadLetterSink, DedupeStore, Envelope, Error, Failure,
    IdExtractor, Incoming, MessageId, OutboxStore, Publisher, Subscriber, default_dlq_name,
};

/// A dead-lettered message as read back from a backend's DLQ.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its id, if it has one.
    pub id: Option<MessageId>,
    /// The message.
    pub message: Incoming,
    /// The failure metadata from its headers.
    pub failure: Option<Failure>,
}

impl DeadLetter {
    /// Reads id and failure metadata from a message taken off a DLQ.
    pub fn from_incoming(message: Incoming) -> Self {
        Self {
            id: IdExtractor::default().extract(&message).map(|(id, _)| id),
            failure: Failure::from_headers(&message.headers),
            message,
        }
    }
}

/// A broker backend under test: a factory of fresh destinations, publishers and subscribers.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Name for messages (`memory`, `kafka`, `rabbitmq`, ...).
    fn name(&self) -> String;
    /// A fresh destination, declared durable, with its DLQ, that no other test uses.
    async fn destination(&self) -> Result<String, Error>;
    /// A destination to which publishing fails permanently (unroutable / unknown).
    fn unroutable_destination(&self) -> String;
    /// A confirmed publisher.
    async fn publisher(&self) -> Result<Arc<dyn Publisher>, Error>;
    /// A subscriber for `destination`; two calls give two competing consumers.
    async fn subscriber(&self, destination: &str) -> Result<Box<dyn Subscriber>, Error>;
    /// Where the consumer dead-letters (confirmed).
    async fn dead_letter_sink(&self) -> Result<Arc<dyn DeadLetterSink>, Error>;
    /// The DLQ as an operator reads and redrives it; `None` where the backend cannot
    /// offer it (the suite then says so loudly and skips that case).
    async fn dead_letter_queue(
        &self,
    ) -> Result<Option<Arc<dyn zerolost_core::redrive::DeadLetterQueue>>, Error>;
    /// The DLQ's contents for `destination`'s messages.
    async fn dead_letters(&self, destination: &str) -> Result<Vec<DeadLetter>, Error>;
    /// The ids in `destination`'s DLQ.
    async fn dead_letter_ids(
        &self,
        destination: &str,
    ) -> Result<std::collections::HashSet<MessageId>, Error> {
        Ok(self
            .dead_letters(destination)
            .await?
            .into_iter()
            .filter_map(|d| d.id)
            .collect())
    }
    /// How long a test waits for something the broker should do (a delivery, a redelivery).
    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }
    /// True when a delivery given back sends the messages delivered with it back too, acked
    /// or not (RocketMQ with a consume batch above 1: its listener answers for the batch).
    fn settles_in_batches(&self) -> bool {
        false
    }
    /// Copies of messages stored on `destination`, where the backend can count them.
    async fn stored(&self, _destination: &str) -> Result<Option<usize>, Error> {
        Ok(None)
    }
}

/// Adds messages to an outbox in the store's own transaction (what an app does with
/// `enqueue(&mut tx, ..)` next to its business rows).
#[async_trait]
pub trait Enqueue: Send + Sync {
    /// Adds the messages atomically.
    async fn enqueue(&self, envelopes: &[Envelope]) -> Result<(), Error>;
}

/// A fresh outbox for one test.
#[derive(Clone)]
pub struct OutboxHandle {
    /// The outbox as the relay sees it.
    pub store: Arc<dyn OutboxStore>,
    /// How the test adds rows.
    pub enqueue: Arc<dyn Enqueue>,
}

/// A fresh dedupe store and its ledger for one test.
#[derive(Clone)]
pub struct DedupeHandle {
    /// The dedupe store.
    pub store: Arc<dyn DedupeStore>,
    /// Its ledger.
    pub ledger: Arc<dyn ConsumerLedger>,
}

/// The stores under test: a factory of fresh, isolated outboxes and dedupe stores.
#[async_trait]
pub trait Stores: Send + Sync {
    /// Name for messages (`memory`, `postgres`, `redis`, ...).
    fn name(&self) -> String;
    /// A fresh outbox.
    async fn outbox(&self) -> Result<OutboxHandle, Error>;
    /// A fresh dedupe store.
    async fn dedupe(&self) -> Result<DedupeHandle, Error>;
}

/// The in-memory broker as a [`Backend`].
#[derive(Clone)]
pub struct MemoryBackend {
    broker: MemoryBroker,
    next: Arc<AtomicU64>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A backend over a fresh broker.
    pub fn new() -> Self {
        Self::with_broker(MemoryBroker::new())
    }

    /// A backend over `broker` (e.g. one with faults).
    pub fn with_broker(broker: MemoryBroker) -> Self {
        Self {
            broker,
            next: Arc::default(),
        }
    }

    /// The broker.
    pub fn broker(&self) -> &MemoryBroker {
        &self.broker
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> String {
        "memory".into()
    }

    async fn destination(&self) -> Result<String, Error> {
        let name = format!("test-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.broker.declare(&name);
        self.broker.declare(&default_dlq_name(&name));
        Ok(name)
    }

    fn unroutable_destination(&self) -> String {
        "never-declared".into()
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, Error> {
        Ok(Arc::new(self.broker.publisher()))
    }

    async fn subscriber(&self, destination: &str) -> Result<Box<dyn Subscriber>, Error> {
        Ok(Box::new(self.broker.subscribe(destination)?))
    }

    async fn dead_letter_queue(
        &self,
    ) -> Result<Option<Arc<dyn zerolost_core::redrive::DeadLetterQueue>>, Error> {
        Ok(Some(Arc::new(self.broker.clone())))
    }

    async fn dead_letter_sink(&self) -> Result<Arc<dyn DeadLetterSink>, Error> {
        Ok(Arc::new(DeadLetterPublisher::new(self.broker.publisher())))
    }

    async fn dead_letters(&self, destination: &str) -> Result<Vec<DeadLetter>, Error> {
        Ok(self
            .broker
            .messages(&default_dlq_name(destination))
            .into_iter()
            .map(DeadLetter::from_incoming)
            .collect())
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }

    async fn stored(&self, destination: &str) -> Result<Option<usize>, Error> {
        Ok(Some(self.broker.stored_ids(destination).len()))
    }
}

#[async_trait]
impl Enqueue for MemoryOutbox {
    async fn enqueue(&self, envelopes: &[Envelope]) -> Result<(), Error> {
        self.enqueue_batch(envelopes)
    }
}

/// In-memory outbox and dedupe store as [`Stores`].
#[derive(Clone, Default)]
pub struct MemoryStores;

impl MemoryStores {
    /// The in-memory stores.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Stores for MemoryStores {
    fn name(&self) -> String {
        "memory".into()
    }

    async fn outbox(&self) -> Result<OutboxHandle, Error> {
        let outbox = MemoryOutbox::new();
        Ok(OutboxHandle {
            store: Arc::new(outbox.clone()),
            enqueue: Arc::new(outbox),
        })
    }

    async fn dedupe(&self) -> Result<DedupeHandle, Error> {
        let dedupe = MemoryDedupe::new();
        Ok(DedupeHandle {
            store: Arc::new(dedupe.clone()),
            ledger: Arc::new(dedupe),
        })
    }
}
