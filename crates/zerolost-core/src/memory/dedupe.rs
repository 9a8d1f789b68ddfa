//! An in-memory dedupe store with leased claims and an outage fault.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::faults::{FaultInjector, FaultKind};
use super::state::{Clock, lock};
use crate::parking::ParkedDeadLetter;
use crate::{
    Claim, ClaimToken, ConsumerLedger, DedupeStore, Error, FailureRecord, MessageId, Outcome,
    ProcessedEntry, Snapshot,
};

enum Mark {
    Free,
    Claimed {
        token: ClaimToken,
        expires: Instant,
    },
    Done {
        outcome: Outcome,
        at: DateTime<Utc>,
        until: Instant,
        token: ClaimToken,
    },
}

struct Entry {
    mark: Mark,
    failures: Option<FailureRecord>,
    /// The fencing number of the latest claim.
    fence: u64,
}

impl Entry {
    fn new() -> Self {
        Self {
            mark: Mark::Free,
            failures: None,
            fence: 0,
        }
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<MessageId, Entry>,
    outage_until: Option<Instant>,
    /// Dead letters the DLQ refused, by original destination.
    parked: HashMap<String, BTreeMap<MessageId, ParkedDeadLetter>>,
}

/// Dedupe store and consumer ledger in memory, with optional outages from a
/// [`FaultInjector`] ([`FaultKind::DedupeOutage`]).
#[derive(Clone)]
pub struct MemoryDedupe {
    state: Arc<Mutex<State>>,
    suppressed: Arc<AtomicU64>,
    faults: Arc<FaultInjector>,
    clock: Clock,
}

impl Default for MemoryDedupe {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDedupe {
    /// A store without faults.
    pub fn new() -> Self {
        Self::with_faults(Arc::new(FaultInjector::disabled()))
    }

    /// A store that suffers outages from `faults`.
    pub fn with_faults(faults: Arc<FaultInjector>) -> Self {
        Self {
            state: Arc::default(),
            suppressed: Arc::default(),
            faults,
            clock: Clock::new(),
        }
    }

    /// Makes the store unreachable for `duration` (a scripted outage).
    pub fn fail_for(&self, duration: Duration) {
        lock(&self.state).outage_until = Some(Instant::now() + duration);
    }

    fn available(&self, state: &mut State, now: Instant) -> Result<(), Error> {
        if let Some(until) = state.outage_until {
            if now < until {
                return Err(Error::unavailable("memory dedupe store", "outage"));
            }
            state.outage_until = None;
        }
        if self.faults.strike(FaultKind::DedupeOutage) {
            state.outage_until = Some(now + self.faults.config().dedupe_outage_for);
            return Err(Error::unavailable(
                "memory dedupe store",
                "outage (injected)",
            ));
        }
        Ok(())
    }

    fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State, Instant) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        self.available(&mut state, now)?;
        f(&mut state, now)
    }
}

#[async_trait]
impl DedupeStore for MemoryDedupe {
    async fn claim(&self, id: MessageId, lease: Duration) -> Result<Claim, Error> {
        self.with_state(|state, now| {
            let entry = state.entries.entry(id).or_insert_with(Entry::new);
            match &entry.mark {
                Mark::Done { outcome, until, .. } if *until > now => {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Claim::AlreadyProcessed(*outcome));
                }
                Mark::Claimed { expires, .. } if *expires > now => return Ok(Claim::HeldByOther),
                _ => {}
            }
            entry.fence += 1;
            let token = ClaimToken::new(id).with_fence(entry.fence);
            entry.mark = Mark::Claimed {
                token: token.clone(),
                expires: now + lease,
            };
            Ok(Claim::Claimed(token))
        })
    }

    async fn extend(&self, token: &ClaimToken, lease: Duration) -> Result<(), Error> {
        self.with_state(
            |state, now| match state.entries.get_mut(&token.id).map(|e| &mut e.mark) {
                Some(Mark::Claimed {
                    token: held,
                    expires,
                }) if held == token => {
                    *expires = now + lease;
                    Ok(())
                }
                _ => Err(Error::LeaseLost { id: token.id }),
            },
        )
    }

    async fn complete(
        &self,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), Error> {
        let at = self.clock.now();
        self.with_state(|state, now| {
            let entry = state
                .entries
                .get_mut(&token.id)
                .ok_or(Error::LeaseLost { id: token.id })?;
            match &entry.mark {
                Mark::Claimed { token: held, .. } if held == token => {
                    entry.mark = Mark::Done {
                        outcome,
                        at,
                        until: now + keep_for,
                        token: token.clone(),
                    };
                    entry.failures = None;
                    Ok(())
                }
                Mark::Done {
                    outcome: done,
                    token: held,
                    ..
                } if held == token && *done == outcome => Ok(()),
                _ => Err(Error::LeaseLost { id: token.id }),
            }
        })
    }

    async fn release(&self, token: &ClaimToken) -> Result<(), Error> {
        self.with_state(|state, _| {
            match state.entries.get_mut(&token.id) {
                Some(entry) if matches!(&entry.mark, Mark::Claimed { token: held, .. } if held == token) => {
                    entry.mark = Mark::Free;
                    Ok(())
                }
                _ => Err(Error::LeaseLost { id: token.id }),
            }
        })
    }

    async fn failures(&self, id: MessageId) -> Result<Option<FailureRecord>, Error> {
        self.with_state(|state, _| Ok(state.entries.get(&id).and_then(|e| e.failures.clone())))
    }

    async fn record_failure(&self, id: MessageId, error: &str) -> Result<FailureRecord, Error> {
        let at = self.clock.now();
        self.with_state(|state, _| {
            let entry = state.entries.entry(id).or_insert_with(Entry::new);
            let record = match entry.failures.take() {
                Some(mut r) => {
                    r.attempts += 1;
                    r.last_at = at;
                    r.last_error = error.to_owned();
                    r
                }
                None => FailureRecord {
                    attempts: 1,
                    first_at: at,
                    last_at: at,
                    last_error: error.to_owned(),
                },
            };
            entry.failures = Some(record.clone());
            Ok(record)
        })
    }

    async fn park_dead_letter(&self, parked: &ParkedDeadLetter) -> Result<(), Error> {
        self.with_state(|state, _| {
            state
                .parked
                .entry(parked.failure.original_destination.clone())
                .or_default()
                .entry(parked.envelope.id)
                .or_insert_with(|| parked.clone());
            Ok(())
        })
    }
}

