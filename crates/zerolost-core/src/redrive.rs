//! Reading a dead-letter queue back and redriving its messages to where they came from.
//!
//! Redrive order, so nothing is lost or applied twice: (1) the consumer ledger forgets the
//! id's dead-letter mark (a processed id is never forgotten), (2) the message is published
//! to its original destination **with confirms**, (3) only then is it removed from the DLQ.
//! A crash between steps leaves the message in the DLQ; redriving it again is safe, since a
//! copy that was processed meanwhile is now marked processed and suppressed downstream.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::{
    ConsumerLedger, Envelope, Error, Failure, Incoming, MESSAGE_ID_HEADER, MessageId, Publisher,
    dlq_headers,
};

/// One message read back from a dead-letter queue.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterMessage {
    /// Its id (`None` for a message dead-lettered because it carried none).
    pub id: Option<MessageId>,
    /// The message as it is redriven: original destination, key, payload, the
    /// application's headers (the failure metadata removed).
    #[serde(skip)]
    pub envelope: Envelope,
    /// Why it was dead-lettered, when the metadata is there.
    pub failure: Option<Failure>,
    /// Payload size in bytes.
    pub payload_len: usize,
}

impl DeadLetterMessage {
    /// Reads a message delivered from the DLQ of `original_destination`.
    pub fn from_incoming(original_destination: &str, message: Incoming) -> Self {
        let failure = Failure::from_headers(&message.headers);
        let id = message
            .headers
            .get(MESSAGE_ID_HEADER)
            .and_then(|v| v.parse().ok());
        let payload_len = message.payload.len();
        let mut envelope = message.into_envelope(id.unwrap_or_default());
        envelope.destination = failure.as_ref().map_or_else(
            || original_destination.to_owned(),
            |f| f.original_destination.clone(),
        );
        for name in [
            dlq_headers::ERROR,
            dlq_headers::REASON,
            dlq_headers::ATTEMPTS,
            dlq_headers::ORIGINAL_DESTINATION,
            dlq_headers::FIRST_FAILURE_AT,
            dlq_headers::LAST_FAILURE_AT,
        ] {
            envelope.headers.remove(name);
        }
        Self {
            id,
            envelope,
            failure,
            payload_len,
        }
    }
}

/// A backend's dead-letter queue as an operator sees it: list, and remove after a redrive.
#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// The messages dead-lettered from `destination`, oldest first, left in place.
    async fn list(&self, destination: &str) -> Result<Vec<DeadLetterMessage>, Error>;
    /// Removes the messages with these ids from `destination`'s DLQ; returns how many.
    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error>;
}

#[async_trait]
impl<T: DeadLetterQueue + ?Sized> DeadLetterQueue for Arc<T> {
    async fn list(&self, destination: &str) -> Result<Vec<DeadLetterMessage>, Error> {
        (**self).list(destination).await
    }
    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        (**self).remove(destination, ids).await
    }
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// Chosen messages that were published (confirmed) to their original destination.
    pub redriven: Vec<MessageId>,
    /// Of those, removed from the DLQ.
    pub removed: usize,
    /// Chosen ids not found in the DLQ.
    pub not_found: Vec<MessageId>,
    /// Chosen messages left in the DLQ because their publish failed, with the error.
    pub failed: Vec<(MessageId, String)>,
    /// Messages without an id, which are never redriven (nothing downstream could
    /// deduplicate them).
    pub skipped_without_id: usize,
}

/// Which dead letters to redrive.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every message with an id.
    All,
    /// These ids.
    Ids(Vec<MessageId>),
}

/// Redrives dead letters of `destination`: forget the ledger's mark, publish with
/// confirms, remove from the DLQ after the confirm. `dry_run` only reports the choice.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use zerolost_core::memory::{MemoryBroker, MemoryDedupe};
/// use zerolost_core::redrive::{Selection, redrive};
/// let broker = MemoryBroker::new();
/// broker.declare("orders");
/// let report = redrive(&broker, &broker.publisher(), &MemoryDedupe::new(),
///     "orders", &Selection::All, false).await.unwrap();
/// assert!(report.redriven.is_empty());
/// # });
/// # }
/// ```
pub async fn redrive(
    dlq: &dyn DeadLetterQueue,
    publisher: &dyn Publisher,
    ledger: &dyn ConsumerLedger,
    destination: &str,
    selection: &Selection,
    dry_run: bool,
) -> Result<RedriveReport, Error> {
    let messages = dlq.list(destination).await?;
    let mut report = RedriveReport::default();
    let chosen: Vec<&DeadLetterMessage> = match selection {
        Selection::All => {
            report.skipped_without_id = messages.iter().filter(|m| m.id.is_none()).count();
            messages.iter().filter(|m| m.id.is_some()).collect()
        }
        Selection::Ids(ids) => {
            let present: HashSet<MessageId> = messages.iter().filter_map(|m| m.id).collect();
            report.not_found = ids
                .iter()
                .filter(|id| !present.contains(id))
                .copied()
                .collect();
            let wanted: HashSet<&MessageId> = ids.iter().collect();
            messages
                .iter()
                .filter(|m| m.id.as_ref().is_some_and(|id| wanted.contains(id)))
                .collect()
        }
    };
    // One copy per id (a DLQ can hold two copies of one id after an earlier interrupted redrive).
    let mut seen = HashSet::new();
    let chosen: Vec<(MessageId, &Envelope)> = chosen
        .into_iter()
        .filter_map(|m| {
            m.id.filter(|id| seen.insert(*id))
                .map(|id| (id, &m.envelope))
        })
        .collect();
    if dry_run {
        report.redriven = chosen.iter().map(|(id, _)| *id).collect();
        return Ok(report);
    }
    for (id, _) in &chosen {
        ledger.forget_dead_letter(*id).await?;
    }
    let envelopes: Vec<Envelope> = chosen.iter().map(|(_, e)| (*e).clone()).collect();
    let results = publisher.publish_batch(&envelopes).await;
    for ((id, _), result) in chosen.iter().zip(results) {
        match result {
            Ok(_) => report.redriven.push(*id),
            Err(e) => report.failed.push((*id, e.to_string())),
        }
    }
    if !report.redriven.is_empty() {
        report.removed = dlq.remove(destination, &report.redriven).await?;
    }
    Ok(report)
}
