//! Topics: creating a destination and its DLQ, routes, and the admin client.

use std::sync::Arc;
use std::time::Duration;

use rocketmq_client_rust::{DefaultMQAdminExt, RouteAdmin, TopicAdmin};
use rocketmq_model::topic::TopicConfig;
use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;

use crate::error::{client, routed};
use crate::{RocketConfig, RocketError, RocketRuntime};

/// Where zerolost dead-letters the messages of `topic`: `<topic>-dlq` (RocketMQ topic names
/// allow no dots). Not RocketMQ's own `%DLQ%<group>` topic, which receives a message after
/// the broker's max reconsume times and carries no failure metadata.
///
/// ```
/// assert_eq!(zerolost_rocketmq::dlq_topic("orders"), "orders-dlq");
/// ```
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}-dlq")
}

/// How a destination's topics are created.
///
/// ```
/// let spec = zerolost_rocketmq::TopicSpec::new("DefaultCluster").queues(8);
/// # let _ = spec;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    cluster: String,
    queues: u32,
}

impl TopicSpec {
    /// Topics on every master broker of `cluster`, 4 queues each.
    pub fn new(cluster: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            queues: 4,
        }
    }

    /// Read and write queues per broker (default 4).
    pub fn queues(mut self, queues: u32) -> Self {
        self.queues = queues;
        self
    }
}

/// An admin client for the duration of `work`.
pub(crate) async fn with_admin<T>(
    runtime: &RocketRuntime,
    config: &RocketConfig,
    work: impl AsyncFnOnce(&DefaultMQAdminExt) -> Result<T, RocketError>,
) -> Result<T, RocketError> {
    let mut admin = admin_client(runtime, config)?;
    // The client's futures are deep types: boxed, so callers' futures stay small.
    Box::pin(admin.start())
        .await
        .map_err(client("admin start"))?;
    let result = work(&admin).await;
    Box::pin(admin.shutdown()).await;
    result
}

/// Creates (or updates) `topic` and its DLQ ([`dlq_topic`]) on every master broker of the
/// spec's cluster, and waits until the name server routes both. Topics are not created on
/// first use: the broker zerolost expects has `autoCreateTopicEnable=false`, so a typo in a
/// destination is an unroutable message the relay parks, not a new topic.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_rocketmq::RocketError> {
/// use zerolost_rocketmq::{RocketConfig, RocketRuntime, TopicSpec, declare_destination};
/// let config = RocketConfig::new("127.0.0.1:9876");
/// declare_destination(&RocketRuntime::shared()?, &config, &TopicSpec::new("DefaultCluster"), "orders").await?;
/// # Ok(()) }
/// ```
pub async fn declare_destination(
    runtime: &RocketRuntime,
    config: &RocketConfig,
    spec: &TopicSpec,
    topic: &str,
) -> Result<(), RocketError> {
    let topics = [topic.to_owned(), dlq_topic(topic)];
    with_admin(runtime, config, async |admin| {
        let cluster = Box::pin(admin.examine_broker_cluster_info())
            .await
            .map_err(client("read the cluster"))?;
        let names = cluster
            .cluster_addr_table
            .as_ref()
            .and_then(|clusters| {
                clusters
                    .iter()
                    .find(|(name, _)| name.as_str() == spec.cluster)
                    .map(|(_, names)| names.clone())
            })
            .ok_or_else(|| {
                RocketError::Invalid(format!(
                    "no cluster `{}` is registered with the name server",
                    spec.cluster
                ))
            })?;
        let brokers = cluster.broker_addr_table.unwrap_or_default();
        for name in &names {
            let Some(master) = brokers
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, data)| data.broker_addrs().get(&0).cloned())
            else {
                continue;
            };
            for topic in &topics {
                let config = TopicConfig::with_queues(topic.as_str(), spec.queues, spec.queues);
                let created = admin.create_and_update_topic_config(master.clone(), config);
                if let Err(e) = Box::pin(created).await {
                    let client = admin.client_config();
                    let failed =
                        crate::link::broker_call_failed(client, "create a topic", &master, e);
                    return Err(failed.await);
                }
            }
        }
        for topic in &topics {
            wait_for_route(admin, topic).await?;
        }
        Ok(())
    })
    .await
}

/// `Ok` when the name server routes `topic`, else [`RocketError::NoRoute`].
pub(crate) async fn check_route(
    runtime: &RocketRuntime,
    config: &RocketConfig,
    topic: &str,
) -> Result<(), RocketError> {
    with_admin(runtime, config, async |admin| {
        route(admin, topic).await.map(drop)
    })
    .await
}

/// The name server's route to `topic`: [`RocketError::NoRoute`] when it has none, or one
/// without queues.
pub(crate) async fn route(
    admin: &DefaultMQAdminExt,
    topic: &str,
) -> Result<TopicRouteData, RocketError> {
    Box::pin(admin.examine_topic_route_info(topic.into()))
        .await
        .map_err(routed("read the topic's route", topic))?
        .filter(|route| !route.queue_datas.is_empty())
        .ok_or_else(|| RocketError::NoRoute {
            topic: topic.to_owned(),
        })
}

/// Waits (up to 10 s) until the name server has a route to `topic`.
async fn wait_for_route(admin: &DefaultMQAdminExt, topic: &str) -> Result<(), RocketError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = route(admin, topic).await;
        if found.is_ok() || tokio::time::Instant::now() >= deadline {
            return found.map(drop);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An admin client that signs its requests when the config has keys, over TLS when it asks.
pub(crate) fn admin_client(
    runtime: &RocketRuntime,
    config: &RocketConfig,
) -> Result<DefaultMQAdminExt, RocketError> {
    let mut admin = match config.acl_keys() {
        Some(keys) => {
            DefaultMQAdminExt::with_rpc_hook(runtime.client_runtime(), Arc::new(keys.hook()))
        }
        None => DefaultMQAdminExt::new(runtime.client_runtime()),
    };
    admin.set_namesrv_addr(config.name_server());
    crate::tls::apply(config, admin.client_config_mut())?;
    Ok(admin)
}
