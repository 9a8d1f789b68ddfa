//! Group commit for the SQLite inbox. SQLite has one writer at a time and, at
//! `synchronous = FULL`, every commit waits for an fsync: a consumer claiming and completing
//! each message in a transaction of its own is bound by that (about 1,500 messages/s here).
//! One writer task takes the claims and completes that many consumer tasks have waiting,
//! applies them in one `BEGIN IMMEDIATE` transaction, commits once and only then answers
//! each caller. Nothing is acknowledged before it is durable, and each statement sees the
//! ones before it, so two claims of one id in a group behave as they would one after the
//! other.

use std::sync::{Arc, Mutex};

use sqlx::{Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::SqlError;
use std::time::Duration;

use zerolost_core::{ClaimToken, Error as CoreError, Outcome};

use crate::driver::{ClaimState, Driver, InboxWrites};
use crate::exec::{complete_on, execute};
use crate::statements::Statements;

/// Most operations applied in one transaction.
const MAX_GROUP: usize = 256;

/// One write waiting for the group's commit.
enum Op {
    Claim {
        token: zerolost_core::ClaimToken,
        lease_ms: i64,
        reply: oneshot::Sender<Result<ClaimState, zerolost_core::Error>>,
    },
    Complete {
        token: zerolost_core::ClaimToken,
        outcome: zerolost_core::Outcome,
        keep_for: std::time::Duration,
        reply: oneshot::Sender<Result<(), zerolost_core::Error>>,
    },
}

/// The SQLite inbox's writer task, started on first use (and again if its runtime went away).
#[derive(Clone, Default)]
pub struct GroupCommit {
    writer: Arc<Mutex<Option<mpsc::UnboundedSender<Op>>>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

fn closed() -> zerolost_core::Error {
    zerolost_core::Error::unavailable("sqlite", "the inbox's writer task stopped")
}

impl InboxWrites<Sqlite> for GroupCommit {
    /// Claims `token.id` in the next group.
    async fn claim(
        &self,
        pool: &SqlitePool,
        sql: &Arc<Statements>,
        token: &ClaimToken,
        lease_ms: i64,
    ) -> Result<ClaimState, CoreError> {
        let (reply, answer) = oneshot::channel();
        let op = Op::Claim {
            token: token.clone(),
            lease_ms,
            reply,
        };
        self.send(pool, sql, op).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Completes the claim `token` in the next group; `LeaseLost` when it was taken over.
    async fn complete(
        &self,
        pool: &SqlitePool,
        sql: &Arc<Statements>,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), CoreError> {
        let (reply, answer) = oneshot::channel();
        let op = Op::Complete {
            token: token.clone(),
            outcome,
            keep_for,
            reply,
        };
        self.send(pool, sql, op).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

impl GroupCommit {
    fn send(&self, pool: &SqlitePool, sql: &Arc<Statements>, op: Op) -> Result<(), Op> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let sender = match writer.as_ref().filter(|s| !s.is_closed()) {
            Some(sender) => sender.clone(),
            None => {
                let (sender, ops) = mpsc::unbounded_channel();
                tokio::spawn(run(pool.clone(), sql.clone(), ops));
                *writer = Some(sender.clone());
                sender
            }
        };
        sender.send(op).map_err(|e| e.0)
    }
}

/// Takes what is waiting, applies it in one transaction, answers after the commit; ends
/// when every inbox handle is gone.
async fn run(pool: SqlitePool, sql: Arc<Statements>, mut ops: mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = ops.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        apply(&pool, &sql, group).await;
    }
}

/// The answer of one operation, held until the commit.
enum Answer {
    Claim(
        oneshot::Sender<Result<ClaimState, zerolost_core::Error>>,
        Result<ClaimState, zerolost_core::Error>,
    ),
    Complete(
        oneshot::Sender<Result<(), zerolost_core::Error>>,
        Result<(), zerolost_core::Error>,
    ),
}

fn db_error(operation: &'static str, e: sqlx::Error) -> zerolost_core::Error {
    SqlError::db("SQLite", operation)(e).into()
}

async fn apply(pool: &SqlitePool, sql: &Statements, group: Vec<Op>) {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return fail_all(group, &db_error("group commit", e)),
    };
    if let Err(e) = execute::<Sqlite>(&mut conn, "BEGIN IMMEDIATE", &[]).await {
        return fail_all(group, &db_error("group commit", e));
    }
    let mut answers = Vec::with_capacity(group.len());
    for op in group {
        answers.push(match op {
            Op::Claim {
                token,
                lease_ms,
                reply,
            } => Answer::Claim(
                reply,
                <Sqlite as Driver>::claim_on(&mut conn, sql, &token, lease_ms)
                    .await
                    .map_err(|e| db_error("claim", e)),
            ),
            Op::Complete {
                token,
                outcome,
                keep_for,
                reply,
            } => Answer::Complete(
                reply,
                complete_on::<Sqlite>(&mut conn, sql, &token, outcome, keep_for).await,
            ),
        });
    }
    match execute::<Sqlite>(&mut conn, "COMMIT", &[]).await {
        Ok(_) => {
            for answer in answers {
                match answer {
                    Answer::Claim(reply, result) => drop(reply.send(result)),
                    Answer::Complete(reply, result) => drop(reply.send(result)),
                }
            }
        }
        Err(e) => {
            let error = db_error("group commit", e);
            // Leave no transaction open on a connection going back to the pool.
            let _ = execute::<Sqlite>(&mut conn, "ROLLBACK", &[]).await;
            for answer in answers {
                match answer {
                    Answer::Claim(reply, _) => drop(reply.send(Err(copy(&error)))),
                    Answer::Complete(reply, _) => drop(reply.send(Err(copy(&error)))),
                }
            }
        }
    }
}

/// One error for each caller of a group that failed as a whole, classified alike.
fn copy(error: &zerolost_core::Error) -> zerolost_core::Error {
    zerolost_core::Error::backend("sqlite", error.is_retryable(), error.to_string())
}

fn fail_all(group: Vec<Op>, error: &zerolost_core::Error) {
    for op in group {
        match op {
            Op::Claim { reply, .. } => drop(reply.send(Err(copy(error)))),
            Op::Complete { reply, .. } => drop(reply.send(Err(copy(error)))),
        }
    }
}
