//! The stores: [`SqlStore`] (schema, pool, retention), [`SqlOutbox`] and [`SqlInbox`].
//! Their behaviour is written once in [`sql_backend!`] and instantiated per database.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Database, Pool};

use crate::dialect::Statements;

/// zerolost's tables in one database: migrations, the outbox, the inbox and retention.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::Envelope;
/// use zerolost_sqlx::{SqliteStore, Tables};
///
/// let store = SqliteStore::connect("sqlite://app.db", Tables::default()).await?;
/// store.migrate().await?;
/// let mut tx = store.pool().begin().await.map_err(zerolost_sqlx::begin_error)?;
/// // ... the business rows, on `&mut *tx` ...
/// store.outbox().enqueue(&mut tx, &Envelope::new("orders", "order 42 paid")).await?;
/// tx.commit().await.map_err(zerolost_sqlx::begin_error)?;
/// # Ok(()) }
/// ```
pub struct SqlStore<DB: Database> {
    pub(crate) pool: Pool<DB>,
    pub(crate) sql: Arc<Statements>,
    /// The inbox's group-commit writer (SQLite), shared by every inbox of the store.
    pub(crate) group: crate::group::GroupCommit,
}

/// The outbox table as an [`OutboxStore`](zerolost_core::OutboxStore), plus `enqueue` in the
/// caller's transaction.
pub struct SqlOutbox<DB: Database> {
    pub(crate) pool: Pool<DB>,
    pub(crate) sql: Arc<Statements>,
}

/// The inbox table as a [`DedupeStore`](zerolost_core::DedupeStore) and
/// [`ConsumerLedger`](zerolost_core::ConsumerLedger); with
/// [`InTransaction`](crate::InTransaction) its processed mark commits with the handler's
/// own writes.
pub struct SqlInbox<DB: Database> {
    pub(crate) pool: Pool<DB>,
    pub(crate) sql: Arc<Statements>,
    pub(crate) group: crate::group::GroupCommit,
}

macro_rules! clone_store {
    ($t:ident $(, $extra:ident)*) => {
        impl<DB: Database> Clone for $t<DB> {
            fn clone(&self) -> Self {
                Self { pool: self.pool.clone(), sql: self.sql.clone() $(, $extra: self.$extra.clone())* }
            }
        }
        impl<DB: Database> std::fmt::Debug for $t<DB> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("database", &self.sql.dialect.name())
                    .field("outbox", &self.sql.outbox)
                    .field("inbox", &self.sql.inbox)
                    .finish()
            }
        }
    };
}
clone_store!(SqlStore, group);
clone_store!(SqlOutbox);
clone_store!(SqlInbox, group);

impl<DB: Database> SqlStore<DB> {
    /// The table names this store uses.
    pub fn tables(&self) -> &crate::Tables {
        &self.sql.tables
    }
}

/// How long finished rows are kept, and how retention deletes them.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Published outbox rows older than this are deleted (default 7 days).
    pub keep_published: Duration,
    /// Free inbox rows (failure counters of messages not being processed) untouched for
    /// this long are deleted (default 7 days). Finished inbox rows go when their `keep_for`
    /// (set by the consumer) ends.
    pub keep_failures: Duration,
    /// Rows per DELETE, so no statement holds locks for long (default 1000).
    pub batch: usize,
    /// Pause between batches, to leave room for the application (default 10 ms).
    pub pause: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_published: Duration::from_secs(7 * 24 * 3600),
            keep_failures: Duration::from_secs(7 * 24 * 3600),
            batch: 1000,
            pause: Duration::from_millis(10),
        }
    }
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Published outbox rows.
    pub outbox: u64,
    /// Finished or stale inbox rows.
    pub inbox: u64,
}

/// Maps an error from `pool.begin()` / `tx.commit()` in application code to a core error.
pub fn begin_error(error: sqlx::Error) -> zerolost_core::Error {
    crate::SqlError::Database {
        database: "sql",
        operation: "transaction",
        source: error,
    }
    .into()
}

