//! The idempotent consumer: claim → handle → complete → ack, with retries, a DLQ and
//! fail-closed behaviour when the dedupe store is down.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info_span, warn};

use super::claim_keeper::{ClaimKeeper, Loss};
use super::retry::{Stopped, after_grace, retry_until, sleep_or_stop};
use super::stage::{self, Board};
use crate::dedupe::{DEFAULT_KEEP_FOR, ParkedDeadLetter};
use crate::{
    Backoff, Claim, ClaimToken, DeadLetterReason, DeadLetterSink, DedupeStore, Delivery, Envelope,
    Error, Failure, Handler, HandlerContext, HandlerError, IdExtractor, MessageId, Outcome,
    Subscriber,
};

/// How long a DLQ without a route is tried again before the dead letter is kept in the
/// dedupe store as refused: long enough for a restarted broker to register its routes.
const DLQ_ROUTE_PATIENCE: Duration = Duration::from_secs(60);

/// How the consumer works. The defaults follow the source article: 3 handlers in
/// flight, dead-letter after 3 failures, processed marks kept 24 h.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Deliveries handled at once.
    pub concurrency: usize,
    /// Handler failures (retryable) before the message is dead-lettered.
    pub max_attempts: u32,
    /// How long a claim holds without renewal. While the handler runs the consumer extends
    /// it every third of the lease; a consumer that stops (crash, pause, cut off from the
    /// store) loses it after this long, and another consumer takes the message over.
    pub claim_lease: Duration,
    /// The longest a handler may run (its claim renewed all along). Past it the handler is
    /// cancelled and the run counts as a retryable failure.
    pub max_handler_time: Duration,
    /// How long a processed id is remembered (duplicates within it are suppressed).
    pub keep_for: Duration,
    /// Delay before a failed message is handed back for redelivery.
    pub retry_backoff: Backoff,
    /// Delay between attempts to reach an unavailable dedupe store or DLQ.
    pub store_backoff: Backoff,
    /// How often a message claimed by another consumer is looked at again (it is kept, not
    /// handed back, until the claim is released, finished or expired; after `claim_lease`
    /// it is handed back).
    pub held_retry_delay: Duration,
    /// How long, after shutdown, the consumer keeps trying to record a finished message.
    pub shutdown_grace: Duration,
    /// How long, after shutdown, the consumer waits for the deliveries in flight. Those
    /// still running then are cut off, unacknowledged, as a crash would leave them: the
    /// broker redelivers them and their claims expire. At least `shutdown_grace`.
    pub drain_timeout: Duration,
    /// How to find each delivery's id.
    pub id_extractor: IdExtractor,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            concurrency: 3,
            max_attempts: 3,
            claim_lease: Duration::from_secs(30),
            max_handler_time: Duration::from_secs(600),
            keep_for: DEFAULT_KEEP_FOR,
            retry_backoff: Backoff::exponential(
                Duration::from_millis(100),
                Duration::from_secs(10),
            ),
            store_backoff: Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5)),
            held_retry_delay: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(15),
            id_extractor: IdExtractor::default(),
        }
    }
}

/// What [`Consumer::claim`] found.
enum Claimed {
    /// The claim is ours, granted by a call sent at that instant.
    Yes(ClaimToken, tokio::time::Instant),
    /// Already finished: a duplicate.
    Done,
    /// Another consumer held it longer than a lease: hand it back.
    Held,
    /// Shutdown or a permanent store error.
    Stopped(Stopped),
}

/// How a handler run ended.
enum Ran {
    Done,
    Failed(HandlerError),
    /// Cut short by the claim or the store: no attempt counted.
    Interrupted(HandlerError),
    /// The claim was lost while it ran: it was cancelled.
    Lost,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Handled, marked, acknowledged.
    Processed,
    /// Already processed: acknowledged without calling the handler.
    Duplicate,
    /// Another consumer holds it: handed back for later redelivery.
    Deferred,
    /// The handler failed retryably: handed back for redelivery.
    Retried,
    /// Sent to the DLQ (confirmed), marked, acknowledged.
    DeadLettered,
    /// Left unacknowledged for redelivery (shutdown, lost claim, store refused).
    Abandoned,
}

