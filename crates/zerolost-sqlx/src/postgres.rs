//! PostgreSQL: leases with `FOR UPDATE SKIP LOCKED` in one statement, id lists as arrays.

use sqlx::postgres::{PgArguments, PgPoolOptions};
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres};
use uuid::Uuid;

use crate::dialect::{ClaimState, Dialect, Statements};
use crate::rows::LeasedRow;
use crate::{SqlError, Tables};

crate::store::sql_backend!(Postgres, PgConnection, Dialect::Postgres);

/// The PostgreSQL store.
pub type PgStore = crate::SqlStore<Postgres>;
/// The PostgreSQL outbox.
pub type PgOutbox = crate::SqlOutbox<Postgres>;
/// The PostgreSQL inbox.
pub type PgInbox = crate::SqlInbox<Postgres>;

pub(crate) fn check_tables(_tables: &Tables) -> Result<(), SqlError> {
    Ok(())
}

pub(crate) async fn connect_pool(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
}

pub(crate) fn bind_ids<'q>(
    query: Query<'q, Postgres, PgArguments>,
    ids: &[Uuid],
) -> Query<'q, Postgres, PgArguments> {
    query.bind(ids.to_vec())
}

crate::store::returning_ops!(Postgres, PgPool);

crate::store::direct_inbox_ops!(Postgres);
