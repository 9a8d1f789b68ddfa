//! MySQL 8 / MariaDB ≥ 10.6: leases with `SELECT … FOR UPDATE SKIP LOCKED` and a stamp in
//! one short READ COMMITTED transaction; claims as insert-if-absent plus a conditional
//! take-over.

use sqlx::mysql::{MySqlArguments, MySqlPoolOptions};
use sqlx::query::Query;
use sqlx::{Acquire, MySql, MySqlConnection, MySqlPool};
use uuid::Uuid;

use crate::dialect::{ClaimState, Dialect, Statements};
use crate::rows::LeasedRow;
use crate::{SqlError, Tables};

crate::store::sql_backend!(MySql, MySqlConnection, Dialect::MySql);

/// The MySQL/MariaDB store.
pub type MySqlStore = crate::SqlStore<MySql>;
/// The MySQL/MariaDB outbox.
pub type MySqlOutbox = crate::SqlOutbox<MySql>;
/// The MySQL/MariaDB inbox.
pub type MySqlInbox = crate::SqlInbox<MySql>;

pub(crate) fn check_tables(_tables: &Tables) -> Result<(), SqlError> {
    Ok(())
}

pub(crate) async fn connect_pool(url: &str) -> Result<MySqlPool, sqlx::Error> {
    MySqlPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
}

pub(crate) fn bind_ids<'q>(
    query: Query<'q, MySql, MySqlArguments>,
    ids: &[Uuid],
) -> Query<'q, MySql, MySqlArguments> {
    ids.iter().fold(query, |query, id| query.bind(*id))
}

pub(crate) async fn db_lease(
    pool: &MySqlPool,
    sql: &Statements,
    limit: i64,
    lease_ms: i64,
    token: Uuid,
) -> Result<Vec<LeasedRow>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    // READ COMMITTED: the locking read takes no gap locks, so enqueues never wait on it.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *conn)
        .await?;
    let mut tx = conn.begin().await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.lease.as_str()))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    let rows = rows.iter().map(leased_row).collect::<Result<Vec<_>, _>>()?;
    if !rows.is_empty() {
        let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
        let stamp = sqlx::query(sqlx::AssertSqlSafe(sql.lease_stamp(ids.len())))
            .bind(token)
            .bind(lease_ms);
        bind_ids(stamp, &ids).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(rows)
}

pub(crate) async fn db_claim(
    conn: &mut MySqlConnection,
    sql: &Statements,
    token: &zerolost_core::ClaimToken,
    lease_ms: i64,
) -> Result<ClaimState, sqlx::Error> {
    let id = *token.id.as_uuid();
    sqlx::query(sqlx::AssertSqlSafe(sql.claim.as_str()))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let taken = sqlx::query(sqlx::AssertSqlSafe(sql.claim_take.as_str()))
        .bind(token.token)
        .bind(lease_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if taken.rows_affected() == 1 {
        let fence: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.fence_of.as_str()))
            .bind(id)
            .bind(token.token)
            .fetch_optional(&mut *conn)
            .await?;
        // None: taken over already (after a lease shorter than this round trip).
        return Ok(fence.map_or(ClaimState::Held, ClaimState::Claimed));
    }
    // Count the duplicate only if the id is finished, and answer "already processed" only
    // if it was counted: a copy racing the first one's completion is "held", not a
    // duplicate the ledger never saw.
    let counted = sqlx::query(sqlx::AssertSqlSafe(sql.count_duplicate.as_str()))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if counted.rows_affected() == 0 {
        return Ok(ClaimState::Held);
    }
    let state: Option<i16> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.state_of.as_str()))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match state {
        Some(state) if state >= crate::rows::PROCESSED => ClaimState::Finished(state),
        _ => ClaimState::Held,
    })
}

crate::store::direct_inbox_ops!(MySql);
