//! RocketMQ as a [`zerolost_testkit::Backend`] (feature `testkit`): a fresh topic (with its
//! `-dlq` topic) per destination on a real broker. Used by this crate's tests, the
//! conformance suite and `zerolost-lab demo --backend rocketmq`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::{DeadLetterPublisher, DeadLetterSink, Error, Publisher, Subscriber};
use zerolost_testkit::{Backend, DeadLetter};

use crate::{
    RocketConfig, RocketPublisher, RocketRuntime, RocketSubscriber, TopicSpec, declare_destination,
    dlq_topic, topic_contents,
};

/// The test name server: `ZEROLOST_ROCKETMQ_NAMESRV`, else the one
/// `scripts/services/rocketmq.sh` starts.
pub fn test_name_server() -> String {
    zerolost_testkit::service_url("ZEROLOST_ROCKETMQ_NAMESRV", "127.0.0.1:59876")
}

/// The cluster of the test broker (`SYNC_FLUSH`).
pub const TEST_CLUSTER: &str = "ZerolostCluster";

/// The cluster of the test broker with authentication and TLS only.
pub const SECURE_CLUSTER: &str = "ZerolostAclCluster";

/// The consumer group of `topic`'s subscribers: every subscriber of a destination competes
/// in it.
pub fn group_of(topic: &str) -> String {
    format!("{topic}-consumers")
}

/// RocketMQ under test.
///
/// ```no_run
/// # async fn demo() {
/// use zerolost_rocketmq::testkit::RocketBackend;
/// let Some(backend) = RocketBackend::local().await else { return }; // skipped (loudly) without a broker
/// # let _ = backend;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RocketBackend {
    /// The client runtime.
    pub runtime: RocketRuntime,
    /// Client settings.
    pub config: RocketConfig,
    /// How destinations are created.
    pub spec: TopicSpec,
}

impl RocketBackend {
    /// On the name server of `config`, creating topics on the brokers of `spec`.
    pub fn new(runtime: RocketRuntime, config: RocketConfig, spec: TopicSpec) -> Self {
        Self {
            runtime,
            config,
            spec,
        }
    }

    /// On the test broker, or `None` (skip, loudly) when it is unreachable and services
    /// are not required.
    pub async fn local() -> Option<Self> {
        let name_server = test_name_server();
        let probe = tokio::net::TcpStream::connect(&name_server).await.map(drop);
        zerolost_testkit::require_service("rocketmq", probe)?;
        let runtime = match RocketRuntime::shared() {
            Ok(runtime) => runtime,
            Err(e) => panic!("RocketMQ client runtime: {e}"),
        };
        Some(Self::new(
            runtime,
            RocketConfig::new(name_server),
            TopicSpec::new(TEST_CLUSTER),
        ))
    }

    /// On the test broker with authentication and TLS only (`scripts/services/rocketmq.sh
    /// start acl`, cluster `ZerolostAclCluster`): TLS with the test CA and its client
    /// certificate, the test access keys; or `None` (skip, loudly) when it is unreachable
    /// and services are not required.
    pub async fn local_secure() -> Option<Self> {
        let name_server = test_name_server();
        let probe = tokio::net::TcpStream::connect(&name_server).await.map(drop);
        zerolost_testkit::require_service("rocketmq", probe)?;
        let tls =
            zerolost_testkit::require_service("the test CA", zerolost_testkit::tls::mutual())?;
        let runtime = match RocketRuntime::shared() {
            Ok(runtime) => runtime,
            Err(e) => panic!("RocketMQ client runtime: {e}"),
        };
        let config = RocketConfig::new(name_server)
            .tls(tls)
            .acl(crate::AclKeys::new("zerolost", "zerolost-secret"));
        Some(Self::new(runtime, config, TopicSpec::new(SECURE_CLUSTER)))
    }

    /// A fresh topic (and its DLQ) on the test broker.
    pub async fn fresh_destination(&self, tag: &str) -> Result<String, Error> {
        let name = zerolost_testkit::fresh_name(tag);
        declare_destination(&self.runtime, &self.config, &self.spec, &name).await?;
        Ok(name)
    }

    /// A started publisher.
    pub async fn rocket_publisher(&self) -> Result<RocketPublisher, Error> {
        Ok(RocketPublisher::start(&self.runtime, &self.config).await?)
    }

    /// A subscriber of `topic` in its [`group_of`].
    pub async fn rocket_subscriber(&self, topic: &str) -> Result<RocketSubscriber, Error> {
        Ok(RocketSubscriber::start(&self.runtime, &self.config, topic, &group_of(topic)).await?)
    }

    /// Every message stored on `topic`.
    pub async fn contents(&self, topic: &str) -> Result<Vec<zerolost_core::Incoming>, Error> {
        Ok(topic_contents(&self.runtime, &self.config, topic).await?)
    }
}

#[async_trait]
impl Backend for RocketBackend {
    fn name(&self) -> String {
        "rocketmq".into()
    }

    /// A listener call answers for its whole batch: the client gives the listener no way to
    /// set RocketMQ's `ackIndex`.
    fn settles_in_batches(&self) -> bool {
        self.config.consume_batch_value() > 1
    }

    async fn destination(&self) -> Result<String, Error> {
        self.fresh_destination("conf").await
    }

    fn unroutable_destination(&self) -> String {
        zerolost_testkit::fresh_name("never-declared")
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, Error> {
        Ok(Arc::new(self.rocket_publisher().await?))
    }

    async fn subscriber(&self, destination: &str) -> Result<Box<dyn Subscriber>, Error> {
        Ok(Box::new(self.rocket_subscriber(destination).await?))
    }

    async fn dead_letter_queue(
        &self,
    ) -> Result<Option<Arc<dyn zerolost_core::redrive::DeadLetterQueue>>, Error> {
        Ok(Some(Arc::new(
            crate::dead_letters(&self.runtime, &self.config).await?,
        )))
    }

    async fn dead_letter_sink(&self) -> Result<Arc<dyn DeadLetterSink>, Error> {
        let publisher = self.rocket_publisher().await?;
        Ok(Arc::new(
            DeadLetterPublisher::new(publisher).with_naming(dlq_topic),
        ))
    }

    async fn dead_letters(&self, destination: &str) -> Result<Vec<DeadLetter>, Error> {
        Ok(self
            .contents(&dlq_topic(destination))
            .await?
            .into_iter()
            .map(DeadLetter::from_incoming)
            .collect())
    }

    /// A consumer's first queue assignment, and a message sent back for reconsumption (it
    /// waits out a delay level on the broker), take seconds.
    fn patience(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn stored(&self, destination: &str) -> Result<Option<usize>, Error> {
        Ok(Some(self.contents(destination).await?.len()))
    }
}
