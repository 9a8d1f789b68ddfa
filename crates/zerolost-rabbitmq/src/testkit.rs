//! RabbitMQ as a [`zerolost_testkit::Backend`] (feature `testkit`): a fresh exchange and
//! quorum queue (with its `.dlq`) per destination on a real broker. Used by this crate's
//! tests, the conformance suite and `zerolost demo --backend rabbitmq`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::{
    DeadLetterPublisher, DeadLetterSink, Error, Publisher, Subscriber, default_dlq_name,
};
use zerolost_testkit::{Backend, DeadLetter};

use crate::{
    QueueSpec, RabbitConfig, RabbitPublisher, RabbitSubscriber, declare_destination, queue_contents,
};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The test broker's AMQP URL: `ZEROLOST_AMQP_URL`, else the one
/// `scripts/services/rabbitmq.sh` starts.
pub fn test_url() -> String {
    zerolost_testkit::service_url(
        "ZEROLOST_AMQP_URL",
        "amqp://zerolost:zerolost@127.0.0.1:55672/zerolost",
    )
}

/// The test broker's management API URL: `ZEROLOST_RABBITMQ_MGMT_URL`, else the one
/// `scripts/services/rabbitmq.sh` starts.
pub fn test_management_url() -> String {
    zerolost_testkit::service_url(
        "ZEROLOST_RABBITMQ_MGMT_URL",
        "http://zerolost:zerolost@127.0.0.1:55673",
    )
}

/// The test broker's settings (short connect timeout).
pub fn test_config() -> RabbitConfig {
    RabbitConfig::new(test_url()).connect_timeout(Duration::from_secs(3))
}

/// RabbitMQ under test.
///
/// ```no_run
/// # async fn demo() {
/// use zerolost_rabbitmq::testkit::RabbitBackend;
/// let Some(backend) = RabbitBackend::local().await else { return }; // skipped (loudly) without a broker
/// # let _ = backend;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RabbitBackend {
    /// Client settings.
    pub config: RabbitConfig,
    /// How destinations are declared.
    pub spec: QueueSpec,
}

impl RabbitBackend {
    /// On the broker at `config`.
    pub fn new(config: RabbitConfig) -> Self {
        Self {
            config,
            spec: QueueSpec::default(),
        }
    }

    /// On the test broker, or `None` (skip, loudly) when it is unreachable and services
    /// are not required.
    pub async fn local() -> Option<Self> {
        let config = test_config();
        let probe = crate::link::connect(&config).await.map(drop);
        zerolost_testkit::require_service("rabbitmq", probe)?;
        Some(Self::new(config))
    }

    /// A name no other destination of this process uses.
    pub fn fresh_name(tag: &str) -> String {
        format!(
            "zlt-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }
}

#[async_trait]
impl Backend for RabbitBackend {
    fn name(&self) -> String {
        "rabbitmq".into()
    }

    async fn destination(&self) -> Result<String, Error> {
        let name = Self::fresh_name("conf");
        declare_destination(&self.config, &name, self.spec).await?;
        Ok(name)
    }

    fn unroutable_destination(&self) -> String {
        Self::fresh_name("never-declared")
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, Error> {
        let config = self.config.clone().confirm_timeout(Duration::from_secs(10));
        Ok(Arc::new(RabbitPublisher::new(&config)?))
    }

    async fn subscriber(&self, destination: &str) -> Result<Box<dyn Subscriber>, Error> {
        Ok(Box::new(RabbitSubscriber::new(&self.config, destination)?))
    }

    async fn dead_letter_sink(&self) -> Result<Arc<dyn DeadLetterSink>, Error> {
        let publisher = RabbitPublisher::new(&self.config)?;
        Ok(Arc::new(DeadLetterPublisher::new(publisher)))
    }

    async fn dead_letters(&self, destination: &str) -> Result<Vec<DeadLetter>, Error> {
        Ok(queue_contents(&self.config, &default_dlq_name(destination))
            .await?
            .into_iter()
            .map(DeadLetter::from_incoming)
            .collect())
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(20)
    }
}
