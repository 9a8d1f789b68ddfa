//! Handlers whose writes commit in one transaction with the inbox's processed mark.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Database;
use zerolost_core::{Envelope, Error as CoreError, Handler, HandlerContext, HandlerError, Outcome};

use crate::driver::{Dialect, db_err};
use crate::inbox::SqlInbox;

/// A handler that writes through the consumer's SQL transaction. Its writes and the
/// inbox's processed mark commit together: a crash between "effect" and "mark" cannot
/// happen, so a redelivery can never apply the effect twice. Returning an error rolls
/// both back and the message is retried or dead-lettered by the consumer.
///
/// ```no_run
/// use async_trait::async_trait;
/// use sqlx::{Postgres, PgConnection};
/// use zerolost_core::{Envelope, HandlerError};
/// use zerolost_sqlx::TransactionalHandler;
///
/// struct CreditAccount;
///
/// #[async_trait]
/// impl TransactionalHandler<Postgres> for CreditAccount {
///     async fn handle(&self, envelope: &Envelope, tx: &mut PgConnection) -> Result<(), HandlerError> {
///         sqlx::query("UPDATE accounts SET balance = balance + 10 WHERE id = 1")
///             .execute(&mut *tx)
///             .await
///             .map_err(HandlerError::retryable)?;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait TransactionalHandler<DB: Database>: Send + Sync {
    /// Applies `envelope`'s effect on `tx`, the open transaction that also holds the
    /// inbox mark. Do not commit or roll back here.
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut DB::Connection,
    ) -> Result<(), HandlerError>;
}

/// Adapts a [`TransactionalHandler`] into a [`Handler`](zerolost_core::Handler) for the
/// consumer: it opens a transaction, marks the consumer's claim processed in the inbox,
/// runs the handler on that transaction, then commits. Use it with the same
/// [`SqlInbox`] as the consumer's dedupe store.
pub struct InTransaction<DB: Dialect, H> {
    pub(crate) inbox: SqlInbox<DB>,
    pub(crate) handler: H,
    pub(crate) keep_for: Duration,
}

impl<DB: Dialect, H> InTransaction<DB, H> {
    /// Wraps `handler`; the inbox must be the consumer's dedupe store.
    pub fn new(inbox: SqlInbox<DB>, handler: H) -> Self {
        Self {
            inbox,
            handler,
            keep_for: Duration::from_secs(24 * 3600),
        }
    }

    /// How long the processed mark is kept (default 24 h; the consumer's `keep_for`
    /// applies when it confirms the claim afterwards).
    pub fn keep_for(mut self, keep_for: Duration) -> Self {
        self.keep_for = keep_for;
        self
    }
}

#[async_trait]
impl<DB: Dialect, H: TransactionalHandler<DB>> Handler for InTransaction<DB, H> {
    async fn handle(&self, _envelope: &Envelope) -> Result<(), HandlerError> {
        Err(HandlerError::permanent(
            "InTransaction needs the consumer's claim: run it inside a zerolost Consumer",
        ))
    }

    /// Opens the transaction and marks the claim in it (a lost claim or a failing inbox is
    /// an interruption, not an attempt), runs the handler, commits (a failed commit counts
    /// as an attempt: it carries the handler's writes).
    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        context: &HandlerContext,
    ) -> Result<(), HandlerError> {
        let interrupted =
            |e| HandlerError::interrupted(CoreError::from(db_err::<DB>("handler transaction")(e)));
        let mut tx = self.inbox.pool.begin().await.map_err(interrupted)?;
        self.inbox
            .complete_in(&mut tx, context.claim(), Outcome::Processed, self.keep_for)
            .await
            // LeaseLost: another consumer holds the message now; its outcome wins.
            .map_err(HandlerError::interrupted)?;
        self.handler.handle(envelope, &mut tx).await?;
        tx.commit()
            .await
            .map_err(|e| HandlerError::from(CoreError::from(db_err::<DB>("handler commit")(e))))
    }
}
