//! The slow-handler measurement of docs/reliability.md: a handler slower than its claim
//! lease (lease 300 ms, handler 1.5 s), 5 messages each delivered twice (a relay re-send),
//! 4 handlers in flight, for 15 s; prints the side effects per id, counted raw.
//!
//! Run: `cargo run --example lease_measure --features memory,redis,sqlite -- memory|redis|sqlite`
//! (Redis from `scripts/services/redis.sh start`, or `ZEROLOST_REDIS_URL`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zerolost::memory::{MemoryBroker, MemoryDedupe};
use zerolost::{
    CancellationToken, Consumer, ConsumerConfig, DeadLetterPublisher, DedupeStore, Envelope,
    MessageId, Publisher, handler_fn,
};

async fn store(which: &str, dir: &std::path::Path) -> anyhow::Result<Arc<dyn DedupeStore>> {
    Ok(match which {
        "redis" => {
            let url = std::env::var("ZEROLOST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:56379".into());
            let prefix = format!("lease-measure-{}:", std::process::id());
            Arc::new(
                zerolost::redis::RedisDedupe::connect(&url)
                    .await?
                    .with_prefix(&prefix)?,
            )
        }
        "sqlite" => {
            let url = format!("sqlite://{}", dir.join("inbox.db").display());
            let store = zerolost::sql::SqliteStore::connect(&url, Default::default()).await?;
            store.migrate().await?;
            Arc::new(store.inbox())
        }
        _ => Arc::new(MemoryDedupe::new()),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "memory".into());
    let dir = std::env::temp_dir().join(format!("zerolost-lease-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let broker = MemoryBroker::new();
    broker.declare("orders");
    broker.declare("orders.dlq");
    let effects: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let handler = handler_fn({
        let effects = effects.clone();
        move |env: Envelope| {
            let effects = effects.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                *effects
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(env.id)
                    .or_insert(0) += 1;
                Ok(())
            }
        }
    });
    let config = ConsumerConfig {
        concurrency: 4,
        claim_lease: Duration::from_millis(300),
        ..ConsumerConfig::default()
    };
    let consumer = Consumer::new(
        store(&which, &dir).await?,
        handler,
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(config)?;
    let orders: Vec<Envelope> = (0..5)
        .map(|i| Envelope::new("orders", format!("m{i}")))
        .collect();
    for order in orders.iter().chain(orders.iter()) {
        broker.publisher().publish(order).await?;
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (consumer, stop, sub) = (consumer.clone(), stop.clone(), broker.subscribe("orders")?);
        async move { consumer.run(sub, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.cancel();
    task.await??;
    let effects = effects.lock().unwrap_or_else(|p| p.into_inner());
    let per_id: Vec<u32> = orders
        .iter()
        .map(|o| effects.get(&o.id).copied().unwrap_or(0))
        .collect();
    println!(
        "{which}: side effects per id {per_id:?}; {:?}",
        consumer.totals()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
