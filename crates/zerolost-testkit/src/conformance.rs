//! The conformance suite: plain async functions every backend's tests call with its own
//! [`Backend`] and [`Stores`]. Each asserts real outcomes by message id and panics with
//! the evidence when a promise is broken. [`conformance_suite!`](crate::conformance_suite)
//! turns them into one `#[tokio::test]` each.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use zerolost_core::{
    Backoff, CancellationToken, Claim, ClaimToken, Consumer, ConsumerConfig, ConsumerTotals,
    DeadLetterReason, DedupeStore, Envelope, Error, IdExtractor, Incoming, MessageId, OutboxStatus,
    OutboxStore, Outcome, Publisher, Reconciler, Relay, RelayConfig, Subscriber,
};

mod leases;
mod parking;
mod replays;
pub use leases::{
    Run, TimedHandler, dedupe_claims_are_renewed_and_fenced,
    failures_count_only_under_a_held_claim, lost_renewal_cancels_the_handler,
    slow_handler_keeps_its_claim,
};

pub use parking::refused_dead_letter_is_parked_and_redriven;
pub use replays::{reconcile_respects_the_ledger_window, redrive_refuses_what_it_cannot_vouch_for};

use crate::{
    Backend, DeadLetter, FlakyPublisher, LossyPublisher, RecordingHandler, Stores,
    SwitchableDedupe, Verdict,
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

async fn receive(sub: &mut dyn Subscriber, patience: Duration) -> zerolost_core::Delivery {
    match tokio::time::timeout(patience, sub.next()).await {
        Ok(Ok(delivery)) => delivery,
        Ok(Err(e)) => panic!("receive failed: {e}"),
        Err(_) => panic!("no delivery within {patience:?}"),
    }
}

async fn assert_no_more(sub: &mut dyn Subscriber, wait: Duration) {
    if let Ok(Ok(delivery)) = tokio::time::timeout(wait, sub.next()).await {
        panic!("unexpected extra delivery: {:?}", delivery.message);
    }
}

fn id_of(message: &Incoming) -> MessageId {
    IdExtractor::default()
        .extract(message)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("delivery without a message id: {message:?}"))
}

/// A consumer running in the background.
pub(crate) struct Running {
    consumer: Consumer,
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

async fn relay_until_settled(relay: &Relay, outbox: &dyn OutboxStore, patience: Duration) {
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

async fn dead_letters_by_id(
    backend: &dyn Backend,
    destination: &str,
) -> HashMap<MessageId, DeadLetter> {
    ok(backend.dead_letters(destination).await, "read the DLQ")
        .into_iter()
        .filter_map(|d| Some((d.id?, d)))
        .collect()
}

/// Publish with confirms, receive the same ids, keys, headers and payloads, ack; nothing more comes.
pub async fn confirmed_round_trip(backend: &dyn Backend) {
    let dest = ok(backend.destination().await, "destination");
    let publisher = ok(backend.publisher().await, "publisher");
    let envelopes: Vec<Envelope> = (0..3)
        .map(|i| {
            Envelope::new(&dest, format!("payload-{i}"))
                .with_key(format!("key-{i}"))
                .with_header("trace", format!("t{i}"))
        })
        .collect();
    let receipt = ok(publisher.publish(&envelopes[0]).await, "publish");
    assert_eq!(receipt.id, envelopes[0].id);
    assert_eq!(receipt.destination, dest);
    for (env, result) in envelopes[1..]
        .iter()
        .zip(publisher.publish_batch(&envelopes[1..]).await)
    {
        assert_eq!(ok(result, "publish_batch").id, env.id);
    }

    let mut sub = ok(backend.subscriber(&dest).await, "subscribe");
    let mut received = HashMap::new();
    for _ in 0..envelopes.len() {
        let delivery = receive(sub.as_mut(), backend.patience()).await;
        let id = id_of(&delivery.message);
        received.insert(id, delivery.message.clone());
        ok(delivery.ack().await, "ack");
    }
    for env in &envelopes {
        let got = received
            .get(&env.id)
            .unwrap_or_else(|| panic!("message {} was confirmed but not delivered", env.id));
        assert_eq!(got.payload, env.payload, "payload of {}", env.id);
        assert_eq!(got.key, env.key, "key of {}", env.id);
        assert_eq!(got.headers.get("trace"), env.headers.get("trace"));
    }
    assert_no_more(sub.as_mut(), Duration::from_millis(500)).await;
}

/// How a test gives a delivery back without acknowledging it.
enum GiveBack {
    Drop,
    Nack,
}

/// Publishes one message, receives it, gives it back, and checks it comes back marked as
/// a redelivery; acks it; nothing more arrives.
async fn comes_back_after(backend: &dyn Backend, give_back: GiveBack) {
    let dest = ok(backend.destination().await, "destination");
    let env = Envelope::new(&dest, "give me back");
    let publisher = ok(backend.publisher().await, "publisher");
    ok(publisher.publish(&env).await, "publish");
    let mut sub = ok(backend.subscriber(&dest).await, "subscribe");
    let first = receive(sub.as_mut(), backend.patience()).await;
    assert_eq!(id_of(&first.message), env.id);
    match give_back {
        GiveBack::Drop => drop(first),
        GiveBack::Nack => ok(first.nack(true).await, "nack"),
    }
    let again = receive(sub.as_mut(), backend.patience()).await;
    assert_eq!(id_of(&again.message), env.id, "the message must come back");
    assert!(
        again.redelivered || again.delivery_count.is_some_and(|n| n >= 2),
        "a redelivery must say so: {again:?}"
    );
    ok(again.ack().await, "ack");
    assert_no_more(sub.as_mut(), Duration::from_millis(500)).await;
}

/// A delivery dropped without ack comes back (redelivered).
pub async fn unacked_delivery_is_redelivered(backend: &dyn Backend) {
    comes_back_after(backend, GiveBack::Drop).await;
}

/// `nack(requeue = true)` brings the message back.
pub async fn nack_requeue_redelivers(backend: &dyn Backend) {
    comes_back_after(backend, GiveBack::Nack).await;
}

async fn dead_letter_case(backend: &dyn Backend, stores: &dyn Stores, permanent: bool) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let good: Vec<Envelope> = (0..3)
        .map(|i| Envelope::new(&dest, format!("good-{i}")))
        .collect();
    let bad = Envelope::new(&dest, "poison").with_header("tenant", "acme");
    let handler = if permanent {
        RecordingHandler::new().with_permanent([bad.id])
    } else {
        RecordingHandler::new().with_poison([bad.id])
    };
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    let mut all = good.clone();
    all.push(bad.clone());
    for result in ok(backend.publisher().await, "publisher")
        .publish_batch(&all)
        .await
    {
        ok(result, "publish");
    }
    eventually(
        backend.patience(),
        "good messages processed and poison dead-lettered",
        || async {
            handler.effects().distinct() == 3
                && dead_letters_by_id(backend, &dest)
                    .await
                    .contains_key(&bad.id)
                && running.consumer.totals().dead_lettered == 1
        },
    )
    .await;
    running.stop().await;

    let expected_calls = if permanent { 1 } else { 3 };
    assert_eq!(
        handler.calls(bad.id),
        expected_calls,
        "handler calls for the poison message"
    );
    let dlq = dead_letters_by_id(backend, &dest).await;
    let dead = &dlq[&bad.id];
    assert_eq!(dead.message.payload, bad.payload, "DLQ keeps the payload");
    assert_eq!(
        dead.message.headers.get("tenant").map(String::as_str),
        Some("acme")
    );
    let failure = dead
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("dead letter without failure metadata: {dead:?}"));
    assert_eq!(failure.attempts, expected_calls);
    assert_eq!(failure.original_destination, dest);
    assert!(failure.first_failure_at <= failure.last_failure_at);
    let (reason, text) = if permanent {
        (DeadLetterReason::Permanent, "invalid order")
    } else {
        (DeadLetterReason::Exhausted, "downstream refused")
    };
    assert_eq!(failure.reason, reason);
    assert!(
        failure.error.contains(text),
        "error text: {}",
        failure.error
    );

