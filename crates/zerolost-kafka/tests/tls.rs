//! Kafka over TLS on the real test broker (scripts/services/kafka.sh): the `SSL` listener
//! with a client certificate, the `SASL_SSL` listener with SCRAM-SHA-512 and PLAIN. Every
//! message published is read back by id over the same link; each failure names its cause,
//! and no error shows the password.

mod common;

use std::collections::HashSet;

use zerolost_core::{Envelope, Error, MessageId, Publisher};
use zerolost_kafka::{KafkaConfig, KafkaPublisher, TopicSpec, ensure_topic};
use zerolost_testkit::require_service;
use zerolost_testkit::tls::{self, BadTlsServer};

const PLAINTEXT: (&str, &str) = ("ZEROLOST_KAFKA_BROKERS", "127.0.0.1:19092");
const SSL: (&str, &str) = ("ZEROLOST_KAFKA_SSL_BROKERS", "127.0.0.1:19095");
const SASL_SSL: (&str, &str) = ("ZEROLOST_KAFKA_SASL_BROKERS", "127.0.0.1:19096");
const PASSWORD: &str = "zerolost-secret";

fn brokers(which: (&str, &str)) -> String {
    zerolost_testkit::service_url(which.0, which.1)
}

fn path(name: &str) -> String {
    tls::file(name).expect("the test CA").display().to_string()
}

/// A quick-failing client of `brokers` with `settings`.
fn config(brokers: String, settings: &[(&str, String)]) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers).set("socket.connection.setup.timeout.ms", "3000");
    for (key, value) in settings {
        config = config.set(*key, value);
    }
    config
}

/// `config`'s settings on the 3-node cluster's SASL_SSL listeners.
fn cluster_of(config: KafkaConfig) -> KafkaConfig {
    let brokers = zerolost_testkit::service_url(
        "ZEROLOST_KAFKA_SASL_CLUSTER",
        "127.0.0.1:29392,127.0.0.1:29393,127.0.0.1:29394",
    );
    let mut cluster = KafkaConfig::new(brokers);
    for key in [
        "socket.connection.setup.timeout.ms",
        "security.protocol",
        "ssl.ca.location",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
    ] {
        if let Some(value) = config.setting(key) {
            cluster = cluster.set(key, value);
        }
    }
    cluster
}

fn mutual_tls() -> KafkaConfig {
    config(
        brokers(SSL),
        &[
            ("security.protocol", "SSL".into()),
            ("ssl.ca.location", path("ca.crt")),
            ("ssl.certificate.location", path("client.crt")),
            ("ssl.key.location", path("client.key")),
        ],
    )
}

fn sasl(mechanism: &str, password: &str, ca: &str) -> KafkaConfig {
    config(
        brokers(SASL_SSL),
        &[
            ("security.protocol", "SASL_SSL".into()),
            ("ssl.ca.location", path(ca)),
            ("sasl.mechanism", mechanism.into()),
            ("sasl.username", "zerolost".into()),
            ("sasl.password", password.into()),
        ],
    )
}

/// Publishes 50 messages over `config` and reads the topic back over it: every id once.
async fn round_trip(config: &KafkaConfig, tag: &str) -> Option<()> {
    let topic = zerolost_testkit::fresh_name(tag);
    require_service(
        "kafka (TLS)",
        ensure_topic(config, &topic, TopicSpec::SINGLE_NODE).await,
    )?;
    let publisher = KafkaPublisher::new(config).expect("publisher");
    let envelopes: Vec<Envelope> = (0..50)
        .map(|i| Envelope::new(&topic, format!("{{\"n\":{i}}}")))
        .collect();
    for result in publisher.publish_batch(&envelopes).await {
        result.expect("confirmed over TLS");
    }
    let sent: HashSet<MessageId> = envelopes.iter().map(|e| e.id).collect();
    let read = zerolost_kafka::topic_contents(config, &topic)
        .await
        .expect("read back over TLS");
    let received: HashSet<MessageId> = read
        .iter()
        .map(|m| {
            m.headers[zerolost_core::MESSAGE_ID_HEADER]
                .parse()
                .expect("id header")
        })
        .collect();
    assert_eq!(read.len(), 50, "each message once");
    assert_eq!(received, sent);
    Some(())
}

