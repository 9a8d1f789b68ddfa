//! Topics: creating a destination and its DLQ, and reading a topic's contents back.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[allow(deprecated)]
use rocketmq_client_rust::DefaultMQPullConsumer;
use rocketmq_client_rust::{DefaultMQAdminExt, PullStatus, RouteAdmin, TopicAdmin};
use rocketmq_model::topic::TopicConfig;
use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;
use zerolost_core::Incoming;

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
    let mut admin = admin_client(runtime, config);
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
                Box::pin(admin.create_and_update_topic_config(master.clone(), config))
                    .await
                    .map_err(client("create a topic"))?;
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

/// Every message stored on `topic` now, read with a pull consumer from each queue's first
/// offset (nothing is consumed: no consumer group's offset moves). For tests, audits and
/// DLQ tools; a topic of millions of messages is read whole.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_rocketmq::RocketError> {
/// use zerolost_rocketmq::{RocketConfig, RocketRuntime, dlq_topic, topic_contents};
/// let config = RocketConfig::new("127.0.0.1:9876");
/// let dead = topic_contents(&RocketRuntime::shared()?, &config, &dlq_topic("orders")).await?;
/// println!("{} dead letters", dead.len());
/// # Ok(()) }
/// ```
pub async fn topic_contents(
    runtime: &RocketRuntime,
    config: &RocketConfig,
    topic: &str,
) -> Result<Vec<Incoming>, RocketError> {
    let reader = reader(runtime, config).await?;
    Box::pin(read_topic(&reader, topic)).await
}

// The classic pull consumer is deprecated for consuming (lite pull is preferred); here it
// only reads, from explicit offsets, and commits nothing: the right tool.
#[allow(deprecated)]
type Reader = Arc<DefaultMQPullConsumer>;

/// Readers, one per name server, kept for the life of the process: a pull consumer that
/// has pulled takes ~20 s to shut down (its long-poll timeout).
static READERS: Mutex<Vec<(String, Reader)>> = Mutex::new(Vec::new());

/// A reader is shared by the configs with the same name server and access key.
fn reader_key(config: &RocketConfig) -> String {
    let key = config
        .acl_keys()
        .map(|k| k.access_key())
        .unwrap_or_default();
    format!("{} {key}", config.name_server())
}

#[allow(deprecated)]
async fn reader(runtime: &RocketRuntime, config: &RocketConfig) -> Result<Reader, RocketError> {
    let cached = |readers: &[(String, Reader)]| {
        readers
            .iter()
            .find(|(key, _)| *key == reader_key(config))
            .map(|(_, reader)| reader.clone())
    };
    if let Some(reader) = cached(&READERS.lock().unwrap_or_else(PoisonError::into_inner)) {
        return Ok(reader);
    }
    let mut builder = DefaultMQPullConsumer::builder(runtime.client_runtime())
        .consumer_group(format!("zerolost_reader_{}", std::process::id()))
        .name_server_addr(config.name_server().to_owned());
    if let Some(keys) = config.acl_keys() {
        builder = builder.rpc_hook(Arc::new(keys.hook()));
    }
    let reader = builder.build().map_err(client("pull consumer"))?;
    Box::pin(reader.start())
        .await
        .map_err(client("pull consumer start"))?;
    let mut readers = READERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(earlier) = cached(&readers) {
        // Another caller started one meanwhile; this one is left to the runtime.
        return Ok(earlier);
    }
    let reader = Arc::new(reader);
    readers.push((reader_key(config), reader.clone()));
    Ok(reader)
}

#[allow(deprecated)]
async fn read_topic(
    reader: &DefaultMQPullConsumer,
    topic: &str,
) -> Result<Vec<Incoming>, RocketError> {
    let queues = Box::pin(reader.fetch_subscribe_message_queues(topic))
        .await
        .map_err(routed("read a topic's queues", topic))?;
    let mut messages = Vec::new();
    for queue in &queues {
        let end = Box::pin(reader.max_offset(queue))
            .await
            .map_err(client("read a queue's max offset"))?;
        let mut offset = Box::pin(reader.min_offset(queue))
            .await
            .map_err(client("read a queue's min offset"))?;
        while offset < end {
            let pulled = Box::pin(reader.pull(queue, "*", offset, 256))
                .await
                .map_err(client("pull"))?;
            if !matches!(pulled.pull_status(), PullStatus::Found) {
                break;
            }
            messages.extend(
                pulled
                    .msg_found_list()
                    .unwrap_or_default()
                    .iter()
                    .map(crate::message::incoming),
            );
            let next = i64::try_from(pulled.next_begin_offset()).unwrap_or(i64::MAX);
            if next <= offset {
                break;
            }
            offset = next;
        }
    }
    Ok(messages)
}

/// An admin client that signs its requests when the config has keys.
pub(crate) fn admin_client(runtime: &RocketRuntime, config: &RocketConfig) -> DefaultMQAdminExt {
    let mut admin = match config.acl_keys() {
        Some(keys) => {
            DefaultMQAdminExt::with_rpc_hook(runtime.client_runtime(), Arc::new(keys.hook()))
        }
        None => DefaultMQAdminExt::new(runtime.client_runtime()),
    };
    admin.set_namesrv_addr(config.name_server());
    admin
}