    let ledger = ok(dedupe.ledger.finished(None).await, "ledger");
    let outcomes: HashMap<_, _> = ledger.entries.iter().map(|e| (e.id, e.outcome)).collect();
    assert_eq!(outcomes.get(&bad.id), Some(&Outcome::DeadLettered));
    for env in &good {
        assert_eq!(outcomes.get(&env.id), Some(&Outcome::Processed));
    }
    let produced: Vec<_> = all.iter().map(|e| e.id).collect();
    let dead_ids: HashSet<_> = dlq.keys().copied().collect();
    Verdict::compute(
        &produced,
        &handler.effects().snapshot(),
        &dead_ids,
        &HashSet::new(),
        &HashSet::from([bad.id]),
        &HashSet::new(),
    )
    .assert_clean();
}

/// A message that keeps failing retryably is dead-lettered after 3 attempts, with metadata.
pub async fn poison_dead_lettered_after_max_attempts(backend: &dyn Backend, stores: &dyn Stores) {
    dead_letter_case(backend, stores, false).await;
}

/// A permanent failure goes to the DLQ at once (one handler call).
pub async fn permanent_failure_dead_lettered_at_once(backend: &dyn Backend, stores: &dyn Stores) {
    dead_letter_case(backend, stores, true).await;
}

/// DLQ round trip: two permanent failures are dead-lettered; `list` shows them with their
/// metadata; a dry run changes nothing; redriving one id (and an unknown one) publishes it
/// back with confirms, removes it from the DLQ and a fixed handler applies it once; then
/// `All` redrives the other.
pub async fn dead_letters_redrive_once(backend: &dyn Backend, stores: &dyn Stores) {
    use zerolost_core::redrive::{RedriveOptions, Selection, redrive};
    let Some(dlq) = ok(backend.dead_letter_queue().await, "dead-letter queue") else {
        eprintln!(
            "\n*** NOT RUN: {} offers no dead-letter queue admin; redrive is tested on the other backends.\n",
            backend.name()
        );
        return;
    };
    let dlq = dlq.as_ref();
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let publisher = ok(backend.publisher().await, "publisher");
    let good = Envelope::new(&dest, "fine");
    let first = Envelope::new(&dest, "bad 1").with_header("tenant", "acme");
    let second = Envelope::new(&dest, "bad 2");
    let broken = RecordingHandler::new().with_permanent([first.id, second.id]);
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        broken.clone(),
        test_consumer_config(),
    )
    .await;
    for result in publisher
        .publish_batch(&[good.clone(), first.clone(), second.clone()])
        .await
    {
        ok(result, "publish");
    }
    let listed_ids = async || -> HashSet<MessageId> {
        ok(dlq.list(&dest).await, "list the DLQ")
            .iter()
            .filter_map(|m| m.id)
            .collect()
    };
    eventually(backend.patience(), "two dead letters listed", || async {
        listed_ids().await == HashSet::from([first.id, second.id])
    })
    .await;
    running.stop().await;
    let listed = ok(dlq.list(&dest).await, "list the DLQ");
    let one = listed
        .iter()
        .find(|m| m.id == Some(first.id))
        .unwrap_or_else(|| panic!("{} not listed", first.id));
    assert_eq!(
        one.envelope.destination, dest,
        "redriven to where it came from"
    );
    assert_eq!(one.envelope.payload, first.payload);
    assert_eq!(
        one.envelope.headers.get("tenant").map(String::as_str),
        Some("acme")
    );
    assert!(
        one.envelope
            .headers
            .keys()
            .all(|k| !k.starts_with("zerolost-dlq-")),
        "failure metadata is not sent back: {:?}",
        one.envelope.headers
    );
    let failure = one
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("no failure metadata"));
    assert_eq!(failure.reason, DeadLetterReason::Permanent);

    let dry = ok(
        redrive(
            dlq,
            publisher.as_ref(),
            dedupe.ledger.as_ref(),
            &dest,
            &Selection::Ids(vec![first.id]),
            &RedriveOptions {
                dry_run: true,
                ..RedriveOptions::default()
            },
        )
        .await,
        "dry run",
    );
    assert_eq!(dry.redriven, vec![first.id]);
    assert_eq!(dry.removed, 0);
    assert_eq!(listed_ids().await.len(), 2, "a dry run changes nothing");

    // The handler is fixed: a fresh consumer takes the redriven message.
    let fixed = RecordingHandler::new();
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        fixed.clone(),
        test_consumer_config(),
    )
    .await;
    let unknown = MessageId::new();
    let report = ok(
        redrive(
            dlq,
            publisher.as_ref(),
            dedupe.ledger.as_ref(),
            &dest,
            &Selection::Ids(vec![first.id, unknown]),
            &RedriveOptions::default(),
        )
        .await,
        "redrive one",
    );
    assert_eq!(report.redriven, vec![first.id]);
    assert_eq!(report.not_found, vec![unknown]);
    assert_eq!(report.removed, 1);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    eventually(
        backend.patience(),
        "the redriven message processed",
        || async { fixed.calls(first.id) == 1 && listed_ids().await == HashSet::from([second.id]) },
    )
    .await;
    let report = ok(
        redrive(
            dlq,
            publisher.as_ref(),
            dedupe.ledger.as_ref(),
            &dest,
            &Selection::All,
            &RedriveOptions::default(),
        )
        .await,
        "redrive all",
    );
    assert_eq!(report.redriven, vec![second.id]);
    eventually(
        backend.patience(),
        "both redriven messages processed",
        || async { fixed.calls(second.id) == 1 && listed_ids().await.is_empty() },
    )
    .await;
    running.stop().await;
    assert_eq!(fixed.calls(first.id), 1, "applied once");
    assert_eq!(
        fixed.calls(good.id),
        0,
        "the good message was not sent again"
    );
    let outcomes: HashMap<_, _> = ok(dedupe.ledger.finished(None).await, "ledger")
        .entries
        .into_iter()
        .map(|e| (e.id, e.outcome))
        .collect();
    assert_eq!(outcomes.get(&first.id), Some(&Outcome::Processed));
    assert_eq!(outcomes.get(&second.id), Some(&Outcome::Processed));
}

