//! `zerolost bench --backend kafka-mock|kafka`: in one process and one run, the raw client
//! against zerolost on the same broker — relay (raw producer vs the outbox relay) and
//! consume (raw consume + commit vs the zerolost consumer with its dedupe store).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::ValueEnum;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use zerolost_core::{
    CancellationToken, Consumer, ConsumerConfig, DeadLetterPublisher, DedupeStore, Envelope, Error,
    Handler, HandlerError, RelayConfig, default_dlq_name,
};
use zerolost_kafka::mock::MockKafka;
use zerolost_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber, TopicSpec, ensure_topic};

use crate::bench::{BenchTarget, envelopes, timed_drain};

/// Which broker `zerolost bench --backend` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerTarget {
    /// librdkafka's in-process mock cluster (3 brokers, topics with 3 replicas).
    KafkaMock,
    /// A real Kafka (`--url`, else ZEROLOST_KAFKA_BROKERS, else the single-node test broker).
    Kafka,
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
    pub json: bool,
}

/// Rows per relay round.
const RELAY_BATCH: usize = 1000;
/// Relay rounds in flight at once.
const RELAY_ROUNDS_IN_FLIGHT: usize = 4;

/// One side-by-side figure. Field names are a contract: add fields, never rename.
#[derive(Debug, Serialize)]
struct Comparison {
    name: &'static str,
    backend: BrokerTarget,
    messages: usize,
    raw_msgs_per_s: f64,
    zerolost_msgs_per_s: f64,
    ratio: f64,
    /// What zerolost's side used (outbox store or dedupe store).
    zerolost_store: String,
}

/// The `--json` output of a broker benchmark. Field names are a contract.
#[derive(Debug, Serialize)]
struct BrokerReport {
    results: Vec<Comparison>,
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn kafka_error(operation: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> Error {
    move |e| Error::backend(operation, true, e)
}

/// The raw producer: the same safe settings zerolost uses, every record in flight at once.
async fn raw_produce(
    config: &KafkaConfig,
    topic: &str,
    batch: &[Envelope],
) -> Result<Duration, Error> {
    let producer: FutureProducer = config
        .producer_config()?
        .create()
        .map_err(kafka_error("create producer"))?;
    let started = Instant::now();
    let mut reports = Vec::with_capacity(batch.len());
    for envelope in batch {
        let id = envelope.id.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: zerolost_core::MESSAGE_ID_HEADER,
            value: Some(id.as_str()),
        });
        let mut record = FutureRecord::to(topic)
            .key(id.as_str())
            .payload(envelope.payload.as_ref())
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(report) => {
                    reports.push(report);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(kafka_error("produce")(e)),
            }
        }
    }
    for report in futures::future::join_all(reports).await {
        match report {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(kafka_error("produce")(e)),
            Err(_) => return Err(Error::backend("produce", true, "delivery report lost")),
        }
    }
    Ok(started.elapsed())
}

