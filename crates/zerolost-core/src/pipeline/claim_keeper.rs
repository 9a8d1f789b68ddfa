//! Keeps a claim alive while its handler runs: extends it every third of the lease and,
//! when it cannot (taken over, or the store unreachable until the lease would end),
//! cancels the handler before the lease ends, so that no second holder ever runs beside it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{Backoff, ClaimToken, DedupeStore, Error};

/// The renewal schedule of one claim: pure state, fed with what the store answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Renewal {
    lease: Duration,
    /// Until when the claim is surely ours: the lease counted from the moment the last
    /// granting call (claim or extend) was *sent*, so a slow answer only shortens it.
    held_until: Instant,
}

impl Renewal {
    /// The schedule of a claim whose granting call was sent at `asked_at`.
    pub(crate) fn new(lease: Duration, asked_at: Instant) -> Self {
        Self {
            lease,
            held_until: asked_at + lease,
        }
    }

    /// When to extend next: a third of the lease after the last grant.
    pub(crate) fn next_renewal(&self) -> Instant {
        self.held_until - self.lease * 2 / 3
    }

    /// The last moment to keep trying: a fifth of the lease before it ends, which leaves
    /// the handler's cancellation time to take effect while the claim still holds.
    pub(crate) fn deadline(&self) -> Instant {
        self.held_until - self.lease / 5
    }

    /// An extend sent at `sent_at` succeeded.
    pub(crate) fn granted(&mut self, sent_at: Instant) {
        self.held_until = self.held_until.max(sent_at + self.lease);
    }
}

/// Why a kept claim was given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loss {
    /// The store says the token no longer holds the claim.
    TakenOver,
    /// The store did not grant an extension before the deadline.
    Unreachable(String),
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::TakenOver => f.write_str("the claim was taken over"),
            Loss::Unreachable(e) => write!(
                f,
                "the dedupe store did not extend the claim before its lease would end: {e}"
            ),
        }
    }
}

/// A background task extending one claim until stopped; `lost()` fires when it gives up.
pub(crate) struct ClaimKeeper {
    lost: CancellationToken,
    loss: Arc<Mutex<Option<Loss>>>,
    task: JoinHandle<()>,
}

impl ClaimKeeper {
    /// Starts keeping `token`, granted by a claim sent at `asked_at`, alive.
    pub(crate) fn start(
        dedupe: Arc<dyn DedupeStore>,
        token: ClaimToken,
        lease: Duration,
        asked_at: Instant,
        retry: Backoff,
    ) -> Self {
        let lost = CancellationToken::new();
        let loss = Arc::new(Mutex::new(None));
        let task = tokio::spawn(keep(
            dedupe,
            token,
            Renewal::new(lease, asked_at),
            retry,
            lost.clone(),
            loss.clone(),
        ));
        Self { lost, loss, task }
    }

    /// Fires when the claim is lost (or about to be).
    pub(crate) fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Why the claim was lost, once it is.
    pub(crate) fn loss(&self) -> Option<Loss> {
        self.loss.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for ClaimKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep(
    dedupe: Arc<dyn DedupeStore>,
    token: ClaimToken,
    mut renewal: Renewal,
    retry: Backoff,
    lost: CancellationToken,
    loss: Arc<Mutex<Option<Loss>>>,
) {
    let give_up = |why: Loss| {
        warn!(id = %token.id, fence = token.fence, reason = %why, "claim lost: the handler is cancelled and the delivery left for redelivery");
        *loss.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        lost.cancel();
    };
    loop {
        tokio::time::sleep_until(renewal.next_renewal()).await;
        let mut failures = 0u32;
        loop {
            let sent = Instant::now();
            let deadline = renewal.deadline();
            let answer =
                tokio::time::timeout_at(deadline, dedupe.extend(&token, renewal.lease)).await;
            match answer {
                Ok(Ok(())) => {
                    renewal.granted(sent);
                    debug!(id = %token.id, "claim extended");
                    break;
                }
                Ok(Err(Error::LeaseLost { .. })) => return give_up(Loss::TakenOver),
                Ok(Err(e)) if !e.is_retryable() => {
                    return give_up(Loss::Unreachable(e.to_string()));
                }
                Ok(Err(e)) => {
                    let wait = retry.delay(failures);
                    failures = failures.saturating_add(1);
                    if Instant::now() + wait >= deadline {
                        return give_up(Loss::Unreachable(e.to_string()));
                    }
                    debug!(id = %token.id, error = %e, "claim extension failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(_) => return give_up(Loss::Unreachable("no answer".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn renews_at_a_third_and_gives_up_a_fifth_before_the_end() {
        let t0 = Instant::now();
        let mut r = Renewal::new(LEASE, t0);
        assert_eq!(r.next_renewal(), t0 + Duration::from_secs(10));
        assert_eq!(r.deadline(), t0 + Duration::from_secs(24));
        r.granted(t0 + Duration::from_secs(10));
        assert_eq!(r.next_renewal(), t0 + Duration::from_secs(20));
        assert_eq!(r.deadline(), t0 + Duration::from_secs(34));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_grant_never_shortens_the_hold() {
        let t0 = Instant::now();
        let mut r = Renewal::new(LEASE, t0 + Duration::from_secs(5));
        r.granted(t0);
        assert_eq!(r.deadline(), t0 + Duration::from_secs(29));
    }
}
