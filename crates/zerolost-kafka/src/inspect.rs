//! Reading a topic's current contents (DLQ inspection, reconciliation, tests).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use zerolost_core::{Error, Incoming};

use crate::link::LinkContext;
use crate::{KafkaConfig, KafkaError, subscriber};

/// Every record of `topic` up to its current end (the high watermark of each partition
/// when the call starts), without joining a consumer group or committing anything. Each
/// record's own position is its `native_id` (`topic/partition/offset`); its headers are as
/// stored (a dead letter's `zerolost-kafka-*` headers name the original record).
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_kafka::{KafkaConfig, topic_contents};
/// let dead = topic_contents(&KafkaConfig::new("127.0.0.1:9092"), "orders.dlq").await?;
/// println!("{} dead letters", dead.len());
/// # Ok(()) }
/// ```
pub async fn topic_contents(config: &KafkaConfig, topic: &str) -> Result<Vec<Incoming>, Error> {
    let config = config.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_to_end(&config, &topic))
        .await
        .map_err(|e| Error::backend("kafka read task", true, e.to_string()))?
}

fn client_error(operation: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> Error {
    move |source| KafkaError::Client { operation, source }.into()
}

fn read_to_end(config: &KafkaConfig, topic: &str) -> Result<Vec<Incoming>, Error> {
    let timeout = Duration::from_secs(10);
    let context = LinkContext::default();
    let consumer: BaseConsumer<LinkContext> = config
        .consumer_config("zerolost-inspect")?
        .create_with_context(context.clone())
        .map_err(KafkaError::Config)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| context.failed("read topic metadata", source))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(client_error("read watermarks"))?;
        if high > low {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(client_error("assign"))?;
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return Ok(records);
    }
    consumer
        .assign(&assignment)
        .map_err(client_error("assign"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                operation: format!("reading {topic} to its end"),
                after: Duration::from_secs(60),
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(source) => {
                let error = KafkaError::Client {
                    operation: "read",
                    source,
                };
                if error.is_retryable() {
                    continue; // a broker dropped out; librdkafka reconnects, the deadline bounds it
                }
                return Err(error.into());
            }
        };
        records.push(subscriber::record(&message));
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
    }
    Ok(records)
}
