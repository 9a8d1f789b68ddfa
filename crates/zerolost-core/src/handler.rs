//! The application's message handler.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::{ClaimToken, Envelope, HandlerError};

/// What the consumer tells a handler about the claim it runs under: the claim (with its
/// fencing number) and a cancellation token that fires when the claim is lost (a renewal
/// failed, or the handler ran past `max_handler_time`). The consumer then also drops the
/// handler's future; the token is for work the handler started elsewhere.
///
/// Effects outside the dedupe store are made safe against a stale holder by writing them
/// with a compare on [`fence`](HandlerContext::fence) ("fencing tokens"):
///
/// ```
/// use zerolost_core::{handler_fn_with_context, Envelope, HandlerContext};
/// let handler = handler_fn_with_context(|order: Envelope, ctx: HandlerContext| async move {
///     // A fenced write: refused when a later holder of this id has written already.
///     //   UPDATE payments SET state = 'sent', fence = $2 WHERE order_id = $1 AND fence < $2
///     // or an HTTP call with the idempotency key "{order.id}" and the fence "{ctx.fence()}".
///     let (_id, _fence) = (order.id, ctx.fence());
///     Ok(())
/// });
/// # let _ = handler;
/// ```
#[derive(Debug, Clone)]
pub struct HandlerContext {
    claim: ClaimToken,
    cancel: CancellationToken,
}

impl HandlerContext {
    /// The context of a handler running under `claim`, cancelled through `cancel`.
    pub fn new(claim: ClaimToken, cancel: CancellationToken) -> Self {
        Self { claim, cancel }
    }

    /// The claim the handler runs under.
    pub fn claim(&self) -> &ClaimToken {
        &self.claim
    }

    /// The claim's fencing number: larger for every later claim of the same id.
    pub fn fence(&self) -> u64 {
        self.claim.fence
    }

    /// Whether the claim is lost (or the handler's time is up): stop, the work is not yours.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the claim is lost or the handler's time is up.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// The cancellation token itself (to hand to spawned work).
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// The application's work for one message. Called at most once per message id with
/// effect (the consumer claims the id first); return [`HandlerError::Retryable`] for
/// transient failures and [`HandlerError::Permanent`] for poison messages.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Processes one message.
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError>;

    /// Processes one message the consumer has claimed, with the claim's [`HandlerContext`]
    /// (fencing number, cancellation). The default calls [`handle`](Handler::handle); a
    /// transactional handler overrides it to complete the claim inside its own database
    /// transaction, so the effect and the processed mark commit together (completing again
    /// with the same token is a no-op).
    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        context: &HandlerContext,
    ) -> Result<(), HandlerError> {
        let _ = context;
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
        context: &HandlerContext,
    ) -> Result<(), HandlerError> {
        (**self).handle_claimed(envelope, context).await
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

/// A [`Handler`] from an async closure that also takes the claim's [`HandlerContext`]
/// (for fenced writes and cancellation).
///
/// ```
/// use zerolost_core::{handler_fn_with_context, Envelope, HandlerContext};
/// let handler = handler_fn_with_context(|env: Envelope, ctx: HandlerContext| async move {
///     println!("{} under fence {}", env.id, ctx.fence());
///     Ok(())
/// });
/// # let _ = handler;
/// ```
pub fn handler_fn_with_context<F, Fut>(f: F) -> FnContextHandler<F>
where
    F: Fn(Envelope, HandlerContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    FnContextHandler(f)
}

/// See [`handler_fn_with_context`].
pub struct FnContextHandler<F>(F);

#[async_trait]
impl<F, Fut> Handler for FnContextHandler<F>
where
    F: Fn(Envelope, HandlerContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, _envelope: &Envelope) -> Result<(), HandlerError> {
        Err(HandlerError::permanent(
            "this handler needs the consumer's claim: run it inside a zerolost Consumer",
        ))
    }

    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        context: &HandlerContext,
    ) -> Result<(), HandlerError> {
        (self.0)(envelope.clone(), context.clone()).await
    }
}
