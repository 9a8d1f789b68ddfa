//! Retry delays: exponential growth capped at a ceiling, with full jitter.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

/// How long to wait before retry number `n`: `base * factor^n`, capped at `cap`,
/// then (with full jitter) a uniform draw from `[0, that]`, which spreads a burst of
/// retries out instead of synchronising them.
///
/// The exponential schedule comes from `backon`; the relay persists the attempt count
/// and asks for the delay of attempt `n` directly.
///
/// ```
/// use std::time::Duration;
/// use zerolost_core::Backoff;
/// let article = Backoff::article(); // 1s, 2s, 4s, ... as in the source article, no jitter
/// assert_eq!(article.delay(3), Duration::from_secs(8));
/// let jittered = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));
/// assert!(jittered.delay(10) <= Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// Upper bound of any delay.
    pub cap: Duration,
    /// Growth per retry (2.0 doubles).
    pub factor: f32,
    /// Draw the delay uniformly from `[0, ceiling]` (full jitter).
    pub full_jitter: bool,
}

impl Backoff {
    /// Exponential (factor 2) with full jitter.
    pub const fn exponential(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            factor: 2.0,
            full_jitter: true,
        }
    }

    /// The source article's schedule: `2^n * 1s`, no jitter, capped at one hour.
    pub const fn article() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
            factor: 2.0,
            full_jitter: false,
        }
    }

    /// Without jitter.
    pub const fn without_jitter(mut self) -> Self {
        self.full_jitter = false;
        self
    }

    /// The delay's upper bound for retry `n` (0-based): `min(cap, base * factor^n)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        let retry = retry.min(64) as usize;
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.cap.max(self.base))
            .with_factor(self.factor.max(1.0))
            .with_max_times(retry + 1)
            .build()
            .nth(retry)
            .map(round_to_micros)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay for retry `n` (0-based), jittered if configured.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        if !self.full_jitter || ceiling.is_zero() {
            return ceiling;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// backon computes in `f32`; whole microseconds keep the schedule exact and readable.
fn round_to_micros(delay: Duration) -> Duration {
    let micros = (delay.as_nanos() + 500) / 1000;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

impl Default for Backoff {
    /// 1 s base, 5 min cap, full jitter.
    fn default() -> Self {
        Self::exponential(Duration::from_secs(1), Duration::from_secs(300))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(1000), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_varies() {
        let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));
        let draws: Vec<_> = (0..200).map(|_| b.delay(3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(800)));
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(distinct.len() > 100, "full jitter should spread delays");
    }

    #[test]
    fn article_schedule() {
        let b = Backoff::article();
        let delays: Vec<_> = (0..4).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8]);
    }
}
