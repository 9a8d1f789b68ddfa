//! PostgreSQL: leases through a plan-pinned function (`FOR UPDATE SKIP LOCKED` and the
//! stamp in one statement), claims as one upsert, id lists as one array parameter.

use std::time::Duration;

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgConnection, PgPoolOptions, PgQueryResult};
use sqlx::{Arguments, Executor, PgPool, Postgres};
use uuid::Uuid;
use zerolost_core::ClaimToken;

use crate::Tables;
use crate::driver::{ClaimState, Dialect, Driver};
use crate::exec::{Direct, fetch_all, upsert_claim};
use crate::params::Param;
use crate::rows::LeasedRow;
use crate::statements::{
    History, Names, Own, PARK_COLUMNS, RECORD_COLUMNS, Script, Statements, Syntax,
};

/// The PostgreSQL store.
pub type PgStore = crate::SqlStore<Postgres>;
/// The PostgreSQL outbox.
pub type PgOutbox = crate::SqlOutbox<Postgres>;
/// The PostgreSQL inbox.
pub type PgInbox = crate::SqlInbox<Postgres>;

impl Dialect for Postgres {}

impl Driver for Postgres {
    const SYNTAX: Syntax = Syntax {
        label: "postgres",
        quote: '"',
        now: "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        numbered: true,
        id_array: true,
    };
    const MIGRATIONS: &'static [Script] = &[
        Script {
            version: 1,
            description: "outbox and inbox",
            template: include_str!("migrations/postgres/0001_outbox_inbox.sql"),
        },
        Script {
            version: 2,
            description: "lease function",
            template: include_str!("migrations/postgres/0002_lease_function.sql"),
        },
        Script {
            version: 3,
            description: "inbox fence",
            template: include_str!("migrations/postgres/0003_inbox_fence.sql"),
        },
        Script {
            version: 4,
            description: "parked dead letters",
            template: include_str!("migrations/postgres/0004_parked_dead_letters.sql"),
        },
    ];
    const HISTORY: History = History {
        installed_on: "TIMESTAMPTZ NOT NULL DEFAULT now()",
        binary: "BYTEA",
        hex: ("decode('", "', 'hex')"),
    };
    type InboxWrites = Direct;

    fn own_statements(n: &Names) -> Own {
        let (i, p) = (&n.inbox, &n.parked);
        let (purge_outbox, purge_inbox) = n.purge_by_subquery();
        Own {
            lease: format!(
                "SELECT {RECORD_COLUMNS} FROM {}($1, $2, $3)",
                lease_function(&n.tables)
            ),
            // In the upsert the existing row is named by an alias.
            claim: n.upsert_claim(&format!("{i} AS t"), "t."),
            count_duplicate: n.sql(format!(
                "UPDATE {i} SET duplicates = duplicates + 1 WHERE id = ? AND state >= 2 RETURNING state"
            )),
            record_failure: n.upsert_failure(&format!("{i} AS t"), "t."),
            duplicates_total: format!(
                "SELECT CAST(COALESCE(SUM(duplicates), 0) AS BIGINT) AS total FROM {i}"
            ),
            purge_outbox,
            purge_inbox,
            park_dead_letter: n.sql(format!(
                "INSERT INTO {p} {PARK_COLUMNS} ON CONFLICT (id) DO NOTHING"
            )),
            ..Own::default()
        }
    }

    async fn connect_pool(url: &str) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
    }

    fn bind_ids(arguments: &mut PgArguments, ids: &[Uuid]) -> Result<(), BoxDynError> {
        arguments.add(ids)
    }

    fn executor<'c>(conn: &'c mut PgConnection) -> impl Executor<'c, Database = Self> {
        conn
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn drop_first(sql: &Statements) -> Vec<String> {
        vec![format!(
            "DROP FUNCTION IF EXISTS {}(UUID, BIGINT, BIGINT)",
            lease_function(&sql.tables)
        )]
    }

    async fn lease(
        pool: &PgPool,
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
        conn: &mut PgConnection,
        sql: &Statements,
        token: &ClaimToken,
        lease_ms: i64,
    ) -> Result<ClaimState, sqlx::Error> {
        upsert_claim::<Self>(conn, sql, token, lease_ms).await
    }
}

/// PostgreSQL's lease function for `tables`, quoted and qualified.
fn lease_function(tables: &Tables) -> String {
    tables.qualified(&tables.lease_function_name(), '"')
}
