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

#[allow(unused_imports)] // each test file uses some of them
pub use zerolost_testkit::tasks::{Running, finished, spawn_consumer, spawn_relay};
