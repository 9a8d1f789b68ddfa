//! Running one statement with its parameters on any [`Driver`], and the inbox steps every
//! database shares.

use std::time::Duration;

use sqlx::{Arguments, Pool};
use zerolost_core::{ClaimToken, Error as CoreError, Outcome};

use crate::driver::{ClaimState, Driver, db_err};
use crate::params::{Param, Params};
use crate::rows::{millis, outcome_state};
use crate::statements::Statements;

/// `params` as `DB`'s arguments.
fn arguments<DB: Driver>(params: &[Param<'_>]) -> Result<DB::Arguments, sqlx::Error> {
    let mut arguments = DB::Arguments::default();
    arguments.reserve(params.len(), params.len() * 16);
    for &param in params {
        match param {
            Param::Ids(ids) => DB::bind_ids(&mut arguments, ids),
            scalar => arguments.push(scalar),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(arguments)
}

/// Runs `sql` on `conn`; the number of rows it changed.
pub async fn execute<DB: Driver>(
    conn: &mut DB::Connection,
    sql: &str,
    params: &[Param<'_>],
) -> Result<u64, sqlx::Error> {
    let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments::<DB>(params)?);
    let done = query.execute(DB::executor(conn)).await?;
    Ok(DB::rows_affected(&done))
}

/// Runs `sql` on `conn`; every row it returned.
pub async fn fetch_all<DB: Driver>(
    conn: &mut DB::Connection,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<DB::Row>, sqlx::Error> {
    let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments::<DB>(params)?);
    query.fetch_all(DB::executor(conn)).await
}

/// Runs `sql` on `conn`; its first row, if any.
pub async fn fetch_optional<DB: Driver>(
    conn: &mut DB::Connection,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Option<DB::Row>, sqlx::Error> {
    let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments::<DB>(params)?);
    query.fetch_optional(DB::executor(conn)).await
}

/// [`execute`] on a connection taken from `pool` for this statement.
pub async fn execute_on_pool<DB: Driver>(
    pool: &Pool<DB>,
    sql: &str,
    params: &[Param<'_>],
) -> Result<u64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    execute::<DB>(&mut conn, sql, params).await
}

/// [`fetch_all`] on a connection taken from `pool` for this statement.
pub async fn fetch_all_on_pool<DB: Driver>(
    pool: &Pool<DB>,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<DB::Row>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    fetch_all::<DB>(&mut conn, sql, params).await
}

/// [`fetch_optional`] on a connection taken from `pool` for this statement.
pub async fn fetch_optional_on_pool<DB: Driver>(
    pool: &Pool<DB>,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Option<DB::Row>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    fetch_optional::<DB>(&mut conn, sql, params).await
}

/// Marks the claim `token` finished with `outcome` on `conn`; `LeaseLost` when the claim
/// was taken over.
pub async fn complete_on<DB: Driver>(
    conn: &mut DB::Connection,
    sql: &Statements,
    token: &ClaimToken,
    outcome: Outcome,
    keep_for: Duration,
) -> Result<(), CoreError> {
    let state = outcome_state(outcome);
    let params = [
        Param::Int16(state),
        Param::Int(millis(keep_for)),
        Param::Uuid(*token.id.as_uuid()),
        Param::Uuid(token.token),
        Param::Int16(state),
    ];
    let changed = execute::<DB>(conn, &sql.complete, &params)
        .await
        .map_err(db_err::<DB>("complete"))?;
    if changed == 1 {
        Ok(())
    } else {
        Err(CoreError::LeaseLost { id: token.id })
    }
}

/// Claims and completes each in a transaction of their own: for databases whose commits
/// from many connections overlap (PostgreSQL, MySQL).
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Direct;

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl<DB: Driver> crate::driver::InboxWrites<DB> for Direct {
    async fn claim(
        &self,
        pool: &Pool<DB>,
        sql: &std::sync::Arc<Statements>,
        token: &ClaimToken,
        lease_ms: i64,
    ) -> Result<ClaimState, CoreError> {
        let mut conn = pool.acquire().await.map_err(db_err::<DB>("claim"))?;
        Ok(DB::claim_on(&mut conn, sql, token, lease_ms)
            .await
            .map_err(db_err::<DB>("claim"))?)
    }

    async fn complete(
        &self,
        pool: &Pool<DB>,
        sql: &std::sync::Arc<Statements>,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), CoreError> {
        let mut conn = pool.acquire().await.map_err(db_err::<DB>("complete"))?;
        complete_on::<DB>(&mut conn, sql, token, outcome, keep_for).await
    }
}

/// A claim as one upsert returning the fence; if it took nothing, a counted duplicate
/// returning the finished state (PostgreSQL, SQLite).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub async fn upsert_claim<DB: Driver>(
    conn: &mut DB::Connection,
    sql: &Statements,
    token: &ClaimToken,
    lease_ms: i64,
) -> Result<ClaimState, sqlx::Error> {
    use crate::params::Columns;
    let id = *token.id.as_uuid();
    let params = [
        Param::Uuid(id),
        Param::Uuid(token.token),
        Param::Int(lease_ms),
    ];
    if let Some(row) = fetch_optional::<DB>(conn, &sql.own.claim, &params).await? {
        return Ok(ClaimState::Claimed(row.int("fence")?));
    }
    let finished = fetch_optional::<DB>(conn, &sql.own.count_duplicate, &[Param::Uuid(id)]).await?;
    Ok(match finished {
        Some(row) => ClaimState::Finished(row.int16("state")?),
        None => ClaimState::Held,
    })
}
