//! Confirmed publish on librdkafka's mock cluster (3 brokers, RF 3) and on a real Kafka
//! broker: every id arrives exactly once, faults surface with the right classification.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{fresh_topic, read_topic};
use zerolost_core::{Envelope, Error, MESSAGE_ID_HEADER, Publisher};
use zerolost_kafka::mock::MockKafka;
use zerolost_kafka::{KafkaConfig, KafkaPublisher, TopicSpec, ensure_topic};

fn batch(topic: &str, n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| {
            let e = Envelope::new(topic, format!("{{\"n\":{i}}}")).with_header("source", "test");
            if i % 2 == 0 {
                e.with_key(format!("customer-{}", i % 7))
            } else {
                e
            }
        })
        .collect()
}

/// Publishes `n` messages in batches and reads the topic back: every id exactly once,
/// the id in its header, keyless messages keyed by their id.
async fn publish_and_read_back(config: &KafkaConfig, topic: &str, n: usize) {
    let publisher = KafkaPublisher::new(config).expect("publisher");
    let envelopes = batch(topic, n);
    let mut positions = HashSet::new();
    for chunk in envelopes.chunks(250) {
        for (envelope, result) in chunk.iter().zip(publisher.publish_batch(chunk).await) {
            let receipt = result.expect("confirmed");
            assert_eq!(receipt.id, envelope.id);
            assert!(positions.insert(receipt.position.expect("partition/offset")));
        }
    }
    let read = read_topic(config, topic).await;
    let sent: HashSet<_> = envelopes.iter().map(|e| e.id).collect();
    let got: Vec<_> = read.iter().map(|r| r.id).collect();
    let distinct: HashSet<_> = got.iter().copied().collect();
    assert_eq!(distinct, sent, "every published id arrives");
    assert_eq!(got.len(), n, "and none twice");
    for record in &read {
        let envelope = envelopes.iter().find(|e| e.id == record.id).expect("sent");
        assert_eq!(
            record.headers.get(MESSAGE_ID_HEADER),
            Some(&envelope.id.to_string())
        );
        assert_eq!(
            record.headers.get("source").map(String::as_str),
            Some("test")
        );
        let expected_key = envelope
            .key
            .clone()
            .unwrap_or_else(|| envelope.id.to_string());
        assert_eq!(record.key.as_ref(), Some(&expected_key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_stores_every_message_once() {
    let kafka = MockKafka::start(3).expect("mock cluster");
    kafka.create_topic("orders", 3, 3).expect("topic");
    publish_and_read_back(&kafka.config(), "orders", 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_down_is_retryable_and_recovers() {
    let kafka = MockKafka::start(3).expect("mock cluster");
    kafka.create_topic("orders", 1, 3).expect("topic");
    let config = kafka.config().delivery_timeout(Duration::from_millis(1500));
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    publisher
        .publish(&Envelope::new("orders", "warm-up"))
        .await
        .expect("up");
    for broker in 1..=3 {
        kafka.broker_down(broker).expect("down");
    }
    let err = publisher
        .publish(&Envelope::new("orders", "while down"))
        .await
        .expect_err("no broker can confirm");
    assert!(err.is_retryable(), "{err}");
    for broker in 1..=3 {
        kafka.broker_up(broker).expect("up");
    }
    let again = Envelope::new("orders", "after");
    let mut last = None;
    for _ in 0..20 {
        match publisher.publish(&again).await {
            Ok(receipt) => {
                last = Some(receipt);
                break;
            }
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
    assert_eq!(
        last.expect("publishes again once brokers are back").id,
        again.id
    );
}

/// Single-message publishes racing on one partition while produce requests fail: every
/// confirmed message is stored at a real offset. (The mock does not check idempotent
/// sequence numbers, so with several requests in flight a failed request followed by a
/// successful one would be "implicitly acked" by librdkafka without being stored; the
/// mock's client settings keep one request in flight per connection for that reason.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_request_errors_never_confirm_an_unstored_message() {
    use rdkafka::types::RDKafkaRespErr::*;
    let kafka = MockKafka::start(3).expect("mock cluster");
    kafka.create_topic("dead", 1, 3).expect("topic");
    for broker in 1..=3 {
        kafka
            .set_round_trip(broker, Duration::from_millis(30))
            .expect("rtt");
    }
    let config = kafka.config().set("linger.ms", "0");
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let mut sent = HashSet::new();
    for round in 0..8 {
        let errors = [
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ];
        kafka
            .fail_produce_requests(&[errors[round % 3]])
            .expect("inject");
        let envelopes: Vec<Envelope> = (0..8)
            .map(|i| Envelope::new("dead", format!("{round}-{i}")))
            .collect();
        // Staggered, so that each goes in a request of its own while earlier ones are out.
        let receipts = futures::future::join_all(envelopes.iter().enumerate().map(|(i, e)| {
            let publisher = &publisher;
            async move {
                tokio::time::sleep(Duration::from_millis(4 * i as u64)).await;
                publisher.publish(e).await
            }
        }))
        .await;
        for receipt in receipts {
            let receipt = receipt.expect("confirmed");
            let position = receipt.position.expect("partition/offset");
            let offset: i64 = position
                .rsplit('/')
                .next()
                .and_then(|o| o.parse().ok())
                .expect("offset");
            assert!(offset >= 0, "confirmed without an offset: {position}");
            sent.insert(receipt.id.to_string());
        }
    }
    let stored: HashSet<String> = read_topic(&kafka.config(), "dead")
        .await
        .into_iter()
        .filter_map(|r| r.headers.get(MESSAGE_ID_HEADER).cloned())
        .collect();
    let missing: Vec<_> = sent.difference(&stored).collect();
    assert!(missing.is_empty(), "confirmed but not stored: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_oversized_message_is_a_permanent_rejection() {
    let kafka = MockKafka::start(3).expect("mock cluster");
    kafka.create_topic("orders", 1, 3).expect("topic");
    let config = kafka.config().set("message.max.bytes", "2000");
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let big = Envelope::new("orders", vec![b'x'; 10_000]);
    let err = publisher.publish(&big).await.expect_err("too large");
    assert!(matches!(err, Error::Rejected { .. }), "{err}");
    assert!(!err.is_retryable());
    let small = Envelope::new("orders", "fits");
    assert_eq!(publisher.publish(&small).await.expect("small").id, small.id);
}

#[test]
fn unsafe_producer_settings_are_refused() {
    for (key, value) in [("acks", "1"), ("enable.idempotence", "false")] {
        let err = KafkaPublisher::new(&KafkaConfig::new("127.0.0.1:1").set(key, value))
            .expect_err("refused");
        assert!(
            matches!(err, Error::UnsafeConfig { ref setting, .. } if setting.starts_with(key)),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_consumer_settings_are_refused() {
    for key in ["enable.auto.commit", "enable.auto.offset.store"] {
        let config = KafkaConfig::new("127.0.0.1:1").set(key, "true");
        let err =
            zerolost_kafka::KafkaSubscriber::new(&config, "g", &["orders"]).expect_err("refused");
        assert!(
            matches!(err, Error::UnsafeConfig { ref setting, .. } if setting.starts_with(key)),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_stores_every_message_once() {
    let Some(config) = common::single_node().await else {
        return;
    };
    let topic = fresh_topic("publish");
    ensure_topic(&config, &topic, TopicSpec::SINGLE_NODE)
        .await
        .expect("topic");
    publish_and_read_back(&config, &topic, 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_unknown_topic_is_unroutable() {
    let Some(config) = common::single_node().await else {
        return;
    };
    let config = config.delivery_timeout(Duration::from_secs(5));
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let topic = fresh_topic("missing");
    let err = publisher
        .publish(&Envelope::new(&topic, "nowhere"))
        .await
        .expect_err("auto-create is off on the test broker");
    assert!(
        matches!(err, Error::Unroutable { ref destination } if *destination == topic),
        "{err}"
    );
    assert!(!err.is_retryable());
}
