//! Test glue: the test name server, fresh topics, `rocketmq.sh`, publishers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Command;

use zerolost_core::MessageId;

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
    let address = zerolost_rocketmq::testkit::test_name_server();
    let probe = tokio::net::TcpStream::connect(&address).await.map(drop);
    zerolost_testkit::require_service("rocketmq", probe)?;
    Some(address)
}

/// A fresh topic (and its `-dlq`) on the SYNC_FLUSH broker.
pub async fn fresh_topic(tag: &str) -> String {
    fresh_topic_on(tag, SYNC_CLUSTER).await
}

/// A fresh topic (and its `-dlq`) on the brokers of `cluster`.
pub async fn fresh_topic_on(tag: &str, cluster: &str) -> String {
    let topic = zerolost_testkit::fresh_name(tag);
    zerolost_rocketmq::declare_destination(
        &RocketRuntime::shared().expect("runtime"),
        &RocketConfig::new(zerolost_rocketmq::testkit::test_name_server()),
        &zerolost_rocketmq::TopicSpec::new(cluster),
        &topic,
    )
    .await
    .expect("create the topic");
    topic
}

/// How many copies of each id `topic` holds now.
pub async fn ids_in(topic: &str) -> HashMap<MessageId, usize> {
    let contents = zerolost_rocketmq::topic_contents(
        &RocketRuntime::shared().expect("runtime"),
        &RocketConfig::new(zerolost_rocketmq::testkit::test_name_server()),
        topic,
    )
    .await
    .expect("read the topic");
    zerolost_testkit::ids_of(contents)
}

#[allow(unused_imports)] // each test file uses some of them
pub use zerolost_testkit::tasks::{
    Running, fault_at_a_quarter, finished, spawn_consumer, spawn_relay,
};

pub async fn publisher(name_server: &str) -> RocketPublisher {
    RocketPublisher::start(
        &RocketRuntime::shared().expect("runtime"),
        &RocketConfig::new(name_server),
    )
    .await
    .expect("producer")
}
