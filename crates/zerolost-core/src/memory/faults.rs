//! Seeded fault injection for the in-memory backend.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use super::state::lock;

/// The kinds of fault the in-memory backend injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Publish fails before the broker stores the message (network flap).
    PublishFailed,
    /// The broker stores the message but the confirm is lost: the publisher sees an error
    /// (the source article's duplicate source).
    LostConfirm,
    /// The broker stores the message but the confirm comes too late: timeout.
    ConfirmTimeout,
    /// The consumer "crashes" after its handler and before the ack: the ack is lost and
    /// the message is redelivered.
    CrashBeforeAck,
    /// The dedupe store becomes unreachable for a while.
    DedupeOutage,
    /// A relay "crashes" mid-batch: part of the batch is published, nothing is marked,
    /// and the leases must expire before another relay takes the rows.
    RelayCrash,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::PublishFailed,
        FaultKind::LostConfirm,
        FaultKind::ConfirmTimeout,
        FaultKind::CrashBeforeAck,
        FaultKind::DedupeOutage,
        FaultKind::RelayCrash,
    ];

    /// The kind's name, as in JSON and the demo's report (`lost_confirm`).
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::PublishFailed => "publish_failed",
            FaultKind::LostConfirm => "lost_confirm",
            FaultKind::ConfirmTimeout => "confirm_timeout",
            FaultKind::CrashBeforeAck => "crash_before_ack",
            FaultKind::DedupeOutage => "dedupe_outage",
            FaultKind::RelayCrash => "relay_crash",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Probabilities of each fault per operation, and the seed of their schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultConfig {
    /// Seed of the schedule (printed by every run so a failure can be replayed).
    pub seed: u64,
    /// Per publish: fails before storing.
    pub publish_failed: f64,
    /// Per publish: stored, confirm lost.
    pub lost_confirm: f64,
    /// Per publish: stored, confirm times out.
    pub confirm_timeout: f64,
    /// How long a timed-out confirm makes the publisher wait.
    pub confirm_timeout_after: Duration,
    /// Per ack: the consumer crashes before the ack reaches the broker.
    pub crash_before_ack: f64,
    /// Per dedupe-store call: an outage starts.
    pub dedupe_outage: f64,
    /// How long an outage lasts.
    pub dedupe_outage_for: Duration,
    /// Per relay batch (where a crash hook is installed): the relay crashes mid-batch.
    pub relay_crash: f64,
}

impl FaultConfig {
    /// No faults.
    pub fn none() -> Self {
        Self {
            seed: 0,
            publish_failed: 0.0,
            lost_confirm: 0.0,
            confirm_timeout: 0.0,
            confirm_timeout_after: Duration::from_millis(20),
            crash_before_ack: 0.0,
            dedupe_outage: 0.0,
            dedupe_outage_for: Duration::from_millis(50),
            relay_crash: 0.0,
        }
    }

    /// A steady trickle of every fault (the demo's default).
    pub fn light(seed: u64) -> Self {
        Self {
            seed,
            publish_failed: 0.002,
            lost_confirm: 0.001,
            confirm_timeout: 0.0005,
            crash_before_ack: 0.001,
            dedupe_outage: 0.0001,
            relay_crash: 0.01,
            ..Self::none()
        }
    }

    /// Many faults of every kind.
    pub fn heavy(seed: u64) -> Self {
        Self {
            seed,
            publish_failed: 0.02,
            lost_confirm: 0.01,
            confirm_timeout: 0.005,
            crash_before_ack: 0.01,
            dedupe_outage: 0.001,
            relay_crash: 0.1,
            ..Self::none()
        }
    }

    /// The same probabilities under another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn probability(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::PublishFailed => self.publish_failed,
            FaultKind::LostConfirm => self.lost_confirm,
            FaultKind::ConfirmTimeout => self.confirm_timeout,
            FaultKind::CrashBeforeAck => self.crash_before_ack,
            FaultKind::DedupeOutage => self.dedupe_outage,
            FaultKind::RelayCrash => self.relay_crash,
        }
    }
}

