//! The outbox relay: lease → publish with confirms → mark; retry with backoff; park.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::retry::{Stopped, retry_until, sleep_or_stop};
use crate::{Backoff, Envelope, Error, Lease, OutboxStore, Publisher, Receipt, telemetry};

/// How the relay works.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows leased per round; all of them are in flight together (pipelined confirms).
    pub batch_size: usize,
    /// How long a lease holds; a crashed relay's rows are taken over after it.
    pub lease_for: Duration,
    /// Publish attempts before a row is parked (retryable errors only; permanent ones park at once).
    pub max_attempts: u32,
    /// Delay before re-publishing a row after a retryable error.
    pub backoff: Backoff,
    /// Wait between rounds when nothing was due.
    pub idle_poll: Duration,
    /// Delay when the outbox store itself fails.
    pub store_backoff: Backoff,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            lease_for: Duration::from_secs(30),
            max_attempts: 10,
            backoff: Backoff::default(),
            idle_poll: Duration::from_millis(200),
            store_backoff: Backoff::exponential(
                Duration::from_millis(100),
                Duration::from_secs(10),
            ),
        }
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RelayRound {
    /// Rows leased.
    pub leased: usize,
    /// Rows confirmed by the broker and marked published.
    pub published: usize,
    /// Rows that failed retryably and were rescheduled.
    pub rescheduled: usize,
    /// Rows parked (permanent error, or attempts exhausted).
    pub parked: usize,
    /// Rows whose lease had expired and been taken over before they were marked.
    pub lost_leases: usize,
    /// Rows returned unpublished (shutdown).
    pub released: usize,
}

/// Totals over a relay's life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RelayTotals {
    /// Rounds that leased at least one row.
    pub rounds: u64,
    /// Rows marked published.
    pub published: u64,
    /// Rows rescheduled.
    pub rescheduled: u64,
    /// Rows parked.
    pub parked: u64,
    /// Leases found taken over.
    pub lost_leases: u64,
}

#[derive(Default)]
struct Counters {
    rounds: AtomicU64,
    published: AtomicU64,
    rescheduled: AtomicU64,
    parked: AtomicU64,
    lost_leases: AtomicU64,
}

/// Moves outbox rows to the broker. Several relays may share one outbox: leases keep
/// them apart, and a crashed relay's leases expire so another takes its rows over.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use zerolost_core::{Envelope, Relay, memory::{MemoryBroker, MemoryOutbox}};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let broker = MemoryBroker::new();
/// broker.declare("orders");
/// let outbox = MemoryOutbox::new();
/// outbox.enqueue(&Envelope::new("orders", "order 1")).unwrap();
/// let relay = Relay::new(outbox.clone(), broker.publisher());
/// let round = relay.run_once().await.unwrap();
/// assert_eq!(round.published, 1);
/// # });
/// # }
/// ```
pub struct Relay {
    outbox: Arc<dyn OutboxStore>,
    publisher: Arc<dyn Publisher>,
    config: RelayConfig,
    counters: Arc<Counters>,
}

impl Relay {
    /// A relay from `outbox` to `publisher` with the default [`RelayConfig`].
    pub fn new(outbox: impl OutboxStore + 'static, publisher: impl Publisher + 'static) -> Self {
        Self {
            outbox: Arc::new(outbox),
            publisher: Arc::new(publisher),
            config: RelayConfig::default(),
            counters: Arc::default(),
        }
    }

