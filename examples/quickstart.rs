//! The whole pipeline in one file, on the in-memory backend:
//! outbox → relay (confirmed publish) → consumer (dedupe, retry, DLQ) → reconciliation.
//!
//! Run: `cargo run --example quickstart --features memory`

use std::time::Duration;

use zerolost::memory::{MemoryBroker, MemoryDedupe, MemoryOutbox};
use zerolost::{
    CancellationToken, Consumer, DeadLetterPublisher, Envelope, HandlerError, Reconciler, Relay,
    handler_fn,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The broker and its dead-letter queue (a real app declares durable queues/topics).
    let broker = MemoryBroker::new();
    broker.declare("orders");
    broker.declare("orders.dlq");

    // 1. Producer: the business rows and the outbox rows commit together
    //    (with zerolost-sqlx: `outbox.enqueue(&mut tx, &envelope)` inside your transaction).
    let outbox = MemoryOutbox::new();
    let orders: Vec<Envelope> = (1..=5)
        .map(|n| {
            Envelope::new("orders", format!("{{\"order\":{n}}}")).with_key(format!("customer-{n}"))
        })
        .collect();
    outbox.enqueue_batch(&orders)?;

    // 2. Relay: lease pending rows, publish with confirms, mark them sent.
    let relay = Relay::new(outbox.clone(), broker.publisher());
    let round = relay.run_once().await?;
    println!(
        "relay: {} published, {} rescheduled, {} parked",
        round.published, round.rescheduled, round.parked
    );

    // 3. Consumer: claim the id, run the handler, mark it processed, then ack.
    let dedupe = MemoryDedupe::new();
    let handler = handler_fn(|order: Envelope| async move {
        if order.payload.is_empty() {
            return Err(HandlerError::permanent("empty order"));
        }
        println!("handled {} ({} bytes)", order.id, order.payload.len());
        Ok(())
    });
    let consumer = Consumer::new(
        dedupe.clone(),
        handler,
        DeadLetterPublisher::new(broker.publisher()),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (consumer, stop, subscriber) =
            (consumer.clone(), stop.clone(), broker.subscribe("orders")?);
        async move { consumer.run(subscriber, stop).await }
    });
    // A duplicate (e.g. a re-send after a lost confirm) is suppressed, not applied again.
    zerolost::Publisher::publish(&broker.publisher(), &orders[0]).await?;
    while consumer.totals().processed < 5 || consumer.totals().duplicates < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let totals = running.await??;
    println!(
        "consumer: {} processed, {} duplicates suppressed",
        totals.processed, totals.duplicates
    );

    // 4. Watch: reconcile by id across the outbox and the consumer's ledger.
    let report = Reconciler::new(outbox, dedupe)
        .with_grace(Duration::ZERO)
        .reconcile(None)
        .await?;
    println!(
        "reconcile: produced {}, published {}, processed {}, missing {}",
        report.produced,
        report.published,
        report.processed,
        report.missing.len()
    );
    assert!(report.is_clean());
    Ok(())
}
