//! What each database supplies to the stores, which are written once over it: [`Dialect`]
//! (public, sealed) and its hooks in [`Driver`], implemented in `postgres.rs`, `mysql.rs`
//! and `sqlite.rs` for sqlx's `Postgres`, `MySql` and `Sqlite`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::error::BoxDynError;
use sqlx::migrate::Migrate;
use sqlx::{Database, Executor, IntoArguments, Pool};
use uuid::Uuid;
use zerolost_core::{ClaimToken, Error as CoreError, Outcome};

use crate::params::{Columns, Param, Params};
use crate::rows::LeasedRow;
use crate::statements::{History, Names, Own, Script, Statements, Syntax};
use crate::{SqlError, Tables};

/// A database zerolost's SQL stores run on: sqlx's `Postgres` (feature `postgres`),
/// `MySql` (`mysql`) and `Sqlite` (`sqlite`). Sealed: the stores' guarantees rest on each
/// database's locking and upsert rules, checked per database by the conformance suite.
///
/// ```
/// fn outbox_of<DB: zerolost_sqlx::Dialect>(store: &zerolost_sqlx::SqlStore<DB>) -> zerolost_sqlx::SqlOutbox<DB> {
///     store.outbox()
/// }
/// ```
pub trait Dialect: Driver {}

/// What a claim attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// The claim is ours, with this fencing number.
    Claimed(i64),
    /// The id is finished, in this inbox state.
    Finished(i16),
    /// Someone else holds a live claim.
    Held,
}

/// The hooks one database supplies (sealed: this module is private).
pub trait Driver:
    Database<Arguments: Params + IntoArguments<Self>, Row: Columns, Connection: Migrate>
{
    /// How the database spells the shared statements.
    const SYNTAX: Syntax;
    /// The migrations, oldest first.
    const MIGRATIONS: &'static [Script];
    /// How sqlx's migration history table is spelled here.
    const HISTORY: History;
    /// How the inbox's claims and completes reach the database, shared by every inbox of
    /// one store: each in a transaction of its own, or SQLite's group commit.
    type InboxWrites: InboxWrites<Self>;

    /// The database's own statements.
    fn own_statements(names: &Names) -> Own;

    /// Refuses table settings the database cannot honour.
    fn check_tables(_tables: &Tables) -> Result<(), SqlError> {
        Ok(())
    }

    /// Connects a pool with the database's settings.
    fn connect_pool(url: &str) -> impl Future<Output = Result<Pool<Self>, sqlx::Error>> + Send;

    /// Binds an id list as [`Statements::with_ids`] wrote its filter: one parameter per id
    /// unless the database takes an array.
    fn bind_ids(arguments: &mut Self::Arguments, ids: &[Uuid]) -> Result<(), BoxDynError> {
        ids.iter()
            .try_for_each(|id| arguments.push(Param::Uuid(*id)))
    }

    /// A connection as an executor.
    fn executor<'c>(conn: &'c mut Self::Connection) -> impl Executor<'c, Database = Self>;

    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Statements to run before [`Statements::drop_tables`] (PostgreSQL's lease function).
    fn drop_first(_sql: &Statements) -> Vec<String> {
        Vec::new()
    }

    /// Leases up to `limit` due rows for `lease_ms` under `token`.
    fn lease(
        pool: &Pool<Self>,
        sql: &Statements,
        limit: i64,
        lease_ms: i64,
        token: Uuid,
    ) -> impl Future<Output = Result<Vec<LeasedRow>, sqlx::Error>> + Send;

    /// Claims `token.id` on `conn`, in whatever transaction is open there.
    fn claim_on(
        conn: &mut Self::Connection,
        sql: &Statements,
        token: &ClaimToken,
        lease_ms: i64,
    ) -> impl Future<Output = Result<ClaimState, sqlx::Error>> + Send;
}

/// How an inbox's claims and completes reach the database.
pub trait InboxWrites<DB: Driver>: Clone + Default + Send + Sync + 'static {
    /// Claims `token.id`; answered once the claim is durable.
    fn claim(
        &self,
        pool: &Pool<DB>,
        sql: &Arc<Statements>,
        token: &ClaimToken,
        lease_ms: i64,
    ) -> impl Future<Output = Result<ClaimState, CoreError>> + Send;

    /// Completes the claim `token`; `LeaseLost` when it was taken over.
    fn complete(
        &self,
        pool: &Pool<DB>,
        sql: &Arc<Statements>,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> impl Future<Output = Result<(), CoreError>> + Send;
}

/// The statements of `DB` for `tables`.
pub fn statements<DB: Driver>(tables: &Tables) -> Statements {
    Statements::new(&DB::SYNTAX, tables, DB::own_statements)
}

/// Maps a driver error of `DB` during `operation`.
pub fn db_err<DB: Driver>(operation: &'static str) -> impl Fn(sqlx::Error) -> SqlError {
    SqlError::db(DB::SYNTAX.label, operation)
}
