//! The durability audit on real brokers: the SYNC_FLUSH test broker passes; the
//! ASYNC_FLUSH one (`scripts/services/rocketmq.sh start async`) is flagged with its fix, and
//! the publisher sends nothing to it unless unsafe use is allowed.

mod common;

use common::{ASYNC_CLUSTER, fresh_topic, fresh_topic_on, name_server, publisher};
use zerolost_core::{Envelope, Error, Publisher};
use zerolost_rocketmq::{RocketConfig, RocketPublisher, RocketRuntime, audit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flush_passes_and_async_flush_is_flagged_and_refused() {
    let Some(name_server) = name_server().await else {
        return;
    };
    let runtime = RocketRuntime::shared().expect("runtime");
    let config = RocketConfig::new(&name_server);

    let durable = fresh_topic("audit-sync").await;
    let report = audit(&runtime, &config, &durable).await.expect("audit");
    assert!(report.is_durable(), "{:#?}", report.findings);
    assert_eq!(report.brokers.len(), 1);
    assert!(
        report.brokers[0].starts_with("zerolost-a@"),
        "{:?}",
        report.brokers
    );

    let risky = fresh_topic_on("audit-async", ASYNC_CLUSTER).await;
    let report = audit(&runtime, &config, &risky).await.expect("audit");
    assert!(!report.is_durable());
    let finding = &report.findings[0];
    assert!(finding.subject.ends_with("flushDiskType"), "{finding:?}");
    assert_eq!(finding.found, "ASYNC_FLUSH");
    assert!(
        finding.fix.contains("flushDiskType=SYNC_FLUSH"),
        "{}",
        finding.fix
    );

    // The publisher sends nothing there (a permanent error: the relay parks the row) ...
    let refused = publisher(&name_server)
        .await
        .publish(&Envelope::new(&risky, "would not be flushed"))
        .await
        .expect_err("refused");
    assert!(
        matches!(refused, Error::UnsafeConfig { ref setting, .. } if setting == "flushDiskType"),
        "{refused}"
    );
    assert!(!refused.is_retryable());
    // ... unless told to, and it goes on sending to durable topics.
    let allowed = RocketPublisher::start(
        &runtime,
        &config.clone().allow_unsafe("test of the async broker"),
    )
    .await
    .expect("publisher");
    allowed
        .publish(&Envelope::new(&risky, "accepted risk"))
        .await
        .expect("SEND_OK from the async broker");
    assert!(
        publisher(&name_server)
            .await
            .publish(&Envelope::new(&durable, "fine"))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_without_route_is_unroutable() {
    let Some(name_server) = name_server().await else {
        return;
    };
    let error = audit(
        &RocketRuntime::shared().expect("runtime"),
        &RocketConfig::new(&name_server),
        "zlt-no-such-topic",
    )
    .await
    .expect_err("no route");
    assert!(matches!(error, Error::Unroutable { .. }), "{error}");
}
