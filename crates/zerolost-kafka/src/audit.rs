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
    let metadata = match admin.inner().fetch_metadata(Some(topic), timeout) {
        Ok(metadata) => metadata,
        Err(source) => {
            return Err(crate::link::explained(config, "read metadata", source)
                .await
                .into());
        }
    };
    let unroutable = || Error::Unroutable {
        destination: topic.to_owned(),
    };
    let topic_meta = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(unroutable)?;
    if topic_meta.error().is_some() || topic_meta.partitions().is_empty() {
        return Err(unroutable());
    }
    let replicas = topic_meta
        .partitions()
        .iter()
        .map(|p| p.replicas().len())
        .min()
        .unwrap_or(0);
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
    let rules = Rules {
        bootstrap: config.brokers(),
        topic,
    };
    let topic_config = describe(ResourceSpecifier::Topic(topic)).await?;
    let mut findings = rules.topic(replicas, |name| value(&topic_config, name));
    for broker in metadata.brokers() {
        let broker_config = describe(ResourceSpecifier::Broker(broker.id())).await?;
        findings.extend(rules.broker(broker.id(), |name| value(&broker_config, name)));
    }
    Ok(Audit {
        topic: topic.to_owned(),
        findings,
    })
}

/// The durability rules over settings already read: pure, so each rule is tested alone.
struct Rules<'a> {
    bootstrap: &'a str,
    topic: &'a str,
}

impl Rules<'_> {
    /// The topic's findings: its fewest replicas of any partition and its settings.
    fn topic(&self, replicas: usize, setting: impl Fn(&str) -> Option<String>) -> Vec<Finding> {
        let (topic, bootstrap) = (self.topic, self.bootstrap);
        let mut findings = Vec::new();
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
        let alter = |name: &str, want: &str| {
            format!(
                "kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics \
                 --entity-name {topic} --add-config {name}={want}"
            )
        };
        let min_isr = number(&setting, "min.insync.replicas");
        if min_isr < 2 {
            findings.push(Finding {
                severity: Severity::Unsafe,
                subject: format!("topic {topic}: min.insync.replicas"),
                found: min_isr.to_string(),
                required: "2 or more (with 3 replicas)".into(),
                fix: alter("min.insync.replicas", "2"),
            });
        }
        let subject = format!("topic {topic}: unclean.leader.election.enable");
        findings.extend(unclean_election(&setting, subject, |name, want| {
            alter(name, want)
        }));
        findings
    }

    /// Broker `id`'s defaults for topics created later.
    fn broker(&self, id: i32, setting: impl Fn(&str) -> Option<String>) -> Vec<Finding> {
        let bootstrap = self.bootstrap;
        let fix = |name: &str, want: &str| {
            format!(
                "set {name}={want} in broker {id}'s server.properties (or kafka-configs.sh \
                 --bootstrap-server {bootstrap} --alter --entity-type brokers --entity-default \
                 --add-config {name}={want})"
            )
        };
        let mut findings = Vec::new();
        for (name, least) in [
            ("default.replication.factor", 3),
            ("min.insync.replicas", 2),
        ] {
            let found = number(&setting, name);
            if found < least {
                findings.push(Finding {
                    severity: Severity::Unsafe,
                    subject: format!("broker {id}: {name} (for new topics)"),
                    found: found.to_string(),
                    required: format!("{least} or more"),
                    fix: fix(name, &least.to_string()),
                });
            }
        }
        let subject = format!("broker {id}: unclean.leader.election.enable");
        findings.extend(unclean_election(&setting, subject, fix));
        findings
    }
}

/// A numeric setting; missing or unreadable counts as Kafka's default of 1.
fn number(setting: &impl Fn(&str) -> Option<String>, name: &str) -> i32 {
    setting(name).and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// `unclean.leader.election.enable` must be `false`: anything else may elect a replica that
/// misses confirmed messages.
fn unclean_election(
    setting: &impl Fn(&str) -> Option<String>,
    subject: String,
    fix: impl Fn(&str, &str) -> String,
) -> Option<Finding> {
    let name = "unclean.leader.election.enable";
    let found = setting(name).unwrap_or_default();
    (found != "false").then(|| Finding {
        severity: Severity::Unsafe,
        subject,
        found,
        required: "false".into(),
        fix: fix(name, "false"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules<'static> = Rules {
        bootstrap: "b:9092",
        topic: "orders",
    };

    fn settings(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn subjects(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.subject.as_str()).collect()
    }

    #[test]
    fn a_durable_topic_and_broker_have_no_findings() {
        let safe = settings(&[
            ("min.insync.replicas", "2"),
            ("unclean.leader.election.enable", "false"),
            ("default.replication.factor", "3"),
        ]);
        assert!(RULES.topic(3, &safe).is_empty());
        assert!(RULES.broker(1, &safe).is_empty());
    }

    #[test]
    fn each_shortfall_is_one_unsafe_finding_with_its_fix() {
        let findings = RULES.topic(1, settings(&[("unclean.leader.election.enable", "true")]));
        assert_eq!(
            subjects(&findings),
            [
                "topic orders: replication factor",
                "topic orders: min.insync.replicas",
                "topic orders: unclean.leader.election.enable",
            ]
        );
        assert!(findings.iter().all(|f| f.severity == Severity::Unsafe));
        assert!(
            findings[1]
                .fix
                .contains("--entity-name orders --add-config min.insync.replicas=2")
        );
        let broker = RULES.broker(7, settings(&[]));
        assert_eq!(
            subjects(&broker),
            [
                "broker 7: default.replication.factor (for new topics)",
                "broker 7: min.insync.replicas (for new topics)",
                "broker 7: unclean.leader.election.enable",
            ]
        );
        assert!(broker[0].fix.contains("broker 7's server.properties"));
    }
}
