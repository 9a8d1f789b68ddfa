//! [`SqlOutbox`]: `enqueue` in the caller's transaction, and the relay's side of the table
//! as an [`OutboxStore`], written once for every database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Pool;
use uuid::Uuid;
use zerolost_core::{
    Envelope, Error as CoreError, Lease, MessageId, OutboxCounts, OutboxEntry, OutboxRecord,
    OutboxStore, Snapshot,
};

use crate::SqlError;
use crate::driver::{Dialect, db_err};
use crate::exec::{execute, execute_on_pool, fetch_all_on_pool};
use crate::params::Param;
use crate::rows::{self, EntryRow, NewRow};
use crate::statements::Statements;

/// The outbox table as an [`OutboxStore`], plus `enqueue` in the caller's transaction.
/// From [`SqlStore::outbox`](crate::SqlStore::outbox).
pub struct SqlOutbox<DB: Dialect> {
    pub(crate) pool: Pool<DB>,
    pub(crate) sql: Arc<Statements>,
}

impl<DB: Dialect> Clone for SqlOutbox<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: self.sql.clone(),
        }
    }
}

impl<DB: Dialect> std::fmt::Debug for SqlOutbox<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlOutbox")
            .field("database", &DB::SYNTAX.label)
            .field("table", &self.sql.names.outbox)
            .finish()
    }
}

impl<DB: Dialect> SqlOutbox<DB> {
    /// Adds `envelope` to the outbox in the caller's transaction, so it commits or rolls
    /// back with the business rows. A duplicate id is refused.
    pub async fn enqueue(
        &self,
        conn: &mut DB::Connection,
        envelope: &Envelope,
    ) -> Result<(), CoreError> {
        self.enqueue_batch(conn, std::slice::from_ref(envelope))
            .await
    }

