//! Topic administration: [`ensure_topic`] creates topics with durable settings.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::link::explained;
use rdkafka::error::RDKafkaErrorCode;
use zerolost_core::Error;

use crate::{KafkaConfig, KafkaError};

/// How a topic is created: partitions, replication factor, `min.insync.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Partitions.
    pub partitions: i32,
    /// Replicas of each partition.
    pub replication: i32,
    /// Replicas that must store a record before `acks=all` confirms it.
    pub min_insync: i32,
}

impl TopicSpec {
    /// The durable layout: 3 replicas, 2 in sync required, 3 partitions.
    pub const DURABLE: TopicSpec = TopicSpec {
        partitions: 3,
        replication: 3,
        min_insync: 2,
    };

    /// One broker (development, fast tests): 1 replica. The audit flags it.
    pub const SINGLE_NODE: TopicSpec = TopicSpec {
        partitions: 3,
        replication: 1,
        min_insync: 1,
    };
}

/// Creates `topic` with `spec` and `unclean.leader.election.enable=false`; a topic that
/// already exists is left as it is (run the audit to check it).
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_kafka::{KafkaConfig, TopicSpec, ensure_topic};
/// ensure_topic(&KafkaConfig::new("127.0.0.1:9092"), "orders", TopicSpec::DURABLE).await?;
/// # Ok(()) }
/// ```
pub async fn ensure_topic(config: &KafkaConfig, topic: &str, spec: TopicSpec) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> =
        config.admin_config().create().map_err(KafkaError::Config)?;
    let min_insync = spec.min_insync.to_string();
    let new = NewTopic::new(
        topic,
        spec.partitions,
        TopicReplication::Fixed(spec.replication),
    )
    .set("min.insync.replicas", &min_insync)
    .set("unclean.leader.election.enable", "false");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = match admin.create_topics([&new], &options).await {
        Ok(results) => results,
        Err(source) => return Err(explained(config, "create topic", source).await.into()),
    };
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(KafkaError::Client {
                    operation: "create topic",
                    source: rdkafka::error::KafkaError::AdminOp(code),
                }
                .into());
            }
        }
    }
    Ok(())
}
