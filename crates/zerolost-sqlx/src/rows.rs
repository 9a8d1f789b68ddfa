//! Conversions between table rows and core types, shared by every database.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use zerolost_core::{
    Envelope, FailureRecord, Lease, MessageId, OutboxEntry, OutboxRecord, OutboxStatus, Outcome,
};

use crate::SqlError;
use crate::params::Columns;

/// Outbox status codes.
pub(crate) const PENDING: i16 = 0;
pub(crate) const PUBLISHED: i16 = 1;
pub(crate) const PARKED: i16 = 2;

/// Inbox state codes.
pub(crate) const PROCESSED: i16 = 2;
pub(crate) const DEAD_LETTERED: i16 = 3;

/// Most rows in one multi-row INSERT (keeps binds under every database's limit).
pub(crate) const INSERT_CHUNK: usize = 1000;

/// A duration in whole milliseconds for a bound parameter.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Epoch milliseconds as a UTC time.
pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// An outbox row as written by `enqueue`, borrowing the envelope (no payload copy).
pub(crate) struct NewRow<'a> {
    pub(crate) id: Uuid,
    pub(crate) destination: &'a str,
    pub(crate) key: Option<&'a str>,
    pub(crate) headers: String,
    pub(crate) payload: &'a [u8],
    pub(crate) created_at: i64,
}

impl<'a> NewRow<'a> {
    pub(crate) fn from_envelope(envelope: &'a Envelope) -> Result<Self, SqlError> {
        if envelope.destination.is_empty() {
            return Err(SqlError::Corrupt {
                what: "destination",
                reason: "a message needs a destination".into(),
            });
        }
        let headers = serde_json::to_string(&envelope.headers).map_err(|e| SqlError::Corrupt {
            what: "headers",
            reason: e.to_string(),
        })?;
        Ok(Self {
            id: *envelope.id.as_uuid(),
            destination: &envelope.destination,
            key: envelope.key.as_deref(),
            headers,
            payload: &envelope.payload,
            created_at: envelope.created_at.timestamp_millis(),
        })
    }
}

/// A leased row as read back.
pub struct LeasedRow {
    pub id: Uuid,
    pub destination: String,
    pub key: Option<String>,
    pub headers: String,
    pub payload: Vec<u8>,
    pub attempts: i32,
    pub created_at: i64,
}

impl LeasedRow {
    /// Reads a leased row (the [`RECORD_COLUMNS`](crate::statements::RECORD_COLUMNS)).
    pub(crate) fn read(row: &impl Columns) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.uuid("id")?,
            destination: row.text("destination")?,
            key: row.opt_text("msg_key")?,
            headers: row.text("headers")?,
            payload: row.bytes("payload")?,
            attempts: row.int32("attempts")?,
            created_at: row.int("created_at")?,
        })
    }

    pub(crate) fn into_record(self, token: Uuid) -> Result<OutboxRecord, SqlError> {
        let headers: BTreeMap<String, String> =
            serde_json::from_str(&self.headers).map_err(|e| SqlError::Corrupt {
                what: "headers",
                reason: e.to_string(),
            })?;
        let id = MessageId::from_uuid(self.id);
        let mut envelope = Envelope::new(self.destination, Bytes::from(self.payload)).with_id(id);
        envelope.key = self.key;
        envelope.headers = headers;
        envelope.created_at = time(self.created_at);
        Ok(OutboxRecord {
            envelope,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            lease: Lease { id, token },
        })
    }
}

/// Orders leased records oldest first (ids are time-ordered UUID v7).
pub(crate) fn in_order(mut records: Vec<OutboxRecord>) -> Vec<OutboxRecord> {
    records.sort_by_key(|r| (r.envelope.created_at, r.envelope.id));
    records
}

/// A snapshot row as read back.
pub(crate) struct EntryRow {
    pub(crate) id: Uuid,
    pub(crate) destination: String,
    pub(crate) status: i16,
    pub(crate) attempts: i32,
    pub(crate) lease_expires_at: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) published_at: Option<i64>,
    pub(crate) now: i64,
}

impl EntryRow {
    /// Reads a snapshot row.
    pub(crate) fn read(row: &impl Columns) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.uuid("id")?,
            destination: row.text("destination")?,
            status: row.int16("status")?,
            attempts: row.int32("attempts")?,
            lease_expires_at: row.opt_int("lease_expires_at")?,
            last_error: row.opt_text("last_error")?,
            created_at: row.int("created_at")?,
            published_at: row.opt_int("published_at")?,
            now: row.int("now_ms")?,
        })
    }

    pub(crate) fn into_entry(self) -> Result<OutboxEntry, SqlError> {
        let status = match self.status {
            PENDING => OutboxStatus::Pending,
            PUBLISHED => OutboxStatus::Published,
            PARKED => OutboxStatus::Parked,
            other => {
                return Err(SqlError::Corrupt {
                    what: "status",
                    reason: format!("unknown outbox status {other}"),
                });
            }
        };
        Ok(OutboxEntry {
            id: MessageId::from_uuid(self.id),
            destination: self.destination,
            status,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            leased: self.lease_expires_at.is_some_and(|until| until > self.now),
            last_error: self.last_error,
            created_at: time(self.created_at),
            published_at: self.published_at.map(time),
        })
    }
}

