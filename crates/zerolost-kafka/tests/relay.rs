//! The outbox relay through Kafka: every row published once and marked; a row for a topic
//! that does not exist is parked with the reason, never dropped.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{fresh_topic, read_topic};
use zerolost_core::memory::MemoryOutbox;
use zerolost_core::{Envelope, Relay, RelayConfig};
use zerolost_kafka::{KafkaPublisher, TopicSpec, ensure_topic};
use zerolost_testkit::conformance::{drain_on_healthy_broker, parked_reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_row_once_and_parks_the_unroutable() {
    let Some(config) = common::single_node().await else {
        return;
    };
    let config = config.delivery_timeout(Duration::from_secs(10));
    let topic = fresh_topic("relay");
    ensure_topic(&config, &topic, TopicSpec::SINGLE_NODE)
        .await
        .expect("topic");
    let outbox = Arc::new(MemoryOutbox::new());
    let envelopes: Vec<Envelope> = (0..10_000)
        .map(|i| Envelope::new(&topic, format!("{{\"order\":{i}}}")))
        .collect();
    outbox.enqueue_batch(&envelopes).expect("enqueue");
    let nowhere = Envelope::new(fresh_topic("missing"), "no topic");
    outbox.enqueue(&nowhere).expect("enqueue");

    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let relay = Relay::new(outbox.clone(), publisher)
        .with_config(RelayConfig {
            batch_size: 500,
            ..RelayConfig::default()
        })
        .expect("relay");
    let (published, parked) = drain_on_healthy_broker(&relay).await;
    assert_eq!((published, parked), (10_000, 1));
    let reason = parked_reason(&*outbox, nowhere.id).await;
    assert!(reason.contains("unroutable"), "{reason}");

    let read = read_topic(&config, &topic).await;
    let ids: HashSet<_> = read.iter().map(|r| r.id).collect();
    assert_eq!(read.len(), envelopes.len(), "no duplicates");
    assert_eq!(
        ids,
        envelopes.iter().map(|e| e.id).collect::<HashSet<_>>(),
        "no loss"
    );
}
