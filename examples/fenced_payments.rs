//! A payment handler slower than its claim lease, and a fenced write for the effect that
//! lives outside the dedupe store (a payments table here; an HTTP API with an idempotency
//! key and the fence in the same way).
//!
//! 1. Each order arrives twice (a relay re-send); the handler takes 3x the claim lease. The
//!    consumer renews the claim while the handler runs, so the second copy waits and is
//!    suppressed: each order is charged once.
//! 2. A stale holder: a consumer paused past its lease (GC, SIGSTOP) whose claim another
//!    consumer took over. Its write carries the old fencing number and is refused by the
//!    `WHERE fence < ?` compare; the new holder's write lands.
//!
//! Run: `cargo run --example fenced_payments --features sqlite`

use std::time::Duration;

use zerolost::memory::MemoryBroker;
use zerolost::sql::{SqliteStore, Tables, sqlx};
use zerolost::{
    CancellationToken, Claim, Consumer, ConsumerConfig, DeadLetterPublisher, DedupeStore, Envelope,
    HandlerContext, HandlerError, Publisher, handler_fn_with_context,
};

/// The effect, fenced: applied only if no later holder of this order wrote first.
const CHARGE: &str = "INSERT INTO payments (order_id, charges, fence) VALUES (?, 1, ?) \
    ON CONFLICT (order_id) DO UPDATE SET charges = payments.charges + 1, fence = excluded.fence \
    WHERE payments.fence < excluded.fence";

async fn charge(pool: &sqlx::SqlitePool, order: &str, fence: u64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(CHARGE)
        .bind(order)
        .bind(i64::try_from(fence).unwrap_or(i64::MAX))
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("zerolost-fenced-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::connect(
        &format!("sqlite://{}", dir.join("app.db").display()),
        Tables::default(),
    )
    .await?;
    store.migrate().await?;
    let pool = store.pool().clone();
    sqlx::query("CREATE TABLE payments (order_id TEXT PRIMARY KEY, charges INTEGER NOT NULL, fence INTEGER NOT NULL)")
        .execute(&pool)
        .await?;

    // 1. A slow handler, each order twice.
    let broker = MemoryBroker::new();
    broker.declare("payments");
    broker.declare("payments.dlq");
    let lease = Duration::from_millis(400);
    let handler = handler_fn_with_context({
        let pool = pool.clone();
        move |order: Envelope, ctx: HandlerContext| {
            let pool = pool.clone();
            async move {
                tokio::time::sleep(lease * 3).await; // the payment API is slow today
                let order_id = String::from_utf8_lossy(&order.payload).into_owned();
                charge(&pool, &order_id, ctx.fence())
                    .await
                    .map_err(HandlerError::retryable)?;
                Ok(())
            }
        }
    });
    let config = ConsumerConfig {
        claim_lease: lease,
        ..ConsumerConfig::default()
    };
    let consumer = Consumer::new(
        store.inbox(),
        handler,
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(config)?;
    let orders: Vec<Envelope> = (1..=3)
        .map(|n| Envelope::new("payments", format!("order-{n}")))
        .collect();
    for order in orders.iter().chain(orders.iter()) {
        broker.publisher().publish(order).await?;
    }
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (consumer, stop, sub) = (
            consumer.clone(),
            stop.clone(),
            broker.subscribe("payments")?,
        );
        async move { consumer.run(sub, stop).await }
    });
    while consumer.totals().processed + consumer.totals().duplicates < 6 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    running.await??;
    let charged: Vec<(String, i64)> =
        sqlx::query_as("SELECT order_id, charges FROM payments ORDER BY order_id")
            .fetch_all(&pool)
            .await?;
    println!("charges per order with a handler 3x its lease: {charged:?}");
    anyhow::ensure!(
        charged.iter().all(|(_, n)| *n == 1),
        "an order was charged twice"
    );

    // 2. A stale holder's write is refused.
    let inbox = store.inbox();
    let order = Envelope::new("payments", "order-4");
    let Claim::Claimed(stale) = inbox.claim(order.id, Duration::from_millis(200)).await? else {
        anyhow::bail!("a fresh id is claimable");
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // paused past its lease
    let Claim::Claimed(current) = inbox.claim(order.id, Duration::from_secs(30)).await? else {
        anyhow::bail!("an expired claim is taken over");
    };
    println!(
        "fencing numbers: stale holder {}, new holder {}",
        stale.fence, current.fence
    );
    let new_write = charge(&pool, "order-4", current.fence).await?;
    let stale_write = charge(&pool, "order-4", stale.fence).await?;
    println!(
        "new holder's write applied: {new_write}; stale holder's write applied: {stale_write}"
    );
    anyhow::ensure!(
        new_write && !stale_write,
        "the fence must refuse the stale write"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