/// The inbox state for an outcome.
pub(crate) fn outcome_state(outcome: Outcome) -> i16 {
    match outcome {
        Outcome::Processed => PROCESSED,
        Outcome::DeadLettered => DEAD_LETTERED,
    }
}

/// The outcome of a finished inbox state.
pub(crate) fn state_outcome(state: i16) -> Option<Outcome> {
    match state {
        PROCESSED => Some(Outcome::Processed),
        DEAD_LETTERED => Some(Outcome::DeadLettered),
        _ => None,
    }
}

/// A failure counter as read back.
pub(crate) fn failure_record(
    attempts: i32,
    first: Option<i64>,
    last: Option<i64>,
    error: Option<String>,
) -> Option<FailureRecord> {
    let attempts = u32::try_from(attempts).ok().filter(|n| *n > 0)?;
    let last_at = time(last.unwrap_or(0));
    Some(FailureRecord {
        attempts,
        first_at: first.map(time).unwrap_or(last_at),
        last_at,
        last_error: error.unwrap_or_default(),
    })
}

/// Outbox counts from rows of `(status, n, leased, oldest)` groups.
pub(crate) fn counts<R: Columns>(rows: &[R]) -> Result<zerolost_core::OutboxCounts, sqlx::Error> {
    let mut counts = zerolost_core::OutboxCounts::default();
    for row in rows {
        let (status, n, leased, oldest) = (
            row.int16("status")?,
            row.int("n")?,
            row.int("leased")?,
            row.opt_int("oldest")?,
        );
        let n = usize::try_from(n).unwrap_or(0);
        match status {
            PENDING => {
                counts.pending += n;
                counts.leased += usize::try_from(leased).unwrap_or(0);
                counts.oldest_pending = oldest.map(time);
            }
            PUBLISHED => counts.published += n,
            PARKED => counts.parked += n,
            _ => {}
        }
    }
    Ok(counts)
}

/// A parked dead letter as stored: the envelope's columns plus the failure (JSON), the
/// DLQ's refusal and when it was parked.
pub(crate) struct ParkedRow {
    pub(crate) message: LeasedRow,
    pub(crate) failure: String,
    pub(crate) refused: String,
    pub(crate) parked_at: i64,
}

impl ParkedRow {
    /// Reads a parked dead letter.
    pub(crate) fn read(row: &impl Columns) -> Result<Self, sqlx::Error> {
        Ok(Self {
            message: LeasedRow {
                id: row.uuid("id")?,
                destination: row.text("destination")?,
                key: row.opt_text("msg_key")?,
                headers: row.text("headers")?,
                payload: row.bytes("payload")?,
                attempts: 0,
                created_at: row.int("created_at")?,
            },
            failure: row.text("failure")?,
            refused: row.text("refused")?,
            parked_at: row.int("parked_at")?,
        })
    }

    pub(crate) fn from_parked(
        parked: &zerolost_core::parking::ParkedDeadLetter,
    ) -> Result<Self, SqlError> {
        let envelope = &parked.envelope;
        let json = |what: &'static str, e: serde_json::Error| SqlError::Corrupt {
            what,
            reason: e.to_string(),
        };
        Ok(Self {
            message: LeasedRow {
                id: *envelope.id.as_uuid(),
                destination: envelope.destination.clone(),
                key: envelope.key.clone(),
                headers: serde_json::to_string(&envelope.headers)
                    .map_err(|e| json("headers", e))?,
                payload: envelope.payload.to_vec(),
                attempts: 0,
                created_at: envelope.created_at.timestamp_millis(),
            },
            failure: serde_json::to_string(&parked.failure).map_err(|e| json("failure", e))?,
            refused: parked.refused.clone(),
            parked_at: parked.parked_at.timestamp_millis(),
        })
    }

    pub(crate) fn into_parked(self) -> Result<zerolost_core::parking::ParkedDeadLetter, SqlError> {
        let failure = serde_json::from_str(&self.failure).map_err(|e| SqlError::Corrupt {
            what: "failure",
            reason: e.to_string(),
        })?;
        let envelope = self.message.into_record(Uuid::nil())?.envelope;
        Ok(zerolost_core::parking::ParkedDeadLetter {
            envelope,
            failure,
            refused: self.refused,
            parked_at: time(self.parked_at),
        })
    }
}