/// Copies of one message (lost confirm, re-send, redelivery) have one effect.
pub async fn redelivery_is_deduplicated(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let publisher = ok(backend.publisher().await, "publisher");
    let env = Envelope::new(&dest, "pay 10 EUR");
    let handler = RecordingHandler::new();
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    for _ in 0..3 {
        ok(publisher.publish(&env).await, "publish a copy");
    }
    eventually(backend.patience(), "three copies settled", || async {
        let t = running.consumer.totals();
        t.processed == 1 && t.duplicates == 2
    })
    .await;
    // A copy arriving long after the first was processed is suppressed too.
    ok(publisher.publish(&env).await, "publish a late copy");
    eventually(backend.patience(), "late copy suppressed", || async {
        running.consumer.totals().duplicates == 3
    })
    .await;
    running.stop().await;
    assert_eq!(
        handler.effects().count(env.id),
        1,
        "effect applied exactly once"
    );
    assert_eq!(handler.calls(env.id), 1, "handler called exactly once");
    assert!(ok(dedupe.ledger.duplicates_suppressed().await, "ledger") >= 3);
}

/// Two consumers receiving copies of the same ids at once apply each effect once.
pub async fn racing_consumers_apply_once(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let handler = RecordingHandler::new().with_work(Duration::from_millis(30));
    let originals: Vec<Envelope> = (0..10)
        .map(|i| Envelope::new(&dest, format!("m{i}")))
        .collect();
    let copies: Vec<Envelope> = originals
        .iter()
        .flat_map(|e| std::iter::repeat_n(e.clone(), 3))
        .collect();
    let a = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    let b = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    for result in ok(backend.publisher().await, "publisher")
        .publish_batch(&copies)
        .await
    {
        ok(result, "publish");
    }
    // At least 20 duplicates: a rebalance between the two members (Kafka) may hand a
    // processed copy out once more before its offset is committed; it is one more duplicate.
    eventually(backend.patience(), "30 copies settled", || async {
        let (ta, tb) = (a.consumer.totals(), b.consumer.totals());
        ta.processed + tb.processed == 10 && ta.duplicates + tb.duplicates >= 20
    })
    .await;
    a.stop().await;
    b.stop().await;
    for env in &originals {
        assert_eq!(handler.effects().count(env.id), 1, "effects of {}", env.id);
        assert_eq!(handler.calls(env.id), 1, "handler calls of {}", env.id);
    }
}

