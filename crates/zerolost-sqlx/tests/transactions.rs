//! Transactions on every SQL database: the outbox row commits or rolls back with the
//! business rows; a transactional handler's writes commit with the inbox mark, so failed,
//! panicking and redelivered messages leave exactly one effect; a relay whose lease
//! expired cannot mark rows another relay took over.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::memory::MemoryBroker;
use zerolost_core::{
    CancellationToken, Consumer, ConsumerLedger, DeadLetterPublisher, Envelope, HandlerError,
    MessageId, OutboxStatus, OutboxStore, Outcome, Publisher, Relay, default_dlq_name,
};
use zerolost_sqlx::{InTransaction, TransactionalHandler};
use zerolost_testkit::conformance::{eventually_every, test_consumer_config, test_relay_config};

/// How long a test waits for the consumers, and how often it looks.
const PATIENCE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
use zerolost_testkit::{RecordingPublisher, require_service};

/// Which ids the handler fails (after writing) or panics on, the first time only.
#[derive(Clone, Default)]
struct Trouble {
    fail_once: Arc<Mutex<HashSet<MessageId>>>,
    panic_once: Arc<Mutex<HashSet<MessageId>>>,
}

impl Trouble {
    fn take(set: &Mutex<HashSet<MessageId>>, id: MessageId) -> bool {
        set.lock().unwrap_or_else(|p| p.into_inner()).remove(&id)
    }
}

