//! A handler that records its effects by id and fails on designated ids.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zerolost_core::{Envelope, Handler, HandlerError, MessageId};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The business effects a handler applied, counted per message id: the ground truth for
/// "applied twice". Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct EffectLog {
    effects: Arc<Mutex<HashMap<MessageId, Applied>>>,
    distinct: Arc<AtomicU64>,
}

/// One id's effects: how many, and when the first was applied.
#[derive(Clone, Copy)]
struct Applied {
    count: u32,
    first_at: DateTime<Utc>,
}

impl EffectLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the effect of `id` once more.
    pub fn apply(&self, id: MessageId) {
        let mut effects = lock(&self.effects);
        let applied = effects.entry(id).or_insert_with(|| Applied {
            count: 0,
            first_at: Utc::now(),
        });
        applied.count += 1;
        if applied.count == 1 {
            self.distinct.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many times `id`'s effect was applied.
    pub fn count(&self, id: MessageId) -> u32 {
        lock(&self.effects).get(&id).map_or(0, |a| a.count)
    }

    /// Distinct ids applied.
    pub fn distinct(&self) -> u64 {
        self.distinct.load(Ordering::Relaxed)
    }

    /// A copy of all counts.
    pub fn snapshot(&self) -> HashMap<MessageId, u32> {
        lock(&self.effects)
            .iter()
            .map(|(id, a)| (*id, a.count))
            .collect()
    }

    /// When each id's effect was first applied.
    pub fn first_applied(&self) -> HashMap<MessageId, DateTime<Utc>> {
        lock(&self.effects)
            .iter()
            .map(|(id, a)| (*id, a.first_at))
            .collect()
    }
}

/// A test handler: applies an effect to an [`EffectLog`], fails retryably forever on
/// `poison` ids, permanently on `permanent` ids, and retryably for the first `n` calls
/// of `flaky` ids; counts every call per id.
#[derive(Clone, Default)]
pub struct RecordingHandler {
    effects: EffectLog,
    poison: Arc<HashSet<MessageId>>,
    permanent: Arc<HashSet<MessageId>>,
    flaky: Arc<HashMap<MessageId, u32>>,
    calls: Arc<Mutex<HashMap<MessageId, u32>>>,
    work: Duration,
}

impl RecordingHandler {
    /// A handler that succeeds on every id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ids that always fail retryably (dead-lettered after `max_attempts`).
    pub fn with_poison(mut self, ids: impl IntoIterator<Item = MessageId>) -> Self {
        self.poison = Arc::new(ids.into_iter().collect());
        self
    }

    /// Ids that fail permanently (dead-lettered at once).
    pub fn with_permanent(mut self, ids: impl IntoIterator<Item = MessageId>) -> Self {
        self.permanent = Arc::new(ids.into_iter().collect());
        self
    }

    /// Ids that fail retryably on their first `n` calls, then succeed.
    pub fn with_flaky(mut self, ids: impl IntoIterator<Item = (MessageId, u32)>) -> Self {
        self.flaky = Arc::new(ids.into_iter().collect());
        self
    }

    /// Time each call takes (to make races likely).
    pub fn with_work(mut self, work: Duration) -> Self {
        self.work = work;
        self
    }

    /// The effects applied.
    pub fn effects(&self) -> &EffectLog {
        &self.effects
    }

    /// How many times the handler ran for `id`.
    pub fn calls(&self, id: MessageId) -> u32 {
        lock(&self.calls).get(&id).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Handler for RecordingHandler {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let id = envelope.id;
        let call = {
            let mut calls = lock(&self.calls);
            let n = calls.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        if self.permanent.contains(&id) {
            return Err(HandlerError::permanent(format!(
                "poison message {id}: invalid order"
            )));
        }
        if self.poison.contains(&id) {
            return Err(HandlerError::retryable(format!("downstream refused {id}")));
        }
        if self.flaky.get(&id).is_some_and(|n| call <= *n) {
            return Err(HandlerError::retryable(format!(
                "flaky failure {call} of {id}"
            )));
        }
        self.effects.apply(id);
        Ok(())
    }
}
