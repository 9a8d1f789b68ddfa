//! Property tests: over random fault schedules, message counts and concurrency, every
//! produced id ends processed exactly once, dead-lettered (only the poison ones) or parked
//! (only the unsendable ones); nothing is lost, nothing applied twice, nothing left leased.
//!
//! Runs on tokio's paused clock, so leases and backoffs cost no wall time.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use zerolost_core::memory::FaultConfig;
use zerolost_core::{Backoff, ConsumerConfig, RelayConfig};
use zerolost_testkit::scenario::{Progress, ScenarioConfig, ScenarioOutcome, run_memory};

fn faults() -> impl Strategy<Value = FaultConfig> {
    (
        any::<u64>(),
        0.0..0.2f64,
        0.0..0.1f64,
        0.0..0.05f64,
        0.0..0.15f64,
        0.0..0.05f64,
        0.0..0.2f64,
    )
        .prop_map(
            |(seed, failed, lost, timeout, crash_ack, outage, relay_crash)| FaultConfig {
                seed,
                publish_failed: failed,
                lost_confirm: lost,
                confirm_timeout: timeout,
                confirm_timeout_after: Duration::from_millis(200),
                crash_before_ack: crash_ack,
                dedupe_outage: outage,
                dedupe_outage_for: Duration::from_millis(300),
                relay_crash,
            },
        )
}

fn run(config: ScenarioConfig) -> ScenarioOutcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    runtime
        .block_on(run_memory(&config, Arc::new(Progress::default())))
        .expect("scenario ran")
}

fn check(outcome: &ScenarioOutcome) -> Result<(), TestCaseError> {
    prop_assert!(!outcome.timed_out, "run did not settle: {outcome:#?}");
    prop_assert!(
        outcome.verdict.lost.is_empty(),
        "lost: {:?}",
        outcome.verdict
    );
    prop_assert_eq!(
        outcome.verdict.duplicate_effects,
        0,
        "applied twice: {:?}",
        outcome.verdict
    );
    outcome.verdict.assert_clean();
    prop_assert_eq!(outcome.leased_after_shutdown, 0);
    prop_assert!(
        outcome.reconcile.is_clean(),
        "reconciler: {:?}",
        outcome.reconcile.missing
    );
    prop_assert_eq!(
        outcome.reconcile.processed + outcome.reconcile.dead_lettered.len(),
        outcome.verdict.processed + outcome.verdict.dead_lettered
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The whole pipeline under every fault kind at once.
    #[test]
    fn nothing_lost_nothing_applied_twice(
        faults in faults(),
        messages in 1usize..60,
        relays in 1usize..3,
        consumers in 1usize..3,
        concurrency in 1usize..6,
        batch in 1usize..20,
        poison_every in prop::option::of(3usize..15),
        unsendable_every in prop::option::of(4usize..20),
    ) {
        let config = ScenarioConfig {
            messages,
            poison_every,
            unsendable_every,
            relays,
            consumers,
            enqueue_batch: 7,
            faults,
            relay: RelayConfig {
                batch_size: batch,
                lease_for: Duration::from_secs(30),
                max_attempts: 50,
                backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5)),
                idle_poll: Duration::from_millis(50),
                store_backoff: Backoff::exponential(Duration::from_millis(50), Duration::from_secs(1)),
            },
            consumer: ConsumerConfig {
                concurrency,
                claim_lease: Duration::from_secs(60),
                retry_backoff: Backoff::exponential(Duration::from_millis(50), Duration::from_secs(2)),
                store_backoff: Backoff::exponential(Duration::from_millis(50), Duration::from_secs(1)),
                held_retry_delay: Duration::from_millis(200),
                ..ConsumerConfig::default()
            },
            deadline: Duration::from_secs(3600),
        };
        check(&run(config))?;
    }

    /// The relay alone under publish faults: every row ends published or parked, never
    /// deleted, and parked rows are exactly those that could never be sent.
    #[test]
    fn relay_publishes_or_parks_every_row(
        faults in faults(),
        messages in 1usize..80,
        batch in 1usize..40,
        unsendable_every in prop::option::of(2usize..10),
    ) {
        let config = ScenarioConfig {
            messages,
            poison_every: None,
            unsendable_every,
            relays: 2,
            consumers: 1,
            enqueue_batch: 13,
            faults: FaultConfig { dedupe_outage: 0.0, crash_before_ack: 0.0, ..faults },
            relay: RelayConfig {
                batch_size: batch,
                max_attempts: 60,
                backoff: Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)),
                idle_poll: Duration::from_millis(20),
                ..RelayConfig::default()
            },
            consumer: ConsumerConfig::default(),
            deadline: Duration::from_secs(3600),
        };
        let outcome = run(config);
        check(&outcome)?;
        prop_assert_eq!(outcome.reconcile.produced, messages);
        prop_assert_eq!(outcome.reconcile.pending, 0);
    }
}
