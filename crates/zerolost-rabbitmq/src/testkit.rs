//! RabbitMQ as a [`zerolost_testkit::Backend`] (feature `testkit`): a fresh exchange and
//! quorum queue (with its `.dlq`) per destination on a real broker. Used by this crate's
//! tests, the conformance suite and `zerolost-lab demo --backend rabbitmq`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::{DeadLetterPublisher, DeadLetterSink, Error, Publisher, Subscriber};
use zerolost_testkit::{Backend, DeadLetter};

use crate::{
    ManagementApi, QueueSpec, RabbitConfig, RabbitError, RabbitPublisher, RabbitSubscriber,
    declare_destination,
};

static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// The process id in a test or bench name (`zlt-<tag>-<pid>-<n>`, `zlbench-<pid>-…`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("zlbench-")
        .or_else(|| name.strip_prefix("zlt-"))?;
    let parts: Vec<&str> = rest.split(['-', '.']).collect();
    if name.starts_with("zlbench-") {
        return parts.first()?.parse().ok();
    }
    // zlt-<tag...>-<pid>-<n>[.dlq]: the pid is the second number from the end.
    let numbers: Vec<u32> = parts.iter().filter_map(|p| p.parse().ok()).collect();
    (numbers.len() >= 2).then(|| numbers[numbers.len() - 2])
}

/// Deletes the queues and exchanges that test and bench runs of processes no longer alive
/// left on the test broker (quorum queues cost the broker memory each).
async fn sweep_dead_runs(config: &RabbitConfig) -> Result<(), Error> {
    let api = ManagementApi::new(&test_management_url(), &config.uri()?.vhost)?;
    let dead = |name: &String| owner_pid(name).is_some_and(zerolost_testkit::process_gone);
    for what in ["queues", "exchanges"] {
        for name in api.names(what).await?.iter().filter(|n| dead(n)) {
            api.delete(what, name).await?;
        }
    }
    Ok(())
}

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

    /// On the test broker's amqps listener (`ZEROLOST_AMQPS_URL`, default
    /// 127.0.0.1:55675, the test CA), or `None` (skip, loudly) when it is unreachable and
    /// services are not required.
    pub async fn local_tls() -> Option<Self> {
        let url = zerolost_testkit::service_url(
            "ZEROLOST_AMQPS_URL",
            "amqps://zerolost:zerolost@127.0.0.1:55675/zerolost",
        );
        let tls =
            zerolost_testkit::require_service("the test CA", zerolost_testkit::tls::trusted())?;
        let config = RabbitConfig::new(url)
            .connect_timeout(Duration::from_secs(3))
            .tls(tls);
        let probe = crate::link::connect(&config).await.map(drop);
        zerolost_testkit::require_service("rabbitmq (amqps)", probe)?;
        Some(Self::new(config))
    }

    /// On the test broker, or `None` (skip, loudly) when it is unreachable and services
    /// are not required.
    pub async fn local() -> Option<Self> {
        let config = test_config();
        let probe = crate::link::connect(&config).await.map(drop);
        zerolost_testkit::require_service("rabbitmq", probe)?;
        SWEPT
            .get_or_init(|| async {
                if let Err(e) = sweep_dead_runs(&config).await {
                    eprintln!("note: could not remove earlier test runs' queues: {e}");
                }
            })
            .await;
        Some(Self::new(config))
    }

    /// A name no other destination of this process uses.
    pub fn fresh_name(tag: &str) -> String {
        zerolost_testkit::fresh_name(tag)
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

    async fn dead_letter_queue(
        &self,
    ) -> Result<Option<Arc<dyn zerolost_core::redrive::DeadLetterQueue>>, Error> {
        Ok(Some(Arc::new(crate::RabbitDeadLetters::new(
            self.config.clone(),
        ))))
    }

    async fn dead_letter_sink(&self) -> Result<Arc<dyn DeadLetterSink>, Error> {
        let publisher = RabbitPublisher::new(&self.config)?;
        Ok(Arc::new(DeadLetterPublisher::new(publisher)))
    }

    async fn dead_letters(&self, destination: &str) -> Result<Vec<DeadLetter>, Error> {
        Ok(crate::RabbitDeadLetters::new(self.config.clone())
            .messages(destination)
            .await?
            .into_iter()
            .map(DeadLetter::from_incoming)
            .collect())
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(20)
    }
}

impl RabbitBackend {
    /// A fault task for [`zerolost_testkit::scenario`]: every 2 seconds the broker closes one
    /// of zerolost's client connections (through the management API at
    /// [`test_management_url`]), in turn the publisher's, the consumer's and the dead-letter
    /// publisher's: each must notice, reconnect and carry on. Returns how many it closed.
    pub fn connection_chaos(&self) -> Result<zerolost_testkit::scenario::Chaos, RabbitError> {
        let vhost = self.config.uri()?.vhost;
        let api = ManagementApi::new(&test_management_url(), &vhost)?;
        Ok(Arc::new(
            move |stop: zerolost_core::CancellationToken,
                  log: zerolost_testkit::timeline::ChaosLog| {
                let api = api.clone();
                Box::pin(async move {
                    let mut round = 0usize;
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                        let Ok(mut names) = api.connections("zerolost").await else {
                            continue;
                        };
                        if names.is_empty() {
                            continue;
                        }
                        names.sort();
                        round += 1;
                        let victim = &names[round % names.len()];
                        if api.close_connection(victim).await.is_ok() {
                            log.record("connection_closed");
                        }
                    }
                }) as futures::future::BoxFuture<'static, ()>
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn owner_pids_are_read_from_test_names() {
        assert_eq!(super::owner_pid("zlt-conf-1234-7"), Some(1234));
        assert_eq!(super::owner_pid("zlt-audit-weak-1234-7.dlq"), Some(1234));
        assert_eq!(super::owner_pid("zlbench-99-raw.dlq"), Some(99));
        assert_eq!(super::owner_pid("orders"), None);
        assert_eq!(super::owner_pid("zerolost-demo-probe"), None);
    }
}
