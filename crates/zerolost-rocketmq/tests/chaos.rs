//! The broker killed (SIGKILL) and restarted on its store while the outbox relay and the
//! consumer run on a real RocketMQ: nothing is lost and nothing is applied twice; producer
//! and push consumer recover by themselves.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use zerolost_core::memory::{MemoryDedupe, MemoryOutbox};
use zerolost_core::{Consumer, ConsumerConfig, DeadLetterPublisher, Envelope, OutboxStore, Relay};
use zerolost_rocketmq::dlq_topic;
use zerolost_rocketmq::testkit::RocketBackend;
use zerolost_testkit::RecordingHandler;
use zerolost_testkit::conformance::{
    assert_applied_exactly_once, patient_relay_config, test_consumer_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_run_loses_nothing_and_applies_nothing_twice() {
    // CI-sized (the kill lands after 10,000 consumed); the long runs are `zerolost-lab chaos`.
    const N: usize = 40_000;
    let Some(backend) = RocketBackend::local().await else {
        return;
    };
    let topic = common::fresh_topic("kill").await;
    let outbox = Arc::new(MemoryOutbox::new());
    let envelopes: Vec<Envelope> = (0..N)
        .map(|i| Envelope::new(&topic, format!("{{\"order\":{i}}}")))
        .collect();
    outbox.enqueue_batch(&envelopes).expect("enqueue");

    let relay = Relay::new(
        outbox.clone(),
        backend.rocket_publisher().await.expect("publisher"),
    )
    .with_config(patient_relay_config())
    .expect("relay");
    let relaying = common::spawn_relay(relay);
    let handler = RecordingHandler::new();
    let dedupe = Arc::new(MemoryDedupe::new());
    let consumer = Consumer::new(
        dedupe.clone(),
        handler.clone(),
        DeadLetterPublisher::new(backend.rocket_publisher().await.expect("dlq publisher"))
            .with_naming(dlq_topic),
    )
    .with_config(ConsumerConfig {
        concurrency: 32,
        ..test_consumer_config()
    })
    .expect("consumer");
    let consuming = common::spawn_consumer(
        &consumer,
        backend.rocket_subscriber(&topic).await.expect("subscriber"),
    );
    let started = Instant::now();
    common::fault_at_a_quarter(&*dedupe, N, Duration::from_secs(300), || {
        common::rocketmq_sh(&["kill"]); // SIGKILL, then start again on the same store
    })
    .await;
    let relayed = relaying.stop().await;
    let totals = consuming.stop().await;
    eprintln!(
        "done in {:?}; relay {relayed:?}; consumer {totals:?}",
        started.elapsed()
    );
    let counts = outbox.counts().await.expect("counts");
    assert_eq!(counts.parked, 0, "nothing parked: {counts:?}");
    assert!(
        relayed.rescheduled > 0,
        "the outage was felt by the relay (rows rescheduled): {relayed:?}"
    );
    assert_applied_exactly_once(&handler, &envelopes);
    assert!(
        common::ids_in(&dlq_topic(&topic)).await.is_empty(),
        "nothing dead-lettered"
    );
}
