//! RocketMQ with access keys and TLS, on the test broker with authentication (`scripts/
//! services/rocketmq.sh start acl`, cluster ZerolostAclCluster: TLS only, a client
//! certificate required; its name server offers TLS next to plaintext). With the right CA,
//! client certificate and keys a topic is made, every message is confirmed with SEND_OK and
//! read back by id; without keys, with a wrong secret key, a CA that did not sign the
//! server's certificate, a name the certificate does not list, no client certificate or no
//! TLS at all, the link is refused and the error names the cause without the secret.

use std::collections::HashSet;

use zerolost_core::{Envelope, MessageId, Publisher, TlsFiles};
use zerolost_rocketmq::{
    AclKeys, RocketConfig, RocketPublisher, RocketRuntime, TopicSpec, declare_destination,
    topic_contents,
};
use zerolost_testkit::require_service;
use zerolost_testkit::tls;

const ACL_CLUSTER: &str = "ZerolostAclCluster";

fn name_server() -> String {
    zerolost_rocketmq::testkit::test_name_server()
}

/// The name server over TLS with a client certificate, and these keys.
fn config(keys: Option<AclKeys>) -> RocketConfig {
    let config = RocketConfig::new(name_server()).tls(tls::mutual().expect("test CA"));
    match keys {
        Some(keys) => config.acl(keys),
        None => config,
    }
}

fn keys() -> AclKeys {
    AclKeys::new("zerolost", "zerolost-secret")
}

/// A fresh topic on the secure broker, declared over a good link; `None` when the broker
/// is not there (and services are not required).
async fn secure_topic(runtime: &RocketRuntime, tag: &str) -> Option<String> {
    let topic = zerolost_testkit::fresh_name(tag).replace('-', "_");
    let spec = TopicSpec::new(ACL_CLUSTER);
    let declared = declare_destination(runtime, &config(Some(keys())), &spec, &topic).await;
    require_service("rocketmq (acl broker)", declared)?;
    Some(topic)
}

/// Publishes one message over `config`; the error's text.
async fn refused(runtime: &RocketRuntime, config: &RocketConfig, topic: &str) -> String {
    let publisher = RocketPublisher::start(runtime, config).await;
    let text = match publisher {
        Err(e) => e.to_string(),
        Ok(publisher) => {
            let result = publisher.publish(&Envelope::new(topic, "{}")).await;
            publisher.close().await.expect("close");
            result.expect_err("the link must be refused").to_string()
        }
    };
    assert!(!text.contains("zerolost-secret"), "{text}");
    assert!(!text.contains("hunter2-wrong"), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ca_client_certificate_and_keys_every_message_is_sent_and_read_back() {
    let runtime = RocketRuntime::shared().expect("runtime");
    let Some(topic) = secure_topic(&runtime, "acl").await else {
        return;
    };
    let config = config(Some(keys()));
    let publisher = RocketPublisher::start(&runtime, &config)
        .await
        .expect("producer");
    let envelopes: Vec<Envelope> = (0..50)
        .map(|i| Envelope::new(&topic, format!("{{\"n\":{i}}}")))
        .collect();
    for result in publisher.publish_batch(&envelopes).await {
        let receipt = result.expect("SEND_OK over TLS with the keys");
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
    let Some(topic) = secure_topic(&runtime, "acl_refused").await else {
        return;
    };
    for config in [
        config(None),
        config(Some(AclKeys::new("zerolost", "hunter2-wrong"))),
    ] {
        let text = refused(&runtime, &config, &topic).await;
        assert!(text.contains("bad credentials"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tls_link_is_refused_with_its_cause() {
    let runtime = RocketRuntime::shared().expect("runtime");
    let Some(topic) = secure_topic(&runtime, "tls_refused").await else {
        return;
    };
    let mutual = tls::mutual().expect("test CA");
    let other = tls::other_ca().expect("other CA");
    let other_ca = TlsFiles {
        cert_file: mutual.cert_file.clone(),
        key_file: mutual.key_file.clone(),
        ..other
    };
    // 127.0.0.2 is this machine, but not a name the server's certificate lists.
    let port = name_server().rsplit_once(':').map(|(_, p)| p.to_owned());
    let wrong_name = format!("127.0.0.2:{}", port.expect("host:port"));
    let cases = [
        (RocketConfig::new(name_server()).tls(other_ca), "unknown CA"),
        (RocketConfig::new(wrong_name).tls(mutual), "name mismatch"),
        (
            RocketConfig::new(name_server()).tls(tls::trusted().expect("test CA")),
            "client certificate",
        ),
        (RocketConfig::new(name_server()), "TLS"),
    ];
    for (config, cause) in cases {
        let text = refused(&runtime, &config.acl(keys()), &topic).await;
        assert!(text.contains(cause), "{cause}: {text}");
    }
}