/// Counts over a consumer's life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConsumerTotals {
    /// Messages handled and acknowledged.
    pub processed: u64,
    /// Redeliveries suppressed as already processed.
    pub duplicates: u64,
    /// Deliveries handed back because another consumer held the claim.
    pub deferred: u64,
    /// Handler failures handed back for redelivery.
    pub retried: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Deliveries left unacknowledged.
    pub abandoned: u64,
    /// Dedupe-store or DLQ errors met (each retried).
    pub store_errors: u64,
    /// Acknowledgements the broker did not take (the message comes back and is suppressed).
    pub ack_errors: u64,
}

#[derive(Default)]
struct Counters {
    processed: AtomicU64,
    duplicates: AtomicU64,
    deferred: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    abandoned: AtomicU64,
    store_errors: AtomicU64,
    ack_errors: AtomicU64,
}

struct Inner {
    dedupe: Arc<dyn DedupeStore>,
    handler: Arc<dyn Handler>,
    dead_letters: Arc<dyn DeadLetterSink>,
    config: ConsumerConfig,
    counters: Counters,
    /// `true` while the dedupe store answers; the receive loop takes nothing while `false`.
    store_up: watch::Sender<bool>,
    /// The step of each delivery in flight (named when a shutdown cuts them off).
    board: Board,
}

/// Runs a [`Handler`] over a [`Subscriber`] so that every message has its effect once:
/// claim the id, handle, mark it processed, then acknowledge. Redeliveries of a processed
/// id are acknowledged without calling the handler; failures are retried and then
/// dead-lettered; when the dedupe store is unreachable nothing is taken or acknowledged.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use zerolost_core::{handler_fn, Consumer, DeadLetterPublisher, Envelope, Publisher};
/// use zerolost_core::memory::{MemoryBroker, MemoryDedupe};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let broker = MemoryBroker::new();
/// broker.declare("orders");
/// broker.declare("orders.dlq");
/// broker.publisher().publish(&Envelope::new("orders", "order 1")).await.unwrap();
///
/// let handler = handler_fn(|env: Envelope| async move { Ok(()) });
/// let consumer = Consumer::new(MemoryDedupe::new(), handler, DeadLetterPublisher::new(broker.publisher()));
/// let mut sub = broker.subscribe("orders").unwrap();
/// let delivery = zerolost_core::Subscriber::next(&mut sub).await.unwrap();
/// let done = consumer.process(delivery, &Default::default()).await;
/// assert_eq!(done, zerolost_core::Disposition::Processed);
/// # });
/// # }
/// ```
#[derive(Clone)]
pub struct Consumer {
    inner: Arc<Inner>,
}