/// Raw consume + commit: read `n` records, committing asynchronously every 1,000 and
/// synchronously at the end.
async fn raw_consume(config: &KafkaConfig, topic: &str, n: usize) -> Result<Duration, Error> {
    let group = format!("zlbench-raw-{}-{topic}", std::process::id());
    let consumer: StreamConsumer = config
        .consumer_config(&group)?
        .create()
        .map_err(kafka_error("create consumer"))?;
    consumer
        .subscribe(&[topic])
        .map_err(kafka_error("subscribe"))?;
    let mut started = None;
    for i in 0..n {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .map_err(|_| Error::Timeout {
                operation: "raw consume".into(),
                after: Duration::from_secs(60),
            })?
            .map_err(kafka_error("consume"))?;
        started.get_or_insert_with(Instant::now);
        if (i + 1) % 1000 == 0 {
            consumer
                .commit_message(&message, CommitMode::Async)
                .map_err(kafka_error("commit"))?;
        }
        if i + 1 == n {
            consumer
                .commit_message(&message, CommitMode::Sync)
                .map_err(kafka_error("commit"))?;
        }
    }
    Ok(started.map(|s: Instant| s.elapsed()).unwrap_or_default())
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

/// The zerolost consumer (claim → handle → complete → ack, contiguous commits) over `n`.
async fn zerolost_consume(
    bench: &BrokerBench,
    config: &KafkaConfig,
    topic: &str,
    n: usize,
) -> Result<(Duration, String), Error> {
    let (dedupe, store): (Arc<dyn DedupeStore>, String) = match bench.dedupe {
        DedupeChoice::Redis => (
            Arc::new(
                zerolost_redis::RedisDedupe::connect(&bench.redis_url)
                    .await?
                    .with_prefix(&format!("zlbench:{}:{topic}:", std::process::id()))?,
            ),
            "redis".into(),
        ),
        DedupeChoice::Memory => (
            Arc::new(zerolost_core::memory::MemoryDedupe::new()),
            "memory".into(),
        ),
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let consumer = Consumer::new(
        dedupe,
        CountingHandler(handled.clone()),
        DeadLetterPublisher::new(KafkaPublisher::new(config)?),
    )
    .with_config(ConsumerConfig {
        concurrency: 256,
        ..ConsumerConfig::default()
    })?;
    let group = format!("zlbench-zl-{}-{topic}", std::process::id());
    let subscriber = KafkaSubscriber::new(config, &group, &[topic])?;
    let monitor = subscriber.monitor();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(subscriber, stop).await }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut started = None;
    while handled.load(Ordering::Relaxed) < n {
        if handled.load(Ordering::Relaxed) > 0 && started.is_none() {
            started = Some(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                operation: "zerolost consume".into(),
                after: Duration::from_secs(600),
            });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    monitor.commit().await?;
    let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    stop.cancel();
    task.await
        .map_err(|e| Error::backend("consumer task", false, e.to_string()))??;
    Ok((elapsed, store))
}

/// Runs the side-by-side benchmark and prints it.
pub async fn run(bench: BrokerBench) -> Result<ExitCode, Error> {
    let mock = match bench.backend {
        BrokerTarget::KafkaMock => Some(MockKafka::start(3)?),
        BrokerTarget::Kafka => None,
    };
    let config = match &mock {
        Some(mock) => mock.config(),
        None => KafkaConfig::new(bench.brokers.clone().unwrap_or_else(|| {
            zerolost_testkit::service_url("ZEROLOST_KAFKA_BROKERS", "127.0.0.1:19092")
        })),
    };
    let spec = match bench.backend {
        BrokerTarget::KafkaMock => TopicSpec::DURABLE,
        BrokerTarget::Kafka => TopicSpec::SINGLE_NODE,
    };
    let run_id = format!("zlbench-{}", std::process::id());
    let (raw_topic, zl_topic) = (format!("{run_id}-raw"), format!("{run_id}-zerolost"));
    for topic in [&raw_topic, &zl_topic, &default_dlq_name(&zl_topic)] {
        match &mock {
            Some(mock) => mock.create_topic(topic, spec.partitions, spec.replication)?,
            None => ensure_topic(&config, topic, spec).await?,
        }
    }
    let n = bench.messages;
    let raw_batch: Vec<Envelope> = envelopes(n)
        .into_iter()
        .map(|mut e| {
            e.destination = raw_topic.clone();
            e
        })
        .collect();
    let zl_batch: Vec<Envelope> = envelopes(n)
        .into_iter()
        .map(|mut e| {
            e.destination = zl_topic.clone();
            e
        })
        .collect();
    eprintln!("relay: raw producer, {n} messages ...");
    let raw_relay = raw_produce(&config, &raw_topic, &raw_batch).await?;
    eprintln!(
        "relay: zerolost relay from the {:?} outbox ...",
        bench.outbox
    );
    let relay_config = RelayConfig {
        batch_size: RELAY_BATCH,
        ..RelayConfig::default()
    };
    let zl_relay = timed_drain(
        bench.outbox,
        &bench.outbox_url,
        &zl_batch,
        KafkaPublisher::new(&config)?,
        relay_config,
        RELAY_ROUNDS_IN_FLIGHT,
    )
    .await?;
    eprintln!("consume: raw consume + commit ...");
    let raw_consumed = raw_consume(&config, &raw_topic, n).await?;
    eprintln!(
        "consume: zerolost consumer with {:?} dedupe ...",
        bench.dedupe
    );
    let (zl_consumed, dedupe_store) = zerolost_consume(&bench, &config, &zl_topic, n).await?;
    let compare = |name, store: String, raw: Duration, zl: Duration| {
        let (raw, zl) = (rate(n, raw), rate(n, zl));
        Comparison {
            name,
            backend: bench.backend,
            messages: n,
            raw_msgs_per_s: raw,
            zerolost_msgs_per_s: zl,
            ratio: zl / raw.max(1e-9),
            zerolost_store: store,
        }
    };
    let report = BrokerReport {
        results: vec![
            compare(
                "relay",
                format!("{:?} outbox", bench.outbox).to_lowercase(),
                raw_relay,
                zl_relay,
            ),
            compare(
                "consume",
                format!("{dedupe_store} dedupe"),
                raw_consumed,
                zl_consumed,
            ),
        ],
    };
    if bench.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::backend("writing the JSON report", false, e))?;
        println!("{json}");
    } else {
        println!(
            "zerolost bench --backend {:?} ({n} messages, one run)",
            bench.backend
        );
        println!(
            "{:<9} {:>14} {:>16} {:>7}  zerolost side",
            "", "raw msgs/s", "zerolost msgs/s", "ratio"
        );
        for r in &report.results {
            println!(
                "{:<9} {:>14.0} {:>16.0} {:>7.2}  {}",
                r.name, r.raw_msgs_per_s, r.zerolost_msgs_per_s, r.ratio, r.zerolost_store
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
