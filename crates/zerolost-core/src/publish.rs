//! Confirmed publish.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Envelope, Error, MessageId};

/// Proof that the broker stored a message durably under the backend's strongest rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message.
    pub id: MessageId,
    /// Where it was stored.
    pub destination: String,
    /// Where the broker put it, if it says (partition/offset, delivery tag, broker msgId).
    pub position: Option<String>,
}

/// Sends messages and resolves only when the broker confirmed durability.
///
/// `publish` returns `Ok` **only** after the broker's confirm under the backend's strongest
/// rule (publisher confirm, `acks=all`, `SEND_OK` on a `SYNC_FLUSH` broker). An error says
/// [`Error::is_retryable`]: a retryable error means the message may or may not be stored
/// (the relay re-sends, the consumer deduplicates).
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use zerolost_core::{Envelope, Publisher, memory::MemoryBroker};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let broker = MemoryBroker::new();
/// broker.declare("orders");
/// let receipt = broker.publisher().publish(&Envelope::new("orders", "hi")).await.unwrap();
/// assert_eq!(receipt.destination, "orders");
/// # });
/// # }
/// ```
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes one message and waits for the broker's confirm.
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error>;

    /// Publishes many messages with their confirms in flight together; one result per
    /// message, in order. The default runs `publish` concurrently.
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        futures::future::join_all(envelopes.iter().map(|e| self.publish(e))).await
    }

    /// Waits for what is in flight and releases the connection. Every publisher closes
    /// this way; a publish after `close` fails with [`Error::Closed`]. The default does
    /// nothing (a publisher with nothing to release).
    async fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[async_trait]
impl<T: Publisher + ?Sized> Publisher for Arc<T> {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        (**self).publish(envelope).await
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        (**self).publish_batch(envelopes).await
    }

    async fn close(&self) -> Result<(), Error> {
        (**self).close().await
    }
}

#[async_trait]
impl<T: Publisher + ?Sized> Publisher for Box<T> {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        (**self).publish(envelope).await
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        (**self).publish_batch(envelopes).await
    }

    async fn close(&self) -> Result<(), Error> {
        (**self).close().await
    }
}
