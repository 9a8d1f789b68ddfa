//! The replay measurement of docs/reliability.md: 50 messages processed once under a 1 s
//! `keep_for`, reconciled 2 s later. With the consumers' window the reconciler reports them
//! beyond the window and repair re-sends nothing; without it (a reconciler left at its 24 h
//! default) all 50 read as missing, and a repair would apply them again.
//!
//! Run: `cargo run --example replay_measure`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zerolost::memory::{MemoryBroker, MemoryDedupe, MemoryOutbox};
use zerolost::{
    CancellationToken, Consumer, ConsumerConfig, DeadLetterPublisher, Envelope, MessageId,
    Reconciler, Relay, handler_fn,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let broker = MemoryBroker::new();
    broker.declare("orders");
    broker.declare("orders.dlq");
    let outbox = MemoryOutbox::new();
    let orders: Vec<Envelope> = (0..50)
        .map(|i| Envelope::new("orders", format!("m{i}")))
        .collect();
    outbox.enqueue_batch(&orders)?;
    let relay = Relay::new(outbox.clone(), broker.publisher());
    let dedupe = MemoryDedupe::new();
    let effects: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let handler = handler_fn({
        let effects = effects.clone();
        move |env: Envelope| {
            let effects = effects.clone();
            async move {
                *effects
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(env.id)
                    .or_insert(0) += 1;
                Ok(())
            }
        }
    });
    let keep_for = Duration::from_secs(1);
    let config = ConsumerConfig {
        keep_for,
        ..ConsumerConfig::default()
    };
    let consumer = Consumer::new(
        dedupe.clone(),
        handler,
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(config)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (consumer, stop, sub) = (consumer.clone(), stop.clone(), broker.subscribe("orders")?);
        async move { consumer.run(sub, stop).await }
    });
    relay.run_once().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let applied = |effects: &Mutex<HashMap<MessageId, u32>>| -> u32 {
        effects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    };
    println!("processed once: {}", applied(&effects));
    tokio::time::sleep(keep_for * 2).await;

    let unwindowed = Reconciler::new(outbox.clone(), dedupe.clone()).with_grace(Duration::ZERO);
    let report = unwindowed.reconcile(None).await?;
    println!(
        "reconciler at its 24 h default: missing {}",
        report.missing.len()
    );
    let windowed = Reconciler::new(outbox.clone(), dedupe.clone())
        .with_grace(Duration::ZERO)
        .with_window(keep_for);
    let report = windowed.reconcile(None).await?;
    let repaired = windowed.repair(&report).await?;
    relay.run_once().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "reconciler with the consumers' window: missing {}, beyond the window {}, repair re-sent {repaired}, effects now {}",
        report.missing.len(),
        report.beyond_window.len(),
        applied(&effects)
    );
    stop.cancel();
    task.await??;
    Ok(())
}
