//! RabbitMQ over TLS on the real test broker (scripts/services/rabbitmq.sh): amqps with the
//! test CA, with and without a client certificate, and the management API over https.
//! Every message published is read back by id over the same link; each failure names its
//! cause (a real TLS server with a bad certificate stands in for a misconfigured broker),
//! and no error shows the password.

mod common;

use std::collections::HashSet;

use zerolost_core::{Envelope, MessageId, Publisher, TlsFiles};
use zerolost_rabbitmq::{
    ManagementApi, QueueSpec, RabbitConfig, RabbitPublisher, audit, check_link,
    declare_destination, queue_contents,
};
use zerolost_testkit::require_service;
use zerolost_testkit::tls::{self, BadTlsServer};

const AMQPS: (&str, &str) = (
    "ZEROLOST_AMQPS_URL",
    "amqps://zerolost:zerolost@127.0.0.1:55675/zerolost",
);
const HTTPS: (&str, &str) = (
    "ZEROLOST_RABBITMQ_MGMT_TLS_URL",
    "https://zerolost:zerolost@127.0.0.1:55676",
);
const AMQP: (&str, &str) = (
    "ZEROLOST_AMQP_URL",
    "amqp://zerolost:zerolost@127.0.0.1:55672/zerolost",
);

fn url(which: (&str, &str)) -> String {
    zerolost_testkit::service_url(which.0, which.1)
}

fn amqps(tls: TlsFiles) -> RabbitConfig {
    RabbitConfig::new(url(AMQPS)).tls(tls)
}

/// Declares a destination over `config`, publishes 30 messages and reads them back.
async fn round_trip(config: &RabbitConfig, tag: &str) -> Option<()> {
    let name = zerolost_testkit::fresh_name(tag);
    require_service(
        "rabbitmq (amqps)",
        declare_destination(config, &name, QueueSpec::default()).await,
    )?;
    let publisher = RabbitPublisher::new(config).expect("publisher");
    let envelopes: Vec<Envelope> = (0..30)
        .map(|i| Envelope::new(&name, format!("{{\"n\":{i}}}")))
        .collect();
    for result in publisher.publish_batch(&envelopes).await {
        result.expect("confirmed over TLS");
    }
    let read = queue_contents(config, &name).await.expect("read back");
    let ids: HashSet<MessageId> = zerolost_testkit::ids_of(read).into_keys().collect();
    assert_eq!(ids, envelopes.iter().map(|e| e.id).collect());
    publisher.close().await.expect("close");
    Some(())
}

#[tokio::test]
async fn amqps_round_trip_with_the_ca_and_with_a_client_certificate() {
    let Some(()) = round_trip(&amqps(tls::trusted().expect("CA")), "tls-amqps").await else {
        return;
    };
    round_trip(&amqps(tls::mutual().expect("client cert")), "tls-mtls").await;
}

#[tokio::test]
async fn the_management_api_answers_over_https() {
    let config = amqps(tls::trusted().expect("CA"));
    let name = zerolost_testkit::fresh_name("tls-audit");
    if require_service(
        "rabbitmq (amqps)",
        declare_destination(&config, &name, QueueSpec::default()).await,
    )
    .is_none()
    {
        return;
    }
    let api = ManagementApi::new(&url(HTTPS), "zerolost")
        .and_then(|api| api.with_tls(tls::trusted().expect("CA")))
        .expect("api");
    assert!(api.is_encrypted() && api.is_authenticated());
    let report = audit(&api, &name).await.expect("audit over https");
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    let untrusted = ManagementApi::new(&url(HTTPS), "zerolost")
        .and_then(|api| api.with_tls(tls::other_ca().expect("other CA")))
        .expect("api");
    let text = audit(&untrusted, &name).await.unwrap_err().to_string();
    assert!(text.contains("unknown CA"), "{text}");
    assert!(!text.contains("zerolost:zerolost"), "{text}");
}

/// The error of a link check over `config`, after checking the broker is up.
async fn failure(config: RabbitConfig) -> Option<String> {
    require_service(
        "rabbitmq (amqps)",
        check_link(&amqps(tls::trusted().expect("CA"))).await,
    )?;
    Some(
        check_link(&config)
            .await
            .expect_err("must fail")
            .to_string(),
    )
}

#[tokio::test]
async fn each_failure_names_its_cause_without_the_password() {
    let wrong_name = BadTlsServer::wrong_name().expect("openssl s_server");
    let expired = BadTlsServer::expired().expect("openssl s_server");
    let bad = |port: u16| {
        RabbitConfig::new(format!(
            "amqps://zerolost:hunter2@127.0.0.1:{port}/zerolost"
        ))
        .tls(tls::trusted().expect("CA"))
    };
    let cases = [
        (amqps(tls::other_ca().expect("other CA")), "unknown CA"),
        (bad(wrong_name.port), "name mismatch"),
        (bad(expired.port), "expired certificate"),
        (
            RabbitConfig::new(url(AMQPS).replace("zerolost:zerolost@", "zerolost:hunter2@"))
                .tls(tls::trusted().expect("CA")),
            "bad credentials",
        ),
        (
            RabbitConfig::new(url(AMQP).replace("amqp://", "amqps://"))
                .tls(tls::trusted().expect("CA")),
            "TLS expected but the server speaks plaintext",
        ),
        // A plaintext client against the TLS-only port.
        (
            RabbitConfig::new(url(AMQPS).replace("amqps://", "amqp://")),
            "TLS expected but the server speaks plaintext",
        ),
    ];
    for (config, cause) in cases {
        let Some(text) = failure(config).await else {
            return;
        };
        assert!(text.contains(cause), "expected `{cause}` in: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