#[async_trait]
impl ConsumerLedger for MemoryDedupe {
    async fn finished(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Snapshot<ProcessedEntry>, Error> {
        let now = Instant::now();
        let state = lock(&self.state);
        let mut entries: Vec<ProcessedEntry> = state
            .entries
            .iter()
            .filter_map(|(id, entry)| match entry.mark {
                Mark::Done {
                    outcome, at, until, ..
                } if until > now => Some(ProcessedEntry {
                    id: *id,
                    outcome,
                    at,
                }),
                _ => None,
            })
            .filter(|e| since.is_none_or(|since| e.at >= since))
            .collect();
        entries.sort_by_key(|e| e.id);
        Ok(Snapshot {
            taken_at: self.clock.at(now),
            entries,
        })
    }

    async fn duplicates_suppressed(&self) -> Result<u64, Error> {
        Ok(self.suppressed.load(Ordering::Relaxed))
    }

    async fn parked_dead_letters(&self, destination: &str) -> Result<Vec<ParkedDeadLetter>, Error> {
        self.with_state(|state, _| {
            Ok(state
                .parked
                .get(destination)
                .map(|p| p.values().cloned().collect())
                .unwrap_or_default())
        })
    }

    async fn remove_parked(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        self.with_state(|state, _| {
            let Some(parked) = state.parked.get_mut(destination) else {
                return Ok(0);
            };
            Ok(ids.iter().filter(|id| parked.remove(id).is_some()).count())
        })
    }

    async fn forget_dead_letter(&self, id: MessageId) -> Result<bool, Error> {
        self.with_state(|state, now| {
            let dead = matches!(
                state.entries.get(&id).map(|e| &e.mark),
                Some(Mark::Done { outcome: Outcome::DeadLettered, until, .. }) if *until > now
            );
            if let Some(entry) = state.entries.get_mut(&id).filter(|_| dead) {
                // The fencing number stays: a redriven copy's claim must outrank every earlier one.
                entry.mark = Mark::Free;
                entry.failures = None;
            }
            Ok(dead)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);
    const DAY: Duration = Duration::from_secs(86_400);

    #[tokio::test(start_paused = true)]
    async fn claim_lifecycle() {
        let store = MemoryDedupe::new();
        let id = MessageId::new();
        let Claim::Claimed(token) = store.claim(id, LEASE).await.unwrap() else {
            panic!("first claim must succeed")
        };
        assert_eq!(store.claim(id, LEASE).await.unwrap(), Claim::HeldByOther);
        store
            .complete(&token, Outcome::Processed, DAY)
            .await
            .unwrap();
        assert_eq!(
            store.claim(id, LEASE).await.unwrap(),
            Claim::AlreadyProcessed(Outcome::Processed)
        );
        assert_eq!(store.duplicates_suppressed().await.unwrap(), 1);
        tokio::time::advance(DAY).await;
        assert!(matches!(
            store.claim(id, LEASE).await.unwrap(),
            Claim::Claimed(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_claim_is_taken_over_and_the_old_token_is_refused() {
        let store = MemoryDedupe::new();
        let id = MessageId::new();
        let Claim::Claimed(old) = store.claim(id, LEASE).await.unwrap() else {
            panic!()
        };
        tokio::time::advance(LEASE).await;
        let Claim::Claimed(new) = store.claim(id, LEASE).await.unwrap() else {
            panic!()
        };
        assert!(matches!(
            store.complete(&old, Outcome::Processed, DAY).await,
            Err(Error::LeaseLost { .. })
        ));
        assert!(store.release(&old).await.is_err());
        store.complete(&new, Outcome::Processed, DAY).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failures_count_across_claims_and_outages_are_retryable() {
        let store = MemoryDedupe::new();
        let id = MessageId::new();
        assert_eq!(store.record_failure(id, "a").await.unwrap().attempts, 1);
        assert_eq!(store.record_failure(id, "b").await.unwrap().attempts, 2);
        assert_eq!(store.failures(id).await.unwrap().unwrap().last_error, "b");
        store.fail_for(Duration::from_secs(1));
        let err = store.claim(id, LEASE).await.unwrap_err();
        assert!(err.is_retryable());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(store.claim(id, LEASE).await.is_ok());
    }
}
