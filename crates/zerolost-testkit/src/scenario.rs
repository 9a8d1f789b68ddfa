//! End-to-end runs on the in-memory broker (or any [`Backend`]), over any outbox and
//! dedupe store, under seeded faults: a producer enqueues in
//! transactions, relays publish (and crash, and are restarted), consumers process with
//! deduplication, and the verdict is computed by id. The property tests and
//! `zerolost-lab demo` both run this.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use zerolost_core::memory::{
    FaultConfig, FaultCounts, FaultInjector, MemoryBroker, MemoryDedupe, MemoryOutbox,
};
use zerolost_core::{
    Backoff, CancellationToken, Consumer, ConsumerConfig, ConsumerLedger, ConsumerTotals,
    DedupeStore, Envelope, Error, MessageId, OutboxCounts, OutboxStatus, OutboxStore, Publisher,
    ReconcileReport, Reconciler, Relay, RelayConfig, Subscriber, default_dlq_name,
};

use crate::timeline::{ChaosLog, Latencies, RunRecord, TimedFault, Timeline};
use crate::{
    Backend, Enqueue, FaultyPublisher, FaultySubscriber, MemoryBackend, RecordingHandler, Verdict,
};

/// The outbox and dedupe store a scenario runs on (the broker is always the in-memory
/// one, with its faults).
#[derive(Clone)]
pub struct ScenarioStores {
    /// The outbox as the relays see it.
    pub outbox: Arc<dyn OutboxStore>,
    /// How the producer adds rows.
    pub enqueue: Arc<dyn Enqueue>,
    /// The consumers' dedupe store.
    pub dedupe: Arc<dyn DedupeStore>,
    /// Its ledger.
    pub ledger: Arc<dyn ConsumerLedger>,
}

impl ScenarioStores {
    /// In-memory stores; the dedupe store takes its outages from `faults`.
    pub fn memory(faults: Arc<FaultInjector>) -> Self {
        let outbox = MemoryOutbox::new();
        let dedupe = MemoryDedupe::with_faults(faults);
        Self {
            outbox: Arc::new(outbox.clone()),
            enqueue: Arc::new(outbox),
            dedupe: Arc::new(dedupe.clone()),
            ledger: Arc::new(dedupe),
        }
    }
}

/// The broker a scenario runs on.
#[derive(Clone)]
pub enum ScenarioBroker {
    /// The in-memory broker, with the run's seeded faults (lost confirms, failed publishes,
    /// lost acks, relay crashes).
    Memory,
    /// Any backend (a real or mock broker). The run's seeded pipeline faults wrap its
    /// publishers and subscribers ([`FaultyPublisher`], [`FaultySubscriber`]); broker faults
    /// come from `chaos`, run alongside until the scenario ends. The backend must refuse
    /// payloads larger than [`MAX_MESSAGE_BYTES`] permanently.
    Backend {
        /// The broker.
        backend: Arc<dyn Backend>,
        /// Injects broker faults until the token is cancelled, noting each in the log.
        chaos: Option<Chaos>,
    },
}

/// A fault task run beside a scenario: injects broker faults until the stop token is
/// cancelled and notes each one in the [`ChaosLog`].
pub type Chaos = Arc<
    dyn Fn(CancellationToken, ChaosLog) -> futures::future::BoxFuture<'static, ()> + Send + Sync,
>;

/// Largest payload the scenario's broker accepts; unsendable messages are one byte larger.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// Messages produced.
    pub messages: usize,
    /// Every n-th message is poison (alternately failing retryably forever, and permanently).
    pub poison_every: Option<usize>,
    /// Every n-th message is too large for the broker (must be parked).
    pub unsendable_every: Option<usize>,
    /// Relays sharing the outbox.
    pub relays: usize,
    /// Consumers sharing the destination and the dedupe store.
    pub consumers: usize,
    /// Messages per producer transaction.
    pub enqueue_batch: usize,
    /// The fault schedule.
    pub faults: FaultConfig,
    /// Relay settings.
    pub relay: RelayConfig,
    /// Consumer settings.
    pub consumer: ConsumerConfig,
    /// Give up (and report) after this long.
    pub deadline: Duration,
}

