//! A larger seeded run under heavy faults: every fault kind fires, duplicates reach the
//! consumer and are suppressed, and the verdict by id is clean.

use std::sync::Arc;

use zerolost_core::memory::FaultConfig;
use zerolost_testkit::scenario::{Progress, ScenarioConfig, run_memory};

#[tokio::test(start_paused = true)]
async fn heavy_faults_lose_nothing_and_apply_nothing_twice() {
    let mut config = ScenarioConfig::demo(5_000, FaultConfig::heavy(42));
    config.poison_every = Some(250);
    config.unsendable_every = Some(1_000);
    let progress = Arc::new(Progress::default());
    let outcome = run_memory(&config, progress.clone())
        .await
        .expect("scenario ran");

    assert!(!outcome.timed_out, "{outcome:#?}");
    outcome.verdict.assert_clean();
    let f = &outcome.faults;
    for (kind, n) in [
        ("publish_failed", f.publish_failed),
        ("lost_confirm", f.lost_confirm),
        ("confirm_timeout", f.confirm_timeout),
        ("crash_before_ack", f.crash_before_ack),
        ("dedupe_outage", f.dedupe_outage),
        ("relay_crash", f.relay_crash),
    ] {
        assert!(n > 0, "fault {kind} never fired: {f:?}");
    }
    assert!(outcome.relay_restarts > 0);
    assert!(
        outcome.broker_stored > 5_000 - 5,
        "lost confirms and relay crashes store copies: {}",
        outcome.broker_stored
    );
    assert!(
        outcome.consumer.duplicates > 0,
        "copies were suppressed: {:?}",
        outcome.consumer
    );
    assert_eq!(outcome.verdict.dead_lettered, 20);
    assert_eq!(outcome.verdict.parked, 5);
    assert_eq!(outcome.verdict.processed, 5_000 - 25);
    assert_eq!(outcome.leased_after_shutdown, 0);
    assert!(outcome.reconcile.is_clean());
    assert_eq!(outcome.reconcile.dead_lettered.len(), 20);
    assert_eq!(outcome.reconcile.parked.len(), 5);
    assert!(
        outcome
            .reconcile
            .parked
            .iter()
            .all(|p| p.reason.contains("exceeds")),
        "parked with the broker's reason: {:?}",
        outcome.reconcile.parked
    );
    assert_eq!(
        progress.enqueued.load(std::sync::atomic::Ordering::Relaxed),
        5_000
    );
}
