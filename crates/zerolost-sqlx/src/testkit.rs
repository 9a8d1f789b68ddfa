//! Crash-test glue (feature `testkit`): a SQLite inbox next to an `effects` table, and a
//! handler that writes one effect row per message in the inbox's transaction, with a fault
//! for the process it runs in. The broker crates' consumer-crash tests share it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::{Envelope, HandlerError};

use crate::{SqliteStore, Tables, TransactionalHandler};

/// What the handler does wrong, to stage a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing.
    None,
    /// Calls after the first `n` hang (an hour) before writing: the process dies holding
    /// claims (see [`hung`]).
    HangAfter(usize),
    /// The `n`th call aborts the whole process right after its write, before the commit.
    AbortAt(usize),
}

static HUNG: AtomicUsize = AtomicUsize::new(0);

/// How many handler calls of this process hang (under [`Fault::HangAfter`]).
pub fn hung() -> usize {
    HUNG.load(Ordering::SeqCst)
}

/// Writes one `effects` row per message, in the inbox's transaction.
///
/// ```no_run
/// use zerolost_sqlx::testkit::{EffectsHandler, Fault};
/// let handler = EffectsHandler::new(Fault::None);
/// # let _ = handler;
/// ```
#[derive(Debug)]
pub struct EffectsHandler {
    calls: AtomicUsize,
    fault: Fault,
}

impl EffectsHandler {
    /// A handler with `fault`.
    pub fn new(fault: Fault) -> Self {
        Self {
            calls: AtomicUsize::new(0),
            fault,
        }
    }
}

#[async_trait]
impl TransactionalHandler<sqlx::Sqlite> for EffectsHandler {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut sqlx::SqliteConnection,
    ) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if matches!(self.fault, Fault::HangAfter(n) if call > n) {
            HUNG.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        sqlx::query("INSERT INTO effects (msg_id) VALUES (?)")
            .bind(envelope.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(HandlerError::retryable)?;
        if self.fault == Fault::AbortAt(call) {
            eprintln!(
                "child: aborting after the handler's write of message {call}, before the commit"
            );
            std::process::abort();
        }
        Ok(())
    }
}

/// A migrated SQLite store at `path` with an `effects` table.
pub async fn effects_store(path: &str) -> Result<SqliteStore, zerolost_core::Error> {
    let store = SqliteStore::connect(&format!("sqlite://{path}"), Tables::default()).await?;
    store.migrate().await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS effects (msg_id TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .map_err(|source| database("create the effects table", source))?;
    Ok(store)
}

/// A fresh path for a crash test's SQLite file named after `name`, under the temp dir.
pub fn crash_db(name: &str) -> Result<String, std::io::Error> {
    let dir = std::env::temp_dir().join("zerolost-tests");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join(format!("{name}.db")).display().to_string())
}

/// Asserts every envelope has exactly one effect row in `store`, and nothing else does.
pub async fn assert_each_applied_once(store: &SqliteStore, envelopes: &[Envelope]) {
    let effects = match effect_counts(store).await {
        Ok(effects) => effects,
        Err(e) => panic!("read the effects: {e}"),
    };
    for envelope in envelopes {
        assert_eq!(
            effects.get(&envelope.id.to_string()),
            Some(&1),
            "one effect for {}",
            envelope.id
        );
    }
    assert_eq!(effects.len(), envelopes.len(), "no other effects");
}

/// How many effect rows each message id has.
pub async fn effect_counts(
    store: &SqliteStore,
) -> Result<HashMap<String, usize>, zerolost_core::Error> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT msg_id FROM effects")
        .fetch_all(store.pool())
        .await
        .map_err(|source| database("read the effects", source))?;
    let mut effects = HashMap::new();
    for (id,) in rows {
        *effects.entry(id).or_default() += 1;
    }
    Ok(effects)
}

fn database(operation: &'static str, source: sqlx::Error) -> zerolost_core::Error {
    crate::SqlError::Database {
        database: "sqlite",
        operation,
        source,
    }
    .into()
}
