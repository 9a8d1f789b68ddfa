//! The zerolost consumer on a real RabbitMQ: a consumer process killed after its handler
//! committed and before its acks reached the broker leaves exactly one effect per message
//! (the broker redelivers, the SQLite inbox recognises them); the messages it died holding
//! claims on are taken over when the claims expire, not dead-lettered by the broker.

mod common;

use std::time::Duration;

use zerolost_core::{Consumer, DeadLetterPublisher, Envelope, Publisher};
use zerolost_rabbitmq::{QueueSpec, RabbitConfig, RabbitPublisher, RabbitSubscriber};
use zerolost_sqlx::testkit::{
    EffectsHandler, Fault, assert_each_applied_once, crash_db, effects_store, hung,
};
use zerolost_sqlx::{InTransaction, SqliteStore};
use zerolost_testkit::WithholdingSubscriber;
use zerolost_testkit::conformance::{eventually_every, test_consumer_config};

const CHILD: &str = "ZLT_RABBIT_CRASH_CHILD";
const MESSAGES: usize = 400;
/// Below the prefetch (100): without acks the broker sends no more than that.
const CRASH_AFTER: usize = 80;

fn consumer(config: &RabbitConfig, store: &SqliteStore, fault: Fault) -> Consumer {
    let inbox = store.inbox();
    let handler = InTransaction::new(inbox.clone(), EffectsHandler::new(fault));
    let dlq = DeadLetterPublisher::new(RabbitPublisher::new(config).expect("publisher"));
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
        // The child: handle and commit, never ack; die once CRASH_AFTER are committed.
        let (queue, db) = spec.split_once('|').expect("queue|db");
        let config = common::broker().await.expect("broker");
        let store = effects_store(db).await.expect("store");
        let consumer = consumer(&config, &store, Fault::HangAfter(CRASH_AFTER));
        let subscriber = WithholdingSubscriber(RabbitSubscriber::new(&config, queue).expect("sub"));
        let _running = common::spawn_consumer(&consumer, subscriber);
        eventually_every(
            Duration::from_secs(60),
            Duration::from_millis(5),
            "the child committed enough and holds claims",
            // One is enough: the hung handler keeps its SQLite transaction open, so the others wait.
            async || hung() >= 1,
        )
        .await;
        eprintln!("child: aborting with committed, unacknowledged messages and held claims");
        std::process::abort();
    }
    let Some(config) = common::broker().await else {
        return;
    };
    let queue = common::destination(&config, "crash", QueueSpec::default()).await;
    let envelopes: Vec<Envelope> = (0..MESSAGES)
        .map(|i| Envelope::new(&queue, format!("{{\"credit\":{i}}}")))
        .collect();
    let publisher = RabbitPublisher::new(&config).expect("publisher");
    for result in publisher.publish_batch(&envelopes).await {
        result.expect("confirmed");
    }
    let db = crash_db(&queue).expect("crash test database");

    let status = zerolost_testkit::run_child_test(
        "consumer_killed_between_handler_and_ack_applies_each_message_once",
        CHILD,
        &format!("{queue}|{db}"),
    );
    assert!(!status.success(), "the child was killed: {status:?}");

    let store = effects_store(&db).await.expect("store");
    let committed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(
        committed, CRASH_AFTER as i64,
        "the child committed its first messages"
    );

    let consumer = consumer(&config, &store, Fault::None);
    let running = common::spawn_consumer(
        &consumer,
        RabbitSubscriber::new(&config, &queue).expect("subscriber"),
    );
    let totals = zerolost_testkit::tasks::stop_when_finished(
        running,
        &store.inbox(),
        MESSAGES,
        Duration::from_secs(60),
    )
    .await;

    assert_each_applied_once(&store, &envelopes).await;
    assert!(
        totals.duplicates >= committed as u64,
        "every committed, unacknowledged message came back and was suppressed: {totals:?}"
    );
    assert_eq!(totals.dead_lettered, 0);
    assert!(
        common::ids_in(&config, &queue).await.is_empty(),
        "everything acked in the end"
    );
    assert!(
        common::ids_in(&config, &zerolost_core::default_dlq_name(&queue))
            .await
            .is_empty(),
        "nothing dead-lettered by the broker: messages the dead child still held were waited \
         out, not handed back until the delivery limit ran out"
    );
}
