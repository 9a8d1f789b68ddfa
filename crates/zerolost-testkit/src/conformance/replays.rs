//! Conformance for replays long after the fact: the ledger vouches only for its window,
//! and nothing re-sends what it cannot vouch for unless told to.

use std::time::Duration;

use zerolost_core::redrive::{RedriveOptions, Selection, redrive};
use zerolost_core::{ConsumerConfig, Envelope, OutboxStatus, Reconciler, Relay};

use super::support::{
    Running, eventually, ok, relay_until_settled, test_consumer_config, test_relay_config,
};
use crate::{Backend, RecordingHandler, Stores};

/// Messages processed under a 1 s `keep_for`, reconciled 2 s later: their marks are gone,
/// so they are reported beyond the ledger's window, never missing; `repair` re-sends none
/// of them; only `repair_beyond_window` (the operator's explicit choice) would.
pub async fn reconcile_respects_the_ledger_window(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let outbox = ok(stores.outbox().await, "outbox");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let keep_for = Duration::from_secs(1);
    let envelopes: Vec<Envelope> = (0..5)
        .map(|i| Envelope::new(&dest, format!("old {i}")))
        .collect();
    ok(outbox.enqueue.enqueue(&envelopes).await, "enqueue");
    let relay = ok(
        Relay::new(
            outbox.store.clone(),
            ok(backend.publisher().await, "publisher"),
        )
        .with_config(test_relay_config()),
        "relay config",
    );
    relay_until_settled(&relay, outbox.store.as_ref(), backend.patience()).await;
    let handler = RecordingHandler::new();
    let config = ConsumerConfig {
        keep_for,
        ..test_consumer_config()
    };
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        config,
    )
    .await;
    eventually(backend.patience(), "5 processed", || async {
        running.consumer.totals().processed == 5
    })
    .await;
    running.stop().await;
    tokio::time::sleep(keep_for * 2).await;

    let reconciler = Reconciler::new(outbox.store.clone(), dedupe.ledger.clone())
        .with_grace(Duration::ZERO)
        .with_window(keep_for);
    let report = ok(reconciler.reconcile(None).await, "reconcile");
    assert!(report.missing.is_empty(), "missing: {:?}", report.missing);
    let mut beyond = report.beyond_window.clone();
    beyond.sort();
    let mut ids: Vec<_> = envelopes.iter().map(|e| e.id).collect();
    ids.sort();
    assert_eq!(beyond, ids, "all five are beyond the window");
    assert!(report.horizon.is_some());
    assert_eq!(ok(reconciler.repair(&report).await, "repair"), 0);
    let snapshot = ok(outbox.store.snapshot(None).await, "snapshot");
    assert!(
        snapshot
            .entries
            .iter()
            .all(|e| e.status == OutboxStatus::Published),
        "repair requeued nothing"
    );
    for env in &envelopes {
        assert_eq!(handler.effects().count(env.id), 1);
    }
}

/// A dead letter is redriven only when the ledger holds its dead-letter mark and it is
/// inside the dedupe window: a redrive through another ledger (another Redis prefix, other
/// inbox tables) or of a message older than the window publishes nothing, keeps the message
/// in the DLQ and says why; the consumers never see (and so never swallow) a copy. The
/// consumers' own ledger then redrives it.
pub async fn redrive_refuses_what_it_cannot_vouch_for(backend: &dyn Backend, stores: &dyn Stores) {
    let Some(dlq) = ok(backend.dead_letter_queue().await, "dead-letter queue") else {
        eprintln!(
            "\n*** NOT RUN: {} offers no dead-letter queue admin.\n",
            backend.name()
        );
        return;
    };
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let elsewhere = ok(stores.dedupe().await, "another ledger");
    let publisher = ok(backend.publisher().await, "publisher");
    let poison = Envelope::new(&dest, "poison");
    let handler = RecordingHandler::new().with_permanent([poison.id]);
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    ok(publisher.publish(&poison).await, "publish");
    eventually(backend.patience(), "dead-lettered", || async {
        ok(dlq.list(&dest).await, "list")
            .iter()
            .any(|m| m.id == Some(poison.id))
    })
    .await;
    let chosen = Selection::Ids(vec![poison.id]);
    let attempt = async |ledger: &dyn zerolost_core::ConsumerLedger, options: RedriveOptions| {
        let report = redrive(
            dlq.as_ref(),
            publisher.as_ref(),
            ledger,
            &dest,
            &chosen,
            &options,
        );
        ok(report.await, "redrive")
    };

    let wrong_ledger = attempt(elsewhere.ledger.as_ref(), RedriveOptions::default()).await;
    assert!(wrong_ledger.redriven.is_empty(), "{wrong_ledger:?}");
    assert_eq!(wrong_ledger.refused.len(), 1, "{wrong_ledger:?}");
    assert!(wrong_ledger.refused[0].1.contains("no dead-letter mark"));

    let beyond = RedriveOptions {
        window: Duration::ZERO,
        ..RedriveOptions::default()
    };
    let too_old = attempt(dedupe.ledger.as_ref(), beyond).await;
    assert!(too_old.redriven.is_empty(), "{too_old:?}");
    assert!(
        too_old.refused[0]
            .1
            .contains("beyond the consumers' dedupe window")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = running.consumer.totals();
    assert_eq!(
        (t.duplicates, t.processed, t.dead_lettered),
        (0, 0, 1),
        "no copy reached the consumers: {t:?}"
    );
    assert!(
        ok(dlq.list(&dest).await, "list")
            .iter()
            .any(|m| m.id == Some(poison.id)),
        "still in the DLQ"
    );

    let right = attempt(dedupe.ledger.as_ref(), RedriveOptions::default()).await;
    assert_eq!(right.redriven, vec![poison.id], "{right:?}");
    eventually(
        backend.patience(),
        "the redriven copy handled again",
        || async { handler.calls(poison.id) == 2 },
    )
    .await;
    running.stop().await;
}