impl ScenarioConfig {
    /// The demo's settings: two relays, two consumers, short delays, 1 poison in 1,000,
    /// 1 unsendable in 5,000.
    pub fn demo(messages: usize, faults: FaultConfig) -> Self {
        Self {
            messages,
            poison_every: Some(1000),
            unsendable_every: Some(5000),
            relays: 2,
            consumers: 2,
            enqueue_batch: 100,
            faults: FaultConfig {
                confirm_timeout_after: Duration::from_millis(20),
                dedupe_outage_for: Duration::from_millis(50),
                ..faults
            },
            relay: RelayConfig {
                batch_size: 500,
                lease_for: Duration::from_secs(2),
                max_attempts: 10,
                backoff: Backoff::exponential(Duration::from_millis(5), Duration::from_millis(200)),
                idle_poll: Duration::from_millis(5),
                store_backoff: Backoff::exponential(
                    Duration::from_millis(5),
                    Duration::from_millis(100),
                ),
            },
            consumer: ConsumerConfig {
                concurrency: 32,
                claim_lease: Duration::from_secs(10),
                retry_backoff: Backoff::exponential(
                    Duration::from_millis(5),
                    Duration::from_millis(100),
                ),
                store_backoff: Backoff::exponential(
                    Duration::from_millis(5),
                    Duration::from_millis(100),
                ),
                held_retry_delay: Duration::from_millis(20),
                ..ConsumerConfig::default()
            },
            deadline: Duration::from_secs(600),
        }
    }
}

/// Live counters a progress display can poll.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages enqueued.
    pub enqueued: AtomicU64,
    /// Messages the broker confirmed (outbox rows published).
    pub published: AtomicU64,
    /// Messages whose effect was applied or that were dead-lettered.
    pub finished: AtomicU64,
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioOutcome {
    /// The verdict by id.
    pub verdict: Verdict,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Relays restarted after a crash.
    pub relay_restarts: u64,
    /// Consumer counts, summed over consumers.
    pub consumer: ConsumerTotals,
    /// Copies of messages the broker stored (duplicates from lost confirms and relay crashes included).
    pub broker_stored: usize,
    /// The reconciler's report.
    pub reconcile: ReconcileReport,
    /// Live outbox leases after shutdown (must be 0).
    pub leased_after_shutdown: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Whether the deadline passed before every message settled.
    pub timed_out: bool,
    /// The broker the run used (`memory`, `kafka`, `kafka-mock`, ...).
    pub broker: String,
    /// Faults injected into the broker from outside (a backend's chaos task).
    pub broker_faults: u64,
    /// Messages per stage over time, and every fault on a timeline.
    pub timeline: Timeline,
    /// Latency percentiles per stage.
    pub latencies: Latencies,
}

/// The designated ids of a run.
struct Plan {
    envelopes: Vec<Envelope>,
    poison: HashSet<MessageId>,
    permanent: HashSet<MessageId>,
    unsendable: HashSet<MessageId>,
}

const DESTINATION: &str = "orders";

fn plan(config: &ScenarioConfig, destination: &str) -> Plan {
    let mut plan = Plan {
        envelopes: Vec::with_capacity(config.messages),
        poison: HashSet::new(),
        permanent: HashSet::new(),
        unsendable: HashSet::new(),
    };
    let every = |n: Option<usize>, i: usize| n.is_some_and(|n| n > 0 && i % n == n / 2);
    for i in 0..config.messages {
        let unsendable = every(config.unsendable_every, i);
        let payload = if unsendable {
            Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES + 1])
        } else {
            Bytes::from(format!(
                "{{\"order\":{i},\"amount_cents\":{}}}",
                100 + i % 9_900
            ))
        };
        let env = Envelope::new(destination, payload).with_key(format!("customer-{}", i % 97));
        if unsendable {
            plan.unsendable.insert(env.id);
        } else if every(config.poison_every, i) {
            let nth = i / config.poison_every.unwrap_or(1);
            if nth.is_multiple_of(2) {
                plan.poison.insert(env.id);
            } else {
                plan.permanent.insert(env.id);
            }
        }
        plan.envelopes.push(env);
    }
    plan
}

/// Runs one scenario on the in-memory broker and in-memory stores.
pub async fn run_memory(
    config: &ScenarioConfig,
    progress: Arc<Progress>,
) -> Result<ScenarioOutcome, Error> {
    run(config, progress, ScenarioStores::memory).await
}

