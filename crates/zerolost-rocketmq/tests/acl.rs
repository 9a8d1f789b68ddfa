//! RocketMQ with access keys, on the test broker with authentication (`scripts/services/
//! rocketmq.sh start acl`, cluster ZerolostAclCluster): with the right keys a topic is made,
//! every message is confirmed with SEND_OK and read back by id; without keys, or with a wrong
//! secret key, the broker refuses and the error names the cause without the secret.

use std::collections::HashSet;

use zerolost_core::{Envelope, MessageId, Publisher};
use zerolost_rocketmq::{
    AclKeys, RocketConfig, RocketPublisher, RocketRuntime, TopicSpec, declare_destination,
    topic_contents,
};
use zerolost_testkit::require_service;

const ACL_CLUSTER: &str = "ZerolostAclCluster";

fn config(keys: Option<AclKeys>) -> RocketConfig {
    let config = RocketConfig::new(zerolost_rocketmq::testkit::test_name_server());
    match keys {
        Some(keys) => config.acl(keys),
        None => config,
    }
}

fn keys() -> AclKeys {
    AclKeys::new("zerolost", "zerolost-secret")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_keys_every_message_is_sent_and_read_back() {
    let runtime = RocketRuntime::shared().expect("runtime");
    let config = config(Some(keys()));
    let topic = zerolost_testkit::fresh_name("acl").replace('-', "_");
    let spec = TopicSpec::new(ACL_CLUSTER);
    let declared = declare_destination(&runtime, &config, &spec, &topic).await;
    if require_service("rocketmq (acl broker)", declared).is_none() {
        return;
    }
    let publisher = RocketPublisher::start(&runtime, &config)
        .await
        .expect("producer");
    let envelopes: Vec<Envelope> = (0..50)
        .map(|i| Envelope::new(&topic, format!("{{\"n\":{i}}}")))
        .collect();
    for result in publisher.publish_batch(&envelopes).await {
        let receipt = result.expect("SEND_OK with the keys");
        let position = receipt.position.expect("position");
        assert!(position.starts_with("zerolost-acl/"), "{position}");
    }
    let read = topic_contents(&runtime, &config, &topic)
        .await
        .expect("read back");
    let ids: HashSet<MessageId> = zerolost_testkit::ids_of(read).into_keys().collect();
    assert_eq!(ids, envelopes.iter().map(|e| e.id).collect());
    publisher.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_keys_or_with_a_wrong_secret_the_broker_refuses() {
    let runtime = RocketRuntime::shared().expect("runtime");
    let good = config(Some(keys()));
    let topic = zerolost_testkit::fresh_name("acl_refused").replace('-', "_");
    let spec = TopicSpec::new(ACL_CLUSTER);
    let declared = declare_destination(&runtime, &good, &spec, &topic).await;
    if require_service("rocketmq (acl broker)", declared).is_none() {
        return;
    }
    let cases = [
        config(None),
        config(Some(AclKeys::new("zerolost", "hunter2-wrong"))),
    ];
    for config in cases {
        let publisher = RocketPublisher::start(&runtime, &config)
            .await
            .expect("producer");
        let result = publisher
            .publish(&Envelope::new(&topic, "{}"))
            .await
            .expect_err("the broker must refuse");
        let text = result.to_string();
        assert!(text.contains("bad credentials"), "{text}");
        assert!(!text.contains("hunter2-wrong"), "{text}");
        publisher.close().await.expect("close");
    }
}
