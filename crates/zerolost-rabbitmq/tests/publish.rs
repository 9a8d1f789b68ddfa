//! Confirmed publish on a real RabbitMQ: a batch stored once, persistent, with its id and
//! headers; unroutable rows parked by the relay with the reason; a nack from a full queue
//! is retryable; unsafe settings and bad credentials refused without leaking the password.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use zerolost_core::memory::MemoryOutbox;
use zerolost_core::{Envelope, Error, Publisher, Relay, RelayConfig};
use zerolost_rabbitmq::testkit::RabbitBackend;
use zerolost_rabbitmq::{
    QueueSpec, RabbitConfig, RabbitError, RabbitPublisher, declare_exchange, queue_contents,
};
use zerolost_testkit::conformance::{drain_on_healthy_broker, parked_reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_stored_once_persistent_with_its_id_and_headers() {
    let Some(config) = common::broker().await else {
        return;
    };
    let dest = common::destination(&config, "batch", QueueSpec::default()).await;
    let envelopes: Vec<Envelope> = (0..1_000)
        .map(|i| {
            Envelope::new(&dest, format!("{{\"order\":{i}}}"))
                .with_key(format!("orders.{}", i % 7))
                .with_header("tenant", "acme")
        })
        .collect();
    let publisher = RabbitPublisher::new(&config).expect("publisher");
    for (envelope, result) in envelopes
        .iter()
        .zip(publisher.publish_batch(&envelopes).await)
    {
        let receipt = result.expect("confirmed");
        assert_eq!(receipt.id, envelope.id);
        assert_eq!(receipt.destination, dest);
    }
    let stored = queue_contents(&config, &dest).await.expect("read back");
    assert_eq!(stored.len(), envelopes.len(), "each message stored once");
    let ids: HashSet<String> = stored.iter().filter_map(|m| m.native_id.clone()).collect();
    assert_eq!(
        ids,
        envelopes
            .iter()
            .map(|e| e.id.to_string())
            .collect::<HashSet<_>>(),
        "message_id property = envelope id"
    );
    for message in &stored {
        assert_eq!(
            message.headers.get("tenant").map(String::as_str),
            Some("acme")
        );
        assert_eq!(
            message.headers.get("zerolost-id"),
            message.native_id.as_ref()
        );
        assert!(
            message
                .key
                .as_deref()
                .is_some_and(|k| k.starts_with("orders."))
        );
    }

    // delivery_mode=2 on the wire, read with a raw client.
    let (connection, channel) = common::raw_channel().await;
    let message = channel
        .basic_get(dest.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message");
    assert_eq!(*message.delivery.properties.delivery_mode(), Some(2));
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_parks_unroutable_rows_with_the_reason_and_sends_the_rest() {
    let Some(config) = common::broker().await else {
        return;
    };
    let dest = common::destination(&config, "relay", QueueSpec::default()).await;
    let unbound = RabbitBackend::fresh_name("unbound");
    declare_exchange(&config, &unbound).await.expect("exchange");
    let missing = RabbitBackend::fresh_name("missing");

    let outbox = Arc::new(MemoryOutbox::new());
    let good: Vec<Envelope> = (0..1_000)
        .map(|i| Envelope::new(&dest, format!("{i}")))
        .collect();
    let bad: Vec<Envelope> = (0..3)
        .map(|i| Envelope::new(&unbound, format!("no queue {i}")))
        .chain((0..3).map(|i| Envelope::new(&missing, format!("no exchange {i}"))))
        .collect();
    // Interleaved, so unroutable rows share batches with good ones.
    let mut rows = good.clone();
    for (i, envelope) in bad.iter().enumerate() {
        rows.insert(i * 150, envelope.clone());
    }
    outbox.enqueue_batch(&rows).expect("enqueue");

    let relay = Relay::new(
        outbox.clone(),
        RabbitPublisher::new(&config).expect("publisher"),
    )
    .with_config(RelayConfig {
        batch_size: 200,
        ..RelayConfig::default()
    })
    .expect("relay");
    let (published, parked) = drain_on_healthy_broker(&relay).await;
    assert_eq!((published, parked), (good.len(), bad.len()));
    for envelope in &bad {
        let reason = parked_reason(&*outbox, envelope.id).await;
        assert!(reason.contains("unroutable"), "{reason}");
    }
    let stored = common::ids_in(&config, &dest).await;
    assert_eq!(stored.len(), good.len(), "no loss");
    assert!(stored.values().all(|n| *n == 1), "no duplicates");
    assert!(good.iter().all(|e| stored.contains_key(&e.id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_from_a_full_queue_is_retryable() {
    let Some(config) = common::broker().await else {
        return;
    };
    let name = RabbitBackend::fresh_name("full");
    declare_exchange(&config, &name).await.expect("exchange");
    // A quorum queue of 5 messages that refuses more (reject-publish → basic.nack).
    common::raw_queue(
        &name,
        true,
        &[
            ("x-queue-type", AMQPValue::LongString("quorum".into())),
            ("x-max-length", AMQPValue::LongLongInt(5)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ],
        true,
    )
    .await;

    let publisher = RabbitPublisher::new(&config).expect("publisher");
    let envelopes: Vec<Envelope> = (0..30)
        .map(|i| Envelope::new(&name, format!("{i}")))
        .collect();
    let mut confirmed = HashSet::new();
    let mut nacked = 0;
    for envelope in &envelopes {
        match publisher.publish(envelope).await {
            Ok(receipt) => {
                confirmed.insert(receipt.id);
            }
            Err(error) => {
                assert!(matches!(error, Error::NotConfirmed { .. }), "{error}");
                assert!(error.is_retryable(), "a nack is retried by the relay");
                nacked += 1;
            }
        }
    }
    // A quorum queue applies its limit a little late: a few more than 5 may get in.
    assert!(
        nacked >= 15,
        "the full queue refused publishes: {nacked} nacked"
    );
    let stored = common::ids_in(&config, &name).await;
    assert_eq!(
        stored.keys().copied().collect::<HashSet<_>>(),
        confirmed,
        "exactly the confirmed messages are stored, each once"
    );
    assert!(stored.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_settings_and_bad_credentials_are_refused_without_the_password() {
    let url = zerolost_rabbitmq::testkit::test_url();
    for (config, setting) in [
        (RabbitConfig::new(&url).without_confirms(), "confirms"),
        (RabbitConfig::new(&url).transient(), "delivery_mode"),
    ] {
        let error = RabbitPublisher::new(&config).expect_err("refused");
        assert!(matches!(error, RabbitError::Unsafe { setting: ref s, .. } if s == setting));
        let core = Error::from(error);
        assert!(matches!(core, Error::UnsafeConfig { .. }));
        assert!(!core.is_retryable());
    }

    let Some(config) = common::broker().await else {
        return;
    };
    // Allowed explicitly, an unconfirmed publish of a transient message goes through.
    let dest = common::destination(&config, "unsafe", QueueSpec::default()).await;
    let risky = config
        .clone()
        .without_confirms()
        .transient()
        .allow_unsafe("test of the escape hatch");
    let publisher = RabbitPublisher::new(&risky).expect("allowed");
    publisher
        .publish(&Envelope::new(&dest, "fire and forget"))
        .await
        .expect("sent");

    let wrong =
        RabbitConfig::new("amqp://zerolost:not-the-password-hunter2@127.0.0.1:55672/zerolost");
    let publisher = RabbitPublisher::new(&wrong).expect("settings are fine");
    let error = publisher
        .publish(&Envelope::new(&dest, "x"))
        .await
        .expect_err("credentials refused");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        !error.is_retryable(),
        "wrong credentials do not heal: {error}"
    );
}