/// Runs one scenario on the in-memory broker and the stores `stores` makes (given the
/// run's fault injector, for stores that take faults).
pub async fn run(
    config: &ScenarioConfig,
    progress: Arc<Progress>,
    stores: impl FnOnce(Arc<FaultInjector>) -> ScenarioStores,
) -> Result<ScenarioOutcome, Error> {
    run_on(config, progress, ScenarioBroker::Memory, stores).await
}

/// The broker side of a run, whichever broker it is.
struct Wiring {
    destination: String,
    backend: Arc<dyn Backend>,
    /// The in-memory broker, when the run is on it: relay publishers that crash, and an
    /// exact "nothing in flight" check.
    memory: Option<MemoryBroker>,
    /// The run's seeded faults (the in-memory broker draws from them itself).
    faults: Arc<FaultInjector>,
}

impl Wiring {
    async fn new(broker: &ScenarioBroker, faults: &Arc<FaultInjector>) -> Result<Self, Error> {
        Ok(match broker {
            ScenarioBroker::Memory => {
                let memory = MemoryBroker::with_faults(faults.clone())
                    .with_max_message_bytes(MAX_MESSAGE_BYTES);
                memory.declare(DESTINATION);
                memory.declare(&default_dlq_name(DESTINATION));
                Self {
                    destination: DESTINATION.to_owned(),
                    backend: Arc::new(MemoryBackend::with_broker(memory.clone())),
                    memory: Some(memory),
                    faults: faults.clone(),
                }
            }
            ScenarioBroker::Backend { backend, .. } => Self {
                destination: backend.destination().await?,
                backend: backend.clone(),
                memory: None,
                faults: faults.clone(),
            },
        })
    }

    /// A relay's publisher, under the run's faults; it reports a relay "crash" on `hook`.
    async fn relay_publisher(
        &self,
        hook: mpsc::UnboundedSender<()>,
    ) -> Result<Arc<dyn Publisher>, Error> {
        match &self.memory {
            Some(memory) => Ok(Arc::new(memory.crashing_publisher(hook))),
            None => Ok(Arc::new(
                FaultyPublisher::new(self.backend.publisher().await?, self.faults.clone())
                    .crashing(hook),
            )),
        }
    }

    /// A consumer's subscriber, under the run's faults (crash before the ack).
    async fn subscriber(&self) -> Result<Box<dyn Subscriber>, Error> {
        let subscriber = self.backend.subscriber(&self.destination).await?;
        Ok(match &self.memory {
            Some(_) => subscriber,
            None => Box::new(FaultySubscriber::new(subscriber, self.faults.clone())),
        })
    }

    async fn dead_letter_ids(&self) -> Result<HashSet<MessageId>, Error> {
        self.backend.dead_letter_ids(&self.destination).await
    }

    /// Nothing left in flight inside the broker (the in-memory broker can tell).
    fn quiet(&self) -> bool {
        self.memory
            .as_ref()
            .is_none_or(|memory| memory.depth(&self.destination) == (0, 0))
    }
}

/// Runs one scenario on `broker` and the stores `stores` makes (given the run's fault
/// injector, for stores that take faults).
pub async fn run_on(
    config: &ScenarioConfig,
    progress: Arc<Progress>,
    broker: ScenarioBroker,
    stores: impl FnOnce(Arc<FaultInjector>) -> ScenarioStores,
) -> Result<ScenarioOutcome, Error> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let faults = Arc::new(FaultInjector::new(config.faults.clone()));
    let wiring = Arc::new(Wiring::new(&broker, &faults).await?);
    let chaos_stop = CancellationToken::new();
    let chaos_log = ChaosLog::new(started);
    let chaos_task = match &broker {
        ScenarioBroker::Backend {
            chaos: Some(chaos), ..
        } => Some(tokio::spawn(chaos(chaos_stop.clone(), chaos_log.clone()))),
        _ => None,
    };
    let plan = plan(config, &wiring.destination);
    let handler = RecordingHandler::new()
        .with_poison(plan.poison.iter().copied())
        .with_permanent(plan.permanent.iter().copied());
    let run = Run {
        config,
        stores: stores(faults.clone()),
        wiring,
        plan,
        handler,
        progress,
    };
    let shutdown = CancellationToken::new();
    let restarts = Arc::new(AtomicU64::new(0));
    let (workers, consumers) = run.spawn(&shutdown, &restarts).await?;
    let timed_out = !run.settled(&consumers, started + config.deadline).await;

    shutdown.cancel();
    chaos_stop.cancel();
    if let Some(task) = chaos_task {
        task.await
            .map_err(|e| Error::backend("chaos task", false, e.to_string()))?;
    }
    let record = Record {
        started,
        started_at,
        faults: &faults,
        broker_faults: chaos_log.events(),
        consumer: join_workers(workers).await?,
        relay_restarts: restarts.load(Ordering::Relaxed),
        timed_out,
    };
    run.judge(record).await
}

