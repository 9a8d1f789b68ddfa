//! The stores' own contracts: dedupe claims leased and tokened, outbox leases exclusive and
//! tokened.

use super::support::*;
use crate::Stores;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use zerolost_core::{Claim, Envelope, Error, MessageId, OutboxStatus, Outcome};

/// Dedupe-store contract: a claim excludes others until its lease ends; only its token
/// completes or releases it; a completed id answers `AlreadyProcessed` for `keep_for`, then
/// is forgotten; failures count up; the ledger lists outcomes.
pub async fn dedupe_claims_are_leased_and_tokened(stores: &dyn Stores) {
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let store = dedupe.store.as_ref();
    let short = Duration::from_millis(500);
    let hour = Duration::from_secs(3600);
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
    let store = outbox.store.as_ref();
    let short = Duration::from_millis(500);
    let long = Duration::from_secs(60);
    let rows: Vec<Envelope> = (0..3)
        .map(|i| Envelope::new("contract", format!("{i}")).with_key("k"))
        .collect();
    ok(outbox.enqueue.enqueue(&rows).await, "enqueue");
    assert!(
        outbox.enqueue.enqueue(&rows[..1]).await.is_err(),
        "an id already in the outbox is refused"
    );

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

    assert_eq!(
        ok(
            store
                .requeue(&[published.envelope.id, parked.envelope.id])
                .await,
            "requeue"
        ),
        2
    );
    let due: HashSet<_> = ok(store.lease(10, long).await, "lease")
        .into_iter()
        .map(|r| r.envelope.id)
        .collect();
    assert_eq!(
        due,
        HashSet::from([published.envelope.id, parked.envelope.id])
    );
}