    /// Adds many envelopes in the caller's transaction with multi-row INSERTs.
    pub async fn enqueue_batch(
        &self,
        conn: &mut DB::Connection,
        envelopes: &[Envelope],
    ) -> Result<(), CoreError> {
        let rows = envelopes
            .iter()
            .map(NewRow::from_envelope)
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in rows.chunks(rows::INSERT_CHUNK) {
            let mut params = Vec::with_capacity(chunk.len() * 9);
            for row in chunk {
                params.extend([
                    Param::Uuid(row.id),
                    Param::Text(row.destination),
                    Param::OptText(row.key),
                    Param::Text(&row.headers),
                    Param::Bytes(row.payload),
                    Param::Int16(rows::PENDING),
                    Param::Int32(0),
                    Param::Int(row.created_at),
                    Param::Int(row.created_at),
                ]);
            }
            let sql = self.sql.enqueue(chunk.len());
            execute::<DB>(conn, &sql, &params)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        SqlError::DuplicateId(match chunk {
                            [one] => one.id.to_string(),
                            _ => format!("one of {} ids in this batch", chunk.len()),
                        })
                    }
                    other => db_err::<DB>("enqueue")(other),
                })?;
        }
        Ok(())
    }

    /// Adds envelopes in a transaction of their own (when there are no business rows to
    /// commit with them).
    pub async fn enqueue_now(&self, envelopes: &[Envelope]) -> Result<(), CoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err::<DB>("begin"))?;
        self.enqueue_batch(&mut tx, envelopes).await?;
        tx.commit().await.map_err(db_err::<DB>("commit"))?;
        Ok(())
    }

    /// Runs `prefix` + an id filter over `ids` in chunks, `token` first if given; the rows
    /// changed.
    async fn update_ids(
        &self,
        operation: &'static str,
        prefix: &str,
        token: Option<Uuid>,
        ids: &[Uuid],
    ) -> Result<usize, CoreError> {
        let mut total = 0;
        for chunk in ids.chunks(rows::INSERT_CHUNK) {
            let sql = self.sql.with_ids(prefix, chunk.len());
            let params: Vec<Param<'_>> = token
                .map(Param::Uuid)
                .into_iter()
                .chain([Param::Ids(chunk)])
                .collect();
            let changed = execute_on_pool(&self.pool, &sql, &params)
                .await
                .map_err(db_err::<DB>(operation))?;
            total += usize::try_from(changed).unwrap_or(usize::MAX);
        }
        Ok(total)
    }

    /// [`SqlOutbox::update_ids`] per lease token.
    async fn update_leases(
        &self,
        operation: &'static str,
        prefix: &str,
        leases: &[Lease],
    ) -> Result<usize, CoreError> {
        let mut by_token: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
        for lease in leases {
            by_token
                .entry(lease.token)
                .or_default()
                .push(*lease.id.as_uuid());
        }
        let mut total = 0;
        for (token, ids) in by_token {
            total += self
                .update_ids(operation, prefix, Some(token), &ids)
                .await?;
        }
        Ok(total)
    }

    /// Runs a statement that changes one leased row.
    async fn update_leased(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<bool, CoreError> {
        let changed = execute_on_pool(&self.pool, sql, params)
            .await
            .map_err(db_err::<DB>(operation))?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl<DB: Dialect> OutboxStore for SqlOutbox<DB> {
    async fn lease(&self, max: usize, lease_for: Duration) -> Result<Vec<OutboxRecord>, CoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let token = Uuid::new_v4();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = DB::lease(&self.pool, &self.sql, limit, rows::millis(lease_for), token)
            .await
            .map_err(db_err::<DB>("lease"))?;
        let records = rows
            .into_iter()
            .map(|row| row.into_record(token))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows::in_order(records))
    }

    async fn mark_published(&self, leases: &[Lease]) -> Result<usize, CoreError> {
        self.update_leases("mark_published", &self.sql.mark_prefix, leases)
            .await
    }

    async fn reschedule(
        &self,
        lease: &Lease,
        attempts: u32,
        retry_in: Duration,
        error: &str,
    ) -> Result<bool, CoreError> {
        let params = [
            Param::Int32(i32::try_from(attempts).unwrap_or(i32::MAX)),
            Param::Int(rows::millis(retry_in)),
            Param::Text(error),
            Param::Uuid(*lease.id.as_uuid()),
            Param::Uuid(lease.token),
        ];
        self.update_leased("reschedule", &self.sql.reschedule, &params)
            .await
    }

    async fn park(&self, lease: &Lease, attempts: u32, reason: &str) -> Result<bool, CoreError> {
        let params = [
            Param::Int32(i32::try_from(attempts).unwrap_or(i32::MAX)),
            Param::Text(reason),
            Param::Uuid(*lease.id.as_uuid()),
            Param::Uuid(lease.token),
        ];
        self.update_leased("park", &self.sql.park, &params).await
    }

    async fn release(&self, leases: &[Lease]) -> Result<usize, CoreError> {
        self.update_leases("release", &self.sql.release_prefix, leases)
            .await
    }

    async fn requeue(&self, ids: &[MessageId]) -> Result<usize, CoreError> {
        let ids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        self.update_ids("requeue", &self.sql.requeue_prefix, None, &ids)
            .await
    }

    async fn snapshot(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Snapshot<OutboxEntry>, CoreError> {
        let taken_at = Utc::now();
        let rows = match since {
            Some(since) => {
                let params = [Param::Int(since.timestamp_millis())];
                fetch_all_on_pool(&self.pool, &self.sql.snapshot_since, &params).await
            }
            None => fetch_all_on_pool(&self.pool, &self.sql.snapshot, &[]).await,
        }
        .map_err(db_err::<DB>("snapshot"))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let row = EntryRow::read(row).map_err(db_err::<DB>("snapshot"))?;
            entries.push(row.into_entry()?);
        }
        entries.sort_by_key(|e| e.id);
        Ok(Snapshot { taken_at, entries })
    }

    async fn counts(&self) -> Result<OutboxCounts, CoreError> {
        let rows = fetch_all_on_pool(&self.pool, &self.sql.counts, &[])
            .await
            .map_err(db_err::<DB>("counts"))?;
        Ok(rows::counts(&rows).map_err(db_err::<DB>("counts"))?)
    }
}
