//! [`SqlStore`]: one database's pool and statements, which hands out the outbox and the
//! inbox and runs retention. The schema's methods are in `schema.rs`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Pool;
use zerolost_core::Error as CoreError;

use crate::driver::{self, Dialect, db_err};
use crate::exec::execute_on_pool;
use crate::inbox::SqlInbox;
use crate::outbox::SqlOutbox;
use crate::params::Param;
use crate::rows::millis;
use crate::statements::Statements;
use crate::{SqlError, Tables};

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
pub struct SqlStore<DB: Dialect> {
    pub(crate) pool: Pool<DB>,
    pub(crate) sql: Arc<Statements>,
    /// How its inboxes' claims and completes reach the database.
    pub(crate) writes: DB::InboxWrites,
}

impl<DB: Dialect> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: self.sql.clone(),
            writes: self.writes.clone(),
        }
    }
}

impl<DB: Dialect> std::fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &DB::SYNTAX.label)
            .field("outbox", &self.sql.names.outbox)
            .field("inbox", &self.sql.names.inbox)
            .finish()
    }
}

impl<DB: Dialect> SqlStore<DB> {
    /// Stores on `pool` using `tables`.
    pub fn new(pool: Pool<DB>, tables: Tables) -> Self {
        Self {
            pool,
            sql: Arc::new(driver::statements::<DB>(&tables)),
            writes: Default::default(),
        }
    }

    /// Connects a pool to `url` (the password never appears in errors).
    pub async fn connect(url: &str, tables: Tables) -> Result<Self, CoreError> {
        DB::check_tables(&tables)?;
        // sqlx builds its rustls config with the process's default provider: one is chosen
        // here unless the application chose already (a tree with two providers has none).
        #[cfg(feature = "tls")]
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let pool = DB::connect_pool(url).await.map_err(|e| {
            let text = zerolost_core::redact_url(&db_err::<DB>("connect")(e).to_string());
            CoreError::unavailable(
                &zerolost_core::redact_url(url),
                zerolost_core::explain_link_error(&text),
            )
        })?;
        Ok(Self::new(pool, tables))
    }

    /// The table names this store uses.
    pub fn tables(&self) -> &Tables {
        &self.sql.tables
    }

    /// The connection pool (begin the application's transactions here).
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// The outbox.
    pub fn outbox(&self) -> SqlOutbox<DB> {
        SqlOutbox {
            pool: self.pool.clone(),
            sql: self.sql.clone(),
        }
    }

    /// The inbox.
    pub fn inbox(&self) -> SqlInbox<DB> {
        SqlInbox {
            pool: self.pool.clone(),
            sql: self.sql.clone(),
            writes: self.writes.clone(),
        }
    }

    /// Deletes published outbox rows and finished inbox rows past their window, in
    /// batches of `retention.batch`, until none are left.
    pub async fn purge(&self, retention: &Retention) -> Result<Purged, CoreError> {
        let batch = i64::try_from(retention.batch.max(1)).unwrap_or(1000);
        let mut purged = Purged::default();
        for (statement, keep, count) in [
            (
                &self.sql.own.purge_outbox,
                retention.keep_published,
                &mut purged.outbox,
            ),
            (
                &self.sql.own.purge_inbox,
                retention.keep_failures,
                &mut purged.inbox,
            ),
        ] {
            loop {
                let params = [Param::Int(millis(keep)), Param::Int(batch)];
                let deleted = execute_on_pool(&self.pool, statement, &params)
                    .await
                    .map_err(db_err::<DB>("purge"))?;
                *count += deleted;
                if deleted < batch.unsigned_abs() {
                    break;
                }
                tokio::time::sleep(retention.pause).await;
            }
        }
        Ok(purged)
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
pub fn begin_error(error: sqlx::Error) -> CoreError {
    SqlError::Database {
        database: "sql",
        operation: "transaction",
        source: error,
    }
    .into()
}
