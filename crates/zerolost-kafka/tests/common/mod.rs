//! Test glue: the real broker's address, unique topics, reading a topic back by id, and
//! running consumers and relays in tasks.
#![allow(dead_code)]

use std::collections::BTreeMap;

use zerolost_core::{MESSAGE_ID_HEADER, MessageId};
use zerolost_kafka::{KafkaConfig, TopicSpec, ensure_topic};

/// A topic name no other test in this run uses.
pub fn fresh_topic(tag: &str) -> String {
    KafkaBackend::fresh_topic(tag)
}

pub use zerolost_kafka::testkit::KafkaBackend;

/// The single-node test broker (`scripts/services/kafka.sh start single`), or `None`
/// (skip, loudly) when it is unreachable and services are not required.
pub async fn single_node() -> Option<KafkaConfig> {
    KafkaBackend::single_node()
        .await
        .map(|backend| backend.config)
}

/// One record read back: its id header, key and headers.
#[derive(Debug, Clone)]
pub struct ReadBack {
    pub id: MessageId,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
}

/// Every record of `topic` (up to its end now); each must carry its id header.
pub async fn read_topic(config: &KafkaConfig, topic: &str) -> Vec<ReadBack> {
    zerolost_kafka::topic_contents(config, topic)
        .await
        .expect("read the topic")
        .into_iter()
        .map(|record| ReadBack {
            id: record
                .headers
                .get(MESSAGE_ID_HEADER)
                .and_then(|v| v.parse().ok())
                .expect("every record carries its id header"),
            key: record.key,
            headers: record.headers,
        })
        .collect()
}

/// A fresh topic tagged `tag` and its `.dlq`, both created with `spec`.
pub async fn topic_with_dlq(config: &KafkaConfig, tag: &str, spec: TopicSpec) -> String {
    let topic = fresh_topic(tag);
    ensure_topic(config, &topic, spec).await.expect("topic");
    ensure_topic(config, &zerolost_core::default_dlq_name(&topic), spec)
        .await
        .expect("dlq");
    topic
}

/// A pipeline part running in a task until [`Running::stop`].
pub struct Running<T> {
    stop: zerolost_core::CancellationToken,
    task: tokio::task::JoinHandle<Result<T, zerolost_core::Error>>,
}

impl<T> Running<T> {
    /// Asks it to stop, waits, and returns its totals (panics on an error).
    pub async fn stop(self) -> T {
        self.stop.cancel();
        self.task.await.expect("task").expect("run")
    }
}

/// Runs `consumer` on `subscriber` in a task.
pub fn spawn_consumer(
    consumer: &zerolost_core::Consumer,
    subscriber: zerolost_kafka::KafkaSubscriber,
) -> Running<zerolost_core::ConsumerTotals> {
    let stop = zerolost_core::CancellationToken::new();
    let (consumer, token) = (consumer.clone(), stop.clone());
    let task = tokio::spawn(async move { consumer.run(subscriber, token).await });
    Running { stop, task }
}

/// Runs `relay` in a task.
pub fn spawn_relay(relay: zerolost_core::Relay) -> Running<zerolost_core::RelayTotals> {
    let stop = zerolost_core::CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { relay.run(token).await });
    Running { stop, task }
}

/// Messages `ledger` lists as finished (0 while it cannot be read).
pub async fn finished(ledger: &dyn zerolost_core::ConsumerLedger) -> usize {
    ledger
        .finished(None)
        .await
        .map(|s| s.entries.len())
        .unwrap_or(0)
}
