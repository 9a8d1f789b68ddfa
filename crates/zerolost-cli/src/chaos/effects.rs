//! The chaos run's business effect: one row per handled message in `<prefix>effects`, in
//! the run's SQL database, counted by id for the verdict.
//!
//! With `--dedupe inbox` the row is written in the inbox's transaction: effect and
//! processed mark commit together, and the table has no guard of its own — a second row for
//! an id is a duplicate effect. With `--dedupe redis` the effect and the Redis mark cannot
//! commit together: a consumer that dies after the effect and before the mark leaves the
//! message to be handled again (the gap of the source article's Redis mark). The handler
//! then does what a Redis-deduplicated handler must: it checks for its own effect first
//! (safe from races because the Redis claim lets one consumer at a time handle an id) and
//! records the re-run in `<prefix>reruns` instead of applying it again.

use std::collections::HashMap;

use async_trait::async_trait;
use zerolost_core::{Envelope, Error, Handler, HandlerError, MessageId};
use zerolost_sqlx::TransactionalHandler;

use crate::ops::connect::OutboxDb;

/// Header naming a designated poison message and how its handler fails: `retryable`
/// (dead-lettered after the consumer's attempts) or `permanent` (at once).
pub const POISON_HEADER: &str = "x-chaos-poison";

/// A pool on the run's database, whichever engine.
#[derive(Clone)]
pub enum EffectsDb {
    /// SQLite file shared by every process of the run.
    Sqlite(sqlx::SqlitePool),
    /// PostgreSQL.
    Postgres(sqlx::PgPool),
    /// MySQL / MariaDB.
    MySql(sqlx::MySqlPool),
}

pub(crate) fn db_error(operation: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::backend(operation, true, e)
}

/// `sql` with its `?` placeholders numbered `$1, $2, …` (PostgreSQL).
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Header of a designated slow message: its handler first waits this many milliseconds
/// (a slow API call), longer than the claim lease.
pub const SLOW_HEADER: &str = "x-chaos-slow-ms";

/// Runs one statement on whichever pool (`$sql_pg` uses `$1`-style placeholders).
macro_rules! on_pool {
    ($db:expr, |$pool:ident, $pg:ident| $body:expr) => {
        match $db {
            EffectsDb::Sqlite($pool) => {
                let $pg = false;
                $body
            }
            EffectsDb::Postgres($pool) => {
                let $pg = true;
                $body
            }
            EffectsDb::MySql($pool) => {
                let $pg = false;
                $body
            }
        }
    };
}

impl EffectsDb {
    /// The pool under one of the CLI's SQL stores.
    pub fn of(db: &OutboxDb) -> Self {
        match db {
            OutboxDb::Sqlite(s) => Self::Sqlite(s.pool().clone()),
            OutboxDb::Postgres(s) => Self::Postgres(s.pool().clone()),
            OutboxDb::MySql(s) => Self::MySql(s.pool().clone()),
        }
    }

    /// Drops and creates the table `table` (`msg_id`, `consumer`; no key, so doubles show).
    pub async fn recreate(&self, table: &str) -> Result<(), Error> {
        let drop = format!("DROP TABLE IF EXISTS {table}");
        let create = format!(
            "CREATE TABLE {table} (msg_id VARCHAR(36) NOT NULL, consumer VARCHAR(32) NOT NULL)"
        );
        let index = format!("CREATE INDEX {table}_id ON {table} (msg_id)");
        on_pool!(self, |pool, _pg| {
            for (sql, what) in [
                (drop, "drop a chaos table"),
                (create, "create a chaos table"),
                (index, "index a chaos table"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .map_err(db_error(what))?;
            }
        });
        Ok(())
    }

    /// Records `id`'s effect on its own (autocommit), unless it is already there: then the
    /// re-run is recorded in `reruns`. Returns whether the effect was applied.
    pub async fn apply_once(
        &self,
        table: &str,
        reruns: &str,
        id: MessageId,
        consumer: &str,
    ) -> Result<bool, Error> {
        let check = |pg: bool| {
            let placeholder = if pg { "$1" } else { "?" };
            format!("SELECT COUNT(*) FROM {table} WHERE msg_id = {placeholder}")
        };
        let applied = on_pool!(self, |pool, pg| {
            let present: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(check(pg)))
                .bind(id.to_string())
                .fetch_one(pool)
                .await
                .map_err(db_error("look for an effect"))?;
            let target = if present == 0 { table } else { reruns };
            sqlx::query(sqlx::AssertSqlSafe(insert_sql(target, pg)))
                .bind(id.to_string())
                .bind(consumer)
                .execute(pool)
                .await
                .map_err(db_error("record an effect"))?;
            present == 0
        });
        Ok(applied)
    }

