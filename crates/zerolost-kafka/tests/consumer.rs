//! The zerolost consumer on real Kafka: a consumer process killed between its handler and
//! the offset commit leaves exactly one effect per message; dead letters carry the
//! record's Kafka position and the failure metadata.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::{
    Consumer, DeadLetterPublisher, Envelope, Failure, Handler, HandlerError, Publisher,
    default_dlq_name,
};
use zerolost_kafka::{
    KafkaConfig, KafkaPublisher, KafkaSubscriber, OFFSET_HEADER, PARTITION_HEADER,
    SubscriberOptions, TOPIC_HEADER, TopicSpec, topic_contents,
};
use zerolost_sqlx::testkit::{
    EffectsHandler, Fault, assert_each_applied_once, crash_db, effects_store,
};
use zerolost_sqlx::{InTransaction, SqliteStore};
use zerolost_testkit::conformance::{eventually_every, test_consumer_config};

const CHILD: &str = "ZLT_KAFKA_CRASH_CHILD";
const MESSAGES: usize = 400;
const CRASH_AT: usize = 150;

/// Consumes `topic` in group `group` until `stop`, with the SQLite inbox.
async fn consume(
    config: &KafkaConfig,
    topic: &str,
    group: &str,
    store: &SqliteStore,
    fault: Fault,
    commit_interval: Duration,
) -> (Consumer, common::Running<zerolost_core::ConsumerTotals>) {
    let inbox = store.inbox();
    let handler = InTransaction::new(inbox.clone(), EffectsHandler::new(fault));
    let dlq = DeadLetterPublisher::new(KafkaPublisher::new(config).expect("publisher"));
    let consumer = Consumer::new(inbox, handler, dlq)
        .with_config(test_consumer_config())
        .expect("consumer");
    let subscriber = KafkaSubscriber::with_options(
        config,
        group,
        &[topic],
        SubscriberOptions {
            commit_interval,
            ..Default::default()
        },
    )
    .expect("subscriber");
    let running = common::spawn_consumer(&consumer, subscriber);
    (consumer, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_between_handler_and_commit_applies_each_message_once() {
    if let Ok(spec) = std::env::var(CHILD) {
        // The child: consume without ever committing an offset, then abort mid-handler.
        let mut parts = spec.splitn(4, '|');
        let (brokers, topic, group, db) = (
            parts.next().expect("brokers"),
            parts.next().expect("topic"),
            parts.next().expect("group"),
            parts.next().expect("db"),
        );
        let config = KafkaConfig::new(brokers).set("session.timeout.ms", "6000");
        let store = effects_store(db).await.expect("store");
        let _running = consume(
            &config,
            topic,
            group,
            &store,
            Fault::AbortAt(CRASH_AT),
            Duration::from_secs(3600),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        panic!("child: the crash point was never reached");
    }
    let Some(config) = common::single_node().await else {
        return;
    };
    // The dead child's membership ends after the session timeout (the broker's minimum).
    let config = config.set("session.timeout.ms", "6000");
    let topic = common::topic_with_dlq(&config, "crash", TopicSpec::SINGLE_NODE).await;
    let envelopes: Vec<Envelope> = (0..MESSAGES)
        .map(|i| Envelope::new(&topic, format!("{{\"credit\":{i}}}")))
        .collect();
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    for result in publisher.publish_batch(&envelopes).await {
        result.expect("confirmed");
    }
    let db = crash_db(&topic).expect("crash test database");
    let group = format!("{topic}-group");

    let status = zerolost_testkit::run_child_test(
        "consumer_killed_between_handler_and_commit_applies_each_message_once",
        CHILD,
        &format!("{}|{topic}|{group}|{db}", config.brokers()),
    );
    assert!(
        !status.success(),
        "the child consumer was killed, not finished: {status:?}"
    );

    let store = effects_store(&db).await.expect("store");
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(
        before,
        (CRASH_AT - 1) as i64,
        "the crashing message's write rolled back with its inbox row"
    );

    let (_consumer, running) = consume(
        &config,
        &topic,
        &group,
        &store,
        Fault::None,
        Duration::from_millis(200),
    )
    .await;
    let totals = zerolost_testkit::tasks::stop_when_finished(
        running,
        &store.inbox(),
        MESSAGES,
        Duration::from_secs(60),
    )
    .await;

    assert_each_applied_once(&store, &envelopes).await;
    assert!(
        totals.duplicates >= (CRASH_AT - 1) as u64,
        "the child's uncommitted messages came back and were suppressed: {totals:?}"
    );
    assert_eq!(totals.dead_lettered, 0);
}

/// Fails every message of one key permanently.
struct RejectPoison;

#[async_trait]
impl Handler for RejectPoison {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        if envelope.key.as_deref() == Some("poison") {
            Err(HandlerError::permanent("cannot parse the order (test)"))
        } else {
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_carry_the_kafka_position_and_failure() {
    let Some(config) = common::single_node().await else {
        return;
    };
    let topic = common::topic_with_dlq(&config, "dlq", TopicSpec::SINGLE_NODE).await;
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let poison = Envelope::new(&topic, "not json").with_key("poison");
    let fine = Envelope::new(&topic, "{}").with_key("fine");
    let poison_at = publisher
        .publish(&poison)
        .await
        .expect("publish")
        .position
        .expect("position");
    publisher.publish(&fine).await.expect("publish");

    let dedupe = Arc::new(zerolost_core::memory::MemoryDedupe::new());
    let consumer = Consumer::new(
        dedupe.clone(),
        RejectPoison,
        DeadLetterPublisher::new(publisher.clone()),
    )
    .with_config(test_consumer_config())
    .expect("consumer");
    let subscriber =
        KafkaSubscriber::new(&config, &format!("{topic}-group"), &[&topic]).expect("subscriber");
    let running = common::spawn_consumer(&consumer, subscriber);
    eventually_every(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "both messages finished",
        async || common::finished(&*dedupe).await >= 2,
    )
    .await;
    running.stop().await;

    let dead = topic_contents(&config, &default_dlq_name(&topic))
        .await
        .expect("read the DLQ");
    assert_eq!(dead.len(), 1, "only the poison message is dead-lettered");
    let letter = &dead[0];
    assert_eq!(letter.payload.as_ref(), b"not json");
    assert_eq!(
        letter.headers.get(zerolost_core::MESSAGE_ID_HEADER),
        Some(&poison.id.to_string())
    );
    assert_eq!(letter.headers.get(TOPIC_HEADER), Some(&topic));
    let (partition, offset) = poison_at.split_once('/').expect("partition/offset");
    assert_eq!(
        letter.headers.get(PARTITION_HEADER),
        Some(&partition.to_owned()),
        "original partition"
    );
    assert_eq!(
        letter.headers.get(OFFSET_HEADER),
        Some(&offset.to_owned()),
        "original offset"
    );
    let failure = Failure::from_headers(&letter.headers).expect("failure metadata");
    assert_eq!(failure.attempts, 1);
    assert_eq!(failure.original_destination, topic);
    assert!(failure.error.contains("cannot parse"), "{}", failure.error);
}

/// A poison record whose dead-letter copy (payload plus failure headers) is over the DLQ
/// topic's `max.message.bytes`: the DLQ refuses it for good. It is kept in the consumers'
/// store, listed with the DLQ, and the partition's committed offset moves past it and past
/// the record behind it (one partition), which is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_dlq_refuses_is_parked_and_the_partition_moves_on() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use zerolost_core::redrive::DeadLetterQueue;

    let Some(config) = common::single_node().await else {
        return;
    };
    let topic = common::fresh_topic("dlq-refuses");
    // One partition: the record behind the poison is in its partition.
    let one = TopicSpec {
        partitions: 1,
        ..TopicSpec::SINGLE_NODE
    };
    zerolost_kafka::ensure_topic(&config, &topic, one)
        .await
        .expect("topic");
    let admin: AdminClient<_> = config.admin_config().create().expect("admin");
    let dlq_name = default_dlq_name(&topic);
    let dlq_topic =
        NewTopic::new(&dlq_name, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "4096");
    for result in admin
        .create_topics([&dlq_topic], &AdminOptions::new())
        .await
        .expect("create the DLQ")
    {
        result.expect("DLQ created");
    }
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let poison = Envelope::new(&topic, vec![b'x'; 4000]).with_key("poison");
    let behind = Envelope::new(&topic, "{}").with_key("fine");
    let at = publisher
        .publish(&poison)
        .await
        .expect("publish")
        .position
        .expect("position");
    publisher.publish(&behind).await.expect("publish");
    let (partition, offset) = at.split_once('/').expect("partition/offset");
    let (partition, offset): (i32, i64) =
        (partition.parse().expect("p"), offset.parse().expect("o"));

    let dedupe = Arc::new(zerolost_core::memory::MemoryDedupe::new());
    let consumer = Consumer::new(
        dedupe.clone(),
        RejectPoison,
        DeadLetterPublisher::new(publisher.clone()),
    )
    .with_config(test_consumer_config())
    .expect("consumer");
    let group = format!("{topic}-group");
    let subscriber = KafkaSubscriber::new(&config, &group, &[&topic]).expect("subscriber");
    let running = common::spawn_consumer(&consumer, subscriber);
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(50),
        "both finished",
        async || {
            let t = consumer.totals();
            t.dead_lettered == 1 && t.processed == 1
        },
    )
    .await;
    running.stop().await;

    let parked = zerolost_core::ConsumerLedger::parked_dead_letters(&*dedupe, &topic)
        .await
        .expect("parked");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].envelope.id, poison.id);
    assert!(
        parked[0].refused.to_lowercase().contains("large"),
        "{}",
        parked[0].refused
    );
    let listed = zerolost_core::parking::WithParked::new(
        Arc::new(zerolost_kafka::dead_letters(&config).expect("dlq")),
        dedupe.clone(),
    )
    .list(&topic)
    .await
    .expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, Some(poison.id));
    assert!(listed[0].parked.is_some());

    let reader: BaseConsumer = config
        .consumer_config(&group)
        .expect("config")
        .create()
        .expect("consumer");
    let mut wanted = rdkafka::TopicPartitionList::new();
    wanted.add_partition(&topic, partition);
    let committed = reader
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("committed");
    let position = committed
        .find_partition(&topic, partition)
        .and_then(|p| p.offset().to_raw())
        .expect("a committed offset");
    assert!(
        position >= offset + 2,
        "committed {position}, poison at {offset}"
    );
}
