//! SQLite: leases with one atomic `UPDATE … RETURNING` (SQLite serialises writers); WAL
//! journal, `synchronous = FULL` and a busy timeout; the inbox's claims and completes are
//! group-committed ([`GroupCommit`]).

use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Executor, Sqlite, SqlitePool};
use uuid::Uuid;
use zerolost_core::ClaimToken;

use crate::driver::{ClaimState, Dialect, Driver};
use crate::exec::{fetch_all, upsert_claim};
use crate::group::GroupCommit;
use crate::params::Param;
use crate::rows::LeasedRow;
use crate::statements::{
    History, Names, Own, PARK_COLUMNS, RECORD_COLUMNS, Script, Statements, Syntax,
};
use crate::{SqlError, Tables};

/// The SQLite store.
pub type SqliteStore = crate::SqlStore<Sqlite>;
/// The SQLite outbox.
pub type SqliteOutbox = crate::SqlOutbox<Sqlite>;
/// The SQLite inbox.
pub type SqliteInbox = crate::SqlInbox<Sqlite>;

impl Dialect for Sqlite {}

impl Driver for Sqlite {
    const SYNTAX: Syntax = Syntax {
        label: "sqlite",
        quote: '"',
        // Integer arithmetic on the text of 'now' (one instant per statement): the
        // floating-point `julianday('now')` form came out 1 ms short about one time in
        // eight, so a row enqueued in the same millisecond was not due yet.
        now: "(CAST(strftime('%s', 'now') AS INTEGER) * 1000 + CAST(substr(strftime('%f', 'now'), 4, 3) AS INTEGER))",
        numbered: false,
        id_array: false,
    };
    const MIGRATIONS: &'static [Script] = &[
        Script {
            version: 1,
            description: "outbox and inbox",
            template: include_str!("migrations/sqlite/0001_outbox_inbox.sql"),
        },
        Script {
            version: 2,
            description: "inbox fence",
            template: include_str!("migrations/sqlite/0002_inbox_fence.sql"),
        },
        Script {
            version: 3,
            description: "parked dead letters",
            template: include_str!("migrations/sqlite/0003_parked_dead_letters.sql"),
        },
    ];
    const HISTORY: History = History {
        installed_on: "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP",
        binary: "BLOB",
        hex: ("X'", "'"),
    };
    type InboxWrites = GroupCommit;

    fn own_statements(n: &Names) -> Own {
        let (o, i, p, now) = (&n.outbox, &n.inbox, &n.parked, n.now);
        let (purge_outbox, purge_inbox) = n.purge_by_subquery();
        // In upserts the existing row is named by its table.
        let cur = format!("{i}.");
        Own {
            lease: format!(
                "UPDATE {o} SET lease_token = ?, lease_expires_at = {now} + ? \
                 WHERE id IN (SELECT id FROM {o} WHERE status = 0 AND next_attempt_at <= {now} \
                 AND (lease_expires_at IS NULL OR lease_expires_at <= {now}) \
                 ORDER BY next_attempt_at LIMIT ?) RETURNING {RECORD_COLUMNS}"
            ),
            claim: n.upsert_claim(i, &cur),
            count_duplicate: format!(
                "UPDATE {i} SET duplicates = duplicates + 1 WHERE id = ? AND state >= 2 RETURNING state"
            ),
            record_failure: n.upsert_failure(i, &cur),
            duplicates_total: format!("SELECT COALESCE(SUM(duplicates), 0) AS total FROM {i}"),
            purge_outbox,
            purge_inbox,
            park_dead_letter: format!("INSERT INTO {p} {PARK_COLUMNS} ON CONFLICT (id) DO NOTHING"),
            ..Own::default()
        }
    }

    fn check_tables(tables: &Tables) -> Result<(), SqlError> {
        match tables.schema() {
            Some(_) => Err(SqlError::Unsupported(
                "SQLite has no schemas: use a table prefix (Tables::with_prefix) or another database file"
                    .into(),
            )),
            None => Ok(()),
        }
    }

    async fn connect_pool(url: &str) -> Result<SqlitePool, sqlx::Error> {
        let options: SqliteConnectOptions = url.parse()?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
    }

    fn executor<'c>(conn: &'c mut SqliteConnection) -> impl Executor<'c, Database = Self> {
        conn
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn lease(
        pool: &SqlitePool,
        sql: &Statements,
        limit: i64,
        lease_ms: i64,
        token: Uuid,
    ) -> Result<Vec<LeasedRow>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let params = [Param::Uuid(token), Param::Int(lease_ms), Param::Int(limit)];
        let rows = fetch_all::<Self>(&mut conn, &sql.own.lease, &params).await?;
        rows.iter().map(LeasedRow::read).collect()
    }

    async fn claim_on(
        conn: &mut SqliteConnection,
        sql: &Statements,
        token: &ClaimToken,
        lease_ms: i64,
    ) -> Result<ClaimState, sqlx::Error> {
        upsert_claim::<Self>(conn, sql, token, lease_ms).await
    }
}
