//! A consumer with Redis deduplication on Kafka, for handlers whose effect is not in a SQL
//! transaction: before the handler runs, the message id is claimed in Redis (`SET NX PX`,
//! with a lease and a token, as the source article's `LOCK:<id>`); after it, the id is
//! marked processed for 24 h (`MSG:<id>`). A redelivered copy finds the mark and is
//! committed without running the handler again.
//!
//! The producer side sends each order twice (a lost confirm re-sent, as the relay would):
//! the handler still runs once per order.
//!
//! Needs Kafka and Redis: `scripts/services/up.sh` (or `ZEROLOST_KAFKA_BROKERS`,
//! `ZEROLOST_REDIS_URL`). Run: `cargo run --example redis_consumer --features kafka,redis`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zerolost::kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber, TopicSpec, ensure_topic};
use zerolost::redis::RedisDedupe;
use zerolost::{
    CancellationToken, Consumer, DeadLetterPublisher, Envelope, HandlerError, MessageId, Publisher,
    handler_fn,
};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let kafka = KafkaConfig::new(env("ZEROLOST_KAFKA_BROKERS", "127.0.0.1:19092"));
    // One node here, so one replica (the audit would flag it); use TopicSpec::DURABLE on a
    // real cluster.
    let topic = format!("zl-example-payments-{}", std::process::id());
    ensure_topic(&kafka, &topic, TopicSpec::SINGLE_NODE).await?;
    ensure_topic(&kafka, &format!("{topic}.dlq"), TopicSpec::SINGLE_NODE).await?;

    // Each payment sent twice: the consumer must charge once.
    let payments: Vec<Envelope> = (1..=5)
        .map(|i| Envelope::new(&topic, format!("charge order {i}")).with_key(format!("order-{i}")))
        .collect();
    let publisher = KafkaPublisher::new(&kafka)?;
    for round in 0..2 {
        for result in publisher.publish_batch(&payments).await {
            result?;
        }
        println!("sent the 5 payments (round {})", round + 1);
    }

    // The effect: a charge per order, outside any database transaction.
    let charges: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let handler = {
        let charges = charges.clone();
        handler_fn(move |payment: Envelope| {
            let charges = charges.clone();
            async move {
                let mut charges = charges
                    .lock()
                    .map_err(|_| HandlerError::retryable("charges lock poisoned"))?;
                *charges.entry(payment.id).or_default() += 1;
                Ok(())
            }
        })
    };
    let dedupe = RedisDedupe::connect(&env("ZEROLOST_REDIS_URL", "redis://127.0.0.1:56379"))
        .await?
        .with_prefix(&format!("zl-example-{}:", std::process::id()))?;
    let consumer = Consumer::new(
        dedupe,
        handler,
        DeadLetterPublisher::new(KafkaPublisher::new(&kafka)?),
    );
    let subscriber = KafkaSubscriber::new(&kafka, "zl-example-payments", &[topic.as_str()])?;
    let stop = CancellationToken::new();
    let consuming = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(subscriber, stop).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while consumer.totals().processed + consumer.totals().duplicates < 10 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not all 10 copies arrived: {:?}",
            consumer.totals()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let totals = consuming.await??;
    let charges = charges
        .lock()
        .map_err(|_| anyhow::anyhow!("charges lock poisoned"))?;
    println!(
        "10 copies received: {} charged, {} duplicates suppressed by Redis",
        totals.processed, totals.duplicates
    );
    anyhow::ensure!(
        charges.len() == 5 && charges.values().all(|n| *n == 1),
        "each order charged once: {charges:?}"
    );
    println!("each of the 5 orders was charged exactly once");
    Ok(())
}
