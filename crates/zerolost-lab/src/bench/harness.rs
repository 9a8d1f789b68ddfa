//! What every broker measurement shares: the targets, the run's settings, the zerolost
//! relay and consumer sides, and the timing helpers the raw sides use too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::ValueEnum;
use serde::Serialize;
use zerolost_core::{
    CancellationToken, Consumer, ConsumerConfig, DeadLetterSink, DedupeStore, Envelope, Error,
    Handler, HandlerError, Publisher, RelayConfig, Subscriber,
};

use super::fixture::{envelopes, timed_drain};
use crate::kinds::BenchTarget;

/// Which broker `zerolost-lab bench --backend` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerTarget {
    /// librdkafka's in-process mock cluster (3 brokers, topics with 3 replicas).
    KafkaMock,
    /// A real Kafka (`--url`, else ZEROLOST_KAFKA_BROKERS, else the single-node test broker).
    Kafka,
    /// A real RabbitMQ (`--url`, else ZEROLOST_AMQP_URL, else the test broker).
    Rabbitmq,
    /// A real RocketMQ (`--url` = name server, else ZEROLOST_ROCKETMQ_NAMESRV, else the
    /// test name server; topics on its `ZerolostCluster`).
    Rocketmq,
}

/// The consumer's dedupe store in the consume measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DedupeChoice {
    /// Redis (ZEROLOST_REDIS_URL, else the test server).
    Redis,
    /// In memory (no server; measures the pipeline alone).
    Memory,
}

/// What to run.
pub struct BrokerBench {
    pub backend: BrokerTarget,
    pub messages: usize,
    pub outbox: BenchTarget,
    pub outbox_url: String,
    pub dedupe: DedupeChoice,
    pub redis_url: String,
    pub brokers: Option<String>,
    /// RocketMQ's consume batch, both sides.
    pub consume_batch: u32,
    pub json: bool,
}

/// Rows per relay round.
pub const RELAY_BATCH: usize = 1000;
/// Relay rounds in flight at once.
pub const RELAY_ROUNDS_IN_FLIGHT: usize = 4;

/// The relay settings of the zerolost side.
fn relay_config() -> RelayConfig {
    RelayConfig {
        batch_size: RELAY_BATCH,
        ..RelayConfig::default()
    }
}

/// The four timings of one run, in the order they were taken.
pub struct Measured {
    pub raw_relay: Duration,
    pub zerolost_relay: Duration,
    pub raw_consume: Duration,
    pub zerolost_consume: Duration,
    /// The dedupe store the zerolost consumer used.
    pub dedupe_store: String,
}

/// `n` envelopes for `destination`.
pub fn batch_for(destination: &str, n: usize) -> Vec<Envelope> {
    envelopes(n)
        .into_iter()
        .map(|mut e| {
            e.destination = destination.to_owned();
            e
        })
        .collect()
}

pub fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Waits for the raw consumer's next message, a minute at most.
pub async fn next_within_a_minute<T>(next: impl Future<Output = T>) -> Result<T, Error> {
    const PATIENCE: Duration = Duration::from_secs(60);
    tokio::time::timeout(PATIENCE, next)
        .await
        .map_err(|_| Error::Timeout {
            operation: "raw consume".into(),
            after: PATIENCE,
        })
}

/// The zerolost relay draining `batch` from a fresh outbox of `bench.outbox` through
/// `publisher` (batch `RELAY_BATCH`, `RELAY_ROUNDS_IN_FLIGHT` rounds at once).
pub async fn zerolost_relay<P: Publisher + 'static>(
    bench: &BrokerBench,
    batch: &[Envelope],
    publisher: P,
) -> Result<Duration, Error> {
    eprintln!(
        "relay: zerolost relay from the {:?} outbox ...",
        bench.outbox
    );
    timed_drain(
        bench.outbox,
        &bench.outbox_url,
        batch,
        publisher,
        relay_config(),
        RELAY_ROUNDS_IN_FLIGHT,
    )
    .await
}

/// The dedupe store of the zerolost consumer.
async fn dedupe_store(
    bench: &BrokerBench,
    destination: &str,
) -> Result<(Arc<dyn DedupeStore>, String), Error> {
    Ok(match bench.dedupe {
        DedupeChoice::Redis => (
            Arc::new(
                zerolost_redis::RedisDedupe::connect(&bench.redis_url)
                    .await?
                    .with_prefix(&format!("zlbench:{}:{destination}:", std::process::id()))?,
            ),
            "redis".into(),
        ),
        DedupeChoice::Memory => (
            Arc::new(zerolost_core::memory::MemoryDedupe::new()),
            "memory".into(),
        ),
    })
}

/// The zerolost consumer (claim → handle → complete → ack) over `n` messages of
/// `subscriber`; when the run is over, `flush` runs on the subscriber handed back before
/// the clock stops (Kafka's final commit), and the subscriber is closed after it.
pub async fn zerolost_consume<S: Subscriber + 'static>(
    bench: &BrokerBench,
    destination: &str,
    mut subscriber: S,
    dead_letters: Arc<dyn DeadLetterSink>,
    n: usize,
    flush: impl AsyncFnOnce(&mut S) -> Result<(), Error>,
) -> Result<(Duration, String), Error> {
    eprintln!(
        "consume: zerolost consumer with {:?} dedupe ...",
        bench.dedupe
    );
    let (dedupe, store) = dedupe_store(bench, destination).await?;
    let handled = Arc::new(AtomicUsize::new(0));
    let consumer = Consumer::new(dedupe, CountingHandler(handled.clone()), dead_letters)
        .with_config(ConsumerConfig {
            concurrency: 256,
            ..ConsumerConfig::default()
        })?;
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move {
            let ran = consumer.run(&mut subscriber, stop).await;
            (ran, subscriber)
        }
    });
    let started = first_to_nth(&handled, n, "zerolost consume").await?;
    stop.cancel();
    let (ran, mut subscriber) = task
        .await
        .map_err(|e| Error::backend("consumer task", false, e.to_string()))?;
    ran?;
    flush(&mut subscriber).await?;
    let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    subscriber.close().await?;
    Ok((elapsed, store))
}

/// Waits (ten minutes at most) until `count` reaches `n`; returns when it first left 0.
pub async fn first_to_nth(
    count: &AtomicUsize,
    n: usize,
    operation: &str,
) -> Result<Option<Instant>, Error> {
    const PATIENCE: Duration = Duration::from_secs(600);
    let deadline = Instant::now() + PATIENCE;
    let mut started = None;
    while count.load(Ordering::Relaxed) < n {
        if count.load(Ordering::Relaxed) > 0 && started.is_none() {
            started = Some(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                operation: operation.into(),
                after: PATIENCE,
            });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(started)
}

/// Counts handled messages; no work.
struct CountingHandler(Arc<AtomicUsize>);

#[async_trait]
impl Handler for CountingHandler {
    async fn handle(&self, _envelope: &Envelope) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
