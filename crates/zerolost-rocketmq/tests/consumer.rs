//! The zerolost consumer on a real RocketMQ: a consumer process killed after its handler
//! committed and before `CONSUME_SUCCESS` reached the client leaves exactly one effect per
//! message (the group's offsets had not moved, so a new member gets the messages again and
//! the SQLite inbox recognises them); a message given back is redelivered through the
//! group's `%RETRY%` topic with its delivery count raised.

mod common;

use std::time::Duration;

use zerolost_core::{Consumer, DeadLetterPublisher, Envelope, Publisher, Subscriber};
use zerolost_rocketmq::testkit::RocketBackend;
use zerolost_rocketmq::{RocketSubscriber, dlq_topic};
use zerolost_sqlx::testkit::{
    EffectsHandler, Fault, assert_each_applied_once, crash_db, effect_counts, effects_store, hung,
};
use zerolost_sqlx::{InTransaction, SqliteStore};
use zerolost_testkit::WithholdingSubscriber;
use zerolost_testkit::conformance::{eventually_every, test_consumer_config};

const CHILD: &str = "ZLT_ROCKET_CRASH_CHILD";
const MESSAGES: usize = 400;
/// Below the subscriber's consume threads (64): each withheld ack keeps a listener waiting.
const CRASH_AFTER: usize = 40;

async fn consumer(backend: &RocketBackend, store: &SqliteStore, fault: Fault) -> Consumer {
    let inbox = store.inbox();
    let handler = InTransaction::new(inbox.clone(), EffectsHandler::new(fault));
    let dlq = DeadLetterPublisher::new(backend.rocket_publisher().await.expect("publisher"))
        .with_naming(dlq_topic);
    Consumer::new(inbox, handler, dlq)
        .with_config(zerolost_core::ConsumerConfig {
            // Claims the dead child held expire soon, so its in-flight messages are taken over.
            claim_lease: Duration::from_secs(3),
            ..test_consumer_config()
        })
        .expect("consumer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_between_handler_and_ack_applies_each_message_once() {
    if let Ok(spec) = std::env::var(CHILD) {
        // The child: handle and commit, never settle; die once CRASH_AFTER are committed.
        let (topic, db) = spec.split_once('|').expect("topic|db");
        let backend = RocketBackend::local().await.expect("broker");
        let store = effects_store(db).await.expect("store");
        let consumer = consumer(&backend, &store, Fault::HangAfter(CRASH_AFTER)).await;
        let subscriber =
            WithholdingSubscriber(backend.rocket_subscriber(topic).await.expect("sub"));
        let _running = common::spawn_consumer(&consumer, subscriber);
        eventually_every(
            Duration::from_secs(60),
            Duration::from_millis(5),
            "the child committed enough and holds claims",
            // One is enough: the hung handler keeps its SQLite transaction open, so the others wait.
            async || hung() >= 1,
        )
        .await;
        eprintln!("child: aborting with committed, unsettled messages and held claims");
        std::process::abort();
    }
    let Some(backend) = RocketBackend::local().await else {
        return;
    };
    let topic = common::fresh_topic("crash").await;
    let envelopes: Vec<Envelope> = (0..MESSAGES)
        .map(|i| Envelope::new(&topic, format!("{{\"credit\":{i}}}")))
        .collect();
    let publisher = backend.rocket_publisher().await.expect("publisher");
    for result in publisher.publish_batch(&envelopes).await {
        result.expect("SEND_OK");
    }
    let db = crash_db(&topic).expect("crash test database");

    let status = zerolost_testkit::run_child_test(
        "consumer_killed_between_handler_and_ack_applies_each_message_once",
        CHILD,
        &format!("{topic}|{db}"),
    );
    assert!(!status.success(), "the child was killed: {status:?}");

    let store = effects_store(&db).await.expect("store");
    let committed = effect_counts(&store).await.expect("effects").len();
    assert_eq!(
        committed, CRASH_AFTER,
        "the child committed its first messages"
    );

    let consumer = consumer(&backend, &store, Fault::None).await;
    let running = common::spawn_consumer(
        &consumer,
        backend.rocket_subscriber(&topic).await.expect("subscriber"),
    );
    let totals = zerolost_testkit::tasks::stop_when_finished(
        running,
        &store.inbox(),
        MESSAGES,
        Duration::from_secs(90),
    )
    .await;

    assert_each_applied_once(&store, &envelopes).await;
    assert!(
        totals.duplicates >= committed as u64,
        "every committed, unsettled message came back and was suppressed: {totals:?}"
    );
    assert_eq!(totals.dead_lettered, 0);
    assert!(
        common::ids_in(&dlq_topic(&topic)).await.is_empty(),
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_back_returns_with_its_delivery_count_raised() {
    let Some(backend) = RocketBackend::local().await else {
        return;
    };
    let topic = common::fresh_topic("count").await;
    let envelope = Envelope::new(&topic, "again").with_header("tenant", "acme");
    let publisher = backend.rocket_publisher().await.expect("publisher");
    publisher.publish(&envelope).await.expect("SEND_OK");
    let mut sub: RocketSubscriber = backend.rocket_subscriber(&topic).await.expect("subscriber");
    let mut seen = Vec::new();
    for round in 1..=3u32 {
        let delivery = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .unwrap_or_else(|_| panic!("delivery {round} within 60 s"))
            .expect("delivery");
        assert_eq!(
            delivery.message.native_id.as_deref(),
            Some(envelope.id.to_string().as_str())
        );
        // A redelivery from the group's %RETRY% topic still names the original topic and
        // carries the application's properties, not RocketMQ's own.
        assert_eq!(delivery.message.destination, topic);
        assert_eq!(
            delivery.message.headers.get("tenant").map(String::as_str),
            Some("acme")
        );
        assert!(
            !delivery
                .message
                .headers
                .keys()
                .any(|k| k == "KEYS" || k == "RETRY_TOPIC"),
            "RocketMQ's own properties are not headers: {:?}",
            delivery.message.headers
        );
        seen.push((delivery.redelivered, delivery.delivery_count));
        if round < 3 {
            delivery.nack(true).await.expect("reconsume later");
        } else {
            delivery.ack().await.expect("consumed");
        }
    }
    assert_eq!(
        seen,
        vec![(false, Some(1)), (true, Some(2)), (true, Some(3))],
        "reconsume times are the delivery count"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(3), sub.next())
            .await
            .is_err(),
        "consumed: nothing more comes"
    );
}
