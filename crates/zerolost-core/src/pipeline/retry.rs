//! Retrying store calls with backoff until they succeed, fail permanently, or shutdown.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Backoff, Error};

/// Why a retried call stopped without a value.
pub(crate) enum Stopped {
    /// Shutdown was requested (or the deadline passed) while the call kept failing.
    Shutdown,
    /// The call failed with a permanent error.
    Failed(Error),
}

/// Calls `op` until it succeeds, retrying retryable errors after `backoff` delays.
/// `on_error` sees each retryable error (to close a gate, count, log).
pub(crate) async fn retry_until<T, F, Fut>(
    backoff: &Backoff,
    stop: &CancellationToken,
    mut on_error: impl FnMut(&Error),
    mut op: F,
) -> Result<T, Stopped>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut retry = 0u32;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_retryable() => {
                on_error(&e);
                if sleep_or_stop(backoff.delay(retry), stop).await {
                    return Err(Stopped::Shutdown);
                }
                retry = retry.saturating_add(1);
            }
            Err(e) => return Err(Stopped::Failed(e)),
        }
    }
}

/// Sleeps; returns true if `stop` fired first.
pub(crate) async fn sleep_or_stop(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// A token cancelled `grace` after `parent` is.
pub(crate) fn after_grace(parent: &CancellationToken, grace: Duration) -> CancellationToken {
    let late = CancellationToken::new();
    let (parent, child) = (parent.clone(), late.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = child.cancelled() => {}
            _ = async { parent.cancelled().await; tokio::time::sleep(grace).await } => child.cancel(),
        }
    });
    late
}
