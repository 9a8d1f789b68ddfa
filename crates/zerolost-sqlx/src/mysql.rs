//! MySQL 8 / MariaDB ≥ 10.6: leases with `SELECT … FOR UPDATE SKIP LOCKED` and a stamp in
//! one short READ COMMITTED transaction; claims as insert-if-absent plus a conditional
//! take-over.

use std::time::Duration;

use sqlx::mysql::{MySqlConnection, MySqlPoolOptions, MySqlQueryResult};
use sqlx::{Acquire, Executor, MySql, MySqlPool};
use uuid::Uuid;
use zerolost_core::ClaimToken;

use crate::driver::{ClaimState, Dialect, Driver};
use crate::exec::{Direct, execute, fetch_all, fetch_optional};
use crate::params::{Columns, Param};
use crate::rows::{LeasedRow, PROCESSED};
use crate::statements::{
    History, Names, Own, PARK_COLUMNS, RECORD_COLUMNS, Script, Statements, Syntax,
};

/// The MySQL/MariaDB store.
pub type MySqlStore = crate::SqlStore<MySql>;
/// The MySQL/MariaDB outbox.
pub type MySqlOutbox = crate::SqlOutbox<MySql>;
/// The MySQL/MariaDB inbox.
pub type MySqlInbox = crate::SqlInbox<MySql>;

impl Dialect for MySql {}

impl Driver for MySql {
    const SYNTAX: Syntax = Syntax {
        label: "mysql",
        quote: '`',
        now: "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
        numbered: false,
        id_array: false,
    };
    const MIGRATIONS: &'static [Script] = &[
        Script {
            version: 1,
            description: "outbox and inbox",
            template: include_str!("migrations/mysql/0001_outbox_inbox.sql"),
        },
        Script {
            version: 2,
            description: "inbox fence",
            template: include_str!("migrations/mysql/0002_inbox_fence.sql"),
        },
        Script {
            version: 3,
            description: "parked dead letters",
            template: include_str!("migrations/mysql/0003_parked_dead_letters.sql"),
        },
    ];
    const HISTORY: History = History {
        installed_on: "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP",
        binary: "BLOB",
        hex: ("X'", "'"),
    };
    type InboxWrites = Direct;

    fn own_statements(n: &Names) -> Own {
        let (o, i, p, now) = (&n.outbox, &n.inbox, &n.parked, n.now);
        let (reclaimable, stale) = (n.reclaimable(""), n.stale_inbox());
        Own {
            lease: format!(
                "SELECT {RECORD_COLUMNS} FROM {o} WHERE status = 0 AND next_attempt_at <= {now} \
                 AND (lease_expires_at IS NULL OR lease_expires_at <= {now}) \
                 ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED"
            ),
            lease_stamp_prefix: format!(
                "UPDATE {o} SET lease_token = ?, lease_expires_at = {now} + ? WHERE id"
            ),
            claim: format!(
                "INSERT INTO {i} (id, state, claim_expires_at) VALUES (?, 0, {now}) \
                 ON DUPLICATE KEY UPDATE id = id"
            ),
            claim_take: format!(
                "UPDATE {i} SET attempts = IF(state >= 2, 0, attempts), state = 1, claim_token = ?, \
                 claim_expires_at = {now} + ?, finished_at = NULL, keep_until = NULL, fence = fence + 1 \
                 WHERE id = ? AND ({reclaimable})"
            ),
            count_duplicate: format!(
                "UPDATE {i} SET duplicates = duplicates + 1 WHERE id = ? AND state >= 2"
            ),
            record_failure: format!(
                "INSERT INTO {i} (id, state, claim_expires_at, attempts, first_failure_at, last_failure_at, last_error) \
                 VALUES (?, 0, {now}, 1, {now}, {now}, ?) ON DUPLICATE KEY UPDATE attempts = attempts + 1, \
                 first_failure_at = COALESCE(first_failure_at, VALUES(first_failure_at)), \
                 last_failure_at = VALUES(last_failure_at), last_error = VALUES(last_error)"
            ),
            duplicates_total: format!(
                "SELECT CAST(COALESCE(SUM(duplicates), 0) AS SIGNED) AS total FROM {i}"
            ),
            purge_outbox: format!(
                "DELETE FROM {o} WHERE status = 1 AND published_at < {now} - ? LIMIT ?"
            ),
            purge_inbox: format!("DELETE FROM {i} WHERE {stale} LIMIT ?"),
            park_dead_letter: format!("INSERT IGNORE INTO {p} {PARK_COLUMNS}"),
        }
    }

    async fn connect_pool(url: &str) -> Result<MySqlPool, sqlx::Error> {
        MySqlPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
    }

    fn executor<'c>(conn: &'c mut MySqlConnection) -> impl Executor<'c, Database = Self> {
        conn
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn lease(
        pool: &MySqlPool,
        sql: &Statements,
        limit: i64,
        lease_ms: i64,
        token: Uuid,
    ) -> Result<Vec<LeasedRow>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        // READ COMMITTED: the locking read takes no gap locks, so enqueues never wait on it.
        execute::<Self>(
            &mut conn,
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            &[],
        )
        .await?;
        let mut tx = conn.begin().await?;
        let rows = fetch_all::<Self>(&mut tx, &sql.own.lease, &[Param::Int(limit)]).await?;
        let rows = rows
            .iter()
            .map(LeasedRow::read)
            .collect::<Result<Vec<_>, _>>()?;
        if !rows.is_empty() {
            let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
            let stamp = sql.with_ids(&sql.own.lease_stamp_prefix, ids.len());
            let params = [Param::Uuid(token), Param::Int(lease_ms), Param::Ids(&ids)];
            execute::<Self>(&mut tx, &stamp, &params).await?;
        }
        tx.commit().await?;
        Ok(rows)
    }

    async fn claim_on(
        conn: &mut MySqlConnection,
        sql: &Statements,
        token: &ClaimToken,
        lease_ms: i64,
    ) -> Result<ClaimState, sqlx::Error> {
        let id = Param::Uuid(*token.id.as_uuid());
        execute::<Self>(conn, &sql.own.claim, &[id]).await?;
        let take = [Param::Uuid(token.token), Param::Int(lease_ms), id];
        if execute::<Self>(conn, &sql.own.claim_take, &take).await? == 1 {
            let fence = [id, Param::Uuid(token.token)];
            let row = fetch_optional::<Self>(conn, &sql.fence_of, &fence).await?;
            // None: taken over already (after a lease shorter than this round trip).
            return Ok(match row {
                Some(row) => ClaimState::Claimed(row.int("fence")?),
                None => ClaimState::Held,
            });
        }
        // Count the duplicate only if the id is finished, and answer "already processed"
        // only if it was counted: a copy racing the first one's completion is "held", not
        // a duplicate the ledger never saw.
        if execute::<Self>(conn, &sql.own.count_duplicate, &[id]).await? == 0 {
            return Ok(ClaimState::Held);
        }
        let state = match fetch_optional::<Self>(conn, &sql.state_of, &[id]).await? {
            Some(row) => Some(row.int16("state")?),
            None => None,
        };
        Ok(match state {
            Some(state) if state >= PROCESSED => ClaimState::Finished(state),
            _ => ClaimState::Held,
        })
    }
}
