//! The inbox as a [`ConsumerLedger`]: what reconciliation and the DLQ commands read.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use zerolost_core::parking::ParkedDeadLetter;
use zerolost_core::{ConsumerLedger, Error as CoreError, MessageId, ProcessedEntry, Snapshot};

use crate::driver::{Dialect, db_err};
use crate::exec::{execute_on_pool, fetch_all_on_pool, fetch_optional_on_pool};
use crate::inbox::SqlInbox;
use crate::params::{Columns, Param};
use crate::rows::{self, ParkedRow};

/// A finished inbox row as a ledger entry (`None` for a state that is not finished).
fn entry_of(row: &impl Columns) -> Result<Option<ProcessedEntry>, sqlx::Error> {
    let (id, state, at) = (
        row.uuid("id")?,
        row.int16("state")?,
        row.opt_int("finished_at")?,
    );
    Ok(rows::state_outcome(state).map(|outcome| ProcessedEntry {
        id: MessageId::from_uuid(id),
        outcome,
        at: rows::time(at.unwrap_or(0)),
    }))
}

#[async_trait]
impl<DB: Dialect> ConsumerLedger for SqlInbox<DB> {
    async fn finished(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Snapshot<ProcessedEntry>, CoreError> {
        let taken_at = Utc::now();
        let rows = match since {
            Some(since) => {
                let params = [Param::Int(since.timestamp_millis())];
                fetch_all_on_pool(&self.pool, &self.sql.finished_since, &params).await
            }
            None => fetch_all_on_pool(&self.pool, &self.sql.finished, &[]).await,
        }
        .map_err(db_err::<DB>("ledger"))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.extend(entry_of(row).map_err(db_err::<DB>("ledger"))?);
        }
        Ok(Snapshot { taken_at, entries })
    }

    async fn forget_dead_letter(&self, id: MessageId) -> Result<bool, CoreError> {
        let params = [Param::Uuid(*id.as_uuid())];
        let changed = execute_on_pool(&self.pool, &self.sql.forget_dead_letter, &params)
            .await
            .map_err(db_err::<DB>("forget dead letter"))?;
        Ok(changed == 1)
    }

    async fn parked_dead_letters(
        &self,
        destination: &str,
    ) -> Result<Vec<ParkedDeadLetter>, CoreError> {
        let params = [Param::Text(destination)];
        let rows = fetch_all_on_pool(&self.pool, &self.sql.parked_of, &params)
            .await
            .map_err(db_err::<DB>("parked dead letters"))?;
        let mut parked = Vec::with_capacity(rows.len());
        for row in &rows {
            let row = ParkedRow::read(row).map_err(db_err::<DB>("parked dead letters"))?;
            parked.push(row.into_parked()?);
        }
        Ok(parked)
    }

    async fn remove_parked(
        &self,
        destination: &str,
        ids: &[MessageId],
    ) -> Result<usize, CoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let uuids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        let sql = self.sql.with_ids(&self.sql.unpark_prefix, uuids.len());
        let params = [Param::Text(destination), Param::Ids(&uuids)];
        let changed = execute_on_pool(&self.pool, &sql, &params)
            .await
            .map_err(db_err::<DB>("remove parked dead letters"))?;
        Ok(usize::try_from(changed).unwrap_or(0))
    }

    async fn duplicates_suppressed(&self) -> Result<u64, CoreError> {
        let row = fetch_optional_on_pool(&self.pool, &self.sql.own.duplicates_total, &[])
            .await
            .map_err(db_err::<DB>("ledger"))?;
        let total = match row {
            Some(row) => row.int("total").map_err(db_err::<DB>("ledger"))?,
            None => 0,
        };
        Ok(u64::try_from(total).unwrap_or(0))
    }
}
