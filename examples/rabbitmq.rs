//! An order service on RabbitMQ: the order row and its outbox row commit together in
//! SQLite; the relay publishes with publisher confirms to a quorum queue; the consumer
//! applies each order once (its inbox mark commits in the handler's transaction) and
//! dead-letters what it cannot process. The durability audit runs first.
//!
//! Needs a RabbitMQ: `scripts/services/rabbitmq.sh start` (or set `ZEROLOST_AMQP_URL` and
//! `ZEROLOST_RABBITMQ_MGMT_URL`). Run:
//! `cargo run --example rabbitmq --features rabbitmq,sqlite`

use std::time::Duration;

use async_trait::async_trait;
use zerolost::rabbitmq::{
    ManagementApi, QueueSpec, RabbitConfig, RabbitPublisher, RabbitSubscriber, audit,
    declare_destination,
};
use zerolost::sql::{InTransaction, SqliteStore, Tables, TransactionalHandler};
use zerolost::{CancellationToken, Consumer, DeadLetterPublisher, Envelope, HandlerError, Relay};

/// Applies an order: one row in `shipments`, in the inbox's transaction.
struct ShipOrder;

#[async_trait]
impl TransactionalHandler<sqlx::Sqlite> for ShipOrder {
    async fn handle(
        &self,
        order: &Envelope,
        tx: &mut sqlx::SqliteConnection,
    ) -> Result<(), HandlerError> {
        if order.payload.is_empty() {
            return Err(HandlerError::permanent("an order without a body")); // → orders.dlq
        }
        sqlx::query("INSERT INTO shipments (order_id) VALUES (?)")
            .bind(order.id.to_string())
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
    let config = RabbitConfig::new(env(
        "ZEROLOST_AMQP_URL",
        "amqp://zerolost:zerolost@127.0.0.1:55672/zerolost",
    ));
    // Exchange + quorum queue `orders`, dead-letter exchange + quorum queue `orders.dlq`.
    declare_destination(&config, "orders", QueueSpec::default()).await?;
    let api = ManagementApi::new(
        &env(
            "ZEROLOST_RABBITMQ_MGMT_URL",
            "http://zerolost:zerolost@127.0.0.1:55673",
        ),
        "zerolost",
    )?;
    let report = audit(&api, "orders").await?;
    println!("audit of `orders`: durable = {}", report.is_durable());
    for finding in &report.findings {
        println!(
            "  {:?} {}: {}",
            finding.severity, finding.subject, finding.fix
        );
    }

    std::fs::create_dir_all(".zerolost")?;
    let store = SqliteStore::connect(
        "sqlite://.zerolost/example-rabbitmq.sqlite?mode=rwc",
        Tables::default(),
    )
    .await?;
    store.migrate().await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(store.pool())
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS shipments (order_id TEXT NOT NULL)")
        .execute(store.pool())
        .await?;

    // 1. The business row and the outbox row, one transaction.
    let outbox = store.outbox();
    let mut tx = store.pool().begin().await?;
    let order = Envelope::new("orders", r#"{"sku":"A-42","qty":1}"#).with_key("customer-7");
    sqlx::query("INSERT INTO orders (id, body) VALUES (?, ?)")
        .bind(order.id.to_string())
        .bind(r#"{"sku":"A-42","qty":1}"#)
        .execute(&mut *tx)
        .await?;
    outbox.enqueue(&mut tx, &order).await?;
    tx.commit().await?;

    // 2. The relay (usually its own process: `zerolost relay`): lease → publish → confirm → mark.
    let stop = CancellationToken::new();
    let relay = Relay::new(outbox.clone(), RabbitPublisher::new(&config)?);
    let relaying = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop).await }
    });

    // 3. The consumer: claim → ship (inbox mark in the same transaction) → ack.
    let inbox = store.inbox();
    let consumer = Consumer::new(
        inbox.clone(),
        InTransaction::new(inbox, ShipOrder),
        DeadLetterPublisher::new(RabbitPublisher::new(&config)?),
    );
    let subscriber = RabbitSubscriber::new(&config, "orders")?.with_topology(QueueSpec::default());
    let consuming = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(subscriber, stop).await }
    });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while consumer.totals().processed == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    relaying.await??;
    consuming.await??;
    let shipped: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shipments WHERE order_id = ?")
        .bind(order.id.to_string())
        .fetch_one(store.pool())
        .await?;
    println!(
        "order {} shipped {shipped} time(s); consumer {:?}",
        order.id,
        consumer.totals()
    );
    Ok(())
}
