//! The durability audit: does a topic (and do the brokers' defaults) keep a confirmed
//! message through the loss of a broker?

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ConfigResource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde::Serialize;
use zerolost_core::{Error, Finding, Severity};

use crate::{KafkaConfig, KafkaError};

/// The audit of one topic: empty `findings` means durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// The topic.
    pub topic: String,
    /// Everything that falls short.
    pub findings: Vec<Finding>,
}

impl Audit {
    /// True when nothing falls short.
    pub fn is_durable(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Unsafe)
    }
}

fn client_error(operation: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> Error {
    move |source| KafkaError::Client { operation, source }.into()
}

fn value(resource: &ConfigResource, name: &str) -> Option<String> {
    resource.get(name).and_then(|entry| entry.value.clone())
}

/// Checks `topic`: every partition has ≥ 3 replicas, `min.insync.replicas` ≥ 2,
/// `unclean.leader.election.enable=false`; and each broker's defaults for topics created
/// later (`default.replication.factor`, `min.insync.replicas`,
/// `unclean.leader.election.enable`). Each finding names the fix.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_kafka::{KafkaConfig, audit};
/// let report = audit(&KafkaConfig::new("127.0.0.1:9092"), "orders").await?;
/// for finding in &report.findings {
///     println!("{}: {} (need {}): {}", finding.subject, finding.found, finding.required, finding.fix);
/// }
/// # Ok(()) }
/// ```
pub async fn audit(config: &KafkaConfig, topic: &str) -> Result<Audit, Error> {
    let admin: AdminClient<DefaultClientContext> =
        config.admin_config().create().map_err(KafkaError::Config)?;
    let timeout = Duration::from_secs(10);
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), timeout)
        .map_err(client_error("read metadata"))?;
    let bootstrap = config.brokers().to_owned();
    let mut findings = Vec::new();
    let Some(topic_meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::Unroutable {
            destination: topic.to_owned(),
        });
    };
    if topic_meta.error().is_some() || topic_meta.partitions().is_empty() {
        return Err(Error::Unroutable {
            destination: topic.to_owned(),
        });
    }
    let replicas = topic_meta
        .partitions()
        .iter()
        .map(|p| p.replicas().len())
        .min()
        .unwrap_or(0);
    if replicas < 3 {
        findings.push(Finding {
            severity: Severity::Unsafe,
            subject: format!("topic {topic}: replication factor"),
            found: replicas.to_string(),
            required: "3 or more".into(),
            fix: format!(
                "recreate the topic with 3 replicas (zerolost_kafka::ensure_topic with \
                 TopicSpec::DURABLE, or kafka-topics.sh --bootstrap-server {bootstrap} --create \
                 --topic {topic} --replication-factor 3), or add replicas with \
                 kafka-reassign-partitions.sh; a cluster needs at least 3 brokers"
            ),
        });
    }
    let options = AdminOptions::new().request_timeout(Some(timeout));
    // librdkafka sends a broker's configs request to that broker: one request each.
    let describe = async |resource: ResourceSpecifier<'_>| -> Result<ConfigResource, Error> {
        admin
            .describe_configs([&resource], &options)
            .await
            .map_err(client_error("describe configs"))?
            .into_iter()
            .next()
            .ok_or_else(|| Error::backend("describe configs", true, "no answer"))?
            .map_err(|code| {
                client_error("describe configs")(rdkafka::error::KafkaError::AdminOp(code))
            })
    };
    let topic_config = describe(ResourceSpecifier::Topic(topic)).await?;
    let alter = |setting: &str, want: &str| {
        format!(
            "kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics \
             --entity-name {topic} --add-config {setting}={want}"
        )
    };
    let min_isr = value(&topic_config, "min.insync.replicas")
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(1);
    if min_isr < 2 {
        findings.push(Finding {
            severity: Severity::Unsafe,
            subject: format!("topic {topic}: min.insync.replicas"),
            found: min_isr.to_string(),
            required: "2 or more (with 3 replicas)".into(),
            fix: alter("min.insync.replicas", "2"),
        });
    }
    let unclean = value(&topic_config, "unclean.leader.election.enable").unwrap_or_default();
    if unclean != "false" {
        findings.push(Finding {
            severity: Severity::Unsafe,
            subject: format!("topic {topic}: unclean.leader.election.enable"),
            found: unclean,
            required: "false".into(),
            fix: alter("unclean.leader.election.enable", "false"),
        });
    }
    for broker in metadata.brokers() {
        let id = broker.id();
        let broker_config = describe(ResourceSpecifier::Broker(id)).await?;
        let line = |setting: &str, want: &str| {
            format!(
                "set {setting}={want} in broker {id}'s server.properties (or kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type brokers --entity-default --add-config {setting}={want})"
            )
        };
        let number = |name: &str| {
            value(&broker_config, name)
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(1)
        };
        for (name, found, least) in [
            (
                "default.replication.factor",
                number("default.replication.factor"),
                3,
            ),
            ("min.insync.replicas", number("min.insync.replicas"), 2),
        ] {
            if found < least {
                findings.push(Finding {
                    severity: Severity::Unsafe,
                    subject: format!("broker {id}: {name} (for new topics)"),
                    found: found.to_string(),
                    required: format!("{least} or more"),
                    fix: line(name, &least.to_string()),
                });
            }
        }
        let unclean = value(&broker_config, "unclean.leader.election.enable").unwrap_or_default();
        if unclean != "false" {
            findings.push(Finding {
                severity: Severity::Unsafe,
                subject: format!("broker {id}: unclean.leader.election.enable"),
                found: unclean,
                required: "false".into(),
                fix: line("unclean.leader.election.enable", "false"),
            });
        }
    }
    Ok(Audit {
        topic: topic.to_owned(),
        findings,
    })
}
