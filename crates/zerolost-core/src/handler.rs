//! The application's message handler.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{ClaimToken, Envelope, HandlerError};

/// The application's work for one message. Called at most once per message id with
/// effect (the consumer claims the id first); return [`HandlerError::Retryable`] for
/// transient failures and [`HandlerError::Permanent`] for poison messages.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Processes one message.
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError>;

    /// Processes one message the consumer has claimed. The default calls
    /// [`handle`](Handler::handle); a transactional handler overrides it to complete the
    /// claim inside its own database transaction, so the effect and the processed mark
    /// commit together (completing again with the same token is a no-op).
    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        claim: &ClaimToken,
    ) -> Result<(), HandlerError> {
        let _ = claim;
        self.handle(envelope).await
    }
}

#[async_trait]
impl<T: Handler + ?Sized> Handler for Arc<T> {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        (**self).handle(envelope).await
    }

    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        claim: &ClaimToken,
    ) -> Result<(), HandlerError> {
        (**self).handle_claimed(envelope, claim).await
    }
}

/// A [`Handler`] from an async closure that takes the envelope by value.
///
/// ```
/// use zerolost_core::{handler_fn, Envelope, HandlerError};
/// let handler = handler_fn(|env: Envelope| async move {
///     if env.payload.is_empty() {
///         return Err(HandlerError::permanent("empty order"));
///     }
///     Ok(())
/// });
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Envelope) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    FnHandler(f)
}

/// See [`handler_fn`].
pub struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Envelope) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        (self.0)(envelope.clone()).await
    }
}
