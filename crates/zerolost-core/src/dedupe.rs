//! Idempotent consumption: leased claims, processed marks, failure counts, and the
//! consumer-side ledger the reconciler reads.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Envelope, Error, Failure, MessageId};

/// How long processed marks are kept by default (the source article's 24 h): the
/// consumer's `keep_for`, and the window the reconciler and a redrive assume unless told.
pub(crate) const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// Proof of a claim on one message id. Only its holder can extend, complete or release
/// the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken {
    /// The claimed message.
    pub id: MessageId,
    /// Random token of this claim.
    pub token: Uuid,
    /// The fencing number of this claim: it grows with every claim of the id (a takeover
    /// after an expired lease included), so a later holder always has a larger one. Write
    /// effects outside the dedupe store with a compare on it (see [`HandlerContext`](crate::HandlerContext)).
    /// 0 until a store has granted the claim.
    pub fence: u64,
}

impl ClaimToken {
    /// A fresh token for `id` (fencing number 0: set by the store that grants it).
    pub fn new(id: MessageId) -> Self {
        Self {
            id,
            token: Uuid::new_v4(),
            fence: 0,
        }
    }

    /// The same token with the fencing number the store granted.
    pub fn with_fence(self, fence: u64) -> Self {
        Self { fence, ..self }
    }
}

/// How a message ended on the consumer side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The handler succeeded.
    Processed,
    /// The message went to the dead-letter queue.
    DeadLettered,
}

/// Answer to [`DedupeStore::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the message until the lease ends; process it, then complete or release.
    Claimed(ClaimToken),
    /// Already done (within the keep-for window): acknowledge without processing.
    AlreadyProcessed(Outcome),
    /// Another consumer holds a live claim: do not acknowledge; let it be redelivered later.
    HeldByOther,
}

/// Failures counted for one message across redeliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// How many times the handler failed.
    pub attempts: u32,
    /// First failure.
    pub first_at: DateTime<Utc>,
    /// Latest failure.
    pub last_at: DateTime<Utc>,
    /// Latest error text.
    pub last_error: String,
}

/// The consumer's memory of what it processed: leased claims, processed marks, failure counts.
///
/// A claim expires after its lease (a crashed consumer's claim frees itself) unless its
/// holder extends it; only the claim's token can extend, complete or release it. Each
/// claim of an id carries a fencing number larger than every earlier claim's. A completed id answers `AlreadyProcessed`
/// for `keep_for` (24 h by default, as in the source article).
///
/// An unreachable store returns a retryable error; the consumer then stops and acks nothing.
#[async_trait]
pub trait DedupeStore: Send + Sync {
    /// Tries to claim `id` for `lease`. A granted claim's token carries its fencing
    /// number, larger than that of any earlier claim of `id` the store remembers.
    async fn claim(&self, id: MessageId, lease: Duration) -> Result<Claim, Error>;
    /// Extends the claim to end `lease` from now (store clock) if `token` still holds it;
    /// `Err(LeaseLost)` otherwise (it expired and was taken over, or was finished). The
    /// consumer calls it while the handler runs, so a slow handler keeps its claim.
    async fn extend(&self, token: &ClaimToken, lease: Duration) -> Result<(), Error>;
    /// Marks the claimed message done; `Err(LeaseLost)` if the claim is no longer the
    /// caller's. Completing again with the same token and outcome is a no-op (`Ok`).
    async fn complete(
        &self,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), Error>;
    /// Gives the claim up without completing (the message will be processed again).
    async fn release(&self, token: &ClaimToken) -> Result<(), Error>;
    /// The failures counted so far for `id`.
    async fn failures(&self, id: MessageId) -> Result<Option<FailureRecord>, Error>;
    /// Counts one more failure for `id` and returns the new record.
    async fn record_failure(&self, id: MessageId, error: &str) -> Result<FailureRecord, Error>;
    /// Keeps a dead letter the DLQ refused for good, durably, until a redrive takes it
    /// (listed with the DLQ through [`ConsumerLedger::parked_dead_letters`]). Keeping the
    /// same id again is a no-op. The default refuses: the consumer then leaves the message
    /// unacknowledged, as before.
    async fn park_dead_letter(&self, parked: &ParkedDeadLetter) -> Result<(), Error> {
        let _ = parked;
        Err(Error::Config(
            "this dedupe store cannot keep dead letters the DLQ refused".into(),
        ))
    }
}