    /// Replaces the configuration; a zero batch size or attempt count is refused.
    pub fn with_config(mut self, config: RelayConfig) -> Result<Self, Error> {
        if config.batch_size == 0 {
            return Err(Error::Config("relay batch_size must be at least 1".into()));
        }
        if config.max_attempts == 0 {
            return Err(Error::Config(
                "relay max_attempts must be at least 1".into(),
            ));
        }
        if config.lease_for.is_zero() {
            return Err(Error::Config(
                "relay lease_for must be longer than zero".into(),
            ));
        }
        self.config = config;
        Ok(self)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Totals so far.
    pub fn totals(&self) -> RelayTotals {
        let c = &self.counters;
        RelayTotals {
            rounds: c.rounds.load(Ordering::Relaxed),
            published: c.published.load(Ordering::Relaxed),
            rescheduled: c.rescheduled.load(Ordering::Relaxed),
            parked: c.parked.load(Ordering::Relaxed),
            lost_leases: c.lost_leases.load(Ordering::Relaxed),
        }
    }

    /// One round: lease a batch, publish it, mark every row's result.
    pub async fn run_once(&self) -> Result<RelayRound, Error> {
        self.round(&CancellationToken::new()).await
    }

    /// Runs rounds until `shutdown`; the round in flight finishes (or returns its leases)
    /// before this returns, so no lease is left held.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<RelayTotals, Error> {
        let mut store_failures = 0u32;
        while !shutdown.is_cancelled() {
            match self
                .round(&shutdown)
                .instrument(info_span!("zerolost.relay.round"))
                .await
            {
                Ok(round) => {
                    store_failures = 0;
                    if round.leased == 0 && sleep_or_stop(self.config.idle_poll, &shutdown).await {
                        break;
                    }
                }
                Err(e) if e.is_retryable() => {
                    telemetry::relay_store_error();
                    warn!(error = %e, "outbox unavailable; the relay retries");
                    let delay = self.config.store_backoff.delay(store_failures);
                    store_failures = store_failures.saturating_add(1);
                    if sleep_or_stop(delay, &shutdown).await {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.totals())
    }

    async fn round(&self, shutdown: &CancellationToken) -> Result<RelayRound, Error> {
        let records = self
            .outbox
            .lease(self.config.batch_size, self.config.lease_for)
            .await?;
        let mut round = RelayRound {
            leased: records.len(),
            ..RelayRound::default()
        };
        if records.is_empty() {
            return Ok(round);
        }
        self.counters.rounds.fetch_add(1, Ordering::Relaxed);
        let (envelopes, holds): (Vec<Envelope>, Vec<(Lease, u32)>) = records
            .into_iter()
            .map(|r| (r.envelope, (r.lease, r.attempts)))
            .unzip();
        if shutdown.is_cancelled() {
            let leases: Vec<Lease> = holds.into_iter().map(|(lease, _)| lease).collect();
            round.released = self.outbox.release(&leases).await?;
            return Ok(round);
        }

        let results = self.publish(&envelopes).await;
        let mut confirmed = Vec::with_capacity(envelopes.len());
        for ((lease, attempts), result) in holds.into_iter().zip(results) {
            // A receipt for another message confirms nothing about this one (a publisher
            // whose results slipped out of order): retried, never marked on its word.
            let result = result.and_then(|receipt| {
                if receipt.id == lease.id {
                    Ok(receipt)
                } else {
                    Err(Error::NotConfirmed {
                        reason: format!(
                            "the publisher's confirm is for {}, not for this message",
                            receipt.id
                        ),
                    })
                }
            });
            match result {
                Ok(_) => confirmed.push(lease),
                Err(error) => self.hold(&lease, attempts, &error, &mut round).await?,
            }
        }
        if !confirmed.is_empty() {
            let marked = self
                .with_store(|| self.outbox.mark_published(&confirmed))
                .await?;
            round.published = marked;
            round.lost_leases += confirmed.len() - marked.min(confirmed.len());
        }

        self.count(&round);
        Ok(round)
    }

    /// Publishes a batch with its confirms; exactly one result per envelope.
    async fn publish(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        let started = std::time::Instant::now();
        let mut results = self.publisher.publish_batch(envelopes).await;
        telemetry::confirm_latency(started.elapsed());
        if results.len() != envelopes.len() {
            warn!(
                expected = envelopes.len(),
                got = results.len(),
                "publisher returned a result count that does not match the batch; unmatched rows are retried"
            );
        }
        results.resize_with(envelopes.len(), || {
            Err(Error::NotConfirmed {
                reason: "the publisher returned no result for this message".into(),
            })
        });

        results
    }

    /// Keeps a row whose publish failed: rescheduled with backoff while the error is
    /// retryable and attempts remain, else parked with the reason.
    async fn hold(
        &self,
        lease: &Lease,
        attempts: u32,
        error: &Error,
        round: &mut RelayRound,
    ) -> Result<(), Error> {
        let attempts = attempts.saturating_add(1);
        let text = error.to_string();
        let held = if error.is_retryable() && attempts < self.config.max_attempts {
            let retry_in = self.config.backoff.delay(attempts - 1);
            debug!(id = %lease.id, attempts, ?retry_in, error = %text, "publish failed; rescheduled");
            round.rescheduled += 1;
            self.with_store(|| self.outbox.reschedule(lease, attempts, retry_in, &text))
                .await?
        } else {
            let reason = if error.is_retryable() {
                format!("gave up after {attempts} attempts: {text}")
            } else {
                text
            };
            warn!(id = %lease.id, attempts, reason = %reason, "message parked");
            round.parked += 1;
            self.with_store(|| self.outbox.park(lease, attempts, &reason))
                .await?
        };
        if !held {
            round.lost_leases += 1;
        }
        Ok(())
    }

    /// Adds a round to the metrics and the totals.
    fn count(&self, round: &RelayRound) {
        telemetry::relay_round(
            round.published,
            round.rescheduled,
            round.parked,
            round.lost_leases,
        );
        let c = &self.counters;
        c.published
            .fetch_add(round.published as u64, Ordering::Relaxed);
        c.rescheduled
            .fetch_add(round.rescheduled as u64, Ordering::Relaxed);
        c.parked.fetch_add(round.parked as u64, Ordering::Relaxed);
        c.lost_leases
            .fetch_add(round.lost_leases as u64, Ordering::Relaxed);
    }

    /// Store writes after a publish are retried for up to half a lease: giving up earlier
    /// would only make another relay publish the rows again.
    async fn with_store<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let budget = CancellationToken::new();
        let deadline = budget.clone();
        let half_lease = self.config.lease_for / 2;
        let timer = tokio::spawn(async move {
            tokio::time::sleep(half_lease).await;
            deadline.cancel();
        });
        let result = retry_until(
            &self.config.store_backoff,
            &budget,
            |e| {
                telemetry::relay_store_error();
                warn!(error = %e, "outbox write failed; retrying");
            },
            op,
        )
        .await;
        timer.abort();
        result.map_err(|stopped| match stopped {
            Stopped::Failed(e) => e,
            Stopped::Shutdown => Error::Timeout {
                operation: "writing relay results to the outbox".into(),
                after: half_lease,
            },
        })
    }
}
