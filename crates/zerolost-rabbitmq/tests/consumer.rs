//! The zerolost consumer on a real RabbitMQ: a consumer process killed after its handler
//! committed and before its acks reached the broker leaves exactly one effect per message
//! (the broker redelivers, the SQLite inbox recognises them); the messages it died holding
//! claims on are taken over when the claims expire, not dead-lettered by the broker.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::{
    Acknowledger, Consumer, DeadLetterPublisher, Delivery, Envelope, Error, HandlerError,
    Publisher, Subscriber,
};
use zerolost_rabbitmq::{QueueSpec, RabbitConfig, RabbitPublisher, RabbitSubscriber};
use zerolost_sqlx::{InTransaction, SqliteStore, Tables, TransactionalHandler};
use zerolost_testkit::conformance::{eventually_every, test_consumer_config};

const CHILD: &str = "ZLT_RABBIT_CRASH_CHILD";
const MESSAGES: usize = 400;
/// Below the prefetch (100): without acks the broker sends no more than that.
const CRASH_AFTER: usize = 80;

/// Records one effect row per handled message, in the inbox's transaction. In the child,
/// calls after the first `hang_after` hang before writing, so the child dies holding claims.
struct Effects {
    calls: AtomicUsize,
    hang_after: Option<usize>,
}

/// Handlers hanging in the child.
static HUNG: AtomicUsize = AtomicUsize::new(0);

#[async_trait]
impl TransactionalHandler<sqlx::Sqlite> for Effects {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut sqlx::SqliteConnection,
    ) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.hang_after.is_some_and(|n| call > n) {
            HUNG.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        sqlx::query("INSERT INTO effects (msg_id) VALUES (?)")
            .bind(envelope.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(HandlerError::retryable)?;
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

/// Acks that never reach the broker: the deliveries are kept, unsettled, until the
/// process dies (as if it crashed right after each handler committed).
static WITHHELD: Mutex<Vec<Delivery>> = Mutex::new(Vec::new());

struct WithholdAck(Delivery);

#[async_trait]
impl Acknowledger for WithholdAck {
    async fn ack(self: Box<Self>) -> Result<(), Error> {
        WITHHELD.lock().expect("lock").push(self.0);
        Ok(())
    }
    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), Error> {
        self.0.nack(requeue).await
    }
}

struct WithholdingSubscriber(RabbitSubscriber);

#[async_trait]
impl Subscriber for WithholdingSubscriber {
    async fn next(&mut self) -> Result<Delivery, Error> {
        let delivery = self.0.next().await?;
        let (message, redelivered, count) = (
            delivery.message.clone(),
            delivery.redelivered,
            delivery.delivery_count,
        );
        Ok(Delivery::new(
            message,
            redelivered,
            count,
            Box::new(WithholdAck(delivery)),
        ))
    }
}

fn consumer(config: &RabbitConfig, store: &SqliteStore, hang_after: Option<usize>) -> Consumer {
    let inbox = store.inbox();
    let handler = InTransaction::new(
        inbox.clone(),
        Effects {
            calls: AtomicUsize::new(0),
            hang_after,
        },
    );
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
        let store = inbox_store(db).await;
        let consumer = consumer(&config, &store, Some(CRASH_AFTER));
        let subscriber = WithholdingSubscriber(RabbitSubscriber::new(&config, queue).expect("sub"));
        let _running = common::spawn_consumer(&consumer, subscriber);
        eventually_every(
            Duration::from_secs(60),
            Duration::from_millis(5),
            "the child committed enough and holds claims",
            // One is enough: the hung handler keeps its SQLite transaction open, so the others wait.
            async || HUNG.load(Ordering::SeqCst) >= 1,
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
    let dir = std::env::temp_dir().join("zerolost-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join(format!("{queue}.db")).display().to_string();

    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "consumer_killed_between_handler_and_ack_applies_each_message_once",
            "--nocapture",
        ])
        .env(CHILD, format!("{queue}|{db}"))
        .status()
        .expect("run the child consumer");
    assert!(!status.success(), "the child was killed: {status:?}");

    let store = inbox_store(&db).await;
    let committed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(
        committed, CRASH_AFTER as i64,
        "the child committed its first messages"
    );

    let consumer = consumer(&config, &store, None);
    let running = common::spawn_consumer(
        &consumer,
        RabbitSubscriber::new(&config, &queue).expect("subscriber"),
    );
    let inbox = store.inbox();
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(50),
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