impl Consumer {
    /// A consumer with the default [`ConsumerConfig`].
    pub fn new(
        dedupe: impl DedupeStore + 'static,
        handler: impl Handler + 'static,
        dead_letters: impl DeadLetterSink + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                dedupe: Arc::new(dedupe),
                handler: Arc::new(handler),
                dead_letters: Arc::new(dead_letters),
                config: ConsumerConfig::default(),
                counters: Counters::default(),
                store_up: watch::Sender::new(true),
                board: Board::default(),
            }),
        }
    }

    /// Replaces the configuration (before running); invalid values are refused.
    pub fn with_config(self, config: ConsumerConfig) -> Result<Self, Error> {
        if config.concurrency == 0 {
            return Err(Error::Config(
                "consumer concurrency must be at least 1".into(),
            ));
        }
        if config.max_attempts == 0 {
            return Err(Error::Config(
                "consumer max_attempts must be at least 1".into(),
            ));
        }
        if config.claim_lease.is_zero() {
            return Err(Error::Config(
                "consumer claim_lease must be longer than zero".into(),
            ));
        }
        if config.max_handler_time.is_zero() {
            return Err(Error::Config(
                "consumer max_handler_time must be longer than zero".into(),
            ));
        }
        if config.drain_timeout < config.shutdown_grace {
            return Err(Error::Config(format!(
                "consumer drain_timeout ({:?}) must be at least shutdown_grace ({:?})",
                config.drain_timeout, config.shutdown_grace
            )));
        }
        let inner = Arc::try_unwrap(self.inner).map_err(|_| {
            Error::Config("configure the consumer before cloning or running it".into())
        })?;
        Ok(Self {
            inner: Arc::new(Inner { config, ..inner }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ConsumerConfig {
        &self.inner.config
    }

    /// Counts so far.
    pub fn totals(&self) -> ConsumerTotals {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConsumerTotals {
            processed: get(&c.processed),
            duplicates: get(&c.duplicates),
            deferred: get(&c.deferred),
            retried: get(&c.retried),
            dead_lettered: get(&c.dead_lettered),
            abandoned: get(&c.abandoned),
            store_errors: get(&c.store_errors),
            ack_errors: get(&c.ack_errors),
        }
    }

    /// Whether the dedupe store answered the last call (false: the consumer is holding).
    pub fn store_available(&self) -> bool {
        *self.inner.store_up.borrow()
    }

    /// Takes deliveries from `subscriber` with `concurrency` handlers in flight until
    /// `shutdown`; then waits for the deliveries in flight (each finishes or is left for
    /// redelivery), closes the subscriber ([`Subscriber::close`]; a failure to close is
    /// logged, not returned) and returns the totals.
    /// Pass `&mut subscriber` to keep it: a borrowed subscriber is handed back open.
    pub async fn run(
        &self,
        mut subscriber: impl Subscriber,
        shutdown: CancellationToken,
    ) -> Result<ConsumerTotals, Error> {
        let slots = Arc::new(Semaphore::new(self.inner.config.concurrency));
        let mut store_up = self.inner.store_up.subscribe();
        let mut tasks = JoinSet::new();
        let mut receive_failures = 0u32;
        let outcome = loop {
            while let Some(joined) = tasks.try_join_next() {
                if let Err(e) = joined {
                    error!(error = %e, "a consumer task failed");
                }
            }
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break Ok(()),
                },
            };
            // Fail closed: take nothing while the dedupe store is down.
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                up = store_up.wait_for(|up| *up) => if up.is_err() { break Ok(()) },
            }
            let received = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                received = subscriber.next() => received,
            };
            match received {
                Ok(delivery) => {
                    receive_failures = 0;
                    let this = self.clone();
                    let stop = shutdown.clone();
                    let tracked = self.inner.board.track(async move {
                        let _slot = slot;
                        this.process(delivery, &stop).await
                    });
                    tasks.spawn(tracked);
                }
                Err(Error::Closed(_)) => break Ok(()),
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "receive failed; retrying");
                    let delay = self.inner.config.store_backoff.delay(receive_failures);
                    receive_failures = receive_failures.saturating_add(1);
                    if sleep_or_stop(delay, &shutdown).await {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.drain(tasks).await;
        // The work is done and settled; a close that fails (a commit refused during a
        // rebalance) only means some settled messages may come again, and the claims
        // answer them.
        if let Err(e) = subscriber.close().await {
            warn!(error = %e, "closing the subscriber failed; settled messages may be delivered again");
        }
        outcome.map(|()| self.totals())
    }

    /// Waits up to `drain_timeout` for the deliveries in flight, then cuts off the rest
    /// (counted as abandoned: unacknowledged, they are redelivered).
    async fn drain(&self, mut tasks: JoinSet<Disposition>) {
        let drained = tokio::time::timeout(self.inner.config.drain_timeout, async {
            while let Some(joined) = tasks.join_next().await {
                if let Err(e) = joined {
                    error!(error = %e, "a consumer task failed");
                }
            }
        })
        .await;
        if drained.is_err() {
            let cut = tasks.len();
            warn!(
                in_flight = cut,
                after = ?self.inner.config.drain_timeout,
                "deliveries still in flight at the end of the drain are cut off; the broker redelivers them"
            );
            for stuck in self.inner.board.in_flight() {
                warn!(id = ?stuck.id, stage = stuck.stage, for_ = ?stuck.for_, "cut off");
            }
            tasks.shutdown().await;
            self.inner
                .counters
                .abandoned
                .fetch_add(cut as u64, Ordering::Relaxed);
        }
    }

    /// Processes one delivery to its end and settles it with the broker.
    pub async fn process(&self, delivery: Delivery, shutdown: &CancellationToken) -> Disposition {
        let started = std::time::Instant::now();
        let span = info_span!(
            "zerolost.consume",
            destination = %delivery.message.destination,
            id = ?delivery.message.headers.get(crate::MESSAGE_ID_HEADER),
            trace_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
        );
        if let Some(parent) = delivery
            .message
            .headers
            .get(crate::TRACEPARENT_HEADER)
            .and_then(|v| crate::trace::TraceParent::parse(v))
        {
            span.record("trace_id", parent.trace_id_hex());
            span.record("parent_span_id", parent.parent_id_hex());
        }
        let disposition = self.settle(delivery, shutdown).instrument(span).await;
        let c = &self.inner.counters;
        let (counter, outcome) = match disposition {
            Disposition::Processed => (&c.processed, "processed"),
            Disposition::Duplicate => (&c.duplicates, "duplicate"),
            Disposition::Deferred => (&c.deferred, "deferred"),
            Disposition::Retried => (&c.retried, "retried"),
            Disposition::DeadLettered => (&c.dead_lettered, "dead_lettered"),
            Disposition::Abandoned => (&c.abandoned, "abandoned"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::consumer_settled(outcome, started.elapsed());
        disposition
    }

    async fn settle(&self, delivery: Delivery, shutdown: &CancellationToken) -> Disposition {
        let cfg = &self.inner.config;
        let Some((id, _)) = cfg.id_extractor.extract(&delivery.message) else {
            return self.dead_letter_without_id(delivery, shutdown).await;
        };
        if let Some(lag) = id.minted_at().and_then(|at| at.elapsed().ok()) {
            crate::telemetry::consumer_lag(&delivery.message.destination, lag);
        }
        stage::identify(id);
        let envelope = delivery.message.clone().into_envelope(id);

        let (token, asked_at) = match self.claim(id, shutdown).await {
            Claimed::Yes(token, asked_at) => (token, asked_at),
            Claimed::Done => {
                self.ack(delivery, id).await;
                return Disposition::Duplicate;
            }
            Claimed::Held => {
                self.hand_back(delivery).await;
                return Disposition::Deferred;
            }
            Claimed::Stopped(stopped) => return self.abandon(delivery, id, stopped),
        };
        let keeper = ClaimKeeper::start(
            self.inner.dedupe.clone(),
            token.clone(),
            cfg.claim_lease,
            asked_at,
            cfg.store_backoff,
        );
        match self.run_handler(&envelope, &token, &keeper).await {
            Ran::Done => {
                self.finish(delivery, &token, Outcome::Processed, shutdown)
                    .await
            }
            Ran::Failed(failure) => {
                self.failed(delivery, envelope, &token, &keeper, failure, shutdown)
                    .await
            }
            Ran::Interrupted(why) => {
                self.interrupted(delivery, &token, &keeper, why, shutdown)
                    .await
            }
            // The claim's new holder (or a redelivery) finishes it.
            Ran::Lost => {
                let why = match keeper.loss() {
                    Some(Loss::Unreachable(e)) => Error::unavailable("dedupe store", e),
                    _ => Error::LeaseLost { id },
                };
                self.abandon(delivery, id, Stopped::Failed(why))
            }
        }
    }

    /// Claims `id`. A claim held by another consumer is waited out here, with the delivery
    /// kept: the holder finishes (then this copy is a duplicate) or its lease expires (it
    /// crashed; then this copy takes over). Handing the copy back to the broker at once
    /// would spend the broker's redelivery count (a quorum queue's delivery limit,
    /// RocketMQ's max reconsume times) on a message that never failed.
    async fn claim(&self, id: MessageId, shutdown: &CancellationToken) -> Claimed {
        let cfg = &self.inner.config;
        let mut waited = Duration::ZERO;
        loop {
            stage::enter("claim");
            let mut asked_at = tokio::time::Instant::now();
            let claim = self
                .store(shutdown, || {
                    asked_at = tokio::time::Instant::now();
                    self.inner.dedupe.claim(id, cfg.claim_lease)
                })
                .await;
            match claim {
                Ok(Claim::Claimed(token)) => return Claimed::Yes(token, asked_at),
                Ok(Claim::AlreadyProcessed(_)) => return Claimed::Done,
                Ok(Claim::HeldByOther) => {
                    stage::enter("held by another consumer");
                    let stopped = sleep_or_stop(cfg.held_retry_delay, shutdown).await;
                    waited += cfg.held_retry_delay;
                    if stopped || waited > cfg.claim_lease {
                        return Claimed::Held;
                    }
                }
                Err(stopped) => return Claimed::Stopped(stopped),
            }
        }
    }

    /// Runs the handler under `token` while `keeper` renews the claim: cancelled (its
    /// future dropped, its context's token fired) when the claim is lost or after
    /// `max_handler_time`.
    async fn run_handler(
        &self,
        envelope: &Envelope,
        token: &ClaimToken,
        keeper: &ClaimKeeper,
    ) -> Ran {
        stage::enter("handler");
        let max = self.inner.config.max_handler_time;
        let cancel = keeper.lost().child_token();
        let context = HandlerContext::new(token.clone(), cancel.clone());
        let call =
            AssertUnwindSafe(self.inner.handler.handle_claimed(envelope, &context)).catch_unwind();
        let ran = tokio::select! {
            biased;
            _ = keeper.lost().cancelled() => Ran::Lost,
            result = tokio::time::timeout(max, call) => match result {
                Ok(Ok(Ok(()))) => Ran::Done,
                Ok(Ok(Err(e))) if e.is_interrupted() => Ran::Interrupted(e),
                Ok(Ok(Err(e))) => Ran::Failed(e),
                Ok(Err(_panic)) => Ran::Failed(HandlerError::retryable("the handler panicked")),
                Err(_) => Ran::Failed(HandlerError::retryable(format!(
                    "the handler ran past max_handler_time ({max:?}) and was cancelled"
                ))),
            },
        };
        cancel.cancel();
        ran
    }

    /// The handler was cut short by its claim or its store, not by the message: give the
    /// claim back and hand the delivery back, counting no attempt.
    async fn interrupted(
        &self,
        delivery: Delivery,
        token: &ClaimToken,
        keeper: &ClaimKeeper,
        why: HandlerError,
        shutdown: &CancellationToken,
    ) -> Disposition {
        warn!(id = %token.id, error = %why, "handler interrupted (claim or store, not the message); redelivered without counting an attempt");
        self.inner
            .counters
            .store_errors
            .fetch_add(1, Ordering::Relaxed);
        if !keeper.lost().is_cancelled() {
            self.release(token, shutdown).await;
        }
        sleep_or_stop(self.inner.config.store_backoff.delay(0), shutdown).await;
        self.hand_back(delivery).await;
        Disposition::Abandoned
    }

    /// Handler failed: check the claim is still ours, count it; retry later, or dead-letter.
    /// A lost claim counts nothing: its new holder decides the message's fate.
    async fn failed(
        &self,
        delivery: Delivery,
        envelope: Envelope,
        token: &ClaimToken,
        keeper: &ClaimKeeper,
        failure: HandlerError,
        shutdown: &CancellationToken,
    ) -> Disposition {
        let cfg = &self.inner.config;
        let id = envelope.id;
        let text = failure.to_string();
        debug!(%id, error = %text, "handler failed");
        stage::enter("check claim");
        let held = self
            .store(shutdown, || {
                self.inner.dedupe.extend(token, cfg.claim_lease)
            })
            .await;
        if let Err(stopped) = held {
            return self.abandon(delivery, id, stopped);
        }
        stage::enter("record failure");
        let record = match self
            .store(shutdown, || self.inner.dedupe.record_failure(id, &text))
            .await
        {
            Ok(record) => record,
            Err(stopped) => return self.abandon(delivery, id, stopped),
        };
        let exhausted = record.attempts >= cfg.max_attempts;
        if failure.is_retryable() && !exhausted {
            self.release(token, shutdown).await;
            stage::enter("retry backoff");
            sleep_or_stop(cfg.retry_backoff.delay(record.attempts - 1), shutdown).await;
            self.hand_back(delivery).await;
            return Disposition::Retried;
        }
        let dead = Failure {
            reason: if failure.is_retryable() {
                DeadLetterReason::Exhausted
            } else {
                DeadLetterReason::Permanent
            },
            error: text,
            attempts: record.attempts,
            original_destination: envelope.destination.clone(),
            first_failure_at: record.first_at,
            last_failure_at: record.last_at,
        };
        if keeper.lost().is_cancelled() {
            return self.abandon(delivery, id, Stopped::Failed(Error::LeaseLost { id }));
        }
        match self.dead_letter(&envelope, &dead, shutdown).await {
            Ok(()) => {
                self.finish(delivery, token, Outcome::DeadLettered, shutdown)
                    .await
            }
            Err(stopped) => {
                self.release(token, shutdown).await;
                self.abandon(delivery, id, stopped)
            }
        }
    }

    /// A message without an id cannot be deduplicated: it goes to the DLQ as such.
    async fn dead_letter_without_id(
        &self,
        delivery: Delivery,
        shutdown: &CancellationToken,
    ) -> Disposition {
        let message = &delivery.message;
        let id = MessageId::from_content(&message.destination, &message.payload);
        let envelope = message.clone().into_envelope(id);
        let now = Utc::now();
        let dead = Failure {
            reason: DeadLetterReason::MissingId,
            error: "missing message id".into(),
            attempts: 0,
            original_destination: envelope.destination.clone(),
            first_failure_at: now,
            last_failure_at: now,
        };
        match self.dead_letter(&envelope, &dead, shutdown).await {
            Ok(()) => {
                self.ack(delivery, id).await;
                Disposition::DeadLettered
            }
            Err(stopped) => self.abandon(delivery, id, stopped),
        }
    }

    /// Sends the message to the DLQ; one the DLQ refuses for good (too large with its
    /// failure metadata, say) is kept in the dedupe store instead, so that it neither comes
    /// back forever nor holds up the messages behind it.
    async fn dead_letter(
        &self,
        envelope: &Envelope,
        failure: &Failure,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let refused = match self.send_to_dlq(envelope, failure, shutdown).await {
            Err(Stopped::Failed(refused)) => refused,
            sent => return sent,
        };
        stage::enter("park dead letter");
        let parked = ParkedDeadLetter::new(envelope, failure, &refused);
        match self
            .store(shutdown, || self.inner.dedupe.park_dead_letter(&parked))
            .await
        {
            Ok(()) => {
                warn!(id = %envelope.id, refused = %refused, "the DLQ refused the message for good; kept in the dedupe store (zerolost dlq list shows it)");
                Ok(())
            }
            Err(Stopped::Failed(e)) => {
                error!(id = %envelope.id, error = %e, "the dedupe store cannot keep the dead letter the DLQ refused; it stays on its queue");
                Err(Stopped::Failed(refused))
            }
            Err(Stopped::Shutdown) => Err(Stopped::Shutdown),
        }
    }

    async fn send_to_dlq(
        &self,
        envelope: &Envelope,
        failure: &Failure,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        stage::enter("dead-letter publish");
        let since = tokio::time::Instant::now();
        let result = retry_until(
            &self.inner.config.store_backoff,
            shutdown,
            |e| {
                self.inner
                    .counters
                    .store_errors
                    .fetch_add(1, Ordering::Relaxed);
                crate::telemetry::consumer_store_error();
                warn!(id = %envelope.id, error = %e, "dead-letter publish failed; retrying");
            },
            || async {
                match self.inner.dead_letters.dead_letter(envelope, failure).await {
                    // A DLQ without a route is most often a broker coming back (RocketMQ's
                    // name server drops a dead broker's routes): given time before it counts
                    // as a refusal.
                    Err(e @ Error::Unroutable { .. }) if since.elapsed() < DLQ_ROUTE_PATIENCE => {
                        Err(Error::unavailable("the DLQ", e))
                    }
                    sent => sent,
                }
            },
        )
        .await;
        result.map(|_| ())
    }

    /// Marks the message finished (trying on past shutdown for a grace period, since the
    /// effect already happened), then acknowledges.
    async fn finish(
        &self,
        delivery: Delivery,
        token: &ClaimToken,
        outcome: Outcome,
        shutdown: &CancellationToken,
    ) -> Disposition {
        let cfg = &self.inner.config;
        stage::enter("complete");
        let complete = || self.inner.dedupe.complete(token, outcome, cfg.keep_for);
        let marked = match complete().await {
            Ok(()) => Ok(()),
            Err(e) if !e.is_retryable() => Err(Stopped::Failed(e)),
            Err(_) => {
                let late = after_grace(shutdown, cfg.shutdown_grace);
                let marked = self.store(&late, complete).await;
                late.cancel();
                marked
            }
        };
        match marked {
            Ok(()) => {
                self.ack(delivery, token.id).await;
                match outcome {
                    Outcome::Processed => Disposition::Processed,
                    Outcome::DeadLettered => Disposition::DeadLettered,
                }
            }
            Err(stopped) => self.abandon(delivery, token.id, stopped),
        }
    }

    async fn release(&self, token: &ClaimToken, shutdown: &CancellationToken) {
        stage::enter("release");
        match self
            .store(shutdown, || self.inner.dedupe.release(token))
            .await
        {
            Ok(()) | Err(Stopped::Shutdown) => {}
            Err(Stopped::Failed(e)) => debug!(id = %token.id, error = %e, "claim not released"),
        }
    }

    /// Calls the dedupe store, holding the delivery and closing the intake while it is down.
    async fn store<T, F, Fut>(&self, shutdown: &CancellationToken, op: F) -> Result<T, Stopped>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let inner = &self.inner;
        let result = retry_until(
            &inner.config.store_backoff,
            shutdown,
            |e| {
                inner.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::consumer_store_error();
                if inner.store_up.send_replace(false) {
                    warn!(error = %e, "dedupe store unavailable: consumer holds (fails closed) until it is back");
                }
            },
            op,
        )
        .await;
        // Any answer but a shutdown means the store is back: an error here is one the store
        // gave (retryable ones are retried), such as a claim lost during the outage. Only a
        // call through the store reopens the intake, so one that ends without reopening it
        // would leave the consumer waiting for good.
        if !matches!(result, Err(Stopped::Shutdown)) {
            inner
                .store_up
                .send_if_modified(|up| !std::mem::replace(up, true));
        }
        result
    }

    async fn ack(&self, delivery: Delivery, id: MessageId) {
        stage::enter("ack");
        if let Err(e) = delivery.ack().await {
            self.inner
                .counters
                .ack_errors
                .fetch_add(1, Ordering::Relaxed);
            debug!(%id, error = %e, "ack failed; the broker redelivers and the duplicate is suppressed");
        }
    }

    async fn hand_back(&self, delivery: Delivery) {
        stage::enter("nack");
        if let Err(e) = delivery.nack(true).await {
            debug!(error = %e, "nack failed; the broker redelivers anyway");
        }
    }

    fn abandon(&self, delivery: Delivery, id: MessageId, stopped: Stopped) -> Disposition {
        match stopped {
            Stopped::Shutdown => debug!(%id, "shutting down; left for redelivery"),
            Stopped::Failed(e) => warn!(%id, error = %e, "left for redelivery"),
        }
        drop(delivery);
        Disposition::Abandoned
    }
}
