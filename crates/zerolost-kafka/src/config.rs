//! [`KafkaConfig`]: the client settings, with the settings that could lose messages
//! pinned to their safe values and any attempt to weaken them refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tracing::warn;

use crate::KafkaError;

/// A safety rule: the setting, whether a value is safe, the safe value we set when the
/// user did not, and what to tell a user who weakened it.
struct Rule {
    setting: &'static str,
    safe: fn(&str) -> bool,
    default: &'static str,
    fix: &'static str,
}

const PRODUCER_RULES: &[Rule] = &[
    Rule {
        setting: "acks",
        safe: |v| matches!(v, "all" | "-1"),
        default: "all",
        fix: "use acks=all (every in-sync replica stores the record before it counts as sent)",
    },
    Rule {
        setting: "request.required.acks",
        safe: |v| matches!(v, "all" | "-1"),
        default: "all",
        fix: "use acks=all (every in-sync replica stores the record before it counts as sent)",
    },
    Rule {
        setting: "enable.idempotence",
        safe: |v| v == "true",
        default: "true",
        fix: "keep enable.idempotence=true (retries must not write duplicates or reorder)",
    },
    Rule {
        setting: "max.in.flight.requests.per.connection",
        safe: |v| v.parse::<u32>().is_ok_and(|n| (1..=5).contains(&n)),
        default: "5",
        fix: "use at most 5 in-flight requests per connection (the idempotent producer's limit)",
    },
];

const CONSUMER_RULES: &[Rule] = &[
    Rule {
        setting: "enable.auto.commit",
        safe: |v| v == "false",
        default: "false",
        fix: "keep enable.auto.commit=false (zerolost commits an offset only after the message is done)",
    },
    Rule {
        setting: "enable.auto.offset.store",
        safe: |v| v == "false",
        default: "false",
        fix: "keep enable.auto.offset.store=false (zerolost stores an offset only after the message is done)",
    },
    Rule {
        setting: "auto.offset.reset",
        safe: |v| matches!(v, "earliest" | "smallest" | "beginning" | "error"),
        default: "earliest",
        fix: "use auto.offset.reset=earliest (a new consumer group starting at the latest offset skips every message published before it joined)",
    },
];

/// Kafka client settings shared by publishers, subscribers and the audit.
///
/// The settings that decide whether a message can be lost are pinned: producers always
/// run with `acks=all`, `enable.idempotence=true` and at most 5 requests in flight per
/// connection; consumers with `enable.auto.commit=false`,
/// `enable.auto.offset.store=false` and `auto.offset.reset=earliest`. Setting any of them to a weaker value is refused with
/// an error naming the setting, unless [`allow_unsafe`](Self::allow_unsafe) names it.
///
/// ```
/// use zerolost_kafka::KafkaConfig;
/// let config = KafkaConfig::new("127.0.0.1:9092").set("linger.ms", "5");
/// assert!(config.producer_config().is_ok());
/// let weak = KafkaConfig::new("127.0.0.1:9092").set("acks", "1");
/// assert!(weak.producer_config().unwrap_err().to_string().contains("acks"));
/// ```
#[derive(Clone)]
pub struct KafkaConfig {
    brokers: String,
    settings: BTreeMap<String, String>,
    allowed_unsafe: BTreeSet<String>,
    delivery_timeout: Duration,
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `ssl.keystore.password`, `sasl.oauthbearer.client.secret`, `sasl.jaas.config`, …).
fn is_secret_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "oauthbearer.config",
        "ssl.key.pem",
    ]
    .iter()
    .any(|part| key.contains(part))
}

/// The settings with every secret's value shown as `***`.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings: BTreeMap<&str, &str> = self
            .settings
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret_setting(key) { "***" } else { value };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("settings", &settings)
            .field("allowed_unsafe", &self.allowed_unsafe)
            .field("delivery_timeout", &self.delivery_timeout)
            .finish()
    }
}

/// Settings an admin client does not take (librdkafka warns about each one it ignores).
const ADMIN_IGNORES: [&str; 8] = [
    "acks",
    "enable.idempotence",
    "message.timeout.ms",
    "linger.ms",
    "compression.type",
    "enable.auto.commit",
    "auto.offset.reset",
    "isolation.level",
];

