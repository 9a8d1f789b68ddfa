//! Dead letters: poison after its attempts, a permanent failure at once, a redrive applied
//! once.

use super::support::*;
use crate::{Backend, RecordingHandler, Stores, Verdict};
use std::collections::{HashMap, HashSet};
use zerolost_core::redrive::{
    DeadLetterMessage, DeadLetterQueue, RedriveOptions, RedriveReport, Selection, redrive,
};
use zerolost_core::{ConsumerLedger, DeadLetterReason, Envelope, MessageId, Outcome, Publisher};

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
    let Some(dlq) = ok(backend.dead_letter_queue().await, "dead-letter queue") else {
        eprintln!(
            "\n*** NOT RUN: {} offers no dead-letter queue admin; redrive is tested on the other backends.\n",
            backend.name()
        );
        return;
    };
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let publisher = ok(backend.publisher().await, "publisher");
    let redrive = Redrive {
        dlq: dlq.as_ref(),
        publisher: publisher.as_ref(),
        ledger: dedupe.ledger.as_ref(),
        dest: &dest,
    };
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
    eventually(backend.patience(), "two dead letters listed", || async {
        redrive.listed_ids().await == HashSet::from([first.id, second.id])
    })
    .await;
    running.stop().await;
    let listed = ok(redrive.dlq.list(&dest).await, "list the DLQ");
    assert_listed_as_sent(&listed, &first);

    let dry = redrive.run(&Selection::Ids(vec![first.id]), true).await;
    assert_eq!(dry.redriven, vec![first.id]);
    assert_eq!(dry.removed, 0);
    assert_eq!(
        redrive.listed_ids().await.len(),
        2,
        "a dry run changes nothing"
    );

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
    let report = redrive
        .run(&Selection::Ids(vec![first.id, unknown]), false)
        .await;
    assert_eq!(report.redriven, vec![first.id]);
    assert_eq!(report.not_found, vec![unknown]);
    assert_eq!(report.removed, 1);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    eventually(
        backend.patience(),
        "the redriven message processed",
        || async {
            fixed.calls(first.id) == 1 && redrive.listed_ids().await == HashSet::from([second.id])
        },
    )
    .await;
    let report = redrive.run(&Selection::All, false).await;
    assert_eq!(report.redriven, vec![second.id]);
    eventually(
        backend.patience(),
        "both redriven messages processed",
        || async { fixed.calls(second.id) == 1 && redrive.listed_ids().await.is_empty() },
    )
    .await;
    running.stop().await;
    assert_eq!(fixed.calls(first.id), 1, "applied once");
    assert_eq!(
        fixed.calls(good.id),
        0,
        "the good message was not sent again"
    );
    let outcomes = redrive.outcomes().await;
    assert_eq!(outcomes.get(&first.id), Some(&Outcome::Processed));
    assert_eq!(outcomes.get(&second.id), Some(&Outcome::Processed));
}

/// A destination's DLQ with what a redrive needs.
struct Redrive<'a> {
    dlq: &'a dyn DeadLetterQueue,
    publisher: &'a dyn Publisher,
    ledger: &'a dyn ConsumerLedger,
    dest: &'a str,
}

impl Redrive<'_> {
    /// The ids the DLQ lists now.
    async fn listed_ids(&self) -> HashSet<MessageId> {
        ok(self.dlq.list(self.dest).await, "list the DLQ")
            .iter()
            .filter_map(|m| m.id)
            .collect()
    }

    /// Each finished id's outcome in the consumers' ledger.
    async fn outcomes(&self) -> HashMap<MessageId, Outcome> {
        ok(self.ledger.finished(None).await, "ledger")
            .entries
            .into_iter()
            .map(|e| (e.id, e.outcome))
            .collect()
    }

    /// Redrives `selection` (or only reports what it would do).
    async fn run(&self, selection: &Selection, dry_run: bool) -> RedriveReport {
        let options = RedriveOptions {
            dry_run,
            ..RedriveOptions::default()
        };
        let redriven = redrive(
            self.dlq,
            self.publisher,
            self.ledger,
            self.dest,
            selection,
            &options,
        )
        .await;
        ok(redriven, "redrive")
    }
}

/// `sent` is listed as it would be redriven: to where it came from, payload and the
/// application's headers intact, no failure metadata among the headers but beside them.
fn assert_listed_as_sent(listed: &[DeadLetterMessage], sent: &Envelope) {
    let one = listed
        .iter()
        .find(|m| m.id == Some(sent.id))
        .unwrap_or_else(|| panic!("{} not listed", sent.id));
    assert_eq!(
        one.envelope.destination, sent.destination,
        "redriven to where it came from"
    );
    assert_eq!(one.envelope.payload, sent.payload);
    for (name, value) in &sent.headers {
        assert_eq!(one.envelope.headers.get(name), Some(value), "header {name}");
    }
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
}
