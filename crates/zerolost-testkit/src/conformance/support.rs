//! What the conformance cases share: test settings, waiting, a running consumer, reading
//! the outbox and the DLQ back.

use crate::{Backend, DeadLetter};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use zerolost_core::{
    Backoff, CancellationToken, Claim, ClaimToken, Consumer, ConsumerConfig, ConsumerTotals,
    DedupeStore, Envelope, Error, IdExtractor, Incoming, MessageId, OutboxStatus, OutboxStore,
    Relay, RelayConfig, Subscriber,
};

/// Consumer settings with short delays, for tests.
pub fn test_consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        concurrency: 4,
        retry_backoff: Backoff::exponential(Duration::from_millis(5), Duration::from_millis(50)),
        store_backoff: Backoff::exponential(Duration::from_millis(5), Duration::from_millis(50)),
        held_retry_delay: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(1),
        ..ConsumerConfig::default()
    }
}

/// Relay settings with short delays, for tests.
pub fn test_relay_config() -> RelayConfig {
    RelayConfig {
        batch_size: 64,
        max_attempts: 5,
        backoff: Backoff::exponential(Duration::from_millis(5), Duration::from_millis(50)),
        idle_poll: Duration::from_millis(10),
        store_backoff: Backoff::exponential(Duration::from_millis(5), Duration::from_millis(100)),
        ..RelayConfig::default()
    }
}

/// Relay settings for chaos tests: batches of 500, and retries (up to 50, backing off to
/// 1 s) that outlast a broker outage of tens of seconds.
pub fn patient_relay_config() -> RelayConfig {
    RelayConfig {
        batch_size: 500,
        max_attempts: 50,
        backoff: Backoff::exponential(Duration::from_millis(50), Duration::from_secs(1)),
        ..RelayConfig::default()
    }
}

/// Asserts every id of `envelopes` was applied by `handler` exactly once, and nothing else;
/// prints the verdict.
#[track_caller]
pub fn assert_applied_exactly_once(handler: &crate::RecordingHandler, envelopes: &[Envelope]) {
    let effects = handler.effects().snapshot();
    let produced: Vec<MessageId> = envelopes.iter().map(|e| e.id).collect();
    let none = HashSet::new();
    let verdict = crate::Verdict::compute(&produced, &effects, &none, &none, &none, &none);
    eprintln!(
        "verdict: {} applied, lost {}, duplicate effects {}",
        verdict.processed,
        verdict.lost.len(),
        verdict.duplicate_effects
    );
    verdict.assert_clean();
    assert_eq!(effects.len(), envelopes.len(), "nothing else applied");
}

#[track_caller]
pub(crate) fn ok<T>(result: Result<T, Error>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` after `patience`.
pub async fn eventually(patience: Duration, what: &str, condition: impl AsyncFnMut() -> bool) {
    eventually_every(patience, Duration::from_millis(10), what, condition).await;
}

/// Polls `condition` every `every` (for conditions costly to ask) until it holds; panics
/// naming `what` after `patience`.
pub async fn eventually_every(
    patience: Duration,
    every: Duration,
    what: &str,
    mut condition: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + patience;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {patience:?} waiting for: {what}"
        );
        tokio::time::sleep(every).await;
    }
}

pub(super) async fn receive(
    sub: &mut dyn Subscriber,
    patience: Duration,
) -> zerolost_core::Delivery {
    match tokio::time::timeout(patience, sub.next()).await {
        Ok(Ok(delivery)) => delivery,
        Ok(Err(e)) => panic!("receive failed: {e}"),
        Err(_) => panic!("no delivery within {patience:?}"),
    }
}

pub(super) async fn assert_no_more(sub: &mut dyn Subscriber, wait: Duration) {
    if let Ok(Ok(delivery)) = tokio::time::timeout(wait, sub.next()).await {
        panic!("unexpected extra delivery: {:?}", delivery.message);
    }
}

pub(super) fn id_of(message: &Incoming) -> MessageId {
    IdExtractor::default()
        .extract(message)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("delivery without a message id: {message:?}"))
}

/// A consumer running in the background.
pub(crate) struct Running {
    pub(super) consumer: Consumer,
    stop: CancellationToken,
    task: JoinHandle<Result<ConsumerTotals, Error>>,
}

impl Running {
    pub(crate) async fn start(
        backend: &dyn Backend,
        destination: &str,
        dedupe: Arc<dyn DedupeStore>,
        handler: impl zerolost_core::Handler + 'static,
        config: ConsumerConfig,
    ) -> Self {
        let sink = ok(backend.dead_letter_sink().await, "dead-letter sink");
        let consumer = ok(
            Consumer::new(dedupe, handler, sink).with_config(config),
            "consumer config",
        );
        let subscriber = ok(backend.subscriber(destination).await, "subscribe");
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (consumer, stop) = (consumer.clone(), stop.clone());
            async move { consumer.run(subscriber, stop).await }
        });
        Self {
            consumer,
            stop,
            task,
        }
    }

    pub(crate) async fn stop(self) -> ConsumerTotals {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(totals)) => totals,
            Ok(Err(e)) => panic!("consumer failed: {e}"),
            Err(e) => panic!("consumer task failed: {e}"),
        }
    }
}

pub(super) async fn relay_until_settled(
    relay: &Relay,
    outbox: &dyn OutboxStore,
    patience: Duration,
) {
    eventually(patience, "every outbox row published or parked", || async {
        ok(relay.run_once().await, "relay round");
        let snapshot = ok(outbox.snapshot(None).await, "outbox snapshot");
        snapshot
            .entries
            .iter()
            .all(|e| e.status != OutboxStatus::Pending)
    })
    .await;
}

pub(super) async fn dead_letters_by_id(
    backend: &dyn Backend,
    destination: &str,
) -> HashMap<MessageId, DeadLetter> {
    ok(backend.dead_letters(destination).await, "read the DLQ")
        .into_iter()
        .filter_map(|d| Some((d.id?, d)))
        .collect()
}

/// Claims an id nobody holds; anything but `Claimed` fails the test.
pub(crate) async fn claim_fresh(
    store: &dyn DedupeStore,
    id: MessageId,
    lease: Duration,
) -> ClaimToken {
    match ok(store.claim(id, lease).await, "claim") {
        Claim::Claimed(token) => token,
        other => panic!("a fresh id must be claimable, got {other:?}"),
    }
}

/// Runs `relay` round by round until nothing is due, on a healthy broker: no row may fail
/// retryably. Returns how many rows were published and parked.
pub async fn drain_on_healthy_broker(relay: &Relay) -> (usize, usize) {
    let (mut published, mut parked) = (0, 0);
    loop {
        let round = ok(relay.run_once().await, "relay round");
        if round.leased == 0 {
            return (published, parked);
        }
        assert_eq!(
            round.rescheduled, 0,
            "nothing fails retryably on a healthy broker"
        );
        published += round.published;
        parked += round.parked;
    }
}

/// The reason `outbox` keeps with the parked row `id` (panics if the row is not parked).
pub async fn parked_reason(outbox: &dyn OutboxStore, id: MessageId) -> String {
    let snapshot = ok(outbox.snapshot(None).await, "outbox snapshot");
    let row = snapshot
        .entries
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("the parked row {id} is kept"));
    assert_eq!(row.status, OutboxStatus::Parked, "row {id}");
    row.last_error
        .unwrap_or_else(|| panic!("row {id} is parked with its reason"))
}
