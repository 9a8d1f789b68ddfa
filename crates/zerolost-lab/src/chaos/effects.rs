//! The chaos run's business effect: one row per handled message in `<prefix>effects`, in
//! the run's SQL database, counted by id for the verdict.
//!
//! With `--dedupe inbox` the row is written in the inbox's transaction: effect and
//! processed mark commit together, and the table has no guard of its own — a second row for
//! an id is a duplicate effect. With `--dedupe redis` the effect and the Redis mark cannot
//! commit together: a consumer that dies (or loses Redis) after the effect and before the
//! mark leaves the message to be handled again (the gap of the source article's Redis
//! mark). The handler then does what the docs tell a Redis-deduplicated handler to do: its
//! effect is keyed by the message id and fenced. In one transaction it inserts the id with
//! its claim's fencing number into `<prefix>effects_applied` (primary key: the id); only a
//! new id appends the effect row. An id already there is a re-run: its fence is raised
//! when the claim is newer (recorded in `<prefix>reruns`), and a claim older than the one
//! that wrote it is a stale holder, refused (the run is interrupted, nothing written). The
//! effects table keeps no key of its own, so a guard that let a second effect through
//! shows as a duplicate; every run is judged from the runs table besides.

use std::collections::HashMap;

use async_trait::async_trait;
use zerolost_core::{Envelope, Error, Handler, HandlerContext, HandlerError, MessageId};
use zerolost_sqlx::TransactionalHandler;

use zerolost_cli::ops::connect::OutboxDb;

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

    /// A pool on `url` (the run's tables must exist).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let section: zerolost_cli::config::OutboxSection =
            serde_json::from_value(serde_json::json!({
                "url": url, "table_prefix": super::spec::TABLE_PREFIX, "migrate": false
            }))
            .map_err(|e| Error::Config(format!("the run's database: {e}")))?;
        Ok(Self::of(&OutboxDb::connect(&section).await?))
    }

    /// Drops and creates the table keying effects by id: `msg_id` (primary key), `fence`.
    pub async fn recreate_applied(&self, table: &str) -> Result<(), Error> {
        let drop = format!("DROP TABLE IF EXISTS {table}");
        let create = format!(
            "CREATE TABLE {table} (msg_id VARCHAR(36) NOT NULL PRIMARY KEY, fence BIGINT NOT NULL)"
        );
        on_pool!(self, |pool, _pg| {
            for sql in [drop, create] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .map_err(db_error("create a chaos table"))?;
            }
        });
        Ok(())
    }

    /// Applies `id`'s effect keyed by the id and fenced by `fence` (see the module docs),
    /// in one transaction.
    pub async fn apply_fenced(
        &self,
        tables: &FencedTables,
        id: MessageId,
        fence: u64,
        consumer: &str,
    ) -> Result<Applied, Error> {
        let fence = i64::try_from(fence).unwrap_or(i64::MAX);
        let statements = |pg: bool| {
            let key = &tables.applied;
            let claim = match self {
                EffectsDb::MySql(_) => {
                    format!("INSERT IGNORE INTO {key} (msg_id, fence) VALUES (?, ?)")
                }
                _ => format!(
                    "INSERT INTO {key} (msg_id, fence) VALUES (?, ?) ON CONFLICT (msg_id) DO NOTHING"
                ),
            };
            let raise = format!("UPDATE {key} SET fence = ? WHERE msg_id = ? AND fence < ?");
            let fix = |sql: String| if pg { numbered(&sql) } else { sql };
            (fix(claim), fix(raise))
        };
        let outcome = on_pool!(self, |pool, pg| {
            let (claim, raise) = statements(pg);
            let mut tx = pool.begin().await.map_err(db_error("begin an effect"))?;
            let new = sqlx::query(sqlx::AssertSqlSafe(claim))
                .bind(id.to_string())
                .bind(fence)
                .execute(&mut *tx)
                .await
                .map_err(db_error("key an effect"))?
                .rows_affected()
                == 1;
            let outcome = if new {
                Applied::Now
            } else if sqlx::query(sqlx::AssertSqlSafe(raise))
                .bind(fence)
                .bind(id.to_string())
                .bind(fence)
                .execute(&mut *tx)
                .await
                .map_err(db_error("fence an effect"))?
                .rows_affected()
                == 1
            {
                Applied::Before
            } else {
                return Ok(Applied::Stale);
            };
            let target = if new { &tables.effects } else { &tables.reruns };
            sqlx::query(sqlx::AssertSqlSafe(insert_sql(target, pg)))
                .bind(id.to_string())
                .bind(consumer)
                .execute(&mut *tx)
                .await
                .map_err(db_error("record an effect"))?;
            tx.commit().await.map_err(db_error("commit an effect"))?;
            outcome
        });
        Ok(outcome)
    }

    /// The rows `sql` selects, whichever engine.
    pub(crate) async fn select<T>(&self, sql: String, what: &'static str) -> Result<Vec<T>, Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>
            + Send
            + Unpin,
    {
        on_pool!(self, |pool, _pg| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .map_err(db_error(what))
        })
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

/// The tables of a keyed, fenced effect.
#[derive(Debug, Clone)]
pub struct FencedTables {
    /// One row per application (no key).
    pub effects: String,
    /// The key: message id and the fence that last wrote it.
    pub applied: String,
    /// One row per re-run found applied.
    pub reruns: String,
}

/// What [`EffectsDb::apply_fenced`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The effect is applied by this run.
    Now,
    /// An earlier claim applied it; this newer one raised the fence and recorded a re-run.
    Before,
    /// A newer claim wrote the key: this holder is stale and wrote nothing.
    Stale,
}

/// [`Effects`] outside any inbox transaction (beside a Redis dedupe store): keyed by id and
/// fenced (see the module docs).
pub struct DirectEffects {
    /// The database.
    pub db: EffectsDb,
    /// Where.
    pub tables: FencedTables,
    /// This consumer's name, written with each effect.
    pub consumer: String,
}

#[async_trait]
impl Handler for DirectEffects {
    async fn handle(&self, _: &Envelope) -> Result<(), HandlerError> {
        Err(HandlerError::permanent("a fenced effect needs its claim"))
    }

    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        context: &HandlerContext,
    ) -> Result<(), HandlerError> {
        poison(envelope)?;
        let applied = self
            .db
            .apply_fenced(&self.tables, envelope.id, context.fence(), &self.consumer)
            .await
            .map_err(HandlerError::retryable)?;
        match applied {
            Applied::Now | Applied::Before => Ok(()),
            Applied::Stale => Err(HandlerError::interrupted(format!(
                "fence {} is older than the claim that wrote the effect",
                context.fence()
            ))),
        }
    }
}
