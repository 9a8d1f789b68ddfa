//! What a scenario run did over time: messages per stage per time bucket, faults on a
//! timeline, and latency percentiles. Built after the run from the outbox's timestamps
//! (enqueued, confirmed) and the handler's (applied), so it costs the run nothing.
//!
//! ```
//! use std::time::Duration;
//! use zerolost_testkit::timeline::Percentiles;
//!
//! let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
//! let p = Percentiles::of(samples);
//! assert_eq!((p.p50_ms, p.p99_ms, p.max_ms, p.samples), (50.0, 99.0, 100.0, 100));
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;
use zerolost_core::memory::FaultEvent;
use zerolost_core::{MessageId, OutboxEntry};

/// One fault on the run's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedFault {
    /// What happened (`lost_confirm`, `broker_down`, ...).
    pub kind: String,
    /// Seconds since the run started.
    pub at_s: f64,
}

/// Where a broker's chaos task notes each fault it injects, timed from the run's start.
#[derive(Debug, Clone)]
pub struct ChaosLog {
    started: Instant,
    events: Arc<Mutex<Vec<TimedFault>>>,
}

impl ChaosLog {
    /// A log whose clock starts at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            events: Arc::default(),
        }
    }

    /// Notes one fault of `kind`, now.
    pub fn record(&self, kind: &str) {
        let at_s = self.started.elapsed().as_secs_f64();
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push(TimedFault {
            kind: kind.to_owned(),
            at_s,
        });
    }

    /// The faults noted so far.
    pub fn events(&self) -> Vec<TimedFault> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Latency percentiles of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many samples.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Percentiles {
    /// The nearest-rank percentiles of `samples` (all zero when there are none).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |q: f64| {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            samples[i].as_secs_f64() * 1000.0
        };
        Self {
            samples: n,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            p999_ms: rank(0.999),
            max_ms: rank(1.0),
        }
    }
}

/// Latencies of a run, per stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latencies {
    /// Enqueued (outbox row committed) to confirmed by the broker.
    pub enqueue_to_confirm: Percentiles,
    /// Confirmed by the broker to the handler's effect.
    pub confirm_to_effect: Percentiles,
    /// Enqueued to the handler's effect: the whole pipeline.
    pub end_to_end: Percentiles,
}

/// Messages per stage per time bucket, and the faults of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    /// Width of one bucket in seconds.
    pub bucket_s: f64,
    /// Rows enqueued per bucket.
    pub enqueued: Vec<u64>,
    /// Rows confirmed by the broker per bucket.
    pub published: Vec<u64>,
    /// Effects applied (first time) per bucket.
    pub processed: Vec<u64>,
    /// Every fault injected, in time order (pipeline faults: the first 10,000).
    pub faults: Vec<TimedFault>,
}

/// The timestamps a run left behind.
pub struct RunRecord<'a> {
    /// Wall-clock time the run started.
    pub started_at: DateTime<Utc>,
    /// How long it ran.
    pub elapsed: Duration,
    /// The outbox rows.
    pub entries: &'a [OutboxEntry],
    /// When each effect was first applied.
    pub applied_at: &'a HashMap<MessageId, DateTime<Utc>>,
    /// Pipeline faults (from the run's injector).
    pub pipeline_faults: &'a [FaultEvent],
    /// Broker faults (from its chaos task).
    pub broker_faults: &'a [TimedFault],
}