/// One scenario's moving parts, shared by its steps: start, wait, judge.
struct Run<'a> {
    config: &'a ScenarioConfig,
    stores: ScenarioStores,
    wiring: Arc<Wiring>,
    plan: Plan,
    handler: RecordingHandler,
    progress: Arc<Progress>,
}

/// When a run started, what was done to it and how its tasks ended.
struct Record<'a> {
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    faults: &'a FaultInjector,
    broker_faults: Vec<TimedFault>,
    consumer: ConsumerTotals,
    relay_restarts: u64,
    timed_out: bool,
}

impl Run<'_> {
    /// Starts the producer (business transactions, each with its outbox rows), the relays
    /// and the consumers, each a task in the returned set.
    async fn spawn(
        &self,
        shutdown: &CancellationToken,
        restarts: &Arc<AtomicU64>,
    ) -> Result<(JoinSet<Result<ConsumerTotals, Error>>, Vec<Consumer>), Error> {
        let config = self.config;
        let mut workers = JoinSet::new();
        let (enqueue, progress, envelopes) = (
            self.stores.enqueue.clone(),
            self.progress.clone(),
            self.plan.envelopes.clone(),
        );
        let batch = config.enqueue_batch.max(1);
        workers.spawn(async move {
            for chunk in envelopes.chunks(batch) {
                enqueue.enqueue(chunk).await?;
                progress
                    .enqueued
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
            Ok(ConsumerTotals::default())
        });
        for _ in 0..config.relays {
            let relay = supervise_relay(
                self.stores.outbox.clone(),
                self.wiring.clone(),
                config.relay.clone(),
                shutdown.clone(),
                restarts.clone(),
            );
            workers.spawn(async move { relay.await.map(|()| ConsumerTotals::default()) });
        }
        let mut consumers = Vec::new();
        for _ in 0..config.consumers {
            let consumer = Consumer::new(
                self.stores.dedupe.clone(),
                self.handler.clone(),
                self.wiring.backend.dead_letter_sink().await?,
            )
            .with_config(config.consumer.clone())?;
            let subscriber = self.wiring.subscriber().await?;
            let stop = shutdown.clone();
            consumers.push(consumer.clone());
            workers.spawn(async move { consumer.run(subscriber, stop).await });
        }
        Ok((workers, consumers))
    }

    /// Waits until every message is in (published or parked) and each published one is
    /// applied or dead-lettered; false at `deadline`. Polls the outbox at most every 10 ms
    /// and never spends more than a fifth of the time counting: on a SQL store `counts()`
    /// is a query over the whole table.
    async fn settled(&self, consumers: &[Consumer], deadline: Instant) -> bool {
        let min_poll = Duration::from_millis(10);
        loop {
            let asked = Instant::now();
            let counted = self.stores.outbox.counts().await;
            let poll = min_poll.max(asked.elapsed() * 4);
            if let Ok(counts) = counted
                && self.all_through(&counts, consumers).await
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// One look at the run's progress; true when everything made it through.
    async fn all_through(&self, counts: &OutboxCounts, consumers: &[Consumer]) -> bool {
        let (pending, published, parked) = (counts.pending, counts.published, counts.parked);
        let dead_lettered: u64 = consumers.iter().map(|c| c.totals().dead_lettered).sum();
        let applied = self.handler.effects().distinct();
        self.progress
            .published
            .store(published as u64, Ordering::Relaxed);
        self.progress
            .finished
            .store(applied + dead_lettered, Ordering::Relaxed);
        let all_in = pending == 0 && published + parked == self.config.messages;
        let applied = applied as usize;
        if !(all_in && self.wiring.quiet() && applied + dead_lettered as usize >= published) {
            return false;
        }
        // A broker that cannot be read right now is asked again at the next poll.
        let dead = self.wiring.dead_letter_ids().await.unwrap_or_default();
        applied + dead.len() >= published
    }

    /// The verdict by id, the reconciliation and the timeline, once every task has ended.
    async fn judge(self, record: Record<'_>) -> Result<ScenarioOutcome, Error> {
        let (outbox, wiring, plan) = (&self.stores.outbox, &self.wiring, &self.plan);
        let snapshot = outbox.snapshot(None).await?;
        let parked = snapshot.ids_in(OutboxStatus::Parked);
        let produced: Vec<MessageId> = plan.envelopes.iter().map(|e| e.id).collect();
        let designated_poison: HashSet<MessageId> =
            plan.poison.union(&plan.permanent).copied().collect();
        let verdict = Verdict::compute(
            &produced,
            &self.handler.effects().snapshot(),
            &wiring.dead_letter_ids().await?,
            &parked,
            &designated_poison,
            &plan.unsendable,
        );
        let reconcile = Reconciler::new(outbox.clone(), self.stores.ledger.clone())
            .with_grace(Duration::ZERO)
            .reconcile(None)
            .await?;
        self.progress.finished.store(
            (verdict.processed + verdict.dead_lettered) as u64,
            Ordering::Relaxed,
        );
        let elapsed = record.started.elapsed();
        let run_record = RunRecord {
            started_at: record.started_at,
            elapsed,
            entries: &snapshot.entries,
            applied_at: &self.handler.effects().first_applied(),
            pipeline_faults: &record.faults.events(),
            broker_faults: &record.broker_faults,
        };
        Ok(ScenarioOutcome {
            verdict,
            faults: record.faults.counts(),
            relay_restarts: record.relay_restarts,
            consumer: record.consumer,
            broker_stored: wiring
                .backend
                .stored(&wiring.destination)
                .await?
                .unwrap_or(0),
            reconcile,
            leased_after_shutdown: outbox.counts().await?.leased,
            elapsed,
            timed_out: record.timed_out,
            broker: wiring.backend.name(),
            broker_faults: record.broker_faults.len() as u64,
            timeline: run_record.timeline(),
            latencies: run_record.latencies(),
        })
    }
}

/// Waits for every task of the run; the first failure is the run's error.
async fn join_workers(
    mut workers: JoinSet<Result<ConsumerTotals, Error>>,
) -> Result<ConsumerTotals, Error> {
    let mut totals = ConsumerTotals::default();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(t)) => add_totals(&mut totals, &t),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(Error::backend("scenario task", false, e.to_string())),
        }
    }
    Ok(totals)
}

