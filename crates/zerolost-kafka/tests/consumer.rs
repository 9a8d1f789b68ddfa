//! The zerolost consumer on real Kafka: a consumer process killed between its handler and
//! the offset commit leaves exactly one effect per message; dead letters carry the
//! record's Kafka position and the failure metadata.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
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
use zerolost_sqlx::{InTransaction, SqliteStore, Tables, TransactionalHandler};
use zerolost_testkit::conformance::{eventually_every, test_consumer_config};

const CHILD: &str = "ZLT_KAFKA_CRASH_CHILD";
const MESSAGES: usize = 400;
const CRASH_AT: usize = 150;

/// Records one effect row per handled message, in the inbox's transaction; in the child
/// process it aborts the whole process on its `CRASH_AT`th call, after writing.
struct Effects {
    calls: AtomicUsize,
    crash_at: Option<usize>,
}

#[async_trait]
impl TransactionalHandler<sqlx::Sqlite> for Effects {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut sqlx::SqliteConnection,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (msg_id) VALUES (?)")
            .bind(envelope.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(HandlerError::retryable)?;
        let call = self.calls.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        if self.crash_at == Some(call) {
            eprintln!(
                "child: aborting after the handler's write of message {call}, before any commit"
            );
            std::process::abort();
        }
        Ok(())
    }
}

async fn inbox_store(path: &str) -> SqliteStore {
    let store = SqliteStore::connect(&format!("sqlite://{path}"), Tables::default())
        .await
        .expect("sqlite");
    store.migrate().await.expect("migrate");
    sqlx::query("CREATE TABLE IF NOT EXISTS effects (msg_id TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("effects table");
    store
}

/// Consumes `topic` in group `group` until `stop`, with the SQLite inbox.
async fn consume(
    config: &KafkaConfig,
    topic: &str,
    group: &str,
    store: &SqliteStore,
    crash_at: Option<usize>,
    commit_interval: Duration,
) -> (Consumer, common::Running<zerolost_core::ConsumerTotals>) {
    let inbox = store.inbox();
    let handler = InTransaction::new(
        inbox.clone(),
        Effects {
            calls: AtomicUsize::new(0),
            crash_at,
        },
    );
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
        let store = inbox_store(db).await;
        let _running = consume(
            &config,
            topic,
            group,
            &store,
            Some(CRASH_AT),
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
    let dir = std::env::temp_dir().join("zerolost-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join(format!("{topic}.db")).display().to_string();
    let group = format!("{topic}-group");

    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "consumer_killed_between_handler_and_commit_applies_each_message_once",
            "--nocapture",
        ])
        .env(CHILD, format!("{}|{topic}|{group}|{db}", config.brokers()))
        .status()
        .expect("run the child consumer");
    assert!(
        !status.success(),
        "the child consumer was killed, not finished: {status:?}"
    );

    let store = inbox_store(&db).await;
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(
        before,
        (CRASH_AT - 1) as i64,
        "the crashing message's write rolled back with its inbox row"
    );

    let (consumer, running) = consume(
        &config,
        &topic,
        &group,
        &store,
        None,
        Duration::from_millis(200),
    )
    .await;
    let inbox = store.inbox();
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "the restarted consumer finished every message",
        async || common::finished(&inbox).await >= MESSAGES,
    )
    .await;
    running.stop().await;
    let totals = consumer.totals();

    let rows: Vec<(String,)> = sqlx::query_as("SELECT msg_id FROM effects")
        .fetch_all(store.pool())
        .await
        .expect("effects");
    let mut effects: HashMap<String, usize> = HashMap::new();
    for (id,) in rows {
        *effects.entry(id).or_default() += 1;
    }
    for envelope in &envelopes {
        assert_eq!(
            effects.get(&envelope.id.to_string()),
            Some(&1),
            "one effect for {}",
            envelope.id
        );
    }
    assert_eq!(effects.len(), MESSAGES);
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
