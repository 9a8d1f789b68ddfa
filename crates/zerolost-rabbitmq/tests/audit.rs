//! The durability audit through the management API, and the broker-side backstops the
//! topology sets up (delivery limit → dead-letter exchange).

mod common;

use std::time::Duration;

use base64::Engine;
use lapin::types::AMQPValue;
use zerolost_core::{Envelope, Error, Publisher, Subscriber};
use zerolost_rabbitmq::testkit::{RabbitBackend, test_management_url};
use zerolost_rabbitmq::{
    ManagementApi, QueueSpec, RabbitPublisher, RabbitSubscriber, Severity, audit, queue_contents,
};
use zerolost_testkit::conformance::eventually_every;

fn api() -> ManagementApi {
    ManagementApi::new(&test_management_url(), "zerolost").expect("management url")
}

fn findings_of(report: &zerolost_rabbitmq::Audit) -> Vec<(String, Severity)> {
    let mut found: Vec<(String, Severity)> = report
        .findings
        .iter()
        .map(|f| {
            assert!(!f.fix.is_empty(), "every finding names its fix: {f:?}");
            let what = f.subject.rsplit(": ").next().unwrap_or_default().to_owned();
            (what, f.severity)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_declared_layout_passes_and_weak_queues_are_flagged_with_fixes() {
    let Some(config) = common::broker().await else {
        return;
    };
    let good = common::destination(&config, "audit-good", QueueSpec::default()).await;
    let report = audit(&api(), &good).await.expect("audit");
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert!(report.is_durable());

    // Classic, transient, a length limit that drops the oldest, a TTL, no dead-lettering.
    let weak = RabbitBackend::fresh_name("audit-weak");
    common::raw_queue(
        &weak,
        false,
        &[
            ("x-max-length", AMQPValue::LongLongInt(10)),
            ("x-message-ttl", AMQPValue::LongLongInt(60_000)),
        ],
        false,
    )
    .await;
    let report = audit(&api(), &weak).await.expect("audit");
    assert!(!report.is_durable());
    assert_eq!(
        findings_of(&report),
        vec![
            ("dead-letter exchange".to_owned(), Severity::Advice),
            ("durable".to_owned(), Severity::Unsafe),
            ("message TTL".to_owned(), Severity::Unsafe),
            ("overflow".to_owned(), Severity::Unsafe),
            ("type".to_owned(), Severity::Unsafe),
        ]
    );

    // A quorum queue whose dead-letter exchange does not exist, without a delivery limit.
    let orphan = RabbitBackend::fresh_name("audit-orphan");
    common::raw_queue(
        &orphan,
        true,
        &[
            ("x-queue-type", AMQPValue::LongString("quorum".into())),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString("nowhere-zlt".into()),
            ),
        ],
        false,
    )
    .await;
    let report = audit(&api(), &orphan).await.expect("audit");
    assert_eq!(
        findings_of(&report),
        vec![
            ("dead-letter exchange".to_owned(), Severity::Unsafe),
            ("delivery limit".to_owned(), Severity::Advice),
        ]
    );

    let missing = audit(&api(), "zlt-no-such-queue")
        .await
        .expect_err("missing");
    assert!(matches!(missing, Error::Unroutable { .. }), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_from_a_policy_count_like_arguments() {
    let Some(config) = common::broker().await else {
        return;
    };
    let queue = common::destination(
        &config,
        "audit-policy",
        QueueSpec {
            delivery_limit: None,
            dead_letter: true,
        },
    )
    .await;
    assert_eq!(
        findings_of(&audit(&api(), &queue).await.expect("audit")),
        vec![("delivery limit".to_owned(), Severity::Advice)]
    );
    // The fix the finding names, applied as a policy through the management API.
    let body = serde_json::json!({
        "pattern": format!("^{queue}$"),
        "definition": {"delivery-limit": 20},
        "apply-to": "queues",
    });
    let auth = base64::engine::general_purpose::STANDARD.encode("zerolost:zerolost");
    let url = format!("http://127.0.0.1:55673/api/policies/zerolost/{queue}");
    let (put_url, put_auth) = (url.clone(), auth.clone());
    tokio::task::spawn_blocking(move || {
        ureq::put(&put_url)
            .header("Authorization", format!("Basic {put_auth}"))
            .send_json(body)
            .map(drop)
    })
    .await
    .expect("task")
    .expect("set the policy");
    eventually_every(
        Duration::from_secs(20),
        Duration::from_millis(250),
        "the policy clears the finding",
        async || {
            audit(&api(), &queue)
                .await
                .is_ok_and(|report| report.findings.is_empty())
        },
    )
    .await;
    tokio::task::spawn_blocking(move || {
        ureq::delete(&url)
            .header("Authorization", format!("Basic {auth}"))
            .call()
            .map(drop)
    })
    .await
    .expect("task")
    .expect("remove the policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_limit_dead_letters_a_message_every_consumer_gives_back() {
    let Some(config) = common::broker().await else {
        return;
    };
    let dest = common::destination(
        &config,
        "limit",
        QueueSpec {
            delivery_limit: Some(2),
            dead_letter: true,
        },
    )
    .await;
    let envelope = Envelope::new(&dest, "crashes every consumer");
    RabbitPublisher::new(&config)
        .expect("publisher")
        .publish(&envelope)
        .await
        .expect("confirmed");
    let mut subscriber = RabbitSubscriber::new(&config, &dest).expect("subscriber");
    let mut deliveries = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(2), subscriber.next()).await;
        let Ok(delivery) = next else { break };
        let delivery = delivery.expect("delivery");
        deliveries += 1;
        assert!(deliveries <= 5, "the broker should have given up by now");
        // The quorum queue's x-delivery-count, carried into the delivery.
        if deliveries == 1 {
            assert!(!delivery.redelivered);
        } else {
            assert!(delivery.redelivered);
            assert_eq!(delivery.delivery_count, Some(deliveries));
        }
        delivery.nack(true).await.expect("nack");
    }
    assert_eq!(
        deliveries, 3,
        "delivered once, then returned twice (the limit)"
    );
    let dead = queue_contents(&config, &zerolost_core::default_dlq_name(&dest))
        .await
        .expect("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].native_id, Some(envelope.id.to_string()));
    assert!(
        queue_contents(&config, &dest)
            .await
            .expect("queue")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_management_credentials_are_permanent_and_not_shown() {
    let Some(config) = common::broker().await else {
        return;
    };
    let queue = common::destination(&config, "audit-auth", QueueSpec::default()).await;
    let api = ManagementApi::new("http://zerolost:wrong-hunter2@127.0.0.1:55673", "zerolost")
        .expect("url");
    let error = audit(&api, &queue).await.expect_err("refused");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        !error.is_retryable(),
        "401 does not heal by retrying: {error}"
    );
}
