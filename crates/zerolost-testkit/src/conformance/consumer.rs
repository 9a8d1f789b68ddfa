//! The idempotent consumer: redeliveries and racing consumers apply once, a message without
//! an id is dead-lettered, a dedupe store that is down stops the intake.

use super::support::*;
use crate::{Backend, RecordingHandler, Stores, SwitchableDedupe};
use std::sync::Arc;
use std::time::Duration;
use zerolost_core::{ConsumerConfig, DeadLetterReason, Envelope, IdExtractor};

/// Copies of one message (lost confirm, re-send, redelivery) have one effect.
pub async fn redelivery_is_deduplicated(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let publisher = ok(backend.publisher().await, "publisher");
    let env = Envelope::new(&dest, "pay 10 EUR");
    let handler = RecordingHandler::new();
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    for _ in 0..3 {
        ok(publisher.publish(&env).await, "publish a copy");
    }
    eventually(backend.patience(), "three copies settled", || async {
        let t = running.consumer.totals();
        t.processed == 1 && t.duplicates == 2
    })
    .await;
    // A copy arriving long after the first was processed is suppressed too.
    ok(publisher.publish(&env).await, "publish a late copy");
    eventually(backend.patience(), "late copy suppressed", || async {
        running.consumer.totals().duplicates == 3
    })
    .await;
    running.stop().await;
    assert_eq!(
        handler.effects().count(env.id),
        1,
        "effect applied exactly once"
    );
    assert_eq!(handler.calls(env.id), 1, "handler called exactly once");
    assert!(ok(dedupe.ledger.duplicates_suppressed().await, "ledger") >= 3);
}

/// Two consumers receiving copies of the same ids at once apply each effect once.
pub async fn racing_consumers_apply_once(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let handler = RecordingHandler::new().with_work(Duration::from_millis(30));
    let originals: Vec<Envelope> = (0..10)
        .map(|i| Envelope::new(&dest, format!("m{i}")))
        .collect();
    let copies: Vec<Envelope> = originals
        .iter()
        .flat_map(|e| std::iter::repeat_n(e.clone(), 3))
        .collect();
    let a = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    let b = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    for result in ok(backend.publisher().await, "publisher")
        .publish_batch(&copies)
        .await
    {
        ok(result, "publish");
    }
    // At least 20 duplicates: a rebalance between the two members (Kafka) may hand a
    // processed copy out once more before its offset is committed; it is one more duplicate.
    eventually(backend.patience(), "30 copies settled", || async {
        let (ta, tb) = (a.consumer.totals(), b.consumer.totals());
        ta.processed + tb.processed == 10 && ta.duplicates + tb.duplicates >= 20
    })
    .await;
    a.stop().await;
    b.stop().await;
    for env in &originals {
        assert_eq!(handler.effects().count(env.id), 1, "effects of {}", env.id);
        assert_eq!(handler.calls(env.id), 1, "handler calls of {}", env.id);
    }
}

/// A delivery without any id (a foreign producer) cannot be deduplicated: it goes to the
/// DLQ with reason "missing message id", and the handler never sees it.
pub async fn missing_id_is_dead_lettered(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let handler = RecordingHandler::new();
    let config = ConsumerConfig {
        // This consumer expects ids in `x-order-id` only; our message carries none there.
        id_extractor: IdExtractor::default()
            .with_header("x-order-id")
            .with_native_fallback(false),
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
    let env = Envelope::new(&dest, "who am I");
    ok(
        ok(backend.publisher().await, "publisher")
            .publish(&env)
            .await,
        "publish",
    );
    eventually(
        backend.patience(),
        "message without id dead-lettered",
        || async { running.consumer.totals().dead_lettered == 1 },
    )
    .await;
    running.stop().await;
    let dlq = ok(backend.dead_letters(&dest).await, "read the DLQ");
    assert_eq!(dlq.len(), 1);
    let failure = dlq[0]
        .failure
        .clone()
        .unwrap_or_else(|| panic!("no metadata: {:?}", dlq[0]));
    assert_eq!(failure.reason, DeadLetterReason::MissingId);
    assert_eq!(failure.error, "missing message id");
    assert_eq!(dlq[0].message.payload, env.payload);
    assert_eq!(handler.effects().distinct(), 0);
}

/// While the dedupe store is unreachable the consumer processes and acks nothing; when
/// it comes back the message is processed once.
pub async fn fails_closed_when_dedupe_store_is_down(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let switch = Arc::new(SwitchableDedupe::new(dedupe.store.clone()));
    switch.set_down(true);
    let handler = RecordingHandler::new();
    let running = Running::start(
        backend,
        &dest,
        switch.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    let env = Envelope::new(&dest, "wait for the store");
    ok(
        ok(backend.publisher().await, "publisher")
            .publish(&env)
            .await,
        "publish",
    );
    eventually(
        backend.patience(),
        "consumer notices the store is down",
        || async { !running.consumer.store_available() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handler.calls(env.id),
        0,
        "nothing is processed without dedupe"
    );
    let t = running.consumer.totals();
    assert_eq!(
        (t.processed, t.duplicates, t.dead_lettered),
        (0, 0, 0),
        "nothing acked: {t:?}"
    );
    assert!(t.store_errors > 0);

    switch.set_down(false);
    eventually(
        backend.patience(),
        "processed once the store is back",
        || async { running.consumer.totals().processed == 1 },
    )
    .await;
    running.stop().await;
    assert_eq!(handler.effects().count(env.id), 1);
    assert_eq!(handler.calls(env.id), 1);
}
