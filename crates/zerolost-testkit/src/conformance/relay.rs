//! The relay and the reconciler: retries then parks, parks what cannot be sent, finds and
//! repairs what is missing.

use super::support::*;
use crate::{Backend, FlakyPublisher, LossyPublisher, RecordingHandler, Stores};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use zerolost_core::{Envelope, OutboxStatus, Reconciler, Relay, RelayConfig};

/// Retryable publish failures are retried with backoff; a row that keeps failing is
/// parked with its last error after `max_attempts`; nothing is deleted.
pub async fn relay_retries_then_parks(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let outbox = ok(stores.outbox().await, "outbox");
    let flaky = Envelope::new(&dest, "flaky");
    let dead = Envelope::new(&dest, "never sent");
    let fine = Envelope::new(&dest, "fine");
    ok(
        outbox
            .enqueue
            .enqueue(&[flaky.clone(), dead.clone(), fine.clone()])
            .await,
        "enqueue",
    );
    let publisher = FlakyPublisher::new(
        ok(backend.publisher().await, "publisher"),
        [(flaky.id, 2)],
        [dead.id],
    );
    let relay = ok(
        Relay::new(outbox.store.clone(), publisher).with_config(RelayConfig {
            max_attempts: 4,
            ..test_relay_config()
        }),
        "relay config",
    );
    relay_until_settled(&relay, outbox.store.as_ref(), backend.patience()).await;

    let rows: HashMap<_, _> = ok(outbox.store.snapshot(None).await, "snapshot")
        .entries
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    assert_eq!(rows.len(), 3, "no row is ever deleted");
    assert_eq!(rows[&flaky.id].status, OutboxStatus::Published);
    assert_eq!(
        rows[&flaky.id].attempts, 2,
        "two failed attempts before success"
    );
    assert_eq!(rows[&fine.id].status, OutboxStatus::Published);
    assert_eq!(rows[&fine.id].attempts, 0);
    let parked = &rows[&dead.id];
    assert_eq!(parked.status, OutboxStatus::Parked);
    assert_eq!(parked.attempts, 4);
    let reason = parked.last_error.as_deref().unwrap_or_default();
    assert!(
        reason.contains("gave up after 4 attempts"),
        "reason: {reason}"
    );
    assert!(reason.contains("connection reset"), "reason: {reason}");

    let mut sub = ok(backend.subscriber(&dest).await, "subscribe");
    let mut got = HashSet::new();
    for _ in 0..2 {
        let d = receive(sub.as_mut(), backend.patience()).await;
        got.insert(id_of(&d.message));
        ok(d.ack().await, "ack");
    }
    assert_eq!(got, HashSet::from([flaky.id, fine.id]));
    assert_no_more(sub.as_mut(), Duration::from_millis(500)).await;
}

/// A message the broker refuses for good (unroutable) is parked at once with the reason,
/// and kept; the other messages go through.
pub async fn unsendable_is_parked_with_reason(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let outbox = ok(stores.outbox().await, "outbox");
    let lost_cause = Envelope::new(backend.unroutable_destination(), "nowhere to go");
    let fine = Envelope::new(&dest, "fine");
    ok(
        outbox
            .enqueue
            .enqueue(&[lost_cause.clone(), fine.clone()])
            .await,
        "enqueue",
    );
    let relay = ok(
        Relay::new(
            outbox.store.clone(),
            ok(backend.publisher().await, "publisher"),
        )
        .with_config(test_relay_config()),
        "relay config",
    );
    relay_until_settled(&relay, outbox.store.as_ref(), backend.patience()).await;
    let rows: HashMap<_, _> = ok(outbox.store.snapshot(None).await, "snapshot")
        .entries
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    let parked = &rows[&lost_cause.id];
    assert_eq!(parked.status, OutboxStatus::Parked, "{parked:?}");
    assert_eq!(parked.attempts, 1, "a permanent error parks at once");
    let reason = parked.last_error.as_deref().unwrap_or_default();
    assert!(!reason.is_empty(), "a parked row says why");
    assert_eq!(rows[&fine.id].status, OutboxStatus::Published);
    assert_eq!(relay.totals().parked, 1);
}

/// The reconciler finds a message the broker lost (confirmed, never delivered) by id, and
/// `repair` sends it again; then nothing is missing.
pub async fn reconciler_finds_and_repairs_missing(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let outbox = ok(stores.outbox().await, "outbox");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let envelopes: Vec<Envelope> = (0..5)
        .map(|i| Envelope::new(&dest, format!("m{i}")))
        .collect();
    let lost = envelopes[2].id;
    ok(outbox.enqueue.enqueue(&envelopes).await, "enqueue");
    let lying = LossyPublisher::new(ok(backend.publisher().await, "publisher"), [lost]);
    let relay = ok(
        Relay::new(outbox.store.clone(), lying).with_config(test_relay_config()),
        "relay config",
    );
    relay_until_settled(&relay, outbox.store.as_ref(), backend.patience()).await;

    let handler = RecordingHandler::new();
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    eventually(backend.patience(), "4 messages processed", || async {
        handler.effects().distinct() == 4
            && dedupe
                .ledger
                .finished(None)
                .await
                .is_ok_and(|s| s.entries.len() == 4)
    })
    .await;
    let reconciler =
        Reconciler::new(outbox.store.clone(), dedupe.ledger.clone()).with_grace(Duration::ZERO);
    let report = ok(reconciler.reconcile(None).await, "reconcile");
    assert_eq!(report.missing, vec![lost], "the lost id, and only it");
    assert_eq!(report.produced, 5);
    assert_eq!(report.published, 5);
    assert_eq!(report.processed, 4);
    assert_eq!(report.counts.broker_to_consumer_gap, 1);
    assert!(!report.is_clean());

    assert_eq!(ok(reconciler.repair(&report).await, "repair"), 1);
    let honest = ok(
        Relay::new(
            outbox.store.clone(),
            ok(backend.publisher().await, "publisher"),
        )
        .with_config(test_relay_config()),
        "relay config",
    );
    relay_until_settled(&honest, outbox.store.as_ref(), backend.patience()).await;
    eventually(
        backend.patience(),
        "the repaired message processed",
        || async { handler.effects().count(lost) == 1 },
    )
    .await;
    running.stop().await;
    let after = ok(reconciler.reconcile(None).await, "reconcile again");
    assert!(after.is_clean(), "still missing: {:?}", after.missing);
    assert_eq!(after.processed, 5);
    for env in &envelopes {
        assert_eq!(handler.effects().count(env.id), 1);
    }
}
