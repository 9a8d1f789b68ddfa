//! What every in-memory part shares: a clock that follows tokio's (paused time in tests)
//! and a lock that survives a poisoned mutex.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Wall-clock time derived from tokio's clock, anchored when the store was made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    utc: DateTime<Utc>,
    instant: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            utc: Utc::now(),
            instant: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.at(Instant::now())
    }

    pub(crate) fn at(&self, instant: Instant) -> DateTime<Utc> {
        let elapsed = instant.saturating_duration_since(self.instant);
        self.utc + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it (the
/// in-memory state stays consistent: every critical section is panic-free).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
