//! An in-memory outbox with leases, backoff schedule and parking.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use super::state::{Clock, lock};
use crate::{
    Envelope, Error, Lease, MessageId, OutboxEntry, OutboxRecord, OutboxStatus, OutboxStore,
    Snapshot,
};

struct Row {
    envelope: Envelope,
    status: OutboxStatus,
    attempts: u32,
    due: Instant,
    lease: Option<(Uuid, Instant)>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct State {
    rows: HashMap<MessageId, Row>,
    /// Pending rows without a lease, by due time (then insertion order).
    due: BTreeSet<(Instant, u64, MessageId)>,
    /// Leased rows by lease expiry.
    leased: BTreeSet<(Instant, MessageId)>,
    seq: u64,
    published: usize,
    parked: usize,
}

impl State {
    fn make_due(&mut self, id: MessageId, at: Instant) {
        self.seq += 1;
        self.due.insert((at, self.seq, id));
    }

    /// Takes the row off its lease if `lease` still holds it.
    fn take_lease(&mut self, lease: &Lease) -> Option<&mut Row> {
        let row = self.rows.get_mut(&lease.id)?;
        let (token, expires) = row.lease?;
        if token != lease.token {
            return None;
        }
        row.lease = None;
        self.leased.remove(&(expires, lease.id));
        self.rows.get_mut(&lease.id)
    }
}

/// An outbox in memory. Enqueue with [`MemoryOutbox::enqueue`] (there is no transaction to
/// share here); the relay and reconciler use it through [`OutboxStore`].
#[derive(Clone)]
pub struct MemoryOutbox {
    state: Arc<Mutex<State>>,
    clock: Clock,
}

impl Default for MemoryOutbox {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            clock: Clock::new(),
        }
    }

    /// Adds one message, due now. An id already in the outbox is refused.
    pub fn enqueue(&self, envelope: &Envelope) -> Result<(), Error> {
        self.enqueue_batch(std::slice::from_ref(envelope))
    }

    /// Adds messages atomically: all or none (an id already present refuses the batch).
    pub fn enqueue_batch(&self, envelopes: &[Envelope]) -> Result<(), Error> {
        let mut state = lock(&self.state);
        let mut seen = std::collections::HashSet::with_capacity(envelopes.len());
        if let Some(dup) = envelopes
            .iter()
            .find(|e| state.rows.contains_key(&e.id) || !seen.insert(e.id))
        {
            return Err(Error::Invalid {
                reason: format!("message {} is already in the outbox", dup.id),
            });
        }
        let now = Instant::now();
        let created_at = self.clock.at(now);
        for envelope in envelopes {
            state.rows.insert(
                envelope.id,
                Row {
                    envelope: envelope.clone(),
                    status: OutboxStatus::Pending,
                    attempts: 0,
                    due: now,
                    lease: None,
                    last_error: None,
                    created_at,
                    published_at: None,
                },
            );
            state.make_due(envelope.id, now);
        }
        Ok(())
    }

    /// The status of one row.
    pub fn status(&self, id: MessageId) -> Option<OutboxStatus> {
        lock(&self.state).rows.get(&id).map(|r| r.status)
    }

    /// Row counts: `(pending, published, parked)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let state = lock(&self.state);
        let pending = state.rows.len() - state.published - state.parked;
        (pending, state.published, state.parked)
    }

    /// Rows leased right now (live leases).
    pub fn leased_now(&self) -> usize {
        let now = Instant::now();
        lock(&self.state)
            .leased
            .iter()
            .filter(|(expires, _)| *expires > now)
            .count()
    }
}

