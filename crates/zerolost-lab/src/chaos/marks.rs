//! Processed marks that could not be written, as a chaos consumer saw them: with Redis the
//! mark is written apart from the effect, after the handler, and a store that is cut off,
//! killed or restarting refuses it. [`WatchedMarks`] wraps the consumer's dedupe store and
//! records every refused processed mark (message id, fence) in `<prefix>runs_marks_failed`,
//! on the database's direct link, so the verdict can tell that gap (a re-run is expected)
//! from a mark the store acknowledged and then lost (a re-run is a failure).

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::parking::ParkedDeadLetter;
use zerolost_core::{Claim, ClaimToken, DedupeStore, Error, FailureRecord, MessageId, Outcome};

use super::effects::EffectsDb;

/// The table of refused marks beside the runs table `runs`.
pub fn marks_table(runs: &str) -> String {
    format!("{runs}_marks_failed")
}

/// A dedupe store whose refused processed marks are recorded.
pub struct WatchedMarks<D> {
    /// The consumer's store.
    pub inner: D,
    /// Where refusals are recorded.
    pub db: EffectsDb,
    /// The refusals table.
    pub table: String,
}

#[async_trait]
impl<D: DedupeStore> DedupeStore for WatchedMarks<D> {
    async fn claim(&self, id: MessageId, lease: Duration) -> Result<Claim, Error> {
        self.inner.claim(id, lease).await
    }
    async fn extend(&self, token: &ClaimToken, lease: Duration) -> Result<(), Error> {
        self.inner.extend(token, lease).await
    }
    async fn complete(
        &self,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), Error> {
        let result = self.inner.complete(token, outcome, keep_for).await;
        if result.is_err() && outcome == Outcome::Processed {
            let fence = i64::try_from(token.fence).unwrap_or(i64::MAX);
            if let Err(e) = self.db.mark_failed(&self.table, token.id, fence).await {
                eprintln!(
                    "chaos-consumer: a refused mark of {} is not recorded: {e}",
                    token.id
                );
            }
        }
        result
    }
    async fn release(&self, token: &ClaimToken) -> Result<(), Error> {
        self.inner.release(token).await
    }
    async fn failures(&self, id: MessageId) -> Result<Option<FailureRecord>, Error> {
        self.inner.failures(id).await
    }
    async fn record_failure(&self, id: MessageId, error: &str) -> Result<FailureRecord, Error> {
        self.inner.record_failure(id, error).await
    }
    async fn park_dead_letter(&self, parked: &ParkedDeadLetter) -> Result<(), Error> {
        self.inner.park_dead_letter(parked).await
    }
}

impl EffectsDb {
    /// Drops and creates the refused-marks table.
    pub async fn recreate_marks(&self, table: &str) -> Result<(), Error> {
        self.execute(
            &format!("DROP TABLE IF EXISTS {table}"),
            "drop a chaos table",
            &[],
        )
        .await?;
        let create =
            format!("CREATE TABLE {table} (msg_id VARCHAR(36) NOT NULL, fence BIGINT NOT NULL)");
        self.execute(&create, "create a chaos table", &[]).await
    }

    /// Records that the processed mark of `id` under `fence` was refused.
    pub async fn mark_failed(&self, table: &str, id: MessageId, fence: i64) -> Result<(), Error> {
        let sql = format!("INSERT INTO {table} (msg_id, fence) VALUES (?, ?)");
        let args = [
            super::runs::Arg::Text(id.to_string()),
            super::runs::Arg::Int(fence),
        ];
        self.execute(&sql, "record a refused mark", &args).await
    }

    /// Every refused mark: (message id, fence).
    pub async fn failed_marks(&self, table: &str) -> Result<HashSet<(MessageId, i64)>, Error> {
        let sql = format!("SELECT msg_id, fence FROM {table}");
        let rows: Vec<(String, i64)> = self.select(sql, "read the refused marks").await?;
        rows.into_iter()
            .map(|(id, fence)| {
                let id = id
                    .parse()
                    .map_err(|e| Error::backend("read a refused mark's id", false, e))?;
                Ok((id, fence))
            })
            .collect()
    }
}
