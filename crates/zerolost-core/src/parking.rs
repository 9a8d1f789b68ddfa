//! Dead letters a DLQ refused for good, kept in the consumer's own dedupe store.
//!
//! A dead letter carries its failure metadata in headers; on Kafka or RocketMQ that can
//! push a message near the size limit over it, and the DLQ then refuses it for good. Left
//! unsettled it would come back, fail and be refused again forever, and on Kafka hold back
//! every later commit of its partition. So the consumer keeps it in its dedupe store
//! ([`DedupeStore::park_dead_letter`](crate::DedupeStore::park_dead_letter)) with the
//! refusal, marks it dead-lettered and moves on; [`WithParked`] lists such messages beside
//! the DLQ's own, and a redrive takes them from there like any dead letter.

use std::sync::Arc;

use async_trait::async_trait;

pub use crate::dedupe::ParkedDeadLetter;
use crate::redrive::{DeadLetterMessage, DeadLetterQueue};
use crate::{ConsumerLedger, Error, MessageId};

/// A [`DeadLetterQueue`] that also shows the dead letters the consumers parked in their
/// ledger (the DLQ refused them): `list` returns both, `remove` takes a parked message out
/// of the ledger and any other from the DLQ.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use zerolost_core::memory::{MemoryBroker, MemoryDedupe};
/// use zerolost_core::parking::WithParked;
/// use zerolost_core::redrive::DeadLetterQueue;
/// let broker = MemoryBroker::new();
/// broker.declare("orders.dlq");
/// let all = WithParked::new(Arc::new(broker), Arc::new(MemoryDedupe::new()));
/// assert!(all.list("orders").await.unwrap().is_empty());
/// # });
/// # }
/// ```
pub struct WithParked {
    dlq: Arc<dyn DeadLetterQueue>,
    ledger: Arc<dyn ConsumerLedger>,
}

impl WithParked {
    /// The DLQ `dlq` and the dead letters parked in `ledger`.
    pub fn new(dlq: Arc<dyn DeadLetterQueue>, ledger: Arc<dyn ConsumerLedger>) -> Self {
        Self { dlq, ledger }
    }
}

#[async_trait]
impl DeadLetterQueue for WithParked {
    async fn list(&self, destination: &str) -> Result<Vec<DeadLetterMessage>, Error> {
        let mut all = self.dlq.list(destination).await?;
        let parked = self.ledger.parked_dead_letters(destination).await?;
        all.extend(parked.iter().map(DeadLetterMessage::from));
        Ok(all)
    }

    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        let parked: Vec<MessageId> = self
            .ledger
            .parked_dead_letters(destination)
            .await?
            .iter()
            .map(|p| p.envelope.id)
            .filter(|id| ids.contains(id))
            .collect();
        let removed = self.ledger.remove_parked(destination, &parked).await?;
        let rest: Vec<MessageId> = ids
            .iter()
            .filter(|id| !parked.contains(id))
            .copied()
            .collect();
        if rest.is_empty() {
            return Ok(removed);
        }
        Ok(removed + self.dlq.remove(destination, &rest).await?)
    }

    async fn depth(&self, destination: &str) -> Result<usize, Error> {
        let parked = self.ledger.parked_dead_letters(destination).await?.len();
        Ok(self.dlq.depth(destination).await? + parked)
    }
}
