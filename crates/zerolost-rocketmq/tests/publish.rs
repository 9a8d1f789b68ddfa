//! Synchronous send on a real RocketMQ (`scripts/services/rocketmq.sh`, a SYNC_FLUSH
//! broker): every message confirmed with SEND_OK at its own queue position and findable by
//! its id key; a topic without a route is parked by the relay with the reason; unsafe
//! settings refused.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{fresh_topic, name_server, publisher, rocketmq_sh};

use zerolost_core::memory::MemoryOutbox;
use zerolost_core::{Envelope, Publisher, Relay, RelayConfig};
use zerolost_rocketmq::{RocketConfig, RocketPublisher, RocketRuntime};
use zerolost_testkit::conformance::{drain_on_healthy_broker, parked_reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_confirmed_with_send_ok_at_its_own_position() {
    let Some(name_server) = name_server().await else {
        return;
    };
    let topic = fresh_topic("send").await;
    let publisher = publisher(&name_server).await;
    let envelopes: Vec<Envelope> = (0..1_000)
        .map(|i| Envelope::new(&topic, format!("{{\"order\":{i}}}")).with_header("tenant", "acme"))
        .collect();
    let mut positions = HashSet::new();
    for (envelope, result) in envelopes
        .iter()
        .zip(publisher.publish_batch(&envelopes).await)
    {
        let receipt = result.expect("SEND_OK");
        assert_eq!(receipt.id, envelope.id);
        let position = receipt.position.expect("queue and offset");
        assert!(position.starts_with("zerolost-a/"), "{position}");
        assert!(
            positions.insert(position),
            "each message stored at its own position"
        );
    }
    assert_eq!(positions.len(), envelopes.len());
    let stored = common::ids_in(&topic).await;
    assert_eq!(stored.len(), envelopes.len(), "every id stored");
    assert!(stored.values().all(|&n| n == 1), "each stored once");
    // The broker indexes the id as the message key.
    let found = rocketmq_sh(&[
        "admin",
        "queryMsgByKey",
        "-t",
        &topic,
        "-k",
        &envelopes[7].id.to_string(),
    ]);
    // One row under the header when found; an exception when no message has the key.
    assert!(
        found.contains("#Message ID") && !found.contains("Exception"),
        "{found}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_parks_a_topic_without_route_and_an_oversized_message_and_sends_the_rest() {
    let Some(name_server) = name_server().await else {
        return;
    };
    let topic = fresh_topic("relay").await;
    let outbox = Arc::new(MemoryOutbox::new());
    let good: Vec<Envelope> = (0..200)
        .map(|i| Envelope::new(&topic, format!("{i}")))
        .collect();
    outbox.enqueue_batch(&good).expect("enqueue");
    let nowhere = Envelope::new(format!("zlt-missing-{}", std::process::id()), "no topic");
    outbox.enqueue(&nowhere).expect("enqueue");
    let huge = Envelope::new(&topic, vec![b'x'; 1025]);
    outbox.enqueue(&huge).expect("enqueue");
    let small = RocketPublisher::start(
        &RocketRuntime::shared().expect("runtime"),
        &RocketConfig::new(&name_server).max_message_size(1024),
    )
    .await
    .expect("producer");
    let relay = Relay::new(outbox.clone(), small)
        .with_config(RelayConfig {
            batch_size: 100,
            ..RelayConfig::default()
        })
        .expect("relay");
    let (published, parked) = drain_on_healthy_broker(&relay).await;
    assert_eq!((published, parked), (good.len(), 2));
    let reason = parked_reason(&*outbox, nowhere.id).await;
    assert!(reason.contains("unroutable"), "{reason}");
    let reason = parked_reason(&*outbox, huge.id).await;
    assert!(reason.contains("max_message_size"), "{reason}");
    let stored = common::ids_in(&topic).await;
    assert_eq!(
        stored.len(),
        good.len(),
        "the rest stored, the huge one not"
    );
    assert!(!stored.contains_key(&huge.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_and_forget_is_refused_unless_allowed() {
    let runtime = RocketRuntime::shared().expect("runtime");
    let error = RocketPublisher::start(
        &runtime,
        &RocketConfig::new("127.0.0.1:1").fire_and_forget(),
    )
    .await
    .expect_err("refused");
    let error = zerolost_core::Error::from(error);
    assert!(
        matches!(error, zerolost_core::Error::UnsafeConfig { ref setting, .. } if setting == "fire_and_forget"),
        "{error}"
    );
    assert!(!error.is_retryable());
}