    /// Rows in `table`.
    pub async fn rows(&self, table: &str) -> Result<u64, Error> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n: i64 = on_pool!(self, |pool, _pg| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .map_err(db_error("count rows"))?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Effect rows per message id.
    pub async fn counts(&self, table: &str) -> Result<HashMap<MessageId, u32>, Error> {
        let sql = format!("SELECT msg_id, COUNT(*) FROM {table} GROUP BY msg_id");
        let rows: Vec<(String, i64)> = on_pool!(self, |pool, _pg| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .map_err(db_error("count the effects"))?
        });
        let mut counts = HashMap::with_capacity(rows.len());
        for (id, n) in rows {
            let id: MessageId = id
                .parse()
                .map_err(|e| Error::backend("read an effect's id", false, e))?;
            counts.insert(id, u32::try_from(n).unwrap_or(u32::MAX));
        }
        Ok(counts)
    }

    /// Distinct messages with an effect (cheap progress reading).
    pub async fn distinct(&self, table: &str) -> Result<u64, Error> {
        let sql = format!("SELECT COUNT(DISTINCT msg_id) FROM {table}");
        let n: i64 = on_pool!(self, |pool, _pg| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .map_err(db_error("count the effects"))?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn insert_sql(table: &str, pg: bool) -> String {
    if pg {
        format!("INSERT INTO {table} (msg_id, consumer) VALUES ($1, $2)")
    } else {
        format!("INSERT INTO {table} (msg_id, consumer) VALUES (?, ?)")
    }
}

/// A designated poison message fails its handler as its header says.
fn poison(envelope: &Envelope) -> Result<(), HandlerError> {
    match envelope.headers.get(POISON_HEADER).map(String::as_str) {
        Some("permanent") => Err(HandlerError::permanent("designated poison (permanent)")),
        Some(_) => Err(HandlerError::retryable("designated poison (retryable)")),
        None => Ok(()),
    }
}

/// The chaos consumer's handler: fails designated poison, else writes one effect row.
#[derive(Debug, Clone)]
pub struct Effects {
    /// The effects table.
    pub table: String,
    /// This consumer's name, written with each effect.
    pub consumer: String,
}

macro_rules! transactional_effects {
    ($($db:ty => $pg:expr),*) => {$(
        #[async_trait]
        impl TransactionalHandler<$db> for Effects {
            async fn handle(
                &self,
                envelope: &Envelope,
                tx: &mut <$db as sqlx::Database>::Connection,
            ) -> Result<(), HandlerError> {
                poison(envelope)?;
                sqlx::query(sqlx::AssertSqlSafe(insert_sql(&self.table, $pg)))
                    .bind(envelope.id.to_string())
                    .bind(&self.consumer)
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::retryable)?;
                Ok(())
            }
        }
    )*};
}
transactional_effects!(sqlx::Sqlite => false, sqlx::Postgres => true, sqlx::MySql => false);

/// [`Effects`] outside any inbox transaction (beside a Redis dedupe store): applied once,
/// a re-run recorded in `reruns`.
pub struct DirectEffects {
    /// The database.
    pub db: EffectsDb,
    /// What to write.
    pub effects: Effects,
    /// The table of re-runs.
    pub reruns: String,
}

#[async_trait]
impl Handler for DirectEffects {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        poison(envelope)?;
        self.db
            .apply_once(
                &self.effects.table,
                &self.reruns,
                envelope.id,
                &self.effects.consumer,
            )
            .await
            .map(drop)
            .map_err(HandlerError::retryable)
    }
}