impl KafkaConfig {
    /// Settings for the cluster at `brokers` (`host:port[,host:port…]`).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            settings: BTreeMap::new(),
            allowed_unsafe: BTreeSet::new(),
            delivery_timeout: Duration::from_secs(30),
        }
    }

    /// Sets a librdkafka property (see librdkafka's CONFIGURATION.md).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// Lets `setting` take a value that can lose messages. Each use is logged as a warning.
    pub fn allow_unsafe(mut self, setting: impl Into<String>) -> Self {
        self.allowed_unsafe.insert(setting.into());
        self
    }

    /// How long a publish may wait for its delivery report before it fails retryably
    /// (librdkafka's `message.timeout.ms`; default 30 s).
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// The bootstrap brokers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The value of a librdkafka property set on this config.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// Whether the brokers may create a topic on first use (the user set
    /// `allow.auto.create.topics=true`); an unknown topic is then retryable.
    pub fn auto_create_topics(&self) -> bool {
        self.settings
            .get("allow.auto.create.topics")
            .is_some_and(|v| v == "true")
    }

    /// The producer's client configuration, checked against the safety rules.
    pub fn producer_config(&self) -> Result<ClientConfig, KafkaError> {
        let mut config = self.checked(PRODUCER_RULES)?;
        let timeout_ms = self.delivery_timeout.as_millis().clamp(1, i32::MAX as u128);
        config.set("message.timeout.ms", timeout_ms.to_string());
        if !self
            .settings
            .contains_key("topic.metadata.propagation.max.ms")
        {
            // How long an unknown topic may take to appear before its messages fail with
            // UNKNOWN_TOPIC (parked as unroutable): well inside the delivery timeout, so
            // the answer is "no such topic", not "timed out".
            let propagation_ms = (timeout_ms / 2).min(10_000);
            config.set(
                "topic.metadata.propagation.max.ms",
                propagation_ms.to_string(),
            );
        }
        Ok(config)
    }

    /// A consumer's client configuration for `group`, checked against the safety rules.
    pub fn consumer_config(&self, group: &str) -> Result<ClientConfig, KafkaError> {
        let mut config = self.checked(CONSUMER_RULES)?;
        config.set("group.id", group);
        Ok(config)
    }

    /// A client configuration for admin requests: the link's settings (TLS, SASL, timeouts)
    /// with the producer's and consumer's own left out.
    pub fn admin_config(&self) -> ClientConfig {
        let mut config = self.base();
        for key in ADMIN_IGNORES {
            config.remove(key);
        }
        config
    }

    /// The brokers and every setting, with librdkafka's warnings and errors passed to the
    /// client context (a failed TLS handshake or SASL login is reported only there).
    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        config
    }

    fn checked(&self, rules: &[Rule]) -> Result<ClientConfig, KafkaError> {
        let mut config = self.base();
        for rule in rules {
            match self.settings.get(rule.setting) {
                Some(value) if !(rule.safe)(value) => {
                    if !self.allowed_unsafe.contains(rule.setting) {
                        return Err(KafkaError::Unsafe {
                            setting: format!("{}={value}", rule.setting),
                            fix: format!(
                                "{}; or call allow_unsafe(\"{}\") to accept message loss",
                                rule.fix, rule.setting
                            ),
                        });
                    }
                    warn!(
                        setting = rule.setting,
                        value, "unsafe Kafka setting allowed"
                    );
                }
                Some(_) => {}
                None if rule.setting == "request.required.acks" => {}
                None => {
                    config.set(rule.setting, rule.default);
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_every_secret_setting() {
        let config = KafkaConfig::new("b:9092")
            .set("security.protocol", "SASL_SSL")
            .set("sasl.username", "app")
            .set("sasl.password", "hunter2")
            .set("ssl.key.password", "k3ypass")
            .set("sasl.oauthbearer.client.secret", "0auth");
        let shown = format!("{config:?}");
        for secret in ["hunter2", "k3ypass", "0auth"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("SASL_SSL") && shown.contains("\"app\""),
            "{shown}"
        );
    }

    #[test]
    fn safe_defaults_are_pinned() {
        let producer = KafkaConfig::new("b:9092").producer_config().expect("safe");
        assert_eq!(producer.get("acks"), Some("all"));
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        assert_eq!(
            producer.get("max.in.flight.requests.per.connection"),
            Some("5")
        );
        assert_eq!(producer.get("message.timeout.ms"), Some("30000"));
        let consumer = KafkaConfig::new("b:9092")
            .consumer_config("g")
            .expect("safe");
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(consumer.get("group.id"), Some("g"));
    }

    #[test]
    fn weakening_settings_are_refused_with_the_setting_named() {
        for (key, value) in [
            ("acks", "1"),
            ("acks", "0"),
            ("request.required.acks", "1"),
            ("enable.idempotence", "false"),
            ("max.in.flight.requests.per.connection", "6"),
        ] {
            let err = KafkaConfig::new("b:9092")
                .set(key, value)
                .producer_config()
                .expect_err(key);
            let text = err.to_string();
            assert!(text.contains(&format!("{key}={value}")), "{text}");
            assert!(matches!(
                zerolost_core::Error::from(err),
                zerolost_core::Error::UnsafeConfig { .. }
            ));
        }
        for (key, value) in [
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "true"),
            ("auto.offset.reset", "latest"),
        ] {
            let err = KafkaConfig::new("b:9092")
                .set(key, value)
                .consumer_config("g")
                .expect_err(key);
            assert!(err.to_string().contains(key));
        }
        let consumer = KafkaConfig::new("b:9092")
            .consumer_config("g")
            .expect("defaults");
        assert_eq!(consumer.get("auto.offset.reset"), Some("earliest"));
    }

    #[test]
    fn allow_unsafe_lets_a_named_setting_through() {
        let config = KafkaConfig::new("b:9092")
            .set("acks", "1")
            .allow_unsafe("acks")
            .producer_config()
            .expect("allowed");
        assert_eq!(config.get("acks"), Some("1"));
        let other = KafkaConfig::new("b:9092")
            .set("acks", "1")
            .set("enable.idempotence", "false")
            .allow_unsafe("acks")
            .producer_config();
        assert!(
            other.is_err(),
            "allowing one setting does not allow another"
        );
    }
}