/// One injected fault, for a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaultEvent {
    /// Which fault.
    pub kind: FaultKind,
    /// Time since the injector was made.
    pub after: Duration,
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    /// Publishes failed before storing.
    pub publish_failed: u64,
    /// Confirms lost after storing.
    pub lost_confirm: u64,
    /// Confirms timed out after storing.
    pub confirm_timeout: u64,
    /// Consumer crashes between handler and ack.
    pub crash_before_ack: u64,
    /// Dedupe-store outages.
    pub dedupe_outage: u64,
    /// Relay crashes mid-batch.
    pub relay_crash: u64,
}

impl FaultCounts {
    /// The faults of `kind`.
    pub fn get(&self, kind: FaultKind) -> u64 {
        match kind {
            FaultKind::PublishFailed => self.publish_failed,
            FaultKind::LostConfirm => self.lost_confirm,
            FaultKind::ConfirmTimeout => self.confirm_timeout,
            FaultKind::CrashBeforeAck => self.crash_before_ack,
            FaultKind::DedupeOutage => self.dedupe_outage,
            FaultKind::RelayCrash => self.relay_crash,
        }
    }

    /// All faults together.
    pub fn total(&self) -> u64 {
        self.publish_failed
            + self.lost_confirm
            + self.confirm_timeout
            + self.crash_before_ack
            + self.dedupe_outage
            + self.relay_crash
    }
}

/// Draws faults from a seeded schedule and counts them. Share one injector (in an
/// `Arc`) between the broker and the stores of one run.
#[derive(Debug)]
pub struct FaultInjector {
    config: FaultConfig,
    rng: Mutex<StdRng>,
    counts: [AtomicU64; 6],
    events: Mutex<Vec<FaultEvent>>,
    started: Instant,
}

/// At most this many events are kept for the timeline (counts are always exact).
const MAX_EVENTS: usize = 10_000;

impl FaultInjector {
    /// An injector for `config`.
    pub fn new(config: FaultConfig) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            counts: Default::default(),
            events: Mutex::new(Vec::new()),
            started: Instant::now(),
        }
    }

    /// An injector that never injects.
    pub fn disabled() -> Self {
        Self::new(FaultConfig::none())
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Whether a fault of `kind` strikes now; counts it if so.
    pub fn strike(&self, kind: FaultKind) -> bool {
        let p = self.config.probability(kind);
        if p <= 0.0 {
            return false;
        }
        let hit = lock(&self.rng).random_bool(p.min(1.0));
        if hit {
            self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
            let mut events = lock(&self.events);
            if events.len() < MAX_EVENTS {
                events.push(FaultEvent {
                    kind,
                    after: self.started.elapsed(),
                });
            }
        }
        hit
    }

    /// A number in `0..upper` from the same seeded schedule.
    pub fn pick(&self, upper: usize) -> usize {
        if upper <= 1 {
            return 0;
        }
        lock(&self.rng).random_range(0..upper)
    }

    /// Faults injected so far, by kind.
    pub fn counts(&self) -> FaultCounts {
        let get = |k: FaultKind| self.counts[k.index()].load(Ordering::Relaxed);
        FaultCounts {
            publish_failed: get(FaultKind::PublishFailed),
            lost_confirm: get(FaultKind::LostConfirm),
            confirm_timeout: get(FaultKind::ConfirmTimeout),
            crash_before_ack: get(FaultKind::CrashBeforeAck),
            dedupe_outage: get(FaultKind::DedupeOutage),
            relay_crash: get(FaultKind::RelayCrash),
        }
    }

    /// The injected faults in order (the first 10,000).
    pub fn events(&self) -> Vec<FaultEvent> {
        lock(&self.events).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let draw = |seed| {
            let f = FaultInjector::new(FaultConfig::heavy(seed));
            (0..2000)
                .map(|_| f.strike(FaultKind::PublishFailed))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn counts_what_it_injects() {
        let f = FaultInjector::new(FaultConfig {
            lost_confirm: 1.0,
            ..FaultConfig::none()
        });
        assert!(f.strike(FaultKind::LostConfirm));
        assert!(!f.strike(FaultKind::PublishFailed));
        assert_eq!(f.counts().lost_confirm, 1);
        assert_eq!(f.counts().total(), 1);
        assert_eq!(f.events().len(), 1);
    }
}
