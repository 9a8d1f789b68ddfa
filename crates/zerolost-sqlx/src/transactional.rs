//! Handlers whose writes commit in one transaction with the inbox's processed mark.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Database;
use zerolost_core::{Envelope, HandlerError};

use crate::SqlInbox;

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
pub struct InTransaction<DB: Database, H> {
    pub(crate) inbox: SqlInbox<DB>,
    pub(crate) handler: H,
    pub(crate) keep_for: Duration,
}

impl<DB: Database, H> InTransaction<DB, H> {
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
