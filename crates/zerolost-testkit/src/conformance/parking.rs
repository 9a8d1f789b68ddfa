//! Conformance for a dead letter the DLQ refuses for good: kept in the consumers' store,
//! listed with the DLQ, redriven from there; it neither comes back forever nor holds up
//! the message behind it.

use async_trait::async_trait;
use zerolost_core::parking::WithParked;
use zerolost_core::redrive::{DeadLetterQueue, RedriveOptions, Selection, redrive};
use zerolost_core::{
    CancellationToken, Consumer, DeadLetterReason, DeadLetterSink, Envelope, Error, Failure,
    Receipt,
};

use super::support::{Running, eventually, ok, test_consumer_config};
use crate::{Backend, RecordingHandler, Stores};

/// A DLQ that refuses every message for good, as a Kafka topic refuses a record over its
/// `max.message.bytes`.
struct RefusingDlq;

#[async_trait]
impl DeadLetterSink for RefusingDlq {
    async fn dead_letter(&self, _: &Envelope, _: &Failure) -> Result<Receipt, Error> {
        Err(Error::Rejected {
            reason: "MESSAGE_TOO_LARGE: the record is larger than the topic accepts".into(),
        })
    }
}

/// A poison message whose DLQ refuses it: kept (parked) in the consumers' store with the
/// refusal, marked dead-lettered and acknowledged, so it does not come back; the message
/// behind it is processed; the parked message is listed beside the DLQ and a redrive
/// through the consumers' ledger takes it out and sends it back, where it is applied once.
pub async fn refused_dead_letter_is_parked_and_redriven(
    backend: &dyn Backend,
    stores: &dyn Stores,
) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let poison = Envelope::new(&dest, "poison, and too large for the DLQ");
    let behind = Envelope::new(&dest, "fine");
    let broken = RecordingHandler::new().with_permanent([poison.id]);
    let consumer = ok(
        Consumer::new(dedupe.store.clone(), broken.clone(), RefusingDlq)
            .with_config(test_consumer_config()),
        "consumer",
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        let subscriber = ok(backend.subscriber(&dest).await, "subscribe");
        async move { consumer.run(subscriber, stop).await }
    });
    let publisher = ok(backend.publisher().await, "publisher");
    ok(publisher.publish(&poison).await, "publish");
    ok(publisher.publish(&behind).await, "publish");
    eventually(
        backend.patience(),
        "poison parked, the next processed",
        || async {
            let t = consumer.totals();
            t.dead_lettered == 1 && t.processed == 1
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.cancel();
    let totals = match task.await {
        Ok(Ok(totals)) => totals,
        other => panic!("consumer: {other:?}"),
    };
    assert_eq!(broken.calls(poison.id), 1, "not redelivered: {totals:?}");

    let parked = ok(dedupe.ledger.parked_dead_letters(&dest).await, "parked");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].envelope.id, poison.id);
    assert_eq!(parked[0].envelope.payload, poison.payload);
    assert_eq!(parked[0].failure.reason, DeadLetterReason::Permanent);
    assert!(
        parked[0].refused.contains("MESSAGE_TOO_LARGE"),
        "{}",
        parked[0].refused
    );

    let Some(dlq) = ok(backend.dead_letter_queue().await, "dead-letter queue") else {
        return;
    };
    let all = WithParked::new(dlq, dedupe.ledger.clone());
    let listed = ok(all.list(&dest).await, "list");
    let shown = listed.iter().find(|m| m.id == Some(poison.id));
    assert!(
        shown.is_some_and(|m| m.parked.is_some()),
        "the parked dead letter is listed: {listed:?}"
    );
    let report = ok(
        redrive(
            &all,
            publisher.as_ref(),
            dedupe.ledger.as_ref(),
            &dest,
            &Selection::Ids(vec![poison.id]),
            &RedriveOptions::default(),
        )
        .await,
        "redrive",
    );
    assert_eq!(report.redriven, vec![poison.id], "{report:?}");
    assert_eq!(report.removed, 1);
    assert!(ok(dedupe.ledger.parked_dead_letters(&dest).await, "parked").is_empty());
    let fixed = RecordingHandler::new();
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        fixed.clone(),
        test_consumer_config(),
    )
    .await;
    eventually(
        backend.patience(),
        "the redriven message applied",
        || async { fixed.effects().count(poison.id) == 1 },
    )
    .await;
    running.stop().await;
    assert_eq!(fixed.effects().count(poison.id), 1);
}