#[async_trait]
impl<T: DedupeStore + ?Sized> DedupeStore for Arc<T> {
    async fn claim(&self, id: MessageId, lease: Duration) -> Result<Claim, Error> {
        (**self).claim(id, lease).await
    }
    async fn extend(&self, token: &ClaimToken, lease: Duration) -> Result<(), Error> {
        (**self).extend(token, lease).await
    }
    async fn complete(
        &self,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), Error> {
        (**self).complete(token, outcome, keep_for).await
    }
    async fn release(&self, token: &ClaimToken) -> Result<(), Error> {
        (**self).release(token).await
    }
    async fn failures(&self, id: MessageId) -> Result<Option<FailureRecord>, Error> {
        (**self).failures(id).await
    }
    async fn record_failure(&self, id: MessageId, error: &str) -> Result<FailureRecord, Error> {
        (**self).record_failure(id, error).await
    }
    async fn park_dead_letter(&self, parked: &ParkedDeadLetter) -> Result<(), Error> {
        (**self).park_dead_letter(parked).await
    }
}

/// One message the consumer side finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessedEntry {
    /// The message.
    pub id: MessageId,
    /// Processed or dead-lettered.
    pub outcome: Outcome,
    /// When.
    pub at: DateTime<Utc>,
}

/// A ledger read at one instant of the store's own clock.
#[derive(Debug, Clone)]
pub struct Snapshot<T> {
    /// The store's clock when the snapshot was taken.
    pub taken_at: DateTime<Utc>,
    /// The rows.
    pub entries: Vec<T>,
}

/// The consumer side's ledger for the [`Reconciler`](crate::Reconciler): what was
/// processed or dead-lettered, and how many redeliveries were suppressed as duplicates.
#[async_trait]
pub trait ConsumerLedger: Send + Sync {
    /// Finished messages since `since` (all when `None`).
    async fn finished(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Snapshot<ProcessedEntry>, Error>;
    /// Deliveries answered `AlreadyProcessed` so far (duplicates suppressed), where counted.
    async fn duplicates_suppressed(&self) -> Result<u64, Error>;
    /// Forgets a **dead-lettered** id (its mark and failure count) so that a redriven copy
    /// is processed afresh; `Ok(true)` when a dead-letter mark was removed. A processed id
    /// or a live claim is never touched (`Ok(false)`): redriving cannot apply a message twice.
    async fn forget_dead_letter(&self, id: MessageId) -> Result<bool, Error> {
        let _ = id;
        Err(Error::Config(
            "this consumer ledger cannot forget dead letters, so a redriven message would be suppressed as a duplicate"
                .into(),
        ))
    }
    /// The dead letters of `destination` (the one they were consumed from) that the DLQ
    /// refused and the consumers kept here; none by default.
    async fn parked_dead_letters(&self, destination: &str) -> Result<Vec<ParkedDeadLetter>, Error> {
        let _ = destination;
        Ok(Vec::new())
    }
    /// Removes parked dead letters (after their redrive); returns how many.
    async fn remove_parked(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        let _ = (destination, ids);
        Ok(0)
    }
}

#[async_trait]
impl<T: ConsumerLedger + ?Sized> ConsumerLedger for Arc<T> {
    async fn finished(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Snapshot<ProcessedEntry>, Error> {
        (**self).finished(since).await
    }
    async fn duplicates_suppressed(&self) -> Result<u64, Error> {
        (**self).duplicates_suppressed().await
    }
    async fn forget_dead_letter(&self, id: MessageId) -> Result<bool, Error> {
        (**self).forget_dead_letter(id).await
    }
    async fn parked_dead_letters(&self, destination: &str) -> Result<Vec<ParkedDeadLetter>, Error> {
        (**self).parked_dead_letters(destination).await
    }
    async fn remove_parked(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        (**self).remove_parked(destination, ids).await
    }
}

/// A dead letter the DLQ refused for good, as the consumer's store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedDeadLetter {
    /// The message as consumed: its original destination, id, key, headers and payload.
    pub envelope: Envelope,
    /// Why it was dead-lettered.
    pub failure: Failure,
    /// Why the DLQ refused it.
    pub refused: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

impl ParkedDeadLetter {
    /// `envelope`, dead-lettered for `failure`, refused by the DLQ with `refused`.
    pub fn new(envelope: &Envelope, failure: &Failure, refused: &Error) -> Self {
        Self {
            envelope: envelope.clone(),
            failure: failure.clone(),
            refused: crate::dead_letter::bounded(&refused.to_string()),
            parked_at: Utc::now(),
        }
    }
}
