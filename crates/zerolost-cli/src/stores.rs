//! The outbox and dedupe stores the demo runs on.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use zerolost_core::memory::FaultInjector;
use zerolost_core::{Envelope, Error};
use zerolost_sqlx::{SqliteOutbox, SqliteStore, Tables};
use zerolost_testkit::Enqueue;
use zerolost_testkit::scenario::ScenarioStores;

use crate::demo::{DedupeKind, StoreKind};

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
sql_enqueue!(
    SqliteOutbox,
    zerolost_sqlx::PgOutbox,
    zerolost_sqlx::MySqlOutbox
);

/// Stores opened before the run; memory stores are made when the run's faults exist.
pub struct DemoStores {
    sqlite: Option<SqliteStore>,
    store: StoreKind,
    dedupe: DedupeKind,
}

/// Opens (recreating) the SQLite file when a SQLite store is chosen.
pub async fn open(db: &Path, store: StoreKind, dedupe: DedupeKind) -> Result<DemoStores, Error> {
    let sqlite = if store == StoreKind::Sqlite || dedupe == DedupeKind::Sqlite {
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
        Some(store)
    } else {
        None
    };
    Ok(DemoStores {
        sqlite,
        store,
        dedupe,
    })
}

impl DemoStores {
    /// The scenario's stores; in-memory parts take `faults`.
    pub fn build(self, faults: Arc<FaultInjector>) -> ScenarioStores {
        let mut stores = ScenarioStores::memory(faults);
        if let Some(sqlite) = self.sqlite {
            if self.store == StoreKind::Sqlite {
                stores.outbox = Arc::new(sqlite.outbox());
                stores.enqueue = Arc::new(SqlEnqueue(sqlite.outbox()));
            }
            if self.dedupe == DedupeKind::Sqlite {
                stores.dedupe = Arc::new(sqlite.inbox());
                stores.ledger = Arc::new(sqlite.inbox());
            }
        }
        stores
    }
}
