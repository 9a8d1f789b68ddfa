//! What the store and broker measurements share: a fresh outbox per run, the messages, and
//! a timed drain of the outbox by relay rounds.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zerolost_core::{Envelope, Error, OutboxStore, Publisher, Relay, RelayConfig};
use zerolost_sqlx::{MySqlStore, PgStore, SqliteStore, Tables};
use zerolost_testkit::Enqueue;

use crate::kinds::BenchTarget;
use crate::stores::SqlEnqueue;

/// A fresh outbox for one measurement run, and how to drop it.
pub(super) struct Fresh {
    pub(super) outbox: Arc<dyn OutboxStore>,
    pub(super) enqueue: Arc<dyn Enqueue>,
    pub(super) drop: std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>,
}

pub(super) async fn fresh(target: BenchTarget, url: &str) -> Result<Fresh, Error> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tables = Tables::default().with_prefix(&format!("zlbench_{}_{n}_", std::process::id()))?;
    macro_rules! open {
        ($store:expr) => {{
            let store = $store;
            store.migrate().await?;
            let dropper = store.clone();
            Fresh {
                outbox: Arc::new(store.outbox()),
                enqueue: Arc::new(SqlEnqueue(store.outbox())),
                drop: Box::pin(async move { dropper.drop_tables().await }),
            }
        }};
    }
    Ok(match target {
        BenchTarget::Postgres => open!(PgStore::connect(url, tables).await?),
        BenchTarget::Mysql => open!(MySqlStore::connect(url, tables).await?),
        BenchTarget::Sqlite => {
            std::fs::create_dir_all(".zerolost")
                .map_err(|e| Error::Config(format!("cannot create .zerolost/: {e}")))?;
            let file = format!(".zerolost/bench-{}-{n}.sqlite", std::process::id());
            let store = SqliteStore::connect(&format!("sqlite://{file}"), tables).await?;
            let mut fresh = open!(store);
            fresh.drop = Box::pin(async move {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{file}{suffix}"));
                }
                Ok(())
            });
            fresh
        }
        BenchTarget::Redis => return Err(Error::Config("redis has no outbox".into())),
        BenchTarget::Memory => {
            let outbox = zerolost_core::memory::MemoryOutbox::new();
            Fresh {
                outbox: Arc::new(outbox.clone()),
                enqueue: Arc::new(outbox),
                drop: Box::pin(async { Ok(()) }),
            }
        }
    })
}

/// `n` small order messages.
pub(super) fn envelopes(n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| Envelope::new("bench", format!("{{\"order\":{i},\"amount\":1250}}")))
        .collect()
}

/// Enqueues `batch` into a fresh outbox of `target`, then times `rounds` relay rounds in
/// flight at once (leases are exclusive, as with that many relays) draining it through
/// `publisher`; drops the outbox. Fails unless every row was published.
pub(super) async fn timed_drain(
    target: BenchTarget,
    url: &str,
    batch: &[Envelope],
    publisher: impl Publisher + 'static,
    config: RelayConfig,
    rounds: usize,
) -> Result<Duration, Error> {
    let fresh = fresh(target, url).await?;
    for chunk in batch.chunks(1000) {
        fresh.enqueue.enqueue(chunk).await?;
    }
    let relay = Arc::new(Relay::new(fresh.outbox.clone(), publisher).with_config(config)?);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..rounds.max(1) {
        let relay = relay.clone();
        workers.spawn(async move {
            let mut published = 0;
            loop {
                let round = relay.run_once().await?;
                if round.leased == 0 {
                    return Ok::<usize, Error>(published);
                }
                published += round.published;
            }
        });
    }
    let mut published = 0;
    while let Some(done) = workers.join_next().await {
        published += done.map_err(|e| Error::backend("relay task", false, e.to_string()))??;
    }
    let elapsed = started.elapsed();
    fresh.drop.await?;
    if published != batch.len() {
        return Err(Error::Invalid {
            reason: format!("the relays published {published} of {} rows", batch.len()),
        });
    }
    Ok(elapsed)
}