/// The per-status row counts of an outbox: `(status, rows, leased rows, oldest created_at)`.
#[async_trait::async_trait]
pub(crate) trait CountRows {
    async fn count_rows(&self) -> Result<Vec<(i16, i64, i64, Option<i64>)>, sqlx::Error>;
}

/// Implements the stores for one database. The invoking module provides the database's
/// own pieces: `check_tables`, `connect_pool`, `bind_ids`, `db_lease`, `db_claim`.
macro_rules! sql_backend {
    ($db:ty, $conn:ty, $dialect:expr) => {
        const NAME: &str = $dialect.name();

        fn db_err(operation: &'static str) -> impl Fn(sqlx::Error) -> $crate::SqlError {
            $crate::SqlError::db(NAME, operation)
        }

        impl $crate::SqlStore<$db> {
            /// Stores on `pool` using `tables`.
            pub fn new(pool: sqlx::Pool<$db>, tables: $crate::Tables) -> Self {
                let sql = std::sync::Arc::new($crate::dialect::Statements::new($dialect, &tables));
                Self { pool, sql, group: Default::default() }
            }

            /// Connects a pool to `url` (the password never appears in errors).
            pub async fn connect(
                url: &str,
                tables: $crate::Tables,
            ) -> Result<Self, zerolost_core::Error> {
                check_tables(&tables)?;
                let pool = connect_pool(url).await.map_err(|e| {
                    zerolost_core::Error::unavailable(
                        &zerolost_core::redact_url(url),
                        $crate::SqlError::Database { database: NAME, operation: "connect", source: e },
                    )
                })?;
                Ok(Self::new(pool, tables))
            }

            /// Creates or upgrades the outbox and inbox tables (sqlx migrations, recorded in
            /// `{prefix}migrations`). Safe to run from many processes at once.
            pub async fn migrate(&self) -> Result<(), zerolost_core::Error> {
                let migrations = self
                    .sql
                    .migrations()
                    .into_iter()
                    .map(|(version, description, sql)| {
                        sqlx::migrate::Migration::new(
                            version,
                            description.into(),
                            sqlx::migrate::MigrationType::Simple,
                            sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)),
                            false,
                        )
                    })
                    .collect();
                let mut migrator = sqlx::migrate::Migrator::with_migrations(migrations);
                let tables = &self.sql.tables;
                let history = match tables.schema() {
                    Some(schema) => format!("{schema}.{}", tables.migrations_name()),
                    None => tables.migrations_name(),
                };
                migrator.dangerous_set_table_name(history);
                if let Some(schema) = tables.schema() {
                    migrator.create_schema(schema.to_owned());
                }
                migrator
                    .run(&self.pool)
                    .await
                    .map_err(|e| zerolost_core::Error::from($crate::SqlError::Migrate(e)))
            }

            /// The migration versions not yet applied to this database (empty when the
            /// tables are current): what `zerolost doctor` reports. A missing history
            /// table means none is applied.
            pub async fn pending_migrations(&self) -> Result<Vec<i64>, zerolost_core::Error> {
                use sqlx::Row;
                let tables = &self.sql.tables;
                let q = $dialect.quote();
                let history = tables.qualified(&tables.migrations_name(), q);
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("reachability check"))?;
                let applied: Vec<i64> = match sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT version FROM {history} WHERE success"
                )))
                .fetch_all(&self.pool)
                .await
                {
                    Ok(rows) => rows
                        .iter()
                        .filter_map(|row| row.try_get::<i64, _>("version").ok())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                Ok(self
                    .sql
                    .migrations()
                    .into_iter()
                    .map(|(version, _, _)| version)
                    .filter(|version| !applied.contains(version))
                    .collect())
            }

            /// Drops zerolost's tables (outbox, inbox, migration history, PostgreSQL's lease
            /// function) and everything in them: for tests and benchmarks, never for a store
            /// in use.
            pub async fn drop_tables(&self) -> Result<(), zerolost_core::Error> {
                for sql in self.sql.drop_statements() {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&self.pool)
                        .await
                        .map_err(db_err("drop tables"))?;
                }
                Ok(())
            }

            /// The connection pool (begin the application's transactions here).
            pub fn pool(&self) -> &sqlx::Pool<$db> {
                &self.pool
            }

            /// The outbox.
            pub fn outbox(&self) -> $crate::SqlOutbox<$db> {
                $crate::SqlOutbox { pool: self.pool.clone(), sql: self.sql.clone() }
            }

            /// The inbox.
            pub fn inbox(&self) -> $crate::SqlInbox<$db> {
                $crate::SqlInbox {
                    pool: self.pool.clone(),
                    sql: self.sql.clone(),
                    group: self.group.clone(),
                }
            }

            /// Deletes published outbox rows and finished inbox rows past their window, in
            /// batches of `retention.batch`, until none are left.
            pub async fn purge(
                &self,
                retention: &$crate::Retention,
            ) -> Result<$crate::Purged, zerolost_core::Error> {
                let batch = i64::try_from(retention.batch.max(1)).unwrap_or(1000);
                let mut purged = $crate::Purged::default();
                for (statement, keep, count) in [
                    (&self.sql.purge_outbox, retention.keep_published, &mut purged.outbox),
                    (&self.sql.purge_inbox, retention.keep_failures, &mut purged.inbox),
                ] {
                    loop {
                        let deleted = sqlx::query(sqlx::AssertSqlSafe(statement.as_str()))
                            .bind($crate::rows::millis(keep))
                            .bind(batch)
                            .execute(&self.pool)
                            .await
                            .map_err(db_err("purge"))?
                            .rows_affected();
                        *count += deleted;
                        if deleted < batch as u64 {
                            break;
                        }
                        tokio::time::sleep(retention.pause).await;
                    }
                }
                Ok(purged)
            }
        }

        impl $crate::SqlOutbox<$db> {
            /// Adds `envelope` to the outbox in the caller's transaction, so it commits or
            /// rolls back with the business rows. A duplicate id is refused.
            pub async fn enqueue(
                &self,
                conn: &mut $conn,
                envelope: &zerolost_core::Envelope,
            ) -> Result<(), zerolost_core::Error> {
                self.enqueue_batch(conn, std::slice::from_ref(envelope)).await
            }

            /// Adds many envelopes in the caller's transaction with multi-row INSERTs.
            pub async fn enqueue_batch(
                &self,
                conn: &mut $conn,
                envelopes: &[zerolost_core::Envelope],
            ) -> Result<(), zerolost_core::Error> {
                let rows = envelopes
                    .iter()
                    .map($crate::rows::NewRow::from_envelope)
                    .collect::<Result<Vec<_>, _>>()?;
                for chunk in rows.chunks($crate::rows::INSERT_CHUNK) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(&self.sql.enqueue_prefix);
                    insert.push_values(chunk, |mut b, row| {
                        b.push_bind(row.id)
                            .push_bind(row.destination)
                            .push_bind(row.key)
                            .push_bind(row.headers.as_str())
                            .push_bind(row.payload)
                            .push_bind($crate::rows::PENDING)
                            .push_bind(0_i32)
                            .push_bind(row.created_at)
                            .push_bind(row.created_at);
                    });
                    insert.build().execute(&mut *conn).await.map_err(|e| match e {
                        sqlx::Error::Database(db) if db.is_unique_violation() => {
                            $crate::SqlError::DuplicateId(if chunk.len() == 1 {
                                chunk[0].id.to_string()
                            } else {
                                format!("one of {} ids in this batch", chunk.len())
                            })
                        }
                        other => db_err("enqueue")(other),
                    })?;
                }
                Ok(())
            }

            /// Adds envelopes in a transaction of their own (when there are no business
            /// rows to commit with them).
            pub async fn enqueue_now(
                &self,
                envelopes: &[zerolost_core::Envelope],
            ) -> Result<(), zerolost_core::Error> {
                let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
                self.enqueue_batch(&mut tx, envelopes).await?;
                tx.commit().await.map_err(db_err("commit"))?;
                Ok(())
            }

            async fn update_ids(
                &self,
                operation: &'static str,
                prefix: &str,
                token: Option<uuid::Uuid>,
                ids: &[uuid::Uuid],
            ) -> Result<usize, zerolost_core::Error> {
                let mut total = 0;
                for chunk in ids.chunks($crate::rows::INSERT_CHUNK) {
                    let sql = self.sql.with_ids(prefix, chunk.len());
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    if let Some(token) = token {
                        query = query.bind(token);
                    }
                    let done = bind_ids(query, chunk)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err(operation))?;
                    total += usize::try_from(done.rows_affected()).unwrap_or(usize::MAX);
                }
                Ok(total)
            }

            async fn update_leases(
                &self,
                operation: &'static str,
                prefix: &str,
                leases: &[zerolost_core::Lease],
            ) -> Result<usize, zerolost_core::Error> {
                let mut by_token: std::collections::BTreeMap<uuid::Uuid, Vec<uuid::Uuid>> =
                    Default::default();
                for lease in leases {
                    by_token.entry(lease.token).or_default().push(*lease.id.as_uuid());
                }
                let mut total = 0;
                for (token, ids) in by_token {
                    total += self.update_ids(operation, prefix, Some(token), &ids).await?;
                }
                Ok(total)
            }
        }

        #[async_trait::async_trait]
        impl zerolost_core::OutboxStore for $crate::SqlOutbox<$db> {
            async fn lease(
                &self,
                max: usize,
                lease_for: std::time::Duration,
            ) -> Result<Vec<zerolost_core::OutboxRecord>, zerolost_core::Error> {
                if max == 0 {
                    return Ok(Vec::new());
                }
                let token = uuid::Uuid::new_v4();
                let limit = i64::try_from(max).unwrap_or(i64::MAX);
                let rows = db_lease(&self.pool, &self.sql, limit, $crate::rows::millis(lease_for), token)
                    .await
                    .map_err(db_err("lease"))?;
                let records = rows
                    .into_iter()
                    .map(|row| row.into_record(token))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok($crate::rows::in_order(records))
            }

            async fn mark_published(
                &self,
                leases: &[zerolost_core::Lease],
            ) -> Result<usize, zerolost_core::Error> {
                self.update_leases("mark_published", &self.sql.mark_prefix, leases).await
            }

            async fn reschedule(
                &self,
                lease: &zerolost_core::Lease,
                attempts: u32,
                retry_in: std::time::Duration,
                error: &str,
            ) -> Result<bool, zerolost_core::Error> {
                let done = sqlx::query(sqlx::AssertSqlSafe(self.sql.reschedule.as_str()))
                    .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
                    .bind($crate::rows::millis(retry_in))
                    .bind(error)
                    .bind(*lease.id.as_uuid())
                    .bind(lease.token)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("reschedule"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn park(
                &self,
                lease: &zerolost_core::Lease,
                attempts: u32,
                reason: &str,
            ) -> Result<bool, zerolost_core::Error> {
                let done = sqlx::query(sqlx::AssertSqlSafe(self.sql.park.as_str()))
                    .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
                    .bind(reason)
                    .bind(*lease.id.as_uuid())
                    .bind(lease.token)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("park"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn release(
                &self,
                leases: &[zerolost_core::Lease],
            ) -> Result<usize, zerolost_core::Error> {
                self.update_leases("release", &self.sql.release_prefix, leases).await
            }

            async fn requeue(
                &self,
                ids: &[zerolost_core::MessageId],
            ) -> Result<usize, zerolost_core::Error> {
                let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
                self.update_ids("requeue", &self.sql.requeue_prefix, None, &ids).await
            }

            async fn snapshot(
                &self,
                since: Option<chrono::DateTime<chrono::Utc>>,
            ) -> Result<zerolost_core::Snapshot<zerolost_core::OutboxEntry>, zerolost_core::Error> {
                use sqlx::Row;
                let taken_at = chrono::Utc::now();
                let rows = match since {
                    Some(since) => sqlx::query(sqlx::AssertSqlSafe(self.sql.snapshot_since.as_str()))
                        .bind(since.timestamp_millis())
                        .fetch_all(&self.pool)
                        .await,
                    None => sqlx::query(sqlx::AssertSqlSafe(self.sql.snapshot.as_str()))
                        .fetch_all(&self.pool)
                        .await,
                }
                .map_err(db_err("snapshot"))?;
                let read = |row: &<$db as sqlx::Database>::Row| -> Result<$crate::rows::EntryRow, sqlx::Error> {
                    Ok($crate::rows::EntryRow {
                        id: row.try_get("id")?,
                        destination: row.try_get("destination")?,
                        status: row.try_get("status")?,
                        attempts: row.try_get("attempts")?,
                        lease_expires_at: row.try_get("lease_expires_at")?,
                        last_error: row.try_get("last_error")?,
                        created_at: row.try_get("created_at")?,
                        published_at: row.try_get("published_at")?,
                        now: row.try_get("now_ms")?,
                    })
                };
                let mut entries = Vec::with_capacity(rows.len());
                for row in &rows {
                    entries.push(read(row).map_err(db_err("snapshot"))?.into_entry()?);
                }
                entries.sort_by_key(|e| e.id);
                Ok(zerolost_core::Snapshot { taken_at, entries })
            }

            async fn counts(&self) -> Result<zerolost_core::OutboxCounts, zerolost_core::Error> {
                let rows = $crate::store::CountRows::count_rows(self)
                    .await
                    .map_err(db_err("counts"))?;
                Ok($crate::rows::counts(&rows))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::CountRows for $crate::SqlOutbox<$db> {
            async fn count_rows(&self) -> Result<Vec<(i16, i64, i64, Option<i64>)>, sqlx::Error> {
                use sqlx::Row;
                let rows = sqlx::query(sqlx::AssertSqlSafe(self.sql.counts.as_str()))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok((
                            row.try_get("status")?,
                            row.try_get("n")?,
                            row.try_get("leased")?,
                            row.try_get("oldest")?,
                        ))
                    })
                    .collect()
            }
        }

        /// Reads a leased row.
        fn leased_row(row: &<$db as sqlx::Database>::Row) -> Result<$crate::rows::LeasedRow, sqlx::Error> {
            use sqlx::Row;
            Ok($crate::rows::LeasedRow {
                id: row.try_get("id")?,
                destination: row.try_get("destination")?,
                key: row.try_get("msg_key")?,
                headers: row.try_get("headers")?,
                payload: row.try_get("payload")?,
                attempts: row.try_get("attempts")?,
                created_at: row.try_get("created_at")?,
            })
        }

        impl $crate::SqlInbox<$db> {
            /// Marks the claim finished on `conn`, inside the caller's transaction: the mark
            /// commits or rolls back with the handler's own writes. Idempotent per token;
            /// `LeaseLost` when the claim was taken over.
            pub async fn complete_in(
                &self,
                conn: &mut $conn,
                token: &zerolost_core::ClaimToken,
                outcome: zerolost_core::Outcome,
                keep_for: std::time::Duration,
            ) -> Result<(), zerolost_core::Error> {
                db_complete(conn, &self.sql, token, outcome, keep_for).await
            }
        }

        /// Marks the claim `token` finished with `outcome` on `conn`; `LeaseLost` when the
        /// claim was taken over.
        pub(crate) async fn db_complete(
            conn: &mut $conn,
            sql: &$crate::dialect::Statements,
            token: &zerolost_core::ClaimToken,
            outcome: zerolost_core::Outcome,
            keep_for: std::time::Duration,
        ) -> Result<(), zerolost_core::Error> {
            let state = $crate::rows::outcome_state(outcome);
            let done = sqlx::query(sqlx::AssertSqlSafe(sql.complete.as_str()))
                .bind(state)
                .bind($crate::rows::millis(keep_for))
                .bind(*token.id.as_uuid())
                .bind(token.token)
                .bind(state)
                .execute(&mut *conn)
                .await
                .map_err(db_err("complete"))?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(zerolost_core::Error::LeaseLost { id: token.id })
            }
        }

        #[async_trait::async_trait]
        impl zerolost_core::DedupeStore for $crate::SqlInbox<$db> {
            async fn claim(
                &self,
                id: zerolost_core::MessageId,
                lease: std::time::Duration,
            ) -> Result<zerolost_core::Claim, zerolost_core::Error> {
                let token = zerolost_core::ClaimToken::new(id);
                let state = inbox_claim(self, &token, $crate::rows::millis(lease)).await?;
                Ok(match state {
                    $crate::dialect::ClaimState::Claimed(fence) => zerolost_core::Claim::Claimed(
                        token.with_fence(u64::try_from(fence).unwrap_or_default()),
                    ),
                    $crate::dialect::ClaimState::Finished(state) => {
                        match $crate::rows::state_outcome(state) {
                            Some(outcome) => zerolost_core::Claim::AlreadyProcessed(outcome),
                            None => zerolost_core::Claim::HeldByOther,
                        }
                    }
                    $crate::dialect::ClaimState::Held => zerolost_core::Claim::HeldByOther,
                })
            }

            async fn extend(
                &self,
                token: &zerolost_core::ClaimToken,
                lease: std::time::Duration,
            ) -> Result<(), zerolost_core::Error> {
                let done = sqlx::query(sqlx::AssertSqlSafe(self.sql.extend_claim.as_str()))
                    .bind($crate::rows::millis(lease))
                    .bind(*token.id.as_uuid())
                    .bind(token.token)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("extend"))?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(zerolost_core::Error::LeaseLost { id: token.id })
                }
            }

            async fn complete(
                &self,
                token: &zerolost_core::ClaimToken,
                outcome: zerolost_core::Outcome,
                keep_for: std::time::Duration,
            ) -> Result<(), zerolost_core::Error> {
                inbox_complete(self, token, outcome, keep_for).await
            }

            async fn release(
                &self,
                token: &zerolost_core::ClaimToken,
            ) -> Result<(), zerolost_core::Error> {
                let done = sqlx::query(sqlx::AssertSqlSafe(self.sql.release_claim.as_str()))
                    .bind(*token.id.as_uuid())
                    .bind(token.token)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("release"))?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(zerolost_core::Error::LeaseLost { id: token.id })
                }
            }

            async fn failures(
                &self,
                id: zerolost_core::MessageId,
            ) -> Result<Option<zerolost_core::FailureRecord>, zerolost_core::Error> {
                use sqlx::Row;
                let row = sqlx::query(sqlx::AssertSqlSafe(self.sql.failures.as_str()))
                    .bind(*id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("failures"))?;
                let Some(row) = row else { return Ok(None) };
                let read = || -> Result<_, sqlx::Error> {
                    Ok($crate::rows::failure_record(
                        row.try_get("attempts")?,
                        row.try_get("first_failure_at")?,
                        row.try_get("last_failure_at")?,
                        row.try_get("last_error")?,
                    ))
                };
                Ok(read().map_err(db_err("failures"))?)
            }

            async fn record_failure(
                &self,
                id: zerolost_core::MessageId,
                error: &str,
            ) -> Result<zerolost_core::FailureRecord, zerolost_core::Error> {
                sqlx::query(sqlx::AssertSqlSafe(self.sql.record_failure.as_str()))
                    .bind(*id.as_uuid())
                    .bind(error)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("record_failure"))?;
                self.failures(id).await?.ok_or_else(|| {
                    zerolost_core::Error::from($crate::SqlError::Corrupt {
                        what: "attempts",
                        reason: "the failure just recorded is not there".into(),
                    })
                })
            }

            async fn park_dead_letter(
                &self,
                parked: &zerolost_core::parking::ParkedDeadLetter,
            ) -> Result<(), zerolost_core::Error> {
                let row = $crate::rows::ParkedRow::from_parked(parked)?;
                let m = &row.message;
                sqlx::query(sqlx::AssertSqlSafe(self.sql.park_dead_letter.as_str()))
                    .bind(m.id)
                    .bind(parked.failure.original_destination.as_str())
                    .bind(m.destination.as_str())
                    .bind(m.key.as_deref())
                    .bind(m.headers.as_str())
                    .bind(m.payload.as_slice())
                    .bind(m.created_at)
                    .bind(row.failure.as_str())
                    .bind(row.refused.as_str())
                    .bind(row.parked_at)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("park dead letter"))?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl zerolost_core::ConsumerLedger for $crate::SqlInbox<$db> {
            async fn finished(
                &self,
                since: Option<chrono::DateTime<chrono::Utc>>,
            ) -> Result<zerolost_core::Snapshot<zerolost_core::ProcessedEntry>, zerolost_core::Error> {
                use sqlx::Row;
                let taken_at = chrono::Utc::now();
                let rows = match since {
                    Some(since) => sqlx::query(sqlx::AssertSqlSafe(self.sql.finished_since.as_str()))
                        .bind(since.timestamp_millis())
                        .fetch_all(&self.pool)
                        .await,
                    None => sqlx::query(sqlx::AssertSqlSafe(self.sql.finished.as_str()))
                        .fetch_all(&self.pool)
                        .await,
                }
                .map_err(db_err("ledger"))?;
                let mut entries = Vec::with_capacity(rows.len());
                for row in &rows {
                    let read = || -> Result<(uuid::Uuid, i16, Option<i64>), sqlx::Error> {
                        Ok((row.try_get("id")?, row.try_get("state")?, row.try_get("finished_at")?))
                    };
                    let (id, state, at) = read().map_err(db_err("ledger"))?;
                    if let Some(outcome) = $crate::rows::state_outcome(state) {
                        entries.push(zerolost_core::ProcessedEntry {
                            id: zerolost_core::MessageId::from_uuid(id),
                            outcome,
                            at: $crate::rows::time(at.unwrap_or(0)),
                        });
                    }
                }
                Ok(zerolost_core::Snapshot { taken_at, entries })
            }

            async fn forget_dead_letter(
                &self,
                id: zerolost_core::MessageId,
            ) -> Result<bool, zerolost_core::Error> {
                let done = sqlx::query(sqlx::AssertSqlSafe(self.sql.forget_dead_letter.as_str()))
                    .bind(*id.as_uuid())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("forget dead letter"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn parked_dead_letters(
                &self,
                destination: &str,
            ) -> Result<Vec<zerolost_core::parking::ParkedDeadLetter>, zerolost_core::Error> {
                use sqlx::Row;
                let rows = sqlx::query(sqlx::AssertSqlSafe(self.sql.parked_of.as_str()))
                    .bind(destination)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("parked dead letters"))?;
                let mut parked = Vec::with_capacity(rows.len());
                for row in &rows {
                    let read = || -> Result<$crate::rows::ParkedRow, sqlx::Error> {
                        Ok($crate::rows::ParkedRow {
                            message: $crate::rows::LeasedRow {
                                id: row.try_get("id")?,
                                destination: row.try_get("destination")?,
                                key: row.try_get("msg_key")?,
                                headers: row.try_get("headers")?,
                                payload: row.try_get("payload")?,
                                attempts: 0,
                                created_at: row.try_get("created_at")?,
                            },
                            failure: row.try_get("failure")?,
                            refused: row.try_get("refused")?,
                            parked_at: row.try_get("parked_at")?,
                        })
                    };
                    parked.push(read().map_err(db_err("parked dead letters"))?.into_parked()?);
                }
                Ok(parked)
            }

            async fn remove_parked(
                &self,
                destination: &str,
                ids: &[zerolost_core::MessageId],
            ) -> Result<usize, zerolost_core::Error> {
                if ids.is_empty() {
                    return Ok(0);
                }
                let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
                let sql = self.sql.with_ids(&self.sql.unpark_prefix, uuids.len());
                let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(destination);
                let done = bind_ids(query, &uuids)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("remove parked dead letters"))?;
                Ok(usize::try_from(done.rows_affected()).unwrap_or(0))
            }

            async fn duplicates_suppressed(&self) -> Result<u64, zerolost_core::Error> {
                let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(self.sql.duplicates_total.as_str()))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err("ledger"))?;
                Ok(u64::try_from(total).unwrap_or(0))
            }
        }

        #[async_trait::async_trait]
        impl<H> zerolost_core::Handler for $crate::InTransaction<$db, H>
        where
            H: $crate::TransactionalHandler<$db>,
        {
            async fn handle(
                &self,
                _envelope: &zerolost_core::Envelope,
            ) -> Result<(), zerolost_core::HandlerError> {
                Err(zerolost_core::HandlerError::permanent(
                    "InTransaction needs the consumer's claim: run it inside a zerolost Consumer",
                ))
            }

            /// Opens the transaction and marks the claim in it (a lost claim or a failing
            /// inbox is an interruption, not an attempt), runs the handler, commits (a
            /// failed commit counts as an attempt: it carries the handler's writes).
            async fn handle_claimed(
                &self,
                envelope: &zerolost_core::Envelope,
                context: &zerolost_core::HandlerContext,
            ) -> Result<(), zerolost_core::HandlerError> {
                let store = |e: sqlx::Error| {
                    zerolost_core::HandlerError::interrupted(zerolost_core::Error::from(db_err("handler transaction")(e)))
                };
                let mut tx = self.inbox.pool.begin().await.map_err(store)?;
                self.inbox
                    .complete_in(&mut tx, context.claim(), zerolost_core::Outcome::Processed, self.keep_for)
                    .await
                    // LeaseLost: another consumer holds the message now; its outcome wins.
                    .map_err(zerolost_core::HandlerError::interrupted)?;
                self.handler.handle(envelope, &mut tx).await?;
                tx.commit().await.map_err(|e| {
                    zerolost_core::HandlerError::from(zerolost_core::Error::from(db_err("handler commit")(e)))
                })
            }
        }
    };
}