/// Retryable publish failures are retried with backoff; a row that keeps failing is
/// parked with its last error after `max_attempts`; nothing is deleted.
pub async fn relay_retries_then_parks(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let outbox = ok(stores.outbox().await, "outbox");
    let flaky = Envelope::new(&dest, "flaky");
    let dead = Envelope::new(&dest, "never sent");
    let fine = Envelope::new(&dest, "fine");
    ok(
        outbox
            .enqueue
            .enqueue(&[flaky.clone(), dead.clone(), fine.clone()])
            .await,
        "enqueue",
    );
    let publisher = FlakyPublisher::new(
        ok(backend.publisher().await, "publisher"),
        [(flaky.id, 2)],
        [dead.id],
    );
    let relay = ok(
        Relay::new(outbox.store.clone(), publisher).with_config(RelayConfig {
            max_attempts: 4,
            ..test_relay_config()
        }),
        "relay config",
    );
    relay_until_settled(&relay, outbox.store.as_ref(), backend.patience()).await;

    let rows: HashMap<_, _> = ok(outbox.store.snapshot(None).await, "snapshot")
        .entries
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    assert_eq!(rows.len(), 3, "no row is ever deleted");
    assert_eq!(rows[&flaky.id].status, OutboxStatus::Published);
    assert_eq!(
        rows[&flaky.id].attempts, 2,
        "two failed attempts before success"
    );
    assert_eq!(rows[&fine.id].status, OutboxStatus::Published);
    assert_eq!(rows[&fine.id].attempts, 0);
    let parked = &rows[&dead.id];
    assert_eq!(parked.status, OutboxStatus::Parked);
    assert_eq!(parked.attempts, 4);
    let reason = parked.last_error.as_deref().unwrap_or_default();
    assert!(
        reason.contains("gave up after 4 attempts"),
        "reason: {reason}"
    );
    assert!(reason.contains("connection reset"), "reason: {reason}");

    let mut sub = ok(backend.subscriber(&dest).await, "subscribe");
    let mut got = HashSet::new();
    for _ in 0..2 {
        let d = receive(sub.as_mut(), backend.patience()).await;
        got.insert(id_of(&d.message));
        ok(d.ack().await, "ack");
    }
    assert_eq!(got, HashSet::from([flaky.id, fine.id]));
    assert_no_more(sub.as_mut(), Duration::from_millis(500)).await;
}

/// A message the broker refuses for good (unroutable) is parked at once with the reason,
/// and kept; the other messages go through.
pub async fn unsendable_is_parked_with_reason(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let outbox = ok(stores.outbox().await, "outbox");
    let lost_cause = Envelope::new(backend.unroutable_destination(), "nowhere to go");
    let fine = Envelope::new(&dest, "fine");
    ok(
        outbox
            .enqueue
            .enqueue(&[lost_cause.clone(), fine.clone()])
            .await,
        "enqueue",
    );
    let relay = ok(
        Relay::new(
            outbox.store.clone(),
            ok(backend.publisher().await, "publisher"),
        )
        .with_config(test_relay_config()),
        "relay config",
    );
    relay_until_settled(&relay, outbox.store.as_ref(), backend.patience()).await;
    let rows: HashMap<_, _> = ok(outbox.store.snapshot(None).await, "snapshot")
        .entries
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    let parked = &rows[&lost_cause.id];
    assert_eq!(parked.status, OutboxStatus::Parked, "{parked:?}");
    assert_eq!(parked.attempts, 1, "a permanent error parks at once");
    let reason = parked.last_error.as_deref().unwrap_or_default();
    assert!(!reason.is_empty(), "a parked row says why");
    assert_eq!(rows[&fine.id].status, OutboxStatus::Published);
    assert_eq!(relay.totals().parked, 1);
}

