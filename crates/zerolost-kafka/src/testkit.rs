//! Kafka as a [`zerolost_testkit::Backend`] (feature `testkit`): fresh topics with their
//! `.dlq` per destination, one consumer group per topic, on the mock cluster or a real
//! broker. Used by this crate's tests, the conformance suite and `zerolost-lab demo --backend
//! kafka|kafka-mock`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::{
    DeadLetterPublisher, DeadLetterSink, Error, Publisher, Subscriber, default_dlq_name,
};
use zerolost_testkit::{Backend, DeadLetter};

use crate::mock::MockKafka;
use crate::{
    KafkaConfig, KafkaPublisher, KafkaSubscriber, SubscriberOptions, TopicSpec, ensure_topic,
    topic_contents,
};

/// The mock broker that coordinates consumer groups; chaos leaves it up: on the mock a
/// coordinator outage of 300 ms costs ~40 s of rebalancing (measured), which would dominate
/// a demo run. The real 3-node cluster test kills the coordinator instead.
const COORDINATOR: i32 = 1;

/// The single-node test broker's settings: `ZEROLOST_KAFKA_BROKERS`, else 127.0.0.1:19092
/// (`scripts/services/kafka.sh start single`).
pub fn single_node_config() -> KafkaConfig {
    let brokers = zerolost_testkit::service_url("ZEROLOST_KAFKA_BROKERS", "127.0.0.1:19092");
    KafkaConfig::new(brokers).set("socket.connection.setup.timeout.ms", "3000")
}

/// The single-node test broker over its `SASL_SSL` listener (`ZEROLOST_KAFKA_SASL_BROKERS`,
/// default 127.0.0.1:19096): SCRAM-SHA-512 as `zerolost` / `zerolost-secret`, the test CA.
pub fn sasl_ssl_config() -> Result<KafkaConfig, String> {
    let brokers = zerolost_testkit::service_url("ZEROLOST_KAFKA_SASL_BROKERS", "127.0.0.1:19096");
    let ca = zerolost_testkit::tls::file("ca.crt")?;
    Ok(KafkaConfig::new(brokers)
        .set("socket.connection.setup.timeout.ms", "3000")
        .set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", ca.display().to_string())
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "zerolost")
        .set("sasl.password", "zerolost-secret"))
}

/// Kafka under test: a mock cluster it owns, or a real broker.
///
/// ```
/// use zerolost_kafka::testkit::KafkaBackend;
/// let backend = KafkaBackend::mock().unwrap(); // 3 mock brokers, topics with 3 replicas
/// # let _ = backend;
/// ```
pub struct KafkaBackend {
    /// Client settings for the cluster.
    pub config: KafkaConfig,
    /// The mock cluster, when this backend runs on one.
    pub mock: Option<Arc<MockKafka>>,
    /// How destinations are created.
    pub spec: TopicSpec,
}

impl std::fmt::Debug for KafkaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBackend")
            .field("brokers", &self.config.brokers())
            .field("mock", &self.mock.is_some())
            .finish()
    }
}

impl KafkaBackend {
    /// On a fresh 3-broker mock cluster (topics with 3 replicas).
    pub fn mock() -> Result<Self, Error> {
        let mock = MockKafka::start(3)?;
        Ok(Self {
            config: mock.config(),
            mock: Some(Arc::new(mock)),
            spec: TopicSpec::DURABLE,
        })
    }

    /// On a real cluster, creating destinations with `spec`.
    pub fn real(config: KafkaConfig, spec: TopicSpec) -> Self {
        Self {
            config,
            mock: None,
            spec,
        }
    }

    /// On the single-node test broker, or `None` (skip, loudly) when it is unreachable
    /// and services are not required.
    pub async fn single_node() -> Option<Self> {
        let config = single_node_config();
        let probe = ensure_topic(&config, "zlt-probe", TopicSpec::SINGLE_NODE).await;
        zerolost_testkit::require_service("kafka", probe)?;
        Some(Self::real(config, TopicSpec::SINGLE_NODE))
    }

    /// On the single-node test broker's `SASL_SSL` listener (SCRAM-SHA-512 as `zerolost`,
    /// the test CA of `scripts/services/certs.sh`), or `None` (skip, loudly) when it is
    /// unreachable and services are not required.
    pub async fn single_node_sasl_ssl() -> Option<Self> {
        let config = sasl_ssl_config();
        let probe = match &config {
            Ok(config) => ensure_topic(config, "zlt-probe", TopicSpec::SINGLE_NODE).await,
            Err(e) => Err(Error::Config(e.clone())),
        };
        zerolost_testkit::require_service("kafka (SASL_SSL)", probe)?;
        Some(Self::real(config.ok()?, TopicSpec::SINGLE_NODE))
    }

    /// A topic name no other destination of this process uses.
    pub fn fresh_topic(tag: &str) -> String {
        zerolost_testkit::fresh_name(tag)
    }

