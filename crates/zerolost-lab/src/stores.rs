//! The outbox and dedupe stores the demo runs on.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use zerolost_core::memory::FaultInjector;
use zerolost_core::{ConsumerLedger, DedupeStore, Envelope, Error, OutboxStore};
use zerolost_sqlx::{SqliteOutbox, SqliteStore, Tables};
use zerolost_testkit::Enqueue;
use zerolost_testkit::scenario::ScenarioStores;

#[cfg(not(all(feature = "postgres", feature = "mysql", feature = "redis")))]
use crate::kinds::not_built;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
use crate::kinds::{BenchTarget, default_url};
use crate::kinds::{DedupeKind, StoreKind};

/// Adds rows in a transaction of their own, as a producer's business transaction would.
pub struct SqlEnqueue<O>(pub O);

macro_rules! sql_enqueue {
    ($($outbox:ty),*) => {$(
        #[async_trait]
        impl Enqueue for SqlEnqueue<$outbox> {
            async fn enqueue(&self, envelopes: &[Envelope]) -> Result<(), Error> {
                self.0.enqueue_now(envelopes).await
            }
        }
    )*};
}
sql_enqueue!(SqliteOutbox);
#[cfg(feature = "postgres")]
sql_enqueue!(zerolost_sqlx::PgOutbox);
#[cfg(feature = "mysql")]
sql_enqueue!(zerolost_sqlx::MySqlOutbox);

/// The demo's tables on a shared PostgreSQL or MySQL server: dropped and made anew each run.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const SERVER_TABLE_PREFIX: &str = "zerolost_demo_";

type OutboxPair = (Arc<dyn OutboxStore>, Arc<dyn Enqueue>);
type DedupePair = (Arc<dyn DedupeStore>, Arc<dyn ConsumerLedger>);

/// One SQL database of the run: its outbox (with its enqueue) and its inbox.
struct SqlParts {
    outbox: OutboxPair,
    inbox: DedupePair,
}

macro_rules! sql_parts {
    ($store:expr) => {{
        let store = $store;
        SqlParts {
            outbox: (
                Arc::new(store.outbox()) as Arc<dyn OutboxStore>,
                Arc::new(SqlEnqueue(store.outbox())) as Arc<dyn Enqueue>,
            ),
            inbox: (
                Arc::new(store.inbox()) as Arc<dyn DedupeStore>,
                Arc::new(store.inbox()) as Arc<dyn ConsumerLedger>,
            ),
        }
    }};
}

/// The demo's tables on a PostgreSQL or MySQL server (from the environment or the test
/// server), dropped and migrated anew.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! fresh_server {
    ($store:ty, $target:ident, $name:literal, $script:literal, $var:literal) => {{
        let url = default_url(BenchTarget::$target);
        let store = <$store>::connect(&url, server_tables()?)
            .await
            .map_err(|e| unreachable_store($name, $script, $var, &e.to_string()))?;
        store.drop_tables().await?;
        store.migrate().await?;
        store
    }};
}

/// Stores opened before the run; memory stores are made when the run's faults exist.
pub struct DemoStores {
    outbox: Option<OutboxPair>,
    dedupe: Option<DedupePair>,
}

/// Opens the chosen stores, each starting empty: the SQLite file is recreated, the demo's
/// tables on PostgreSQL / MySQL are dropped and migrated again, Redis keys get a prefix of
/// their own.
pub async fn open(db: &Path, store: StoreKind, dedupe: DedupeKind) -> Result<DemoStores, Error> {
    // The inbox lives in the outbox's database; beside an in-memory outbox, in SQLite.
    let sql = match (store, dedupe) {
        (StoreKind::Sqlite, _) | (StoreKind::Memory, DedupeKind::Inbox) => {
            Some(sql_parts!(fresh_sqlite(db).await?))
        }
        #[cfg(feature = "postgres")]
        (StoreKind::Postgres, _) => Some(sql_parts!(fresh_server!(
            zerolost_sqlx::PgStore,
            Postgres,
            "PostgreSQL",
            "postgres",
            "ZEROLOST_PG_URL"
        ))),
        #[cfg(feature = "mysql")]
        (StoreKind::Mysql, _) => Some(sql_parts!(fresh_server!(
            zerolost_sqlx::MySqlStore,
            Mysql,
            "MySQL",
            "mariadb",
            "ZEROLOST_MYSQL_URL"
        ))),
        #[cfg(not(feature = "postgres"))]
        (StoreKind::Postgres, _) => return Err(not_built("--store postgres", "postgres")),
        #[cfg(not(feature = "mysql"))]
        (StoreKind::Mysql, _) => return Err(not_built("--store mysql", "mysql")),
        (StoreKind::Memory, _) => None,
    };
    let (outbox, inbox) = match sql {
        Some(parts) => (
            (store != StoreKind::Memory).then_some(parts.outbox),
            Some(parts.inbox),
        ),
        None => (None, None),
    };
    let dedupe = match dedupe {
        DedupeKind::Memory => None,
        DedupeKind::Inbox => inbox,
        DedupeKind::Redis => Some(redis().await?),
    };
    Ok(DemoStores { outbox, dedupe })
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn server_tables() -> Result<Tables, Error> {
    Tables::default()
        .with_prefix(SERVER_TABLE_PREFIX)
        .map_err(|e| Error::Config(e.to_string()))
}

#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
fn unreachable_store(name: &str, script: &str, var: &str, error: &str) -> Error {
    Error::Config(format!(
        "no {name} for --store ({error}); start one with scripts/services/{script}.sh start, \
         or set {var}"
    ))
}

/// A SQLite database in `db`, recreated (WAL and shared-memory files too).
async fn fresh_sqlite(db: &Path) -> Result<SqliteStore, Error> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", db.display());
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Config(format!("cannot remove {file}: {e}"))),
        }
    }
    let store =
        SqliteStore::connect(&format!("sqlite://{}", db.display()), Tables::default()).await?;
    store.migrate().await?;
    Ok(store)
}

#[cfg(not(feature = "redis"))]
async fn redis() -> Result<DedupePair, Error> {
    Err(not_built("--dedupe redis", "redis"))
}

/// Redis dedupe under a key prefix of this run's own (`zerolost-demo:<unix ms>:`).
#[cfg(feature = "redis")]
async fn redis() -> Result<DedupePair, Error> {
    let url = default_url(BenchTarget::Redis);
    let redis = zerolost_redis::RedisDedupe::connect(&url)
        .await
        .map_err(|e| unreachable_store("Redis", "redis", "ZEROLOST_REDIS_URL", &e.to_string()))?;
    let run = chrono::Utc::now().timestamp_millis();
    let redis = redis.with_prefix(&format!("zerolost-demo:{run}:"))?;
    Ok((Arc::new(redis.clone()), Arc::new(redis)))
}

impl DemoStores {
    /// The scenario's stores; in-memory parts take `faults`.
    pub fn build(self, faults: Arc<FaultInjector>) -> ScenarioStores {
        let mut stores = ScenarioStores::memory(faults);
        if let Some((outbox, enqueue)) = self.outbox {
            stores.outbox = outbox;
            stores.enqueue = enqueue;
        }
        if let Some((dedupe, ledger)) = self.dedupe {
            stores.dedupe = dedupe;
            stores.ledger = ledger;
        }
        stores
    }
}