/// The reconciler finds a message the broker lost (confirmed, never delivered) by id, and
/// `repair` sends it again; then nothing is missing.
pub async fn reconciler_finds_and_repairs_missing(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let outbox = ok(stores.outbox().await, "outbox");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let envelopes: Vec<Envelope> = (0..5)
        .map(|i| Envelope::new(&dest, format!("m{i}")))
        .collect();
    let lost = envelopes[2].id;
    ok(outbox.enqueue.enqueue(&envelopes).await, "enqueue");
    let lying = LossyPublisher::new(ok(backend.publisher().await, "publisher"), [lost]);
    let relay = ok(
        Relay::new(outbox.store.clone(), lying).with_config(test_relay_config()),
        "relay config",
    );
    relay_until_settled(&relay, outbox.store.as_ref(), backend.patience()).await;

    let handler = RecordingHandler::new();
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    eventually(backend.patience(), "4 messages processed", || async {
        handler.effects().distinct() == 4
            && dedupe
                .ledger
                .finished(None)
                .await
                .is_ok_and(|s| s.entries.len() == 4)
    })
    .await;
    let reconciler =
        Reconciler::new(outbox.store.clone(), dedupe.ledger.clone()).with_grace(Duration::ZERO);
    let report = ok(reconciler.reconcile(None).await, "reconcile");
    assert_eq!(report.missing, vec![lost], "the lost id, and only it");
    assert_eq!(report.produced, 5);
    assert_eq!(report.published, 5);
    assert_eq!(report.processed, 4);
    assert_eq!(report.counts.broker_to_consumer_gap, 1);
    assert!(!report.is_clean());

    assert_eq!(ok(reconciler.repair(&report).await, "repair"), 1);
    let honest = ok(
        Relay::new(
            outbox.store.clone(),
            ok(backend.publisher().await, "publisher"),
        )
        .with_config(test_relay_config()),
        "relay config",
    );
    relay_until_settled(&honest, outbox.store.as_ref(), backend.patience()).await;
    eventually(
        backend.patience(),
        "the repaired message processed",
        || async { handler.effects().count(lost) == 1 },
    )
    .await;
    running.stop().await;
    let after = ok(reconciler.reconcile(None).await, "reconcile again");
    assert!(after.is_clean(), "still missing: {:?}", after.missing);
    assert_eq!(after.processed, 5);
    for env in &envelopes {
        assert_eq!(handler.effects().count(env.id), 1);
    }
}

/// A delivery without any id (a foreign producer) cannot be deduplicated: it goes to the
/// DLQ with reason "missing message id", and the handler never sees it.
pub async fn missing_id_is_dead_lettered(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let handler = RecordingHandler::new();
    let config = ConsumerConfig {
        // This consumer expects ids in `x-order-id` only; our message carries none there.
        id_extractor: IdExtractor::default()
            .with_header("x-order-id")
            .with_native_fallback(false),
        ..test_consumer_config()
    };
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        config,
    )
    .await;
    let env = Envelope::new(&dest, "who am I");
    ok(
        ok(backend.publisher().await, "publisher")
            .publish(&env)
            .await,
        "publish",
    );
    eventually(
        backend.patience(),
        "message without id dead-lettered",
        || async { running.consumer.totals().dead_lettered == 1 },
    )
    .await;
    running.stop().await;
    let dlq = ok(backend.dead_letters(&dest).await, "read the DLQ");
    assert_eq!(dlq.len(), 1);
    let failure = dlq[0]
        .failure
        .clone()
        .unwrap_or_else(|| panic!("no metadata: {:?}", dlq[0]));
    assert_eq!(failure.reason, DeadLetterReason::MissingId);
    assert_eq!(failure.error, "missing message id");
    assert_eq!(dlq[0].message.payload, env.payload);
    assert_eq!(handler.effects().distinct(), 0);
}

