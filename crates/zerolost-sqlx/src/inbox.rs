//! [`SqlInbox`]: leased claims per message id as a [`DedupeStore`], written once for every
//! database; the claim itself and how claims reach the database are the driver's.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Pool;
use zerolost_core::parking::ParkedDeadLetter;
use zerolost_core::{
    Claim, ClaimToken, DedupeStore, Error as CoreError, FailureRecord, MessageId, Outcome,
};

use crate::SqlError;
use crate::driver::{ClaimState, Dialect, InboxWrites, db_err};
use crate::exec::{complete_on, execute_on_pool, fetch_optional_on_pool};
use crate::params::{Columns, Param};
use crate::rows::{self, ParkedRow};
use crate::statements::Statements;

/// The inbox table as a [`DedupeStore`] and
/// [`ConsumerLedger`](zerolost_core::ConsumerLedger); with
/// [`InTransaction`](crate::InTransaction) its processed mark commits with the handler's
/// own writes. From [`SqlStore::inbox`](crate::SqlStore::inbox).
pub struct SqlInbox<DB: Dialect> {
    pub(crate) pool: Pool<DB>,
    pub(crate) sql: Arc<Statements>,
    pub(crate) writes: DB::InboxWrites,
}

impl<DB: Dialect> Clone for SqlInbox<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: self.sql.clone(),
            writes: self.writes.clone(),
        }
    }
}

impl<DB: Dialect> std::fmt::Debug for SqlInbox<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlInbox")
            .field("database", &DB::SYNTAX.label)
            .field("table", &self.sql.names.inbox)
            .finish()
    }
}

impl<DB: Dialect> SqlInbox<DB> {
    /// Marks the claim finished on `conn`, inside the caller's transaction: the mark
    /// commits or rolls back with the handler's own writes. Idempotent per token;
    /// `LeaseLost` when the claim was taken over.
    pub async fn complete_in(
        &self,
        conn: &mut DB::Connection,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), CoreError> {
        complete_on::<DB>(conn, &self.sql, token, outcome, keep_for).await
    }

    /// Runs a statement that changes the row of a live claim; `LeaseLost` when it did not.
    async fn update_claim(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
        id: MessageId,
    ) -> Result<(), CoreError> {
        let changed = execute_on_pool(&self.pool, sql, params)
            .await
            .map_err(db_err::<DB>(operation))?;
        if changed == 1 {
            Ok(())
        } else {
            Err(CoreError::LeaseLost { id })
        }
    }
}

/// The claim a [`ClaimState`] stands for.
fn claim_of(token: ClaimToken, state: ClaimState) -> Claim {
    match state {
        ClaimState::Claimed(fence) => {
            Claim::Claimed(token.with_fence(u64::try_from(fence).unwrap_or_default()))
        }
        ClaimState::Finished(state) => match rows::state_outcome(state) {
            Some(outcome) => Claim::AlreadyProcessed(outcome),
            None => Claim::HeldByOther,
        },
        ClaimState::Held => Claim::HeldByOther,
    }
}

/// Reads a failure counter row.
fn failure_of(row: &impl Columns) -> Result<Option<FailureRecord>, sqlx::Error> {
    Ok(rows::failure_record(
        row.int32("attempts")?,
        row.opt_int("first_failure_at")?,
        row.opt_int("last_failure_at")?,
        row.opt_text("last_error")?,
    ))
}

#[async_trait]
impl<DB: Dialect> DedupeStore for SqlInbox<DB> {
    async fn claim(&self, id: MessageId, lease: Duration) -> Result<Claim, CoreError> {
        let token = ClaimToken::new(id);
        let lease_ms = rows::millis(lease);
        let state = self
            .writes
            .claim(&self.pool, &self.sql, &token, lease_ms)
            .await?;
        Ok(claim_of(token, state))
    }

    async fn extend(&self, token: &ClaimToken, lease: Duration) -> Result<(), CoreError> {
        let params = [
            Param::Int(rows::millis(lease)),
            Param::Uuid(*token.id.as_uuid()),
            Param::Uuid(token.token),
        ];
        self.update_claim("extend", &self.sql.extend_claim, &params, token.id)
            .await
    }

    async fn complete(
        &self,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), CoreError> {
        self.writes
            .complete(&self.pool, &self.sql, token, outcome, keep_for)
            .await
    }

    async fn release(&self, token: &ClaimToken) -> Result<(), CoreError> {
        let params = [Param::Uuid(*token.id.as_uuid()), Param::Uuid(token.token)];
        self.update_claim("release", &self.sql.release_claim, &params, token.id)
            .await
    }

    async fn failures(&self, id: MessageId) -> Result<Option<FailureRecord>, CoreError> {
        let params = [Param::Uuid(*id.as_uuid())];
        let row = fetch_optional_on_pool(&self.pool, &self.sql.failures, &params)
            .await
            .map_err(db_err::<DB>("failures"))?;
        match row {
            Some(row) => Ok(failure_of(&row).map_err(db_err::<DB>("failures"))?),
            None => Ok(None),
        }
    }

    async fn record_failure(&self, id: MessageId, error: &str) -> Result<FailureRecord, CoreError> {
        let params = [Param::Uuid(*id.as_uuid()), Param::Text(error)];
        execute_on_pool(&self.pool, &self.sql.own.record_failure, &params)
            .await
            .map_err(db_err::<DB>("record_failure"))?;
        self.failures(id).await?.ok_or_else(|| {
            CoreError::from(SqlError::Corrupt {
                what: "attempts",
                reason: "the failure just recorded is not there".into(),
            })
        })
    }

    async fn park_dead_letter(&self, parked: &ParkedDeadLetter) -> Result<(), CoreError> {
        let row = ParkedRow::from_parked(parked)?;
        let m = &row.message;
        let params = [
            Param::Uuid(m.id),
            Param::Text(&parked.failure.original_destination),
            Param::Text(&m.destination),
            Param::OptText(m.key.as_deref()),
            Param::Text(&m.headers),
            Param::Bytes(&m.payload),
            Param::Int(m.created_at),
            Param::Text(&row.failure),
            Param::Text(&row.refused),
            Param::Int(row.parked_at),
        ];
        execute_on_pool(&self.pool, &self.sql.own.park_dead_letter, &params)
            .await
            .map_err(db_err::<DB>("park dead letter"))?;
        Ok(())
    }
}
