//! SQLite: leases with one atomic `UPDATE … RETURNING` (SQLite serialises writers); WAL
//! journal, `synchronous = FULL` and a busy timeout; the inbox's claims and completes are
//! group-committed ([`crate::group`]).

use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::dialect::{ClaimState, Dialect, Statements};
use crate::rows::LeasedRow;
use crate::{SqlError, Tables};

crate::store::sql_backend!(Sqlite, SqliteConnection, Dialect::Sqlite);

/// The SQLite store.
pub type SqliteStore = crate::SqlStore<Sqlite>;
/// The SQLite outbox.
pub type SqliteOutbox = crate::SqlOutbox<Sqlite>;
/// The SQLite inbox.
pub type SqliteInbox = crate::SqlInbox<Sqlite>;

pub(crate) fn check_tables(tables: &Tables) -> Result<(), SqlError> {
    match tables.schema() {
        Some(_) => Err(SqlError::Unsupported(
            "SQLite has no schemas: use a table prefix (Tables::with_prefix) or another database file"
                .into(),
        )),
        None => Ok(()),
    }
}

pub(crate) async fn connect_pool(url: &str) -> Result<SqlitePool, sqlx::Error> {
    let options: SqliteConnectOptions = url.parse()?;
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(std::time::Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(options)
        .await
}

pub(crate) fn bind_ids<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    ids: &[Uuid],
) -> Query<'q, Sqlite, SqliteArguments> {
    ids.iter().fold(query, |query, id| query.bind(*id))
}

crate::store::returning_ops!(Sqlite, SqlitePool);

/// Claims through the store's group-commit writer.
pub(crate) async fn inbox_claim(
    inbox: &crate::SqlInbox<Sqlite>,
    token: &zerolost_core::ClaimToken,
    lease_ms: i64,
) -> Result<ClaimState, zerolost_core::Error> {
    inbox
        .group
        .claim(&inbox.pool, &inbox.sql, token.clone(), lease_ms)
        .await
}

/// Completes through the store's group-commit writer; `LeaseLost` when the claim was
/// taken over.
pub(crate) async fn inbox_complete(
    inbox: &crate::SqlInbox<Sqlite>,
    token: &zerolost_core::ClaimToken,
    outcome: zerolost_core::Outcome,
    keep_for: std::time::Duration,
) -> Result<(), zerolost_core::Error> {
    inbox
        .group
        .complete(&inbox.pool, &inbox.sql, token.clone(), outcome, keep_for)
        .await
}