/// While the dedupe store is unreachable the consumer processes and acks nothing; when
/// it comes back the message is processed once.
pub async fn fails_closed_when_dedupe_store_is_down(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let switch = Arc::new(SwitchableDedupe::new(dedupe.store.clone()));
    switch.set_down(true);
    let handler = RecordingHandler::new();
    let running = Running::start(
        backend,
        &dest,
        switch.clone(),
        handler.clone(),
        test_consumer_config(),
    )
    .await;
    let env = Envelope::new(&dest, "wait for the store");
    ok(
        ok(backend.publisher().await, "publisher")
            .publish(&env)
            .await,
        "publish",
    );
    eventually(
        backend.patience(),
        "consumer notices the store is down",
        || async { !running.consumer.store_available() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handler.calls(env.id),
        0,
        "nothing is processed without dedupe"
    );
    let t = running.consumer.totals();
    assert_eq!(
        (t.processed, t.duplicates, t.dead_lettered),
        (0, 0, 0),
        "nothing acked: {t:?}"
    );
    assert!(t.store_errors > 0);

    switch.set_down(false);
    eventually(
        backend.patience(),
        "processed once the store is back",
        || async { running.consumer.totals().processed == 1 },
    )
    .await;
    running.stop().await;
    assert_eq!(handler.effects().count(env.id), 1);
    assert_eq!(handler.calls(env.id), 1);
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

/// Dedupe-store contract: a claim excludes others until its lease ends; only its token
/// completes or releases it; a completed id answers `AlreadyProcessed` for `keep_for`, then
/// is forgotten; failures count up; the ledger lists outcomes.
pub async fn dedupe_claims_are_leased_and_tokened(stores: &dyn Stores) {
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let store = dedupe.store.as_ref();
    let short = Duration::from_millis(500);
    let hour = Duration::from_secs(3600);
    let id = MessageId::new();
    let stale = claim_fresh(store, id, short).await;
    assert_eq!(
        ok(store.claim(id, short).await, "claim"),
        Claim::HeldByOther
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let Claim::Claimed(live) = ok(store.claim(id, short * 20).await, "claim") else {
        panic!("an expired claim must be taken over")
    };
    assert!(
        matches!(
            store.complete(&stale, Outcome::Processed, hour).await,
            Err(Error::LeaseLost { .. })
        ),
        "a stale token must not complete the claim"
    );
    assert!(
        store.release(&stale).await.is_err(),
        "a stale token must not release the claim"
    );
    ok(
        store.complete(&live, Outcome::Processed, hour).await,
        "complete",
    );
    ok(
        store.complete(&live, Outcome::Processed, hour).await,
        "completing again with the same token is a no-op",
    );
    assert_eq!(
        ok(store.claim(id, short).await, "claim"),
        Claim::AlreadyProcessed(Outcome::Processed)
    );

    let released = MessageId::new();
    let token = claim_fresh(store, released, hour).await;
    ok(store.release(&token).await, "release");
    assert!(
        matches!(
            ok(store.claim(released, hour).await, "claim"),
            Claim::Claimed(_)
        ),
        "released claims are free"
    );

    let dead = MessageId::new();
    let token = claim_fresh(store, dead, hour).await;
    ok(
        store.complete(&token, Outcome::DeadLettered, hour).await,
        "complete",
    );
    assert_eq!(
        ok(store.claim(dead, hour).await, "claim"),
        Claim::AlreadyProcessed(Outcome::DeadLettered)
    );

    let brief = MessageId::new();
    let token = claim_fresh(store, brief, hour).await;
    ok(
        store.complete(&token, Outcome::Processed, short).await,
        "complete",
    );
    assert_eq!(
        ok(store.claim(brief, hour).await, "claim"),
        Claim::AlreadyProcessed(Outcome::Processed),
        "a done id answers AlreadyProcessed and holds nothing"
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert!(
        matches!(
            ok(store.claim(brief, hour).await, "claim"),
            Claim::Claimed(_)
        ),
        "forgotten after keep_for"
    );

    let failing = MessageId::new();
    assert_eq!(ok(store.failures(failing).await, "failures"), None);
    assert_eq!(
        ok(store.record_failure(failing, "first").await, "record").attempts,
        1
    );
    let second = ok(store.record_failure(failing, "second").await, "record");
    assert_eq!(second.attempts, 2);
    assert!(second.first_at <= second.last_at);
    let read =
        ok(store.failures(failing).await, "failures").unwrap_or_else(|| panic!("failures lost"));
    assert_eq!((read.attempts, read.last_error.as_str()), (2, "second"));

    let finished: HashMap<_, _> = ok(dedupe.ledger.finished(None).await, "ledger")
        .entries
        .into_iter()
        .map(|e| (e.id, e.outcome))
        .collect();
    assert_eq!(finished.get(&id), Some(&Outcome::Processed));
    assert_eq!(finished.get(&dead), Some(&Outcome::DeadLettered));
    assert!(!finished.contains_key(&released));

    // Redrive: a dead-lettered id is forgotten (a redriven copy is processed afresh, its
    // failures counted from zero); a processed id or a live claim never is.
    ok(store.record_failure(dead, "poison").await, "record");
    assert!(ok(dedupe.ledger.forget_dead_letter(dead).await, "forget"));
    assert!(
        !ok(dedupe.ledger.forget_dead_letter(dead).await, "forget"),
        "forgetting twice removes nothing"
    );
    assert_eq!(ok(store.failures(dead).await, "failures"), None);
    assert!(matches!(
        ok(store.claim(dead, hour).await, "claim"),
        Claim::Claimed(_)
    ));
    assert!(
        !ok(dedupe.ledger.forget_dead_letter(id).await, "forget"),
        "a processed id is never forgotten"
    );
    assert_eq!(
        ok(store.claim(id, short).await, "claim"),
        Claim::AlreadyProcessed(Outcome::Processed)
    );
    assert!(
        !ok(dedupe.ledger.forget_dead_letter(released).await, "forget"),
        "a live claim is never forgotten"
    );
    assert_eq!(
        ok(store.claim(released, short).await, "claim"),
        Claim::HeldByOther
    );
}

/// Outbox contract: leases are exclusive until they expire; every write checks the lease
/// token; reschedule delays the row; park keeps it with its reason; release and requeue
/// make rows due again; the snapshot shows it all.
pub async fn outbox_leases_are_exclusive_and_tokened(stores: &dyn Stores) {
    let outbox = ok(stores.outbox().await, "outbox");
    let store = outbox.store.as_ref();
    let short = Duration::from_millis(500);
    let long = Duration::from_secs(60);
    let rows: Vec<Envelope> = (0..3)
        .map(|i| Envelope::new("contract", format!("{i}")).with_key("k"))
        .collect();
    ok(outbox.enqueue.enqueue(&rows).await, "enqueue");
    assert!(
        outbox.enqueue.enqueue(&rows[..1]).await.is_err(),
        "an id already in the outbox is refused"
    );

    let first_two = ok(store.lease(2, long).await, "lease");
    assert_eq!(first_two.len(), 2, "a lease takes at most `max` rows");
    let leases: Vec<_> = first_two.iter().map(|r| r.lease.clone()).collect();
    assert_eq!(ok(store.release(&leases).await, "release"), 2);
    let stale = ok(store.lease(10, short).await, "lease");
    assert_eq!(stale.len(), 3);
    let back = stale
        .iter()
        .find(|r| r.envelope.id == rows[0].id)
        .unwrap_or_else(|| panic!("row 0 not leased"));
    assert_eq!(
        back.envelope.payload, rows[0].payload,
        "the row comes back intact"
    );
    assert_eq!(back.envelope.key, rows[0].key);
    assert!(
        ok(store.lease(10, short).await, "lease").is_empty(),
        "leased rows are exclusive"
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let mut live = ok(store.lease(10, long).await, "lease");
    assert_eq!(live.len(), 3, "expired leases are taken over");
    live.sort_by_key(|r| r.envelope.id);

    let stale_leases: Vec<_> = stale.iter().map(|r| r.lease.clone()).collect();
    assert_eq!(
        ok(store.mark_published(&stale_leases).await, "mark"),
        0,
        "stale tokens mark nothing"
    );
    assert!(!ok(
        store.reschedule(&stale_leases[0], 1, short, "x").await,
        "reschedule"
    ));
    assert!(!ok(store.park(&stale_leases[1], 1, "x").await, "park"));
    assert_eq!(ok(store.release(&stale_leases).await, "release"), 0);

    let (published, flapping, parked) = (&live[0], &live[1], &live[2]);
    assert_eq!(
        ok(
            store
                .mark_published(std::slice::from_ref(&published.lease))
                .await,
            "mark"
        ),
        1
    );
    assert!(ok(
        store
            .reschedule(&flapping.lease, 1, short, "connection reset")
            .await,
        "reschedule"
    ));
    assert!(ok(
        store.park(&parked.lease, 1, "message too large").await,
        "park"
    ));
    assert!(
        ok(store.lease(10, long).await, "lease").is_empty(),
        "rescheduled rows wait"
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let again = ok(store.lease(10, long).await, "lease");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].envelope.id, again[0].attempts),
        (flapping.envelope.id, 1)
    );
    assert_eq!(
        ok(store.release(&[again[0].lease.clone()]).await, "release"),
        1
    );
    assert_eq!(
        ok(store.lease(10, long).await, "lease").len(),
        1,
        "released rows are due at once"
    );

    let snapshot = ok(store.snapshot(None).await, "snapshot");
    let by_id: HashMap<_, _> = snapshot.entries.iter().map(|e| (e.id, e)).collect();
    assert_eq!(by_id.len(), 3);
    assert_eq!(
        by_id[&published.envelope.id].status,
        OutboxStatus::Published
    );
    assert!(by_id[&published.envelope.id].published_at.is_some());
    assert_eq!(
        by_id[&flapping.envelope.id].last_error.as_deref(),
        Some("connection reset")
    );
    assert!(by_id[&flapping.envelope.id].leased);
    assert_eq!(
        ok(store.counts().await, "counts"),
        zerolost_core::OutboxCounts {
            pending: 1,
            published: 1,
            parked: 1,
            leased: 1,
            oldest_pending: Some(by_id[&flapping.envelope.id].created_at),
        },
        "counts agree with the snapshot"
    );
    let parked_row = by_id[&parked.envelope.id];
    assert_eq!(parked_row.status, OutboxStatus::Parked);
    assert_eq!(parked_row.last_error.as_deref(), Some("message too large"));

    assert_eq!(
        ok(
            store
                .requeue(&[published.envelope.id, parked.envelope.id])
                .await,
            "requeue"
        ),
        2
    );
    let due: HashSet<_> = ok(store.lease(10, long).await, "lease")
        .into_iter()
        .map(|r| r.envelope.id)
        .collect();
    assert_eq!(
        due,
        HashSet::from([published.envelope.id, parked.envelope.id])
    );
}

/// Every conformance function, in order.
pub async fn run_all(backend: &dyn Backend, stores: &dyn Stores) {
    dedupe_claims_are_leased_and_tokened(stores).await;
    outbox_leases_are_exclusive_and_tokened(stores).await;
    confirmed_round_trip(backend).await;
    unacked_delivery_is_redelivered(backend).await;
    nack_requeue_redelivers(backend).await;
    poison_dead_lettered_after_max_attempts(backend, stores).await;
    permanent_failure_dead_lettered_at_once(backend, stores).await;
    redelivery_is_deduplicated(backend, stores).await;
    racing_consumers_apply_once(backend, stores).await;
    relay_retries_then_parks(backend, stores).await;
    unsendable_is_parked_with_reason(backend, stores).await;
    reconciler_finds_and_repairs_missing(backend, stores).await;
    missing_id_is_dead_lettered(backend, stores).await;
    fails_closed_when_dedupe_store_is_down(backend, stores).await;
    dead_letters_redrive_once(backend, stores).await;
    dedupe_claims_are_renewed_and_fenced(stores).await;
    slow_handler_keeps_its_claim(backend, stores).await;
    lost_renewal_cancels_the_handler(backend, stores).await;
    failures_count_only_under_a_held_claim(backend, stores).await;
    reconcile_respects_the_ledger_window(backend, stores).await;
    redrive_refuses_what_it_cannot_vouch_for(backend, stores).await;
    refused_dead_letter_is_parked_and_redriven(backend, stores).await;
}

/// One `#[tokio::test]` per conformance function. `$backend` and `$stores` are async
/// expressions evaluated in each test (a fresh backend and stores per test).
///
/// ```text
/// zerolost_testkit::conformance_suite!(async { MyBackend::connect().await }, async { MyStores::new() });
/// ```
///
/// For stores alone (an outbox and dedupe store over the in-memory broker), `$stores`
/// yields an `Option` (`None` = service unreachable, test skipped; see
/// [`require_service`](crate::require_service)):
///
/// ```text
/// zerolost_testkit::conformance_suite!(stores: async { PgStores::connect().await });
/// ```
///
/// For a backend on a server that may be missing, `$backend` yields an `Option` the same
/// way:
///
/// ```text
/// zerolost_testkit::conformance_suite!(backend: async { KafkaBackend::connect().await }, async { MemoryStores::new() });
/// ```
#[macro_export]
macro_rules! conformance_suite {
    (backend: $backend:expr, $stores:expr) => {
        $crate::conformance_suite!(@stores $stores;
            dedupe_claims_are_leased_and_tokened, outbox_leases_are_exclusive_and_tokened,
            dedupe_claims_are_renewed_and_fenced);
        $crate::conformance_suite!(@broker_opt $backend;
            confirmed_round_trip, unacked_delivery_is_redelivered, nack_requeue_redelivers);
        $crate::conformance_suite!(@both_backend_opt $backend, $stores;
            poison_dead_lettered_after_max_attempts, permanent_failure_dead_lettered_at_once,
            redelivery_is_deduplicated, racing_consumers_apply_once, relay_retries_then_parks,
            unsendable_is_parked_with_reason, reconciler_finds_and_repairs_missing,
            missing_id_is_dead_lettered, fails_closed_when_dedupe_store_is_down,
            dead_letters_redrive_once, slow_handler_keeps_its_claim, lost_renewal_cancels_the_handler,
            failures_count_only_under_a_held_claim, reconcile_respects_the_ledger_window,
            redrive_refuses_what_it_cannot_vouch_for, refused_dead_letter_is_parked_and_redriven);
    };
    (@broker_opt $backend:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(backend) = $backend.await else { return };
            $crate::conformance::$name(&backend).await;
        }
    )*};
    (@both_backend_opt $backend:expr, $stores:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(backend) = $backend.await else { return };
            let stores = $stores.await;
            $crate::conformance::$name(&backend, &stores).await;
        }
    )*};
    ($backend:expr, $stores:expr) => {
        $crate::conformance_suite!(@stores $stores;
            dedupe_claims_are_leased_and_tokened, outbox_leases_are_exclusive_and_tokened,
            dedupe_claims_are_renewed_and_fenced);
        $crate::conformance_suite!(@broker $backend;
            confirmed_round_trip, unacked_delivery_is_redelivered, nack_requeue_redelivers);
        $crate::conformance_suite!(@both $backend, $stores;
            poison_dead_lettered_after_max_attempts, permanent_failure_dead_lettered_at_once,
            redelivery_is_deduplicated, racing_consumers_apply_once, relay_retries_then_parks,
            unsendable_is_parked_with_reason, reconciler_finds_and_repairs_missing,
            missing_id_is_dead_lettered, fails_closed_when_dedupe_store_is_down,
            dead_letters_redrive_once, slow_handler_keeps_its_claim, lost_renewal_cancels_the_handler,
            failures_count_only_under_a_held_claim, reconcile_respects_the_ledger_window,
            redrive_refuses_what_it_cannot_vouch_for, refused_dead_letter_is_parked_and_redriven);
    };
    (stores: $stores:expr) => {
        $crate::conformance_suite!(@stores_opt $stores;
            dedupe_claims_are_leased_and_tokened, outbox_leases_are_exclusive_and_tokened,
            dedupe_claims_are_renewed_and_fenced);
        $crate::conformance_suite!(@both_opt $stores;
            poison_dead_lettered_after_max_attempts, permanent_failure_dead_lettered_at_once,
            redelivery_is_deduplicated, racing_consumers_apply_once, relay_retries_then_parks,
            unsendable_is_parked_with_reason, reconciler_finds_and_repairs_missing,
            missing_id_is_dead_lettered, fails_closed_when_dedupe_store_is_down,
            dead_letters_redrive_once, slow_handler_keeps_its_claim, lost_renewal_cancels_the_handler,
            failures_count_only_under_a_held_claim, reconcile_respects_the_ledger_window,
            redrive_refuses_what_it_cannot_vouch_for, refused_dead_letter_is_parked_and_redriven);
    };
    (@stores_opt $stores:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(stores) = $stores.await else { return };
            $crate::conformance::$name(&stores).await;
        }
    )*};
    (@both_opt $stores:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(stores) = $stores.await else { return };
            let backend = $crate::MemoryBackend::new();
            $crate::conformance::$name(&backend, &stores).await;
        }
    )*};
    (@stores $stores:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let stores = $stores.await;
            $crate::conformance::$name(&stores).await;
        }
    )*};
    (@broker $backend:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let backend = $backend.await;
            $crate::conformance::$name(&backend).await;
        }
    )*};
    (@both $backend:expr, $stores:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let backend = $backend.await;
            let stores = $stores.await;
            $crate::conformance::$name(&backend, &stores).await;
        }
    )*};
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
