//! An order service on RocketMQ: the order row and its outbox row commit together in
//! SQLite; the relay publishes with synchronous sends (only SEND_OK counts) to a topic on a
//! SYNC_FLUSH broker; the consumer applies each order once (its inbox mark commits in the
//! handler's transaction) and dead-letters what it cannot process to `orders-dlq`. The
//! durability audit runs first.
//!
//! Needs a RocketMQ: `scripts/services/rocketmq.sh start` (or set
//! `ZEROLOST_ROCKETMQ_NAMESRV` and `ZEROLOST_ROCKETMQ_CLUSTER`). Run:
//! `cargo run --example rocketmq --features rocketmq,sqlite`

use std::time::Duration;

use async_trait::async_trait;
use zerolost::rocketmq::{
    RocketConfig, RocketPublisher, RocketRuntime, RocketSubscriber, TopicSpec, audit,
    declare_destination, dlq_topic,
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
            return Err(HandlerError::permanent("an order without a body")); // → orders-dlq
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
    let runtime = RocketRuntime::shared()?;
    let config = RocketConfig::new(env("ZEROLOST_ROCKETMQ_NAMESRV", "127.0.0.1:59876"));
    // Topic `orders` and its DLQ `orders-dlq` on every master of the cluster.
    let cluster = TopicSpec::new(env("ZEROLOST_ROCKETMQ_CLUSTER", "ZerolostCluster"));
    declare_destination(&runtime, &config, &cluster, "orders").await?;
    let report = audit(&runtime, &config, "orders").await?;
    println!("audit of `orders`: durable = {}", report.is_durable());
    for finding in &report.findings {
        println!(
            "  {:?} {}: {}",
            finding.severity, finding.subject, finding.fix
        );
    }

    std::fs::create_dir_all(".zerolost")?;
    let store = SqliteStore::connect(
        "sqlite://.zerolost/example-rocketmq.sqlite?mode=rwc",
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

    // 2. The relay (usually its own process): lease → send → SEND_OK → mark.
    let stop = CancellationToken::new();
    let relay = Relay::new(
        outbox.clone(),
        RocketPublisher::start(&runtime, &config).await?,
    );
    let relaying = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop).await }
    });

    // 3. The consumer (group `shipping`): claim → ship (inbox mark in the same transaction)
    //    → CONSUME_SUCCESS.
    let inbox = store.inbox();
    let consumer = Consumer::new(
        inbox.clone(),
        InTransaction::new(inbox, ShipOrder),
        DeadLetterPublisher::new(RocketPublisher::start(&runtime, &config).await?)
            .with_naming(dlq_topic),
    );
    let subscriber = RocketSubscriber::start(&runtime, &config, "orders", "shipping").await?;
    let consuming = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(subscriber, stop).await }
    });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
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
    anyhow::ensure!(shipped == 1, "the order was shipped {shipped} times");
    Ok(())
}
