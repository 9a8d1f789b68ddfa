//! A consumer service with the SQL inbox: each order from RabbitMQ is applied (a row in
//! `example_shipments`) **in the same PostgreSQL transaction** as its inbox mark, so a
//! crash anywhere gives either both or neither; a redelivered order finds its mark and is
//! acknowledged without a second shipment. Orders that cannot be shipped go to the DLQ.
//!
//! Needs PostgreSQL and RabbitMQ: `scripts/services/up.sh`. Feed it with the `axum_orders`
//! example, then run: `cargo run --example inbox_consumer --features postgres,rabbitmq`
//! (Ctrl-C stops it; `-- --until-idle` exits once no order arrived for 3 s, as CI runs it).

use std::time::Duration;

use async_trait::async_trait;
use zerolost::rabbitmq::{QueueSpec, RabbitConfig, RabbitPublisher, RabbitSubscriber};
use zerolost::sql::{InTransaction, PgStore, Tables, TransactionalHandler};
use zerolost::{CancellationToken, Consumer, DeadLetterPublisher, Envelope, HandlerError};

const DESTINATION: &str = "zl-example-orders";

/// Ships an order: one row, in the inbox's transaction.
struct ShipOrder;

#[async_trait]
impl TransactionalHandler<sqlx::Postgres> for ShipOrder {
    async fn handle(
        &self,
        order: &Envelope,
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), HandlerError> {
        let body: serde_json::Value = serde_json::from_slice(&order.payload)
            .map_err(|e| HandlerError::permanent(format!("not an order: {e}")))?; // → DLQ
        sqlx::query("INSERT INTO example_shipments (order_id, sku) VALUES ($1, $2)")
            .bind(order.id.as_uuid())
            .bind(body["sku"].as_str().unwrap_or("?"))
            .execute(&mut *tx)
            .await
            .map_err(HandlerError::retryable)?; // retried, then dead-lettered
        Ok(())
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let until_idle = std::env::args().any(|a| a == "--until-idle");
    let store = PgStore::connect(
        &env(
            "ZEROLOST_PG_URL",
            "postgres://zerolost:zerolost@127.0.0.1:55432/zerolost",
        ),
        Tables::default().with_prefix("zl_example_")?,
    )
    .await?;
    store.migrate().await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS example_shipments (order_id UUID NOT NULL, sku TEXT NOT NULL)",
    )
    .execute(store.pool())
    .await?;
    let rabbit = RabbitConfig::new(env(
        "ZEROLOST_AMQP_URL",
        "amqp://zerolost:zerolost@127.0.0.1:55672/zerolost",
    ));

    let inbox = store.inbox();
    let consumer = Consumer::new(
        inbox.clone(),
        InTransaction::new(inbox, ShipOrder),
        DeadLetterPublisher::new(RabbitPublisher::new(&rabbit)?),
    );
    let subscriber =
        RabbitSubscriber::new(&rabbit, DESTINATION)?.with_topology(QueueSpec::default());
    let stop = CancellationToken::new();
    let consuming = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(subscriber, stop).await }
    });
    println!("consuming {DESTINATION} (Ctrl-C to stop)");
    if until_idle {
        // Quiet for 3 s after something arrived, or nothing at all for 30 s.
        let started = tokio::time::Instant::now();
        let mut last = consumer.totals();
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let now = consumer.totals();
            let seen = now.processed + now.duplicates + now.dead_lettered > 0;
            if (now == last && seen) || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            last = now;
        }
    } else {
        tokio::signal::ctrl_c().await?;
    }
    stop.cancel();
    let totals = consuming.await??;
    let shipments: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM example_shipments")
        .fetch_one(store.pool())
        .await?;
    let doubles: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT order_id FROM example_shipments GROUP BY order_id HAVING COUNT(*) > 1) d",
    )
    .fetch_one(store.pool())
    .await?;
    println!(
        "processed {} now, {} duplicates suppressed, {} dead-lettered; {shipments} shipments in all, {doubles} orders shipped twice",
        totals.processed, totals.duplicates, totals.dead_lettered
    );
    anyhow::ensure!(doubles == 0, "an order was shipped twice");
    Ok(())
}
