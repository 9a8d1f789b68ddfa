//! Test glue: the real broker's address, unique topic names, and a plain consumer that
//! reads a topic back so tests can check exactly which ids arrived.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use zerolost_core::{MESSAGE_ID_HEADER, MessageId};
use zerolost_kafka::{KafkaConfig, TopicSpec, ensure_topic};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A topic name no other test in this run uses.
pub fn fresh_topic(tag: &str) -> String {
    format!(
        "zlt-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The single-node test broker (`scripts/services/kafka.sh start single`), or `None`
/// (skip, loudly) when it is unreachable and services are not required.
pub async fn single_node() -> Option<KafkaConfig> {
    let brokers = zerolost_testkit::service_url("ZEROLOST_KAFKA_BROKERS", "127.0.0.1:19092");
    let config = KafkaConfig::new(brokers).set("socket.connection.setup.timeout.ms", "3000");
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

/// Kafka as a testkit [`Backend`](zerolost_testkit::Backend): fresh topics (and their
/// `.dlq`) per test, one consumer group per topic (two subscribers compete).
pub struct KafkaBackend {
    pub config: KafkaConfig,
    pub mock: Option<std::sync::Arc<zerolost_kafka::mock::MockKafka>>,
    pub spec: TopicSpec,
}

impl KafkaBackend {
    /// On a fresh 3-broker mock cluster (topics with 3 replicas).
    pub fn mock() -> Self {
        let mock = zerolost_kafka::mock::MockKafka::start(3).expect("mock cluster");
        Self {
            config: mock.config(),
            mock: Some(std::sync::Arc::new(mock)),
            spec: TopicSpec::DURABLE,
        }
    }

    /// On the single-node test broker, or `None` (skip) when it is unreachable.
    pub async fn single_node() -> Option<Self> {
        Some(Self {
            config: single_node().await?,
            mock: None,
            spec: TopicSpec::SINGLE_NODE,
        })
    }

    async fn create(&self, topic: &str) -> Result<(), zerolost_core::Error> {
        match &self.mock {
            Some(mock) => mock.create_topic(topic, self.spec.partitions, self.spec.replication),
            None => ensure_topic(&self.config, topic, self.spec).await,
        }
    }
}

#[async_trait::async_trait]
impl zerolost_testkit::Backend for KafkaBackend {
    fn name(&self) -> String {
        if self.mock.is_some() {
            "kafka-mock"
        } else {
            "kafka"
        }
        .into()
    }

    async fn destination(&self) -> Result<String, zerolost_core::Error> {
        let topic = fresh_topic("conf");
        self.create(&topic).await?;
        self.create(&zerolost_core::default_dlq_name(&topic))
            .await?;
        Ok(topic)
    }

    fn unroutable_destination(&self) -> String {
        let topic = fresh_topic("never-created");
        if let Some(mock) = &self.mock {
            mock.forbid_topic(&topic).expect("mock topic error");
        }
        topic
    }

    async fn publisher(
        &self,
    ) -> Result<std::sync::Arc<dyn zerolost_core::Publisher>, zerolost_core::Error> {
        Ok(std::sync::Arc::new(zerolost_kafka::KafkaPublisher::new(
            &self
                .config
                .clone()
                .delivery_timeout(Duration::from_secs(10)),
        )?))
    }

    async fn subscriber(
        &self,
        destination: &str,
    ) -> Result<Box<dyn zerolost_core::Subscriber>, zerolost_core::Error> {
        let options = zerolost_kafka::SubscriberOptions {
            commit_interval: Duration::from_millis(200),
            ..Default::default()
        };
        let group = format!("{destination}-group");
        Ok(Box::new(zerolost_kafka::KafkaSubscriber::with_options(
            &self.config,
            &group,
            &[destination],
            options,
        )?))
    }

    async fn dead_letter_sink(
        &self,
    ) -> Result<std::sync::Arc<dyn zerolost_core::DeadLetterSink>, zerolost_core::Error> {
        let publisher = zerolost_kafka::KafkaPublisher::new(&self.config)?;
        Ok(std::sync::Arc::new(
            zerolost_core::DeadLetterPublisher::new(publisher),
        ))
    }

    async fn dead_letters(
        &self,
        destination: &str,
    ) -> Result<Vec<zerolost_testkit::DeadLetter>, zerolost_core::Error> {
        let topic = zerolost_core::default_dlq_name(destination);
        Ok(zerolost_kafka::topic_contents(&self.config, &topic)
            .await?
            .into_iter()
            .map(zerolost_testkit::DeadLetter::from_incoming)
            .collect())
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }
}