macro_rules! transaction_tests {
    ($module:ident, $db:ty, $conn:ty, $service:literal) => {
        mod $module {
            use super::*;

            /// Credits an account: one row per effect, keyed by a fresh id, so a second
            /// effect of one message would show as a second row.
            struct Credit {
                table: String,
                trouble: Trouble,
            }

            #[async_trait]
            impl TransactionalHandler<$db> for Credit {
                async fn handle(
                    &self,
                    envelope: &Envelope,
                    tx: &mut $conn,
                ) -> Result<(), HandlerError> {
                    let insert = format!(
                        "INSERT INTO {} (entry_id, msg_id) VALUES (?, ?)",
                        self.table
                    );
                    let insert = if $service == "postgres" {
                        insert.replacen('?', "$1", 1).replacen('?', "$2", 1)
                    } else {
                        insert
                    };
                    sqlx::query(sqlx::AssertSqlSafe(insert))
                        .bind(MessageId::new().to_string())
                        .bind(envelope.id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(HandlerError::retryable)?;
                    if Trouble::take(&self.trouble.fail_once, envelope.id) {
                        return Err(HandlerError::retryable("failed after writing (test)"));
                    }
                    if Trouble::take(&self.trouble.panic_once, envelope.id) {
                        panic!("handler crashed after writing (test)");
                    }
                    Ok(())
                }
            }

            async fn business_table(
                store: &zerolost_sqlx::SqlStore<$db>,
                suffix: &str,
            ) -> String {
                let table = format!("{}_{suffix}", store.tables().outbox_name());
                let ddl = format!(
                    "CREATE TABLE {table} (entry_id VARCHAR(64) PRIMARY KEY, msg_id VARCHAR(64) NOT NULL)"
                );
                sqlx::query(sqlx::AssertSqlSafe(ddl))
                    .execute(store.pool())
                    .await
                    .expect("create business table");
                table
            }

            async fn rows_for(
                store: &zerolost_sqlx::SqlStore<$db>,
                table: &str,
            ) -> std::collections::HashMap<String, i64> {
                let rows: Vec<(String,)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT msg_id FROM {table}")))
                        .fetch_all(store.pool())
                        .await
                        .expect("read business rows");
                let mut counts = std::collections::HashMap::new();
                for (id,) in rows {
                    *counts.entry(id).or_insert(0) += 1;
                }
                counts
            }

            /// A committed row is due at once: the database clock never reads earlier than
            /// the row's creation (SQLite's float `julianday('now')` once came out 1 ms
            /// short about one time in eight, so a row enqueued in the same millisecond
            /// waited for the next poll).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_committed_row_is_leasable_at_once() {
                let Some(store) = require_service($service, common::$module::store().await) else {
                    return;
                };
                let outbox = store.outbox();
                let mut misses = 0;
                for i in 0..300 {
                    let envelope = Envelope::new(format!("due-{i}"), "x");
                    outbox.enqueue_now(std::slice::from_ref(&envelope)).await.expect("enqueue");
                    let leased = outbox.lease(1000, Duration::from_secs(30)).await.expect("lease");
                    if !leased.iter().any(|r| r.envelope.id == envelope.id) {
                        misses += 1;
                    }
                    let leases: Vec<_> = leased.into_iter().map(|r| r.lease).collect();
                    outbox.mark_published(&leases).await.expect("mark");
                }
                assert_eq!(misses, 0, "rows not yet due right after their commit");
            }

            /// A transactional handler whose claim was taken over writes nothing and says
            /// `Interrupted` (not an attempt: no failure is counted); the new holder's run
            /// writes the one effect.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_taken_over_claim_writes_nothing_and_counts_no_attempt() {
                use zerolost_core::{Claim, DedupeStore, Handler, HandlerContext};
                let Some(store) = require_service($service, common::$module::store().await) else {
                    return;
                };
                let table = business_table(&store, "takeover").await;
                let inbox = store.inbox();
                let handler = InTransaction::new(
                    inbox.clone(),
                    Credit { table: table.clone(), trouble: Trouble::default() },
                );
                let env = Envelope::new("payments", "pay 10");
                let Claim::Claimed(stale) = inbox.claim(env.id, Duration::from_millis(200)).await.expect("claim") else {
                    panic!("a fresh id is claimable")
                };
                tokio::time::sleep(Duration::from_millis(400)).await;
                let Claim::Claimed(current) = inbox.claim(env.id, Duration::from_secs(30)).await.expect("claim") else {
                    panic!("an expired claim is taken over")
                };
                assert!(current.fence > stale.fence);
                let late = handler
                    .handle_claimed(&env, &HandlerContext::new(stale, CancellationToken::new()))
                    .await
                    .expect_err("a stale claim cannot complete");
                assert!(late.is_interrupted(), "{late}");
                assert!(rows_for(&store, &table).await.is_empty(), "the stale run wrote nothing");
                assert_eq!(inbox.failures(env.id).await.expect("failures"), None);
                handler
                    .handle_claimed(&env, &HandlerContext::new(current, CancellationToken::new()))
                    .await
                    .expect("the holder's run");
                assert_eq!(rows_for(&store, &table).await.get(&env.id.to_string()), Some(&1));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn outbox_row_commits_and_rolls_back_with_the_business_row() {
                let Some(store) = require_service($service, common::$module::store().await) else {
                    return;
                };
                let orders = business_table(&store, "orders").await;
                let insert = |id: &str| {
                    let sql = format!("INSERT INTO {orders} (entry_id, msg_id) VALUES ('{id}', 'x')");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                };
                let rolled_back = Envelope::new("orders", "order a");
                let mut tx = store.pool().begin().await.expect("begin");
                insert("a").execute(&mut *tx).await.expect("business row");
                store.outbox().enqueue(&mut tx, &rolled_back).await.expect("enqueue");
                tx.rollback().await.expect("rollback");

                let committed = Envelope::new("orders", "order b");
                let mut tx = store.pool().begin().await.expect("begin");
                insert("b").execute(&mut *tx).await.expect("business row");
                store.outbox().enqueue(&mut tx, &committed).await.expect("enqueue");
                tx.commit().await.expect("commit");

                let ids: Vec<MessageId> = store
                    .outbox()
                    .snapshot(None)
                    .await
                    .expect("snapshot")
                    .entries
                    .iter()
                    .map(|e| e.id)
                    .collect();
                assert_eq!(ids, vec![committed.id], "only the committed message is in the outbox");
                let business: Vec<(String,)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT entry_id FROM {orders}")))
                        .fetch_all(store.pool())
                        .await
                        .expect("read");
                assert_eq!(business, vec![("b".to_owned(),)]);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn transactional_handler_applies_each_message_once() {
                let Some(store) = require_service($service, common::$module::store().await) else {
                    return;
                };
                let credits = business_table(&store, "credits").await;
                let broker = MemoryBroker::new();
                broker.declare("credits");
                broker.declare(&default_dlq_name("credits"));
                let messages: Vec<Envelope> =
                    (0..20).map(|i| Envelope::new("credits", format!("credit {i}"))).collect();
                let trouble = Trouble::default();
                trouble.fail_once.lock().expect("lock").extend([messages[1].id, messages[2].id]);
                trouble.panic_once.lock().expect("lock").insert(messages[3].id);
                let inbox = store.inbox();
                let handler = InTransaction::new(
                    inbox.clone(),
                    Credit { table: credits.clone(), trouble: trouble.clone() },
                );
                let consumer = Consumer::new(
                    inbox.clone(),
                    handler,
                    DeadLetterPublisher::new(broker.publisher()),
                )
                .with_config(test_consumer_config())
                .expect("consumer config");
                let stop = CancellationToken::new();
                let subscriber = broker.subscribe("credits").expect("subscribe");
                let task = tokio::spawn({
                    let (consumer, stop) = (consumer.clone(), stop.clone());
                    async move { consumer.run(subscriber, stop).await }
                });
                let publisher = broker.publisher();
                for envelope in &messages {
                    publisher.publish(envelope).await.expect("publish");
                }
                let all_done = async || {
                    inbox.finished(None).await.is_ok_and(|s| s.entries.len() == messages.len())
                };
                eventually_every(PATIENCE, POLL, "every message processed", all_done).await;
                // Redeliveries of finished messages: deduplicated, no second effect.
                publisher.publish(&messages[0]).await.expect("publish again");
                publisher.publish(&messages[1]).await.expect("publish again");
                eventually_every(PATIENCE, POLL, "both redeliveries suppressed", async || {
                    inbox.duplicates_suppressed().await.is_ok_and(|n| n >= 2)
                })
                .await;
                stop.cancel();
                task.await.expect("consumer task").expect("consumer run");

                let effects = rows_for(&store, &credits).await;
                for envelope in &messages {
                    assert_eq!(
                        effects.get(&envelope.id.to_string()),
                        Some(&1),
                        "exactly one effect for {}",
                        envelope.id
                    );
                }
                assert_eq!(effects.len(), messages.len(), "no effect of an unknown message");
                let finished = inbox.finished(None).await.expect("ledger");
                assert!(finished.entries.iter().all(|e| e.outcome == Outcome::Processed));
                assert!(trouble.fail_once.lock().expect("lock").is_empty(), "failures were injected");
                assert!(trouble.panic_once.lock().expect("lock").is_empty(), "panic was injected");
                assert!(broker.messages(&default_dlq_name("credits")).is_empty(), "nothing dead-lettered");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stale_relay_cannot_mark_rows_taken_over() {
                let Some(store) = require_service($service, common::$module::store().await) else {
                    return;
                };
                let outbox = store.outbox();
                let envelopes: Vec<Envelope> =
                    (0..10).map(|i| Envelope::new("orders", format!("{i}"))).collect();
                outbox.enqueue_now(&envelopes).await.expect("enqueue");
                // Relay A leases a batch, then stalls (a GC pause, a partition).
                let stalled = outbox.lease(100, Duration::from_millis(500)).await.expect("lease");
                assert_eq!(stalled.len(), 10);
                tokio::time::sleep(Duration::from_millis(700)).await;
                // Relay B takes the rows over after the lease expired and publishes them.
                let publisher = RecordingPublisher::new();
                let relay = Relay::new(outbox.clone(), publisher.clone())
                    .with_config(test_relay_config())
                    .expect("relay config");
                let round = relay.run_once().await.expect("relay round");
                assert_eq!(round.published, 10, "the expired lease was taken over");
                // A wakes up: its marks are refused.
                let stale: Vec<_> = stalled.iter().map(|r| r.lease.clone()).collect();
                assert_eq!(outbox.mark_published(&stale).await.expect("mark"), 0);
                assert!(!outbox.park(&stale[0], 1, "late").await.expect("park"));
                let snapshot = outbox.snapshot(None).await.expect("snapshot");
                assert!(snapshot.entries.iter().all(|e| e.status == OutboxStatus::Published));
                assert!(publisher.counts().values().all(|n| *n == 1));
                assert_eq!(publisher.counts().len(), 10);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn oversized_payload_is_parked_with_its_reason() {
                let Some(store) = require_service($service, common::$module::store().await) else {
                    return;
                };
                let outbox = store.outbox();
                let small = Envelope::new("orders", "fits");
                let huge = Envelope::new("orders", vec![7_u8; 256 * 1024]);
                outbox.enqueue_now(&[small.clone(), huge.clone()]).await.expect("enqueue");
                let publisher = RecordingPublisher::new().with_max_payload(64 * 1024);
                let relay = Relay::new(outbox.clone(), publisher.clone())
                    .with_config(test_relay_config())
                    .expect("relay config");
                let round = relay.run_once().await.expect("relay round");
                assert_eq!((round.published, round.parked), (1, 1));
                let snapshot = outbox.snapshot(None).await.expect("snapshot");
                let parked = snapshot.entries.iter().find(|e| e.id == huge.id).expect("kept");
                assert_eq!(parked.status, OutboxStatus::Parked);
                assert!(
                    parked.last_error.as_deref().is_some_and(|r| r.contains("exceeds")),
                    "reason kept: {:?}",
                    parked.last_error
                );
                assert_eq!(publisher.counts().keys().collect::<Vec<_>>(), vec![&small.id]);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retention_deletes_only_finished_rows_in_batches() {
                let Some(store) = require_service($service, common::$module::store().await) else {
                    return;
                };
                let outbox = store.outbox();
                let envelopes: Vec<Envelope> =
                    (0..25).map(|i| Envelope::new("orders", format!("{i}"))).collect();
                outbox.enqueue_now(&envelopes).await.expect("enqueue");
                let leased = outbox.lease(20, Duration::from_secs(60)).await.expect("lease");
                let leases: Vec<_> = leased.iter().map(|r| r.lease.clone()).collect();
                assert_eq!(outbox.mark_published(&leases).await.expect("mark"), 20);
                let inbox = store.inbox();
                use zerolost_core::{Claim, DedupeStore};
                let (gone, kept) = (MessageId::new(), MessageId::new());
                for (id, keep) in [(gone, Duration::from_millis(1)), (kept, Duration::from_secs(3600))] {
                    let Claim::Claimed(token) = inbox.claim(id, Duration::from_secs(60)).await.expect("claim") else {
                        panic!("fresh id")
                    };
                    inbox.complete(&token, Outcome::Processed, keep).await.expect("complete");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let retention = zerolost_sqlx::Retention {
                    keep_published: Duration::ZERO,
                    batch: 7,
                    pause: Duration::ZERO,
                    ..Default::default()
                };
                let purged = store.purge(&retention).await.expect("purge");
                assert_eq!(purged, zerolost_sqlx::Purged { outbox: 20, inbox: 1 });
                let left = outbox.snapshot(None).await.expect("snapshot").entries;
                assert_eq!(left.len(), 5, "pending rows are never deleted");
                assert!(left.iter().all(|e| e.status == OutboxStatus::Pending));
                assert!(matches!(inbox.claim(kept, Duration::from_secs(1)).await, Ok(Claim::AlreadyProcessed(_))));
                assert!(matches!(inbox.claim(gone, Duration::from_secs(1)).await, Ok(Claim::Claimed(_))));
            }
        }
    };
}

/// `drop_tables` leaves nothing with the store's prefix behind (tables, PostgreSQL's
/// lease function), so tests and benchmarks can clean up after themselves.
macro_rules! drop_tests {
    ($module:ident, $common:ident, $service:literal) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn drop_tables_leaves_nothing_behind() {
                let Some(store) = require_service($service, common::$common::store().await) else {
                    return;
                };
                let prefix = store.tables().prefix().to_owned();
                let before = common::$common::objects_named(store.pool(), &prefix).await;
                assert!(
                    before.len() >= 3,
                    "the migration made the outbox, inbox and history: {before:?}"
                );
                store.drop_tables().await.expect("drop");
                let after = common::$common::objects_named(store.pool(), &prefix).await;
                assert!(after.is_empty(), "left behind: {after:?}");
            }
        }
    };
}

drop_tests!(pg_drop, pg, "postgres");
drop_tests!(mysql_drop, mysql, "mariadb");

transaction_tests!(pg, sqlx::Postgres, sqlx::PgConnection, "postgres");
transaction_tests!(mysql, sqlx::MySql, sqlx::MySqlConnection, "mariadb");
transaction_tests!(sqlite, sqlx::Sqlite, sqlx::SqliteConnection, "sqlite");
