//! Test glue: the real broker's address, unique topic names, and a plain consumer that
//! reads a topic back so tests can check exactly which ids arrived.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use zerolost_core::{MESSAGE_ID_HEADER, MessageId};
use zerolost_kafka::{KafkaConfig, TopicSpec, ensure_topic};

/// A topic name no other test in this run uses.
pub fn fresh_topic(tag: &str) -> String {
    KafkaBackend::fresh_topic(tag)
}

#[allow(unused_imports)]
pub use zerolost_kafka::testkit::KafkaBackend;

/// The single-node test broker (`scripts/services/kafka.sh start single`), or `None`
/// (skip, loudly) when it is unreachable and services are not required.
pub async fn single_node() -> Option<KafkaConfig> {
    let config = zerolost_kafka::testkit::single_node_config();
    let probe = ensure_topic(&config, "zlt-probe", TopicSpec::SINGLE_NODE).await;
    zerolost_testkit::require_service("kafka", probe)?;
    Some(config)
}

/// One record read back: its id header, its headers, partition and offset.
#[derive(Debug, Clone)]
pub struct ReadBack {
    pub id: MessageId,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub partition: i32,
    pub offset: i64,
}

/// Reads `topic` from the beginning with a fresh group until `expected` records arrived
/// (or `within` passed, then a little longer to catch extra copies).
pub async fn read_topic(
    config: &KafkaConfig,
    topic: &str,
    expected: usize,
    within: Duration,
) -> Vec<ReadBack> {
    let group = format!("zlt-reader-{}", fresh_topic("g"));
    let consumer: StreamConsumer = config
        .consumer_config(&group)
        .expect("consumer config")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let started = Instant::now();
    let mut records = Vec::new();
    let mut deadline = started + within;
    let mut extended = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match tokio::time::timeout(deadline - now, consumer.recv()).await {
            Ok(Ok(message)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = message.headers() {
                    for header in h.iter() {
                        let value = header
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        headers.insert(header.key.to_owned(), value.unwrap_or_default());
                    }
                }
                let id = headers
                    .get(MESSAGE_ID_HEADER)
                    .and_then(|v| v.parse().ok())
                    .expect("every record carries its id header");
                records.push(ReadBack {
                    id,
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    headers,
                    partition: message.partition(),
                    offset: message.offset(),
                });
                if records.len() >= expected && !extended {
                    // Keep reading briefly: a duplicate would arrive right behind.
                    deadline = Instant::now() + Duration::from_millis(500);
                    extended = true;
                }
            }
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    records
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
