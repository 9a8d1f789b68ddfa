//! The SQLite inbox's group commit: many consumer tasks claiming at once get the answers
//! they would get one at a time, and the store outlives the runtime that started its writer.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use zerolost_core::{Claim, DedupeStore, MessageId, Outcome};
use zerolost_sqlx::{SqliteStore, Tables};

async fn store() -> SqliteStore {
    let store = SqliteStore::connect(&common::fresh_sqlite_url(), Tables::default())
        .await
        .expect("sqlite");
    store.migrate().await.expect("migrate");
    store
}

/// 300 ids, each claimed by three tasks at once (900 claims in flight): exactly one claim
/// per id wins; after the winners complete, every id answers "already processed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claims_in_one_group_are_answered_as_if_one_at_a_time() {
    let inbox = store().await.inbox();
    let ids: Vec<MessageId> = (0..300).map(|_| MessageId::new()).collect();
    let claims = ids.iter().flat_map(|id| [*id; 3]).map(|id| {
        let inbox = inbox.clone();
        tokio::spawn(async move { (id, inbox.claim(id, Duration::from_secs(30)).await) })
    });
    let mut winners = HashMap::new();
    let mut held = 0;
    for claim in futures::future::join_all(claims).await {
        let (id, claim) = claim.expect("task");
        match claim.expect("claim") {
            Claim::Claimed(token) => assert!(winners.insert(id, token).is_none(), "{id} twice"),
            Claim::HeldByOther => held += 1,
            other => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!((winners.len(), held), (300, 600));

    let completes = winners.values().cloned().map(|token| {
        let inbox = inbox.clone();
        tokio::spawn(async move {
            inbox
                .complete(&token, Outcome::Processed, Duration::from_secs(3600))
                .await
        })
    });
    for done in futures::future::join_all(completes).await {
        done.expect("task").expect("complete");
    }
    for id in &ids {
        assert_eq!(
            inbox
                .claim(*id, Duration::from_secs(30))
                .await
                .expect("claim"),
            Claim::AlreadyProcessed(Outcome::Processed)
        );
    }
    // A finished claim cannot be completed again with another outcome: the group answers
    // LeaseLost, as a transaction of its own would.
    let token = winners.values().next().cloned().expect("a token");
    assert!(matches!(
        inbox
            .complete(&token, Outcome::DeadLettered, Duration::from_secs(1))
            .await,
        Err(zerolost_core::Error::LeaseLost { .. })
    ));
}

/// The writer task belongs to the runtime of the first claim; a store used again from
/// another runtime starts a new one instead of failing.
#[test]
fn the_inbox_outlives_the_runtime_that_started_its_writer() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let first = runtime();
    let inbox = first.block_on(async { store().await.inbox() });
    let id = MessageId::new();
    let claim = first
        .block_on(inbox.claim(id, Duration::from_secs(30)))
        .expect("claim");
    let Claim::Claimed(token) = claim else {
        panic!("{claim:?}")
    };
    drop(first);
    let second = runtime();
    second
        .block_on(inbox.complete(&token, Outcome::Processed, Duration::from_secs(60)))
        .expect("complete from another runtime");
    assert_eq!(
        second
            .block_on(inbox.claim(id, Duration::from_secs(30)))
            .expect("claim"),
        Claim::AlreadyProcessed(Outcome::Processed)
    );
}