#[async_trait]
impl OutboxStore for MemoryOutbox {
    async fn lease(&self, max: usize, lease_for: Duration) -> Result<Vec<OutboxRecord>, Error> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        // Expired leases: their relay is gone; the rows are due again.
        while let Some(&(expires, id)) = state.leased.first() {
            if expires > now {
                break;
            }
            state.leased.pop_first();
            let due = match state.rows.get_mut(&id) {
                Some(row) => {
                    row.lease = None;
                    row.due
                }
                None => continue,
            };
            state.make_due(id, due);
        }
        let mut records = Vec::new();
        while records.len() < max {
            let Some(&(due, seq, id)) = state.due.first() else {
                break;
            };
            if due > now {
                break;
            }
            state.due.remove(&(due, seq, id));
            let token = Uuid::new_v4();
            let expires = now + lease_for;
            let Some(row) = state.rows.get_mut(&id) else {
                continue;
            };
            if row.status != OutboxStatus::Pending {
                continue;
            }
            row.lease = Some((token, expires));
            records.push(OutboxRecord {
                envelope: row.envelope.clone(),
                attempts: row.attempts,
                lease: Lease { id, token },
            });
            state.leased.insert((expires, id));
        }
        Ok(records)
    }

    async fn mark_published(&self, leases: &[Lease]) -> Result<usize, Error> {
        let published_at = self.clock.now();
        let mut state = lock(&self.state);
        let mut marked = 0;
        for lease in leases {
            if let Some(row) = state.take_lease(lease) {
                row.status = OutboxStatus::Published;
                row.published_at = Some(published_at);
                row.last_error = None;
                marked += 1;
            }
        }
        state.published += marked;
        Ok(marked)
    }

    async fn reschedule(
        &self,
        lease: &Lease,
        attempts: u32,
        retry_in: Duration,
        error: &str,
    ) -> Result<bool, Error> {
        let due = Instant::now() + retry_in;
        let mut state = lock(&self.state);
        let Some(row) = state.take_lease(lease) else {
            return Ok(false);
        };
        row.attempts = attempts;
        row.due = due;
        row.last_error = Some(error.to_owned());
        state.make_due(lease.id, due);
        Ok(true)
    }

    async fn park(&self, lease: &Lease, attempts: u32, reason: &str) -> Result<bool, Error> {
        let mut state = lock(&self.state);
        let Some(row) = state.take_lease(lease) else {
            return Ok(false);
        };
        row.status = OutboxStatus::Parked;
        row.attempts = attempts;
        row.last_error = Some(reason.to_owned());
        state.parked += 1;
        Ok(true)
    }

    async fn release(&self, leases: &[Lease]) -> Result<usize, Error> {
        let mut state = lock(&self.state);
        let mut released = 0;
        for lease in leases {
            if let Some(row) = state.take_lease(lease) {
                let due = row.due;
                state.make_due(lease.id, due);
                released += 1;
            }
        }
        Ok(released)
    }

    async fn requeue(&self, ids: &[MessageId]) -> Result<usize, Error> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let mut requeued = 0;
        for id in ids {
            let Some(row) = state.rows.get_mut(id) else {
                continue;
            };
            match row.status {
                OutboxStatus::Pending => continue,
                OutboxStatus::Published => state.published -= 1,
                OutboxStatus::Parked => state.parked -= 1,
            }
            let Some(row) = state.rows.get_mut(id) else {
                continue;
            };
            row.status = OutboxStatus::Pending;
            row.attempts = 0;
            row.due = now;
            row.published_at = None;
            state.make_due(*id, now);
            requeued += 1;
        }
        Ok(requeued)
    }

    async fn counts(&self) -> Result<crate::OutboxCounts, Error> {
        let (pending, published, parked) = MemoryOutbox::counts(self);
        let oldest_pending = if pending == 0 {
            None
        } else {
            lock(&self.state)
                .rows
                .values()
                .filter(|row| row.status == OutboxStatus::Pending)
                .map(|row| row.created_at)
                .min()
        };
        Ok(crate::OutboxCounts {
            pending,
            published,
            parked,
            leased: self.leased_now(),
            oldest_pending,
        })
    }

    async fn snapshot(&self, since: Option<DateTime<Utc>>) -> Result<Snapshot<OutboxEntry>, Error> {
        let now = Instant::now();
        let state = lock(&self.state);
        let mut entries: Vec<OutboxEntry> = state
            .rows
            .iter()
            .filter(|(_, row)| since.is_none_or(|since| row.created_at >= since))
            .map(|(id, row)| OutboxEntry {
                id: *id,
                destination: row.envelope.destination.clone(),
                status: row.status,
                attempts: row.attempts,
                leased: row.lease.is_some_and(|(_, expires)| expires > now),
                last_error: row.last_error.clone(),
                created_at: row.created_at,
                published_at: row.published_at,
            })
            .collect();
        entries.sort_by_key(|e| e.id);
        Ok(Snapshot {
            taken_at: self.clock.at(now),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn leases_are_exclusive_until_they_expire() {
        let outbox = MemoryOutbox::new();
        outbox.enqueue(&Envelope::new("d", "x")).unwrap();
        let first = outbox.lease(10, LEASE).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(outbox.lease(10, LEASE).await.unwrap().is_empty());
        tokio::time::advance(LEASE + Duration::from_millis(1)).await;
        let second = outbox.lease(10, LEASE).await.unwrap();
        assert_eq!(second.len(), 1);
        // The first relay's stale lease cannot mark the row any more.
        assert_eq!(
            outbox
                .mark_published(&[first[0].lease.clone()])
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            outbox
                .mark_published(&[second[0].lease.clone()])
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            outbox.status(second[0].envelope.id),
            Some(OutboxStatus::Published)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reschedule_delays_and_park_keeps_the_row() {
        let outbox = MemoryOutbox::new();
        let env = Envelope::new("d", "x");
        outbox.enqueue(&env).unwrap();
        let r = outbox.lease(1, LEASE).await.unwrap().remove(0);
        assert!(
            outbox
                .reschedule(&r.lease, 1, Duration::from_secs(5), "flap")
                .await
                .unwrap()
        );
        assert!(outbox.lease(1, LEASE).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(5)).await;
        let r = outbox.lease(1, LEASE).await.unwrap().remove(0);
        assert_eq!(r.attempts, 1);
        assert!(outbox.park(&r.lease, 2, "unroutable").await.unwrap());
        let snap = outbox.snapshot(None).await.unwrap();
        assert_eq!(snap.entries[0].status, OutboxStatus::Parked);
        assert_eq!(snap.entries[0].last_error.as_deref(), Some("unroutable"));
        assert_eq!(outbox.requeue(&[env.id]).await.unwrap(), 1);
        assert_eq!(outbox.lease(1, LEASE).await.unwrap().len(), 1);
    }

    #[test]
    fn duplicate_ids_refuse_the_whole_batch() {
        let outbox = MemoryOutbox::new();
        let a = Envelope::new("d", "a");
        outbox.enqueue(&a).unwrap();
        let b = Envelope::new("d", "b");
        assert!(outbox.enqueue_batch(&[b.clone(), a]).is_err());
        assert_eq!(outbox.counts(), (1, 0, 0));
        assert!(outbox.enqueue_batch(&[b.clone(), b]).is_err());
    }
}