impl RunRecord<'_> {
    /// The run's timeline, in at most about 100 buckets.
    pub fn timeline(&self) -> Timeline {
        let bucket = bucket_width(self.elapsed);
        let buckets = (self.elapsed.as_secs_f64() / bucket).ceil().max(1.0) as usize;
        let index = |t: DateTime<Utc>| {
            let s = (t - self.started_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            ((s / bucket) as usize).min(buckets - 1)
        };
        let mut enqueued = vec![0u64; buckets];
        let mut published = vec![0u64; buckets];
        let mut processed = vec![0u64; buckets];
        for entry in self.entries {
            enqueued[index(entry.created_at)] += 1;
            if let Some(at) = entry.published_at {
                published[index(at)] += 1;
            }
        }
        for at in self.applied_at.values() {
            processed[index(*at)] += 1;
        }
        let mut faults: Vec<TimedFault> = self
            .pipeline_faults
            .iter()
            .map(|e| TimedFault {
                kind: e.kind.name().to_owned(),
                at_s: e.after.as_secs_f64(),
            })
            .chain(self.broker_faults.iter().cloned())
            .collect();
        faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        Timeline {
            bucket_s: bucket,
            enqueued,
            published,
            processed,
            faults,
        }
    }

    /// Latency percentiles per stage.
    pub fn latencies(&self) -> Latencies {
        let gap = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).to_std().ok();
        let mut to_confirm = Vec::with_capacity(self.entries.len());
        let mut to_effect = Vec::with_capacity(self.entries.len());
        let mut end_to_end = Vec::with_capacity(self.entries.len());
        for entry in self.entries {
            let confirmed = entry.published_at;
            let applied = self.applied_at.get(&entry.id).copied();
            if let Some(d) = confirmed.and_then(|c| gap(entry.created_at, c)) {
                to_confirm.push(d);
            }
            if let (Some(c), Some(a)) = (confirmed, applied) {
                // A copy can be applied before its row is marked published (lost confirm).
                to_effect.push(gap(c, a).unwrap_or_default());
            }
            if let Some(d) = applied.and_then(|a| gap(entry.created_at, a)) {
                end_to_end.push(d);
            }
        }
        Latencies {
            enqueue_to_confirm: Percentiles::of(to_confirm),
            confirm_to_effect: Percentiles::of(to_effect),
            end_to_end: Percentiles::of(end_to_end),
        }
    }
}

/// A round bucket width giving at most about 100 buckets.
fn bucket_width(elapsed: Duration) -> f64 {
    let raw = elapsed.as_secs_f64() / 100.0;
    [0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0]
        .into_iter()
        .find(|w| *w >= raw)
        .unwrap_or(raw.ceil())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerolost_core::OutboxStatus;
    use zerolost_core::memory::FaultKind;

    fn entry(created_ms: i64, published_ms: Option<i64>, start: DateTime<Utc>) -> OutboxEntry {
        OutboxEntry {
            id: MessageId::new(),
            destination: "orders".into(),
            status: OutboxStatus::Published,
            attempts: 0,
            leased: false,
            last_error: None,
            created_at: start + chrono::Duration::milliseconds(created_ms),
            published_at: published_ms.map(|ms| start + chrono::Duration::milliseconds(ms)),
        }
    }

    #[test]
    fn stages_land_in_their_buckets_and_latencies_follow_the_timestamps() {
        let start = Utc::now();
        let entries = vec![
            entry(0, Some(50), start),
            entry(100, Some(1_150), start),
            entry(9_900, None, start),
        ];
        let mut applied = HashMap::new();
        applied.insert(entries[0].id, start + chrono::Duration::milliseconds(80));
        applied.insert(entries[1].id, start + chrono::Duration::milliseconds(1_250));
        let faults = [FaultEvent {
            kind: FaultKind::LostConfirm,
            after: Duration::from_millis(1_200),
        }];
        let broker = [TimedFault {
            kind: "broker_down".into(),
            at_s: 0.5,
        }];
        let run = RunRecord {
            started_at: start,
            elapsed: Duration::from_secs(10),
            entries: &entries,
            applied_at: &applied,
            pipeline_faults: &faults,
            broker_faults: &broker,
        };
        let timeline = run.timeline();
        assert_eq!(timeline.bucket_s, 0.1);
        assert_eq!(timeline.enqueued.len(), 100);
        assert_eq!(timeline.enqueued.iter().sum::<u64>(), 3);
        assert_eq!(
            (
                timeline.enqueued[0],
                timeline.enqueued[1],
                timeline.enqueued[99]
            ),
            (1, 1, 1)
        );
        assert_eq!((timeline.published[0], timeline.published[11]), (1, 1));
        assert_eq!((timeline.processed[0], timeline.processed[12]), (1, 1));
        let kinds: Vec<&str> = timeline.faults.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["broker_down", "lost_confirm"]);

        let latencies = run.latencies();
        assert_eq!(latencies.enqueue_to_confirm.samples, 2);
        assert_eq!(latencies.enqueue_to_confirm.max_ms, 1_050.0);
        assert_eq!(latencies.confirm_to_effect.p50_ms, 30.0);
        assert_eq!(latencies.end_to_end.max_ms, 1_150.0);
    }
}
