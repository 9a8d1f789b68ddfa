//! Test glue: the test name server, fresh topics, `rocketmq.sh`, publishers.
#![allow(dead_code)]

use std::process::Command;

use zerolost_rocketmq::{RocketConfig, RocketPublisher, RocketRuntime};

/// The cluster of the SYNC_FLUSH test broker, and of the ASYNC_FLUSH one.
pub const SYNC_CLUSTER: &str = "ZerolostCluster";
pub const ASYNC_CLUSTER: &str = "ZerolostAsyncCluster";

pub fn rocketmq_sh(args: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/services/rocketmq.sh"
    );
    let output = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("run rocketmq.sh");
    assert!(
        output.status.success(),
        "rocketmq.sh {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The test name server, or `None` (skip, loudly) when unreachable and not required.
pub async fn name_server() -> Option<String> {
    let address = zerolost_testkit::service_url("ZEROLOST_ROCKETMQ_NAMESRV", "127.0.0.1:59876");
    let probe = tokio::net::TcpStream::connect(&address).await.map(drop);
    zerolost_testkit::require_service("rocketmq", probe)?;
    Some(address)
}

/// A fresh topic on the SYNC_FLUSH broker.
pub fn fresh_topic(tag: &str) -> String {
    fresh_topic_on(tag, SYNC_CLUSTER)
}

/// A fresh topic on the brokers of `cluster`.
pub fn fresh_topic_on(tag: &str, cluster: &str) -> String {
    let topic = zerolost_testkit::fresh_name(tag);
    rocketmq_sh(&["topic", &topic, cluster]);
    topic
}

pub async fn publisher(name_server: &str) -> RocketPublisher {
    RocketPublisher::start(
        &RocketRuntime::shared().expect("runtime"),
        &RocketConfig::new(name_server),
    )
    .await
    .expect("producer")
}