fn add_totals(sum: &mut ConsumerTotals, t: &ConsumerTotals) {
    sum.processed += t.processed;
    sum.duplicates += t.duplicates;
    sum.deferred += t.deferred;
    sum.retried += t.retried;
    sum.dead_lettered += t.dead_lettered;
    sum.abandoned += t.abandoned;
    sum.store_errors += t.store_errors;
    sum.ack_errors += t.ack_errors;
}

/// Runs a relay; when its publisher "crashes" mid-batch, kills the relay task (its leases
/// stay held until they expire) and starts a new relay, as a process supervisor would.
async fn supervise_relay(
    outbox: Arc<dyn OutboxStore>,
    wiring: Arc<Wiring>,
    config: RelayConfig,
    shutdown: CancellationToken,
    restarts: Arc<AtomicU64>,
) -> Result<(), Error> {
    loop {
        let (hook, mut crashed) = mpsc::unbounded_channel();
        let relay = Relay::new(outbox.clone(), wiring.relay_publisher(hook).await?)
            .with_config(config.clone())?;
        let stop = shutdown.clone();
        let mut task = tokio::spawn(async move { relay.run(stop).await });
        tokio::select! {
            Some(()) = crashed.recv() => {
                task.abort();
                let _ = task.await;
                restarts.fetch_add(1, Ordering::Relaxed);
            }
            finished = &mut task => {
                return match finished {
                    Ok(result) => result.map(|_| ()),
                    Err(e) => Err(Error::backend("relay task", false, e.to_string())),
                };
            }
        }
    }
}