pub(crate) use sql_backend;

/// `lease` and `claim` for databases with `UPDATE … RETURNING` and upserts with a
/// condition (PostgreSQL, SQLite): one atomic statement each.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
macro_rules! returning_ops {
    ($db:ty, $pool:ty) => {
        pub(crate) async fn db_lease(
            pool: &$pool,
            sql: &Statements,
            limit: i64,
            lease_ms: i64,
            token: Uuid,
        ) -> Result<Vec<LeasedRow>, sqlx::Error> {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.lease.as_str()))
                .bind(token)
                .bind(lease_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(leased_row).collect()
        }

        pub(crate) async fn db_claim(
            conn: &mut <$db as sqlx::Database>::Connection,
            sql: &Statements,
            token: &zerolost_core::ClaimToken,
            lease_ms: i64,
        ) -> Result<ClaimState, sqlx::Error> {
            let id = *token.id.as_uuid();
            let fence: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.claim.as_str()))
                .bind(id)
                .bind(token.token)
                .bind(lease_ms)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(fence) = fence {
                return Ok(ClaimState::Claimed(fence));
            }
            let finished: Option<i16> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.count_duplicate.as_str()))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            Ok(finished.map_or(ClaimState::Held, ClaimState::Finished))
        }
    };
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) use returning_ops;

/// The inbox's claim and complete, each in a transaction of its own: for databases with
/// concurrent writers (PostgreSQL, MySQL), where commits of many connections overlap.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! direct_inbox_ops {
    ($db:ty) => {
        pub(crate) async fn inbox_claim(
            inbox: &crate::SqlInbox<$db>,
            token: &zerolost_core::ClaimToken,
            lease_ms: i64,
        ) -> Result<ClaimState, zerolost_core::Error> {
            let mut conn = inbox.pool.acquire().await.map_err(db_err("claim"))?;
            Ok(db_claim(&mut conn, &inbox.sql, token, lease_ms)
                .await
                .map_err(db_err("claim"))?)
        }

        pub(crate) async fn inbox_complete(
            inbox: &crate::SqlInbox<$db>,
            token: &zerolost_core::ClaimToken,
            outcome: zerolost_core::Outcome,
            keep_for: std::time::Duration,
        ) -> Result<(), zerolost_core::Error> {
            let mut conn = inbox.pool.acquire().await.map_err(db_err("complete"))?;
            inbox.complete_in(&mut conn, token, outcome, keep_for).await
        }
    };
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use direct_inbox_ops;