#[tokio::test]
async fn mutual_tls_round_trip() {
    round_trip(&mutual_tls(), "tls-ssl").await;
}

/// `check_link` passes on each secured listener, the 3-node cluster's SASL_SSL ones too.
#[tokio::test]
async fn the_link_check_passes_on_each_secured_listener() {
    let cluster = cluster_of(sasl("SCRAM-SHA-512", PASSWORD, "ca.crt"));
    for config in [
        mutual_tls(),
        sasl("SCRAM-SHA-512", PASSWORD, "ca.crt"),
        cluster,
    ] {
        let checked = zerolost_kafka::check_link(&config).await;
        if require_service("kafka (TLS)", checked).is_none() {
            return;
        }
    }
}

#[tokio::test]
async fn sasl_scram_and_plain_round_trip() {
    round_trip(&sasl("SCRAM-SHA-512", PASSWORD, "ca.crt"), "tls-scram").await;
    round_trip(&sasl("PLAIN", PASSWORD, "ca.crt"), "tls-plain").await;
}

/// What a failing link reports: the error of a topic creation over it.
async fn failure(config: &KafkaConfig) -> Option<Error> {
    // The broker must be up for the failure to mean anything.
    let plain = config_plain();
    require_service(
        "kafka",
        ensure_topic(&plain, "zlt-probe", TopicSpec::SINGLE_NODE).await,
    )?;
    Some(
        zerolost_kafka::check_link(config)
            .await
            .expect_err("the link must fail"),
    )
}

fn config_plain() -> KafkaConfig {
    config(brokers(PLAINTEXT), &[])
}

#[tokio::test]
async fn each_failure_names_its_cause_without_the_secret() {
    let cases = [
        (
            sasl("SCRAM-SHA-512", "not-the-password", "ca.crt"),
            "bad credentials",
        ),
        (
            sasl("SCRAM-SHA-512", PASSWORD, "other-ca.crt"),
            "unknown CA",
        ),
        (
            config(
                brokers(PLAINTEXT),
                &[
                    ("security.protocol", "SSL".into()),
                    ("ssl.ca.location", path("ca.crt")),
                ],
            ),
            "TLS expected but the server speaks plaintext",
        ),
    ];
    let wrong_name = BadTlsServer::wrong_name().expect("openssl s_server");
    let expired = BadTlsServer::expired().expect("openssl s_server");
    let at = |port: u16| {
        config(
            format!("127.0.0.1:{port}"),
            &[
                ("security.protocol", "SSL".into()),
                ("ssl.ca.location", path("ca.crt")),
            ],
        )
    };
    let cases = cases.into_iter().chain([
        (at(wrong_name.port), "name mismatch"),
        (at(expired.port), "expired certificate"),
        // A plaintext client against the TLS-only listener.
        (
            config(brokers(SSL), &[]),
            "TLS expected but the server speaks plaintext",
        ),
        // Mutual TLS required by the listener, no client certificate given.
        (
            config(
                brokers(SSL),
                &[
                    ("security.protocol", "SSL".into()),
                    ("ssl.ca.location", path("ca.crt")),
                ],
            ),
            "client certificate refused",
        ),
    ]);
    for (config, cause) in cases {
        let Some(error) = failure(&config).await else {
            return;
        };
        let text = error.to_string();
        assert!(text.contains(cause), "expected `{cause}` in: {text}");
        assert!(error.is_retryable(), "a broker may be down: {text}");
        assert!(
            !text.contains("not-the-password") && !text.contains(PASSWORD),
            "{text}"
        );
        assert!(!format!("{config:?}").contains(PASSWORD));
    }
}
