//! The Kafka half of `zerolost-lab bench --backend kafka-mock|kafka`: librdkafka's producer
//! and consumer, raw, against the outbox relay and the zerolost consumer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use zerolost_core::{DeadLetterPublisher, Envelope, Error, default_dlq_name};
use zerolost_kafka::mock::MockKafka;
use zerolost_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber, TopicSpec, ensure_topic};

use super::harness::{
    BrokerBench, BrokerTarget, Measured, batch_for, next_within_a_minute, zerolost_consume,
    zerolost_relay,
};

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
        let message = next_within_a_minute(consumer.recv())
            .await?
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

/// Both measurements on Kafka (the mock cluster or a real broker).
pub async fn measure(bench: &BrokerBench) -> Result<Measured, Error> {
    let mock = match bench.backend {
        BrokerTarget::KafkaMock => Some(MockKafka::start(3)?),
        BrokerTarget::Kafka | BrokerTarget::Rabbitmq | BrokerTarget::Rocketmq => None,
    };
    let config = match &mock {
        Some(mock) => mock.config(),
        None => KafkaConfig::new(bench.brokers.clone().unwrap_or_else(|| {
            zerolost_testkit::service_url("ZEROLOST_KAFKA_BROKERS", "127.0.0.1:19092")
        })),
    };
    let spec = match bench.backend {
        BrokerTarget::KafkaMock => TopicSpec::DURABLE,
        BrokerTarget::Kafka | BrokerTarget::Rabbitmq | BrokerTarget::Rocketmq => {
            TopicSpec::SINGLE_NODE
        }
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
    let (raw_batch, zl_batch) = (batch_for(&raw_topic, n), batch_for(&zl_topic, n));
    eprintln!("relay: raw producer, {n} messages ...");
    let raw_relay = raw_produce(&config, &raw_topic, &raw_batch).await?;
    let zl_relay = zerolost_relay(bench, &zl_batch, KafkaPublisher::new(&config)?).await?;
    eprintln!("consume: raw consume + commit ...");
    let raw_consumed = raw_consume(&config, &raw_topic, n).await?;
    let group = format!("zlbench-zl-{}-{zl_topic}", std::process::id());
    let subscriber = KafkaSubscriber::new(&config, &group, &[zl_topic.as_str()])?;
    let (zl_consumed, dedupe_store) = zerolost_consume(
        bench,
        &zl_topic,
        subscriber,
        Arc::new(DeadLetterPublisher::new(KafkaPublisher::new(&config)?)),
        n,
        async |subscriber: &mut KafkaSubscriber| subscriber.commit().await,
    )
    .await?;
    Ok(Measured {
        raw_relay,
        zerolost_relay: zl_relay,
        raw_consume: raw_consumed,
        zerolost_consume: zl_consumed,
        dedupe_store,
    })
}
