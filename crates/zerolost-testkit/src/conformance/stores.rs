//! The stores' own contracts: dedupe claims leased and tokened, outbox leases exclusive and
//! tokened.

use super::support::*;
use crate::{DedupeHandle, OutboxHandle, Stores};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use zerolost_core::{
    Claim, DedupeStore, Envelope, Error, MessageId, OutboxRecord, OutboxStatus, OutboxStore,
    Outcome,
};

/// Dedupe-store contract: a claim excludes others until its lease ends; only its token
/// completes or releases it; a completed id answers `AlreadyProcessed` for `keep_for`, then
/// is forgotten; failures count up; the ledger lists outcomes.
pub async fn dedupe_claims_are_leased_and_tokened(stores: &dyn Stores) {
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let store = dedupe.store.as_ref();
    let processed = claims_exclude_until_expiry(store).await;
    let (released, dead) = releases_and_outcomes(store).await;
    done_ids_are_forgotten_after_keep_for(store).await;
    failures_count_up(store).await;
    ledger_lists_and_forgets_dead_letters(&dedupe, processed, dead, released).await;
}

const SHORT: Duration = Duration::from_millis(500);
const HOUR: Duration = Duration::from_secs(3600);

/// A claim excludes others until its lease ends; only the live token completes it.
/// Returns the id, processed.
async fn claims_exclude_until_expiry(store: &dyn DedupeStore) -> MessageId {
    let (short, hour) = (SHORT, HOUR);
    let id = MessageId::new();
    let stale = claim_fresh(store, id, short).await;
    assert_eq!(
        ok(store.claim(id, short).await, "claim"),
        Claim::HeldByOther
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let Claim::Claimed(live) = ok(store.claim(id, short * 20).await, "claim") else {
        panic!("an expired claim must be taken over")
    };
    assert!(
        matches!(
            store.complete(&stale, Outcome::Processed, hour).await,
            Err(Error::LeaseLost { .. })
        ),
        "a stale token must not complete the claim"
    );
    assert!(
        store.release(&stale).await.is_err(),
        "a stale token must not release the claim"
    );
    ok(
        store.complete(&live, Outcome::Processed, hour).await,
        "complete",
    );
    ok(
        store.complete(&live, Outcome::Processed, hour).await,
        "completing again with the same token is a no-op",
    );
    assert_eq!(
        ok(store.claim(id, short).await, "claim"),
        Claim::AlreadyProcessed(Outcome::Processed)
    );
    id
}

/// A released claim is free; a dead-lettered id answers so. Returns (released, dead).
async fn releases_and_outcomes(store: &dyn DedupeStore) -> (MessageId, MessageId) {
    let hour = HOUR;
    let released = MessageId::new();
    let token = claim_fresh(store, released, hour).await;
    ok(store.release(&token).await, "release");
    assert!(
        matches!(
            ok(store.claim(released, hour).await, "claim"),
            Claim::Claimed(_)
        ),
        "released claims are free"
    );

    let dead = MessageId::new();
    let token = claim_fresh(store, dead, hour).await;
    ok(
        store.complete(&token, Outcome::DeadLettered, hour).await,
        "complete",
    );
    assert_eq!(
        ok(store.claim(dead, hour).await, "claim"),
        Claim::AlreadyProcessed(Outcome::DeadLettered)
    );
    (released, dead)
}

/// A done id answers `AlreadyProcessed` for `keep_for`, then is forgotten.
async fn done_ids_are_forgotten_after_keep_for(store: &dyn DedupeStore) {
    let (short, hour) = (SHORT, HOUR);
    let brief = MessageId::new();
    let token = claim_fresh(store, brief, hour).await;
    ok(
        store.complete(&token, Outcome::Processed, short).await,
        "complete",
    );
    assert_eq!(
        ok(store.claim(brief, hour).await, "claim"),
        Claim::AlreadyProcessed(Outcome::Processed),
        "a done id answers AlreadyProcessed and holds nothing"
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert!(
        matches!(
            ok(store.claim(brief, hour).await, "claim"),
            Claim::Claimed(_)
        ),
        "forgotten after keep_for"
    );
}

/// Failures count up per id, first and last kept.
async fn failures_count_up(store: &dyn DedupeStore) {
    let failing = MessageId::new();
    assert_eq!(ok(store.failures(failing).await, "failures"), None);
    assert_eq!(
        ok(store.record_failure(failing, "first").await, "record").attempts,
        1
    );
    let second = ok(store.record_failure(failing, "second").await, "record");
    assert_eq!(second.attempts, 2);
    assert!(second.first_at <= second.last_at);
    let read =
        ok(store.failures(failing).await, "failures").unwrap_or_else(|| panic!("failures lost"));
    assert_eq!((read.attempts, read.last_error.as_str()), (2, "second"));
}

/// The ledger lists outcomes; redrive forgets a dead-lettered id (its failures too), never
/// a processed id or a live claim.
async fn ledger_lists_and_forgets_dead_letters(
    dedupe: &DedupeHandle,
    id: MessageId,
    dead: MessageId,
    released: MessageId,
) {
    let store = dedupe.store.as_ref();
    let (short, hour) = (SHORT, HOUR);
    let finished: HashMap<_, _> = ok(dedupe.ledger.finished(None).await, "ledger")
        .entries
        .into_iter()
        .map(|e| (e.id, e.outcome))
        .collect();
    assert_eq!(finished.get(&id), Some(&Outcome::Processed));
    assert_eq!(finished.get(&dead), Some(&Outcome::DeadLettered));
    assert!(!finished.contains_key(&released));

    // Redrive: a dead-lettered id is forgotten (a redriven copy is processed afresh, its
    // failures counted from zero); a processed id or a live claim never is.
    ok(store.record_failure(dead, "poison").await, "record");
    assert!(ok(dedupe.ledger.forget_dead_letter(dead).await, "forget"));
    assert!(
        !ok(dedupe.ledger.forget_dead_letter(dead).await, "forget"),
        "forgetting twice removes nothing"
    );
    assert_eq!(ok(store.failures(dead).await, "failures"), None);
    assert!(matches!(
        ok(store.claim(dead, hour).await, "claim"),
        Claim::Claimed(_)
    ));
    assert!(
        !ok(dedupe.ledger.forget_dead_letter(id).await, "forget"),
        "a processed id is never forgotten"
    );
    assert_eq!(
        ok(store.claim(id, short).await, "claim"),
        Claim::AlreadyProcessed(Outcome::Processed)
    );
    assert!(
        !ok(dedupe.ledger.forget_dead_letter(released).await, "forget"),
        "a live claim is never forgotten"
    );
    assert_eq!(
        ok(store.claim(released, short).await, "claim"),
        Claim::HeldByOther
    );
}

/// Outbox contract: leases are exclusive until they expire; every write checks the lease
/// token; reschedule delays the row; park keeps it with its reason; release and requeue
/// make rows due again; the snapshot shows it all.
pub async fn outbox_leases_are_exclusive_and_tokened(stores: &dyn Stores) {
    let outbox = ok(stores.outbox().await, "outbox");
    let rows = enqueue_three(&outbox).await;
    let store = outbox.store.as_ref();
    let (stale, live) = leases_exclusive_until_expiry(store, &rows).await;
    stale_tokens_write_nothing(store, &stale).await;
    live_tokens_mark_reschedule_park(store, &live).await;
    snapshot_and_counts_agree(store, &live).await;
    requeue_makes_rows_due(store, &live).await;
}

const LONG: Duration = Duration::from_secs(60);

/// Three rows of one key; an id already in the outbox is refused.
async fn enqueue_three(outbox: &OutboxHandle) -> Vec<Envelope> {
    let rows: Vec<Envelope> = (0..3)
        .map(|i| Envelope::new("contract", format!("{i}")).with_key("k"))
        .collect();
    ok(outbox.enqueue.enqueue(&rows).await, "enqueue");
    assert!(
        outbox.enqueue.enqueue(&rows[..1]).await.is_err(),
        "an id already in the outbox is refused"
    );
    rows
}

/// A lease takes at most `max` rows, exclusively, until it expires; the rows come back
/// intact. Returns the expired leases and the live ones (sorted by id).
async fn leases_exclusive_until_expiry(
    store: &dyn OutboxStore,
    rows: &[Envelope],
) -> (Vec<OutboxRecord>, Vec<OutboxRecord>) {
    let (short, long) = (SHORT, LONG);
    let first_two = ok(store.lease(2, long).await, "lease");
    assert_eq!(first_two.len(), 2, "a lease takes at most `max` rows");
    let leases: Vec<_> = first_two.iter().map(|r| r.lease.clone()).collect();
    assert_eq!(ok(store.release(&leases).await, "release"), 2);
    let stale = ok(store.lease(10, short).await, "lease");
    assert_eq!(stale.len(), 3);
    let back = stale
        .iter()
        .find(|r| r.envelope.id == rows[0].id)
        .unwrap_or_else(|| panic!("row 0 not leased"));
    assert_eq!(
        back.envelope.payload, rows[0].payload,
        "the row comes back intact"
    );
    assert_eq!(back.envelope.key, rows[0].key);
    assert!(
        ok(store.lease(10, short).await, "lease").is_empty(),
        "leased rows are exclusive"
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let mut live = ok(store.lease(10, long).await, "lease");
    assert_eq!(live.len(), 3, "expired leases are taken over");
    live.sort_by_key(|r| r.envelope.id);
    (stale, live)
}

/// A stale token marks, reschedules, parks and releases nothing.
async fn stale_tokens_write_nothing(store: &dyn OutboxStore, stale: &[OutboxRecord]) {
    let short = SHORT;
    let stale_leases: Vec<_> = stale.iter().map(|r| r.lease.clone()).collect();
    assert_eq!(
        ok(store.mark_published(&stale_leases).await, "mark"),
        0,
        "stale tokens mark nothing"
    );
    assert!(!ok(
        store.reschedule(&stale_leases[0], 1, short, "x").await,
        "reschedule"
    ));
    assert!(!ok(store.park(&stale_leases[1], 1, "x").await, "park"));
    assert_eq!(ok(store.release(&stale_leases).await, "release"), 0);
}

/// Live tokens mark one row published, reschedule one (it waits, then is due) and park one.
async fn live_tokens_mark_reschedule_park(store: &dyn OutboxStore, live: &[OutboxRecord]) {
    let (short, long) = (SHORT, LONG);
    let (published, flapping, parked) = (&live[0], &live[1], &live[2]);
    assert_eq!(
        ok(
            store
                .mark_published(std::slice::from_ref(&published.lease))
                .await,
            "mark"
        ),
        1
    );
    assert!(ok(
        store
            .reschedule(&flapping.lease, 1, short, "connection reset")
            .await,
        "reschedule"
    ));
    assert!(ok(
        store.park(&parked.lease, 1, "message too large").await,
        "park"
    ));
    assert!(
        ok(store.lease(10, long).await, "lease").is_empty(),
        "rescheduled rows wait"
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let again = ok(store.lease(10, long).await, "lease");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].envelope.id, again[0].attempts),
        (flapping.envelope.id, 1)
    );
    assert_eq!(
        ok(store.release(&[again[0].lease.clone()]).await, "release"),
        1
    );
    assert_eq!(
        ok(store.lease(10, long).await, "lease").len(),
        1,
        "released rows are due at once"
    );
}

/// The snapshot shows each row's status and last error; counts agree with it.
async fn snapshot_and_counts_agree(store: &dyn OutboxStore, live: &[OutboxRecord]) {
    let (published, flapping, parked) = (&live[0], &live[1], &live[2]);
    let snapshot = ok(store.snapshot(None).await, "snapshot");
    let by_id: HashMap<_, _> = snapshot.entries.iter().map(|e| (e.id, e)).collect();
    assert_eq!(by_id.len(), 3);
    assert_eq!(
        by_id[&published.envelope.id].status,
        OutboxStatus::Published
    );
    assert!(by_id[&published.envelope.id].published_at.is_some());
    assert_eq!(
        by_id[&flapping.envelope.id].last_error.as_deref(),
        Some("connection reset")
    );
    assert!(by_id[&flapping.envelope.id].leased);
    assert_eq!(
        ok(store.counts().await, "counts"),
        zerolost_core::OutboxCounts {
            pending: 1,
            published: 1,
            parked: 1,
            leased: 1,
            oldest_pending: Some(by_id[&flapping.envelope.id].created_at),
        },
        "counts agree with the snapshot"
    );
    let parked_row = by_id[&parked.envelope.id];
    assert_eq!(parked_row.status, OutboxStatus::Parked);
    assert_eq!(parked_row.last_error.as_deref(), Some("message too large"));
}

/// Requeue makes published and parked rows due again.
async fn requeue_makes_rows_due(store: &dyn OutboxStore, live: &[OutboxRecord]) {
    let (published, parked) = (&live[0], &live[2]);
    assert_eq!(
        ok(
            store
                .requeue(&[published.envelope.id, parked.envelope.id])
                .await,
            "requeue"
        ),
        2
    );
    let due: HashSet<_> = ok(store.lease(10, LONG).await, "lease")
        .into_iter()
        .map(|r| r.envelope.id)
        .collect();
    assert_eq!(
        due,
        HashSet::from([published.envelope.id, parked.envelope.id])
    );
}
