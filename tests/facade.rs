//! The facade crate re-exports the core and the in-memory backend: the quickstart's flow
//! through `zerolost::` paths only.

use std::time::Duration;

use zerolost::memory::{MemoryBroker, MemoryDedupe, MemoryOutbox};
use zerolost::{
    CancellationToken, Consumer, DeadLetterPublisher, Envelope, Reconciler, Relay, handler_fn,
};

#[tokio::test]
async fn the_pipeline_through_the_facade() {
    let broker = MemoryBroker::new();
    broker.declare("orders");
    broker.declare("orders.dlq");
    let outbox = MemoryOutbox::new();
    let orders: Vec<Envelope> = (0..20)
        .map(|n| Envelope::new("orders", format!("{n}")))
        .collect();
    outbox.enqueue_batch(&orders).unwrap();
    assert_eq!(
        Relay::new(outbox.clone(), broker.publisher())
            .run_once()
            .await
            .unwrap()
            .published,
        20
    );

    let dedupe = MemoryDedupe::new();
    let consumer = Consumer::new(
        dedupe.clone(),
        handler_fn(|_: Envelope| async { Ok(()) }),
        DeadLetterPublisher::new(broker.publisher()),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        let subscriber = broker.subscribe("orders").unwrap();
        async move { consumer.run(subscriber, stop).await }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while consumer.totals().processed < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("all 20 processed");
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap().processed, 20);

    let report = Reconciler::new(outbox, dedupe)
        .with_grace(Duration::ZERO)
        .reconcile(None)
        .await
        .unwrap();
    assert!(report.is_clean());
    assert_eq!(
        (report.produced, report.published, report.processed),
        (20, 20, 20)
    );
}

/// With feature `sqlite`, the SQL stores are reachable as `zerolost::sql`.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_sqlite_outbox_through_the_facade() {
    use zerolost::OutboxStore;
    use zerolost::sql::{SqliteStore, Tables};
    // A name no earlier run used: a recycled pid would meet that run's `-wal` and `-shm`
    // files, and SQLite replays a stale WAL into a fresh database file (seen once in CI).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let file =
        std::env::temp_dir().join(format!("zerolost-facade-{}-{nanos}.db", std::process::id()));
    let store = SqliteStore::connect(&format!("sqlite://{}", file.display()), Tables::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    let order = Envelope::new("orders", "paid");
    store.outbox().enqueue(&mut tx, &order).await.unwrap();
    tx.commit().await.unwrap();
    let leased = store
        .outbox()
        .lease(10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(leased[0].envelope.id, order.id);
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}
