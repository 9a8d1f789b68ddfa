//! Test glue: fresh, isolated SQL stores (a table prefix per store) as testkit `Stores`.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use zerolost_core::{Envelope, Error};
use zerolost_testkit::{DedupeHandle, Enqueue, OutboxHandle, Stores};

/// PostgreSQL test database (scripts/services/postgres.sh).
pub const PG_URL: (&str, &str) = (
    "ZEROLOST_PG_URL",
    "postgres://zerolost:zerolost@127.0.0.1:55432/zerolost",
);
/// MariaDB test database (scripts/services/mariadb.sh).
pub const MYSQL_URL: (&str, &str) = (
    "ZEROLOST_MYSQL_URL",
    "mysql://zerolost:zerolost@127.0.0.1:53306/zerolost",
);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Whether the test process that made the objects named with prefix `zlt_<tag>_<pid>_…`
/// is gone (its objects can be dropped). `false` when that cannot be told.
pub fn owner_is_gone(name: &str) -> bool {
    let pid = name
        .split('_')
        .nth(2)
        .and_then(|pid| pid.parse::<u32>().ok());
    pid.is_some_and(zerolost_testkit::process_gone)
}

/// Runs `sweep` once per test process (the first caller does it).
pub async fn once_per_process<F: std::future::Future<Output = ()>>(
    done: &std::sync::atomic::AtomicBool,
    sweep: F,
) {
    if !done.swap(true, Ordering::SeqCst) {
        sweep.await;
    }
}

/// A table prefix no other store in this run uses: `zlt_<tag>_<pid>_<n>_`.
pub fn fresh_prefix(tag: &str) -> String {
    format!(
        "zlt_{tag}_{}_{}_",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh SQLite database file in the temp dir.
pub fn fresh_sqlite_url() -> String {
    let dir = std::env::temp_dir().join("zerolost-tests");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!(
        "{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    format!("sqlite://{}", file.display())
}

/// Implements testkit's `Stores` for one store type: every `outbox()`/`dedupe()` call
/// migrates a fresh table set.
macro_rules! sql_stores {
    ($stores:ident, $store:ty, $outbox:ty, $name:literal) => {
        /// Fresh stores on one server.
        #[derive(Clone)]
        pub struct $stores {
            /// Makes a fresh, migrated store.
            pub make: std::sync::Arc<
                dyn Fn()
                        -> futures::future::BoxFuture<'static, Result<$store, zerolost_core::Error>>
                    + Send
                    + Sync,
            >,
        }

        struct Adder($outbox);

        #[async_trait]
        impl Enqueue for Adder {
            async fn enqueue(&self, envelopes: &[Envelope]) -> Result<(), Error> {
                self.0.enqueue_now(envelopes).await
            }
        }

        #[async_trait]
        impl Stores for $stores {
            fn name(&self) -> String {
                $name.into()
            }

            async fn outbox(&self) -> Result<OutboxHandle, Error> {
                let store = (self.make)().await?;
                Ok(OutboxHandle {
                    store: Arc::new(store.outbox()),
                    enqueue: Arc::new(Adder(store.outbox())),
                })
            }

            async fn dedupe(&self) -> Result<DedupeHandle, Error> {
                let store = (self.make)().await?;
                Ok(DedupeHandle {
                    store: Arc::new(store.inbox()),
                    ledger: Arc::new(store.inbox()),
                })
            }
        }
    };
}

pub mod pg {
    use super::*;
    use zerolost_sqlx::{PgOutbox, PgStore, Tables};

    sql_stores!(PgStores, PgStore, PgOutbox, "postgres");

    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// A fresh, migrated store on the test server.
    pub async fn store() -> Result<PgStore, Error> {
        let url = zerolost_testkit::service_url(PG_URL.0, PG_URL.1);
        let tables = Tables::default().with_prefix(&fresh_prefix("pg"))?;
        let store = PgStore::connect(&url, tables).await?;
        once_per_process(&SWEPT, sweep(store.pool())).await;
        store.migrate().await?;
        Ok(store)
    }

    /// Tables, views and functions whose names start with `prefix`.
    pub async fn objects_named(pool: &sqlx::PgPool, prefix: &str) -> Vec<(String, String)> {
        let pattern = format!("{}%", prefix.replace('_', "\\_"));
        sqlx::query_as(
            "SELECT 'TABLE', relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND relname LIKE $1 \
             UNION ALL SELECT 'FUNCTION', proname::text FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = current_schema() AND proname LIKE $1",
        )
        .bind(pattern)
        .fetch_all(pool)
        .await
        .expect("read the catalog")
    }

    /// Drops what earlier test processes left behind (their tables and lease functions).
    async fn sweep(pool: &sqlx::PgPool) {
        for (kind, name) in objects_named(pool, "zlt_").await {
            if owner_is_gone(&name) {
                let sql = format!("DROP {kind} IF EXISTS \"{name}\" CASCADE");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await;
            }
        }
    }

    /// Stores on the test server, or `None` (skip) when it is unreachable.
    pub async fn stores() -> Option<PgStores> {
        let first = store().await;
        zerolost_testkit::require_service("postgres", first.map(|_| ()))?;
        Some(PgStores {
            make: Arc::new(|| Box::pin(store())),
        })
    }
}

pub mod mysql {
    use super::*;
    use zerolost_sqlx::{MySqlOutbox, MySqlStore, Tables};

    sql_stores!(MySqlStores, MySqlStore, MySqlOutbox, "mysql");

    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// A fresh, migrated store on the test server.
    pub async fn store() -> Result<MySqlStore, Error> {
        let url = zerolost_testkit::service_url(MYSQL_URL.0, MYSQL_URL.1);
        let tables = Tables::default().with_prefix(&fresh_prefix("my"))?;
        let store = MySqlStore::connect(&url, tables).await?;
        once_per_process(&SWEPT, sweep(store.pool())).await;
        store.migrate().await?;
        Ok(store)
    }

    /// Tables whose names start with `prefix`.
    pub async fn objects_named(pool: &sqlx::MySqlPool, prefix: &str) -> Vec<(String, String)> {
        let pattern = format!("{}%", prefix.replace('_', "\\_"));
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name LIKE ?",
        )
        .bind(pattern)
        .fetch_all(pool)
        .await
        .expect("read the catalog");
        names
            .into_iter()
            .map(|(n,)| ("TABLE".to_owned(), n))
            .collect()
    }

    /// Drops what earlier test processes left behind.
    async fn sweep(pool: &sqlx::MySqlPool) {
        for (_, name) in objects_named(pool, "zlt_").await {
            if owner_is_gone(&name) {
                let sql = format!("DROP TABLE IF EXISTS `{name}`");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await;
            }
        }
    }

    /// Stores on the test server, or `None` (skip) when it is unreachable.
    pub async fn stores() -> Option<MySqlStores> {
        let first = store().await;
        zerolost_testkit::require_service("mariadb", first.map(|_| ()))?;
        Some(MySqlStores {
            make: Arc::new(|| Box::pin(store())),
        })
    }
}

pub mod sqlite {
    use super::*;
    use zerolost_sqlx::{SqliteOutbox, SqliteStore, Tables};

    sql_stores!(SqliteStores, SqliteStore, SqliteOutbox, "sqlite");

    /// A fresh, migrated store in a new database file.
    pub async fn store() -> Result<SqliteStore, Error> {
        let store = SqliteStore::connect(&fresh_sqlite_url(), Tables::default()).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// SQLite needs no server.
    pub async fn stores() -> Option<SqliteStores> {
        Some(SqliteStores {
            make: Arc::new(|| Box::pin(store())),
        })
    }
}
