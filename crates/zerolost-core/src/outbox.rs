//! The transactional outbox, as the relay and the reconciler see it.
//!
//! Enqueueing is not part of the trait: it takes the caller's own transaction, so it
//! lives on each store (e.g. `outbox.enqueue(&mut tx, &envelope)` in zerolost-sqlx).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Envelope, Error, MessageId, Snapshot};

/// A relay's hold on one outbox row. Every state change checks the token, so a relay
/// whose lease expired cannot overwrite the work of the relay that took over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The row.
    pub id: MessageId,
    /// Random token of this lease.
    pub token: Uuid,
}

/// A leased outbox row.
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    /// The message to publish.
    pub envelope: Envelope,
    /// Failed publish attempts so far.
    pub attempts: u32,
    /// The lease to present when marking the row.
    pub lease: Lease,
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting to be (re)published.
    Pending,
    /// The broker confirmed it.
    Published,
    /// Could not be sent; kept with its reason for an operator.
    Parked,
}

/// One outbox row as the reconciler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The message.
    pub id: MessageId,
    /// Its destination.
    pub destination: String,
    /// Its state.
    pub status: OutboxStatus,
    /// Failed publish attempts.
    pub attempts: u32,
    /// A relay holds a live lease on it.
    pub leased: bool,
    /// The last publish error, or the reason it was parked.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the broker confirmed it.
    pub published_at: Option<DateTime<Utc>>,
}

impl Snapshot<OutboxEntry> {
    /// The ids of the rows in `status` (e.g. the parked ones, for a verdict by id).
    pub fn ids_in(&self, status: OutboxStatus) -> std::collections::HashSet<MessageId> {
        self.entries
            .iter()
            .filter(|e| e.status == status)
            .map(|e| e.id)
            .collect()
    }
}

/// The outbox as the [`Relay`](crate::Relay) and [`Reconciler`](crate::Reconciler) use it.
///
/// Rows are never deleted unsent: a row that cannot be sent is parked with its reason.
/// Durations (lease, retry delay) are relative, so a store can apply them on its own clock
/// (a database's `now()`), which keeps several relays on different hosts consistent.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Leases up to `max` due rows (pending, next attempt due, not leased or lease expired).
    async fn lease(&self, max: usize, lease_for: Duration) -> Result<Vec<OutboxRecord>, Error>;
    /// Marks rows published; returns how many leases were still held (the rest were taken over).
    async fn mark_published(&self, leases: &[Lease]) -> Result<usize, Error>;
    /// Records a failed attempt and makes the row due again after `retry_in`. `Ok(false)`
    /// if the lease was lost.
    async fn reschedule(
        &self,
        lease: &Lease,
        attempts: u32,
        retry_in: Duration,
        error: &str,
    ) -> Result<bool, Error>;
    /// Parks the row with its reason: it stays, is not retried, and shows in reports.
    /// `Ok(false)` if the lease was lost.
    async fn park(&self, lease: &Lease, attempts: u32, reason: &str) -> Result<bool, Error>;
    /// Returns leased rows unchanged (graceful shutdown); returns how many were still held.
    async fn release(&self, leases: &[Lease]) -> Result<usize, Error>;
    /// Makes published or parked rows pending again (repair, unpark); returns how many.
    async fn requeue(&self, ids: &[MessageId]) -> Result<usize, Error>;
    /// The rows created since `since` (all when `None`), for reconciliation.
    async fn snapshot(&self, since: Option<DateTime<Utc>>) -> Result<Snapshot<OutboxEntry>, Error>;

    /// Rows by status, and how many hold a live lease (for progress and monitoring).
    /// The default counts a full snapshot; stores override it with a cheaper query.
    async fn counts(&self) -> Result<OutboxCounts, Error> {
        let snapshot = self.snapshot(None).await?;
        let mut counts = OutboxCounts::default();
        for entry in &snapshot.entries {
            match entry.status {
                OutboxStatus::Pending => {
                    counts.pending += 1;
                    counts.oldest_pending = Some(
                        counts
                            .oldest_pending
                            .map_or(entry.created_at, |t| t.min(entry.created_at)),
                    );
                }
                OutboxStatus::Published => counts.published += 1,
                OutboxStatus::Parked => counts.parked += 1,
            }
            counts.leased += usize::from(entry.leased);
        }
        Ok(counts)
    }
}

/// How many outbox rows are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxCounts {
    /// Waiting to be published (leased or not).
    pub pending: usize,
    /// Confirmed by the broker.
    pub published: usize,
    /// Given up on, with a reason; waiting for a person or `requeue`.
    pub parked: usize,
    /// Pending rows under a live lease.
    pub leased: usize,
    /// When the oldest pending row was enqueued (`None` when nothing is pending): its age
    /// is the alert that the relay is stuck or the broker refuses.
    pub oldest_pending: Option<DateTime<Utc>>,
}

#[async_trait]
impl<T: OutboxStore + ?Sized> OutboxStore for Arc<T> {
    async fn lease(&self, max: usize, lease_for: Duration) -> Result<Vec<OutboxRecord>, Error> {
        (**self).lease(max, lease_for).await
    }
    async fn mark_published(&self, leases: &[Lease]) -> Result<usize, Error> {
        (**self).mark_published(leases).await
    }
    async fn reschedule(
        &self,
        lease: &Lease,
        attempts: u32,
        retry_in: Duration,
        error: &str,
    ) -> Result<bool, Error> {
        (**self).reschedule(lease, attempts, retry_in, error).await
    }
    async fn park(&self, lease: &Lease, attempts: u32, reason: &str) -> Result<bool, Error> {
        (**self).park(lease, attempts, reason).await
    }
    async fn release(&self, leases: &[Lease]) -> Result<usize, Error> {
        (**self).release(leases).await
    }
    async fn requeue(&self, ids: &[MessageId]) -> Result<usize, Error> {
        (**self).requeue(ids).await
    }
    async fn snapshot(&self, since: Option<DateTime<Utc>>) -> Result<Snapshot<OutboxEntry>, Error> {
        (**self).snapshot(since).await
    }
    async fn counts(&self) -> Result<OutboxCounts, Error> {
        (**self).counts().await
    }
}