    /// Creates `topic` with this backend's layout.
    pub async fn create(&self, topic: &str) -> Result<(), Error> {
        match &self.mock {
            Some(mock) => mock.create_topic(topic, self.spec.partitions, self.spec.replication),
            None => ensure_topic(&self.config, topic, self.spec).await,
        }
    }
}

#[async_trait]
impl Backend for KafkaBackend {
    fn name(&self) -> String {
        if self.mock.is_some() {
            "kafka-mock"
        } else {
            "kafka"
        }
        .into()
    }

    async fn destination(&self) -> Result<String, Error> {
        let topic = Self::fresh_topic("conf");
        self.create(&topic).await?;
        self.create(&default_dlq_name(&topic)).await?;
        Ok(topic)
    }

    fn unroutable_destination(&self) -> String {
        let topic = Self::fresh_topic("never-created");
        if let Some(mock) = &self.mock
            && let Err(e) = mock.forbid_topic(&topic)
        {
            tracing::warn!(error = %e, "could not make the mock topic unknown");
        }
        topic
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, Error> {
        let config = self
            .config
            .clone()
            .delivery_timeout(Duration::from_secs(10));
        Ok(Arc::new(KafkaPublisher::new(&config)?))
    }

    async fn subscriber(&self, destination: &str) -> Result<Box<dyn Subscriber>, Error> {
        let options = SubscriberOptions {
            commit_interval: Duration::from_millis(200),
            ..Default::default()
        };
        let group = format!("{destination}-group");
        if let Some(mock) = &self.mock {
            // The chaos task never takes broker 1 down: the group keeps its coordinator.
            mock.set_group_coordinator(&group, COORDINATOR)?;
        }
        Ok(Box::new(KafkaSubscriber::with_options(
            &self.config,
            &group,
            &[destination],
            options,
        )?))
    }

    async fn dead_letter_queue(
        &self,
    ) -> Result<Option<Arc<dyn zerolost_core::redrive::DeadLetterQueue>>, Error> {
        // librdkafka's mock cluster confirms the redrive marker at an offset it then never
        // serves (the high watermark stays below it), so the DLQ cannot be redriven there;
        // the real-broker suite covers it.
        if self.mock.is_some() {
            return Ok(None);
        }
        Ok(Some(Arc::new(crate::dead_letters(&self.config)?)))
    }

    async fn dead_letter_sink(&self) -> Result<Arc<dyn DeadLetterSink>, Error> {
        let publisher = KafkaPublisher::new(&self.config)?;
        Ok(Arc::new(DeadLetterPublisher::new(publisher)))
    }

    async fn dead_letters(&self, destination: &str) -> Result<Vec<DeadLetter>, Error> {
        let topic = default_dlq_name(destination);
        Ok(topic_contents(&self.config, &topic)
            .await?
            .into_iter()
            .map(DeadLetter::from_incoming)
            .collect())
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn stored(&self, destination: &str) -> Result<Option<usize>, Error> {
        Ok(Some(topic_contents(&self.config, destination).await?.len()))
    }
}

impl KafkaBackend {
    /// For a mock cluster, a fault task for [`zerolost_testkit::scenario`]: every second
    /// the first produce request of the next 200 ms fails (`NOT_ENOUGH_REPLICAS`,
    /// `REQUEST_TIMED_OUT` or `NOT_LEADER_FOR_PARTITION` in turn: the idempotent producer
    /// retries them), and every fourth second broker 2 or 3 (partition leaders, not the
    /// group coordinator) goes down for 300 ms. `None` on a real cluster.
    pub fn mock_chaos(&self) -> Option<zerolost_testkit::scenario::Chaos> {
        use rdkafka::types::RDKafkaRespErr::*;
        const ERRORS: [rdkafka::types::RDKafkaRespErr; 3] = [
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ];
        const ERROR_NAMES: [&str; 3] = [
            "produce_error_not_enough_replicas",
            "produce_error_request_timed_out",
            "produce_error_not_leader",
        ];
        let mock = self.mock.clone()?;
        Some(Arc::new(
            move |stop: zerolost_core::CancellationToken,
                  log: zerolost_testkit::timeline::ChaosLog| {
                let mock = mock.clone();
                Box::pin(async move {
                    let mut round = 0usize;
                    while !stop.is_cancelled() {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        round += 1;
                        // An error episode of 200 ms: the error fails the first produce
                        // request inside it, or none. Left queued, errors injected while
                        // the cluster is idle would pile up and fail every later retry of a
                        // lone request (a dead-letter publish) until it timed out.
                        if mock.fail_produce_requests(&[ERRORS[round % 3]]).is_ok() {
                            log.record(ERROR_NAMES[round % 3]);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            let _ = mock.clear_produce_errors();
                        }
                        if round.is_multiple_of(4) {
                            let broker = if (round / 4).is_multiple_of(2) { 2 } else { 3 };
                            if mock.broker_down(broker).is_ok() {
                                log.record("broker_down");
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                let _ = mock.broker_up(broker);
                            }
                        }
                    }
                }) as futures::future::BoxFuture<'static, ()>
            },
        ))
    }
}
