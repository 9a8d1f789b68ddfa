//! Pipeline behaviours that need a clock: leases expiring after a crash, and graceful
//! shutdown. Run on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::memory::{MemoryBroker, MemoryDedupe, MemoryOutbox};
use zerolost_core::{
    CancellationToken, Claim, Consumer, ConsumerConfig, DeadLetterPublisher, DedupeStore, Envelope,
    Error, OutboxStatus, OutboxStore, Publisher, Receipt, Relay, RelayConfig, handler_fn,
};

/// A consumer crashed after claiming a message (its claim is left behind): other consumers
/// hand the message back until the claim's lease expires, then process it exactly once.
#[tokio::test(start_paused = true)]
async fn a_crashed_consumers_claim_expires_and_the_message_is_processed_once() {
    let broker = MemoryBroker::new();
    broker.declare("d");
    broker.declare("d.dlq");
    let dedupe = MemoryDedupe::new();
    let env = Envelope::new("d", "x");
    let lease = Duration::from_secs(30);
    assert!(matches!(
        dedupe.claim(env.id, lease).await.unwrap(),
        Claim::Claimed(_)
    ));
    broker.publisher().publish(&env).await.unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        handler_fn(move |_: Envelope| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let consumer = Consumer::new(
        dedupe.clone(),
        handler,
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(ConsumerConfig {
        claim_lease: lease,
        held_retry_delay: Duration::from_secs(1),
        ..ConsumerConfig::default()
    })
    .unwrap();
    let (stop, task) = consume(&consumer, &broker, "d");

    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "held by the crashed consumer"
    );
    assert_eq!(
        consumer.totals().deferred,
        0,
        "the copy is kept while the claim is held, not handed back (which would spend the broker's redelivery count)"
    );

    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "processed once the lease expired"
    );
    assert_eq!(consumer.totals().processed, 1);
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(broker.depth("d"), (0, 0));
}

/// A publisher whose confirms take a while.
struct SlowPublisher {
    inner: zerolost_core::memory::MemoryPublisher,
    delay: Duration,
}

#[async_trait]
impl Publisher for SlowPublisher {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        tokio::time::sleep(self.delay).await;
        self.inner.publish(envelope).await
    }
}

/// Shutdown during a round: the batch in flight is finished and marked; no lease stays held;
/// rows never leased stay pending for the next relay.
#[tokio::test(start_paused = true)]
async fn relay_shutdown_finishes_the_round_and_holds_no_lease() {
    let broker = MemoryBroker::new();
    broker.declare("d");
    let outbox = MemoryOutbox::new();
    let envelopes: Vec<Envelope> = (0..30)
        .map(|i| Envelope::new("d", format!("{i}")))
        .collect();
    outbox.enqueue_batch(&envelopes).unwrap();
    let relay = Relay::new(
        outbox.clone(),
        SlowPublisher {
            inner: broker.publisher(),
            delay: Duration::from_secs(2),
        },
    )
    .with_config(RelayConfig {
        batch_size: 10,
        ..RelayConfig::default()
    })
    .unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(outbox.leased_now(), 10, "first batch in flight");
    stop.cancel();
    let totals = run.await.unwrap().unwrap();
    assert_eq!(totals.published, 10, "the batch in flight was finished");
    assert_eq!(outbox.leased_now(), 0, "no lease left behind");
    assert_eq!(outbox.counts(), (20, 10, 0));
    assert_eq!(broker.stored_ids("d").len(), 10);
    let snapshot = outbox.snapshot(None).await.unwrap();
    assert!(snapshot.entries.iter().all(|e| !e.leased));
    assert_eq!(
        snapshot
            .entries
            .iter()
            .filter(|e| e.status == OutboxStatus::Published)
            .count(),
        10
    );
}

/// Unsafe or impossible settings are refused with a message that says what to change.
#[test]
fn impossible_settings_are_refused() {
    let err = Relay::new(MemoryOutbox::new(), MemoryBroker::new().publisher())
        .with_config(RelayConfig {
            batch_size: 0,
            ..RelayConfig::default()
        })
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("batch_size must be at least 1"),
        "{err}"
    );
    let broker = MemoryBroker::new();
    let err = Consumer::new(
        MemoryDedupe::new(),
        handler_fn(|_: Envelope| async { Ok(()) }),
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(ConsumerConfig {
        concurrency: 0,
        ..ConsumerConfig::default()
    })
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("concurrency must be at least 1"),
        "{err}"
    );
    assert!(!err.is_retryable());
    let err = Consumer::new(
        MemoryDedupe::new(),
        handler_fn(|_: Envelope| async { Ok(()) }),
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(ConsumerConfig {
        drain_timeout: Duration::from_secs(1),
        ..ConsumerConfig::default()
    })
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("drain_timeout (1s) must be at least shutdown_grace (5s)"),
        "{err}"
    );
}

/// Shutdown with a handler that never returns: the consumer stops after `drain_timeout`,
/// the stuck delivery unacknowledged (abandoned); once its claim expires another consumer
/// applies it once, and the message whose handler finished is not applied again.
#[tokio::test(start_paused = true)]
async fn shutdown_cuts_off_a_stuck_handler_after_the_drain_timeout() {
    let broker = MemoryBroker::new();
    broker.declare("d");
    broker.declare("d.dlq");
    let dedupe = MemoryDedupe::new();
    let (stuck, done) = (Envelope::new("d", "stuck"), Envelope::new("d", "done"));
    broker.publisher().publish(&stuck).await.unwrap();
    broker.publisher().publish(&done).await.unwrap();
    let applied = Arc::new(std::sync::Mutex::new(Vec::new()));
    let consumer_with = |hang_on: Option<zerolost_core::MessageId>| {
        let applied = applied.clone();
        Consumer::new(
            dedupe.clone(),
            handler_fn(move |env: Envelope| {
                let applied = applied.clone();
                async move {
                    if Some(env.id) == hang_on {
                        std::future::pending::<()>().await;
                    }
                    applied.lock().unwrap().push(env.id);
                    Ok(())
                }
            }),
            DeadLetterPublisher::new(broker.publisher()),
        )
        .with_config(ConsumerConfig {
            concurrency: 2,
            claim_lease: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            ..ConsumerConfig::default()
        })
        .unwrap()
    };

    let first = consumer_with(Some(stuck.id));
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let (first, stop, sub) = (first.clone(), stop.clone(), broker.subscribe("d").unwrap());
        async move { first.run(sub, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*applied.lock().unwrap(), vec![done.id]);
    let stopping = tokio::time::Instant::now();
    stop.cancel();
    let totals = run.await.unwrap().unwrap();
    assert_eq!(
        stopping.elapsed(),
        Duration::from_secs(10),
        "bounded by drain_timeout"
    );
    assert_eq!((totals.processed, totals.abandoned), (1, 1));
    assert_eq!(
        broker.depth("d"),
        (1, 0),
        "the stuck delivery is back on its queue"
    );

    let second = consumer_with(None);
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let (second, stop, sub) = (second.clone(), stop.clone(), broker.subscribe("d").unwrap());
        async move { second.run(sub, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(40)).await;
    stop.cancel();
    let totals = run.await.unwrap().unwrap();
    assert_eq!(totals.processed, 1, "applied after the stuck claim expired");
    assert_eq!(*applied.lock().unwrap(), vec![done.id, stuck.id]);
    assert_eq!(broker.depth("d"), (0, 0));
    assert!(broker.messages("d.dlq").is_empty());
}

/// The relay parks a row whose publish keeps failing, with the last error, after
/// exactly `max_attempts`, waiting the backoff between attempts.
#[tokio::test(start_paused = true)]
async fn retries_follow_the_backoff_then_park() {
    let outbox = MemoryOutbox::new();
    let env = Envelope::new("missing-topic-that-times-out", "x");
    outbox.enqueue(&env).unwrap();
    struct Down;
    #[async_trait]
    impl Publisher for Down {
        async fn publish(&self, _: &Envelope) -> Result<Receipt, Error> {
            Err(Error::Timeout {
                operation: "confirm".into(),
                after: Duration::from_secs(5),
            })
        }
    }
    let relay = Relay::new(outbox.clone(), Down)
        .with_config(RelayConfig {
            max_attempts: 3,
            backoff: zerolost_core::Backoff::article(),
            ..RelayConfig::default()
        })
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap().rescheduled, 1);
    assert_eq!(relay.run_once().await.unwrap().leased, 0, "waits 1 s");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(relay.run_once().await.unwrap().rescheduled, 1);
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert_eq!(relay.run_once().await.unwrap().leased, 0, "waits 2 s");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(relay.run_once().await.unwrap().parked, 1);
    let entry = outbox.snapshot(None).await.unwrap().entries.remove(0);
    assert_eq!(entry.status, OutboxStatus::Parked);
    assert_eq!(entry.attempts, 3);
    assert!(
        entry
            .last_error
            .unwrap()
            .starts_with("gave up after 3 attempts: confirm timed out")
    );
}

/// Runs a consumer with a succeeding handler on `destination` until it processed `n`.
async fn process_all(broker: &MemoryBroker, destination: &str, n: u64) {
    let consumer = Consumer::new(
        MemoryDedupe::new(),
        handler_fn(|_: Envelope| async { Ok(()) }),
        DeadLetterPublisher::new(broker.publisher()),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (consumer, stop, sub) = (
            consumer.clone(),
            stop.clone(),
            broker.subscribe(destination).unwrap(),
        );
        async move { consumer.run(sub, stop).await }
    });
    while consumer.totals().processed < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// The consumer's `zerolost.consume` span carries the producer's trace: `trace_id` and
/// `parent_span_id` from the message's W3C `traceparent` header.
#[tokio::test]
async fn the_consume_span_joins_the_producers_trace() {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use zerolost_core::trace::TraceParent;

    #[derive(Default, Clone)]
    struct Spans(Arc<Mutex<Vec<HashMap<String, String>>>>);
    struct Fields<'a>(&'a mut HashMap<String, String>);
    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(
                field.name().to_owned(),
                format!("{value:?}").trim_matches('"').to_owned(),
            );
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }
    impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>>
        tracing_subscriber::Layer<S> for Spans
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            _: Context<'_, S>,
        ) {
            if attrs.metadata().name() == "zerolost.consume" {
                let mut fields = HashMap::from([("span".to_owned(), id.into_u64().to_string())]);
                attrs.record(&mut Fields(&mut fields));
                self.0.lock().unwrap().push(fields);
            }
        }
        fn on_record(
            &self,
            id: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: Context<'_, S>,
        ) {
            let mut spans = self.0.lock().unwrap();
            if let Some(fields) = spans
                .iter_mut()
                .find(|f| f.get("span") == Some(&id.into_u64().to_string()))
            {
                values.record(&mut Fields(fields));
            }
        }
    }

    // tracing caches whether a callsite is enabled once, process-wide, when the callsite is
    // first reached. While this test's scoped subscriber is the only one, a test on another
    // thread (with no subscriber) reaching the consumer's span first caches it as disabled,
    // and this test then sees no span (failed so once in a full run). A global subscriber,
    // which records nothing, keeps every thread's answer "enabled"; the scoped one below
    // still gets this thread's spans.
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let broker = MemoryBroker::new();
    broker.declare("d");
    broker.declare("d.dlq");
    let parent = TraceParent::new_root();
    let traced = Envelope::new("d", "traced").with_trace_parent(&parent);
    let plain = Envelope::new("d", "plain");
    broker.publisher().publish(&traced).await.unwrap();
    broker.publisher().publish(&plain).await.unwrap();
    process_all(&broker, "d", 2).await;
    let spans = spans.0.lock().unwrap().clone();
    let of = |id: zerolost_core::MessageId| {
        spans
            .iter()
            .find(|f| f.get("id").is_some_and(|v| v.contains(&id.to_string())))
            .cloned()
    };
    let traced_span = of(traced.id).expect("a span for the traced message");
    assert_eq!(traced_span.get("trace_id"), Some(&parent.trace_id_hex()));
    assert_eq!(
        traced_span.get("parent_span_id"),
        Some(&parent.parent_id_hex())
    );
    assert_eq!(
        traced_span.get("destination").map(String::as_str),
        Some("d")
    );
    let plain_span = of(plain.id).expect("a span for the plain message");
    assert!(
        !plain_span.contains_key("trace_id"),
        "no trace without a traceparent"
    );
}

/// The consumer counts its deliveries by outcome and reports its lag in time: the age of
/// the last message it received, from the time its id was minted.
#[test]
fn the_consumer_counts_its_deliveries_and_reports_its_lag() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use zerolost_core::telemetry::{CONSUMER_DELIVERIES, CONSUMER_LAG_SECONDS};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let broker = MemoryBroker::new();
            broker.declare("lagging");
            broker.declare("lagging.dlq");
            for body in ["a", "b"] {
                let envelope = Envelope::new("lagging", body);
                broker.publisher().publish(&envelope).await.unwrap();
            }
            // The messages wait 300 ms before any consumer runs.
            tokio::time::sleep(Duration::from_millis(300)).await;
            process_all(&broker, "lagging", 2).await;
        });
    });
    let metrics = snapshotter.snapshot().into_vec();
    let find = |name: &str, label: (&str, &str)| {
        metrics.iter().find_map(|(key, _, _, value)| {
            let key = key.key();
            (key.name() == name
                && key
                    .labels()
                    .any(|l| l.key() == label.0 && l.value() == label.1))
            .then_some(value)
        })
    };
    match find(CONSUMER_LAG_SECONDS, ("destination", "lagging")) {
        Some(DebugValue::Gauge(lag)) => {
            let lag = lag.into_inner();
            assert!((0.3..30.0).contains(&lag), "lag {lag} s");
        }
        other => panic!("no lag gauge: {other:?}"),
    }
    assert_eq!(
        find(CONSUMER_DELIVERIES, ("outcome", "processed")),
        Some(&DebugValue::Counter(2))
    );
}

/// A publisher whose batch results come back in the wrong order confirms nothing: the relay
/// marks a row published only on a receipt for that row's own id, and retries the rest.
#[tokio::test]
async fn a_receipt_for_another_message_marks_nothing_published() {
    /// Stores every message, but answers the batch in reverse order.
    struct Reversed(zerolost_core::memory::MemoryPublisher);
    #[async_trait]
    impl Publisher for Reversed {
        async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
            self.0.publish(envelope).await
        }
        async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
            let mut results = self.0.publish_batch(envelopes).await;
            results.reverse();
            results
        }
    }

    let broker = MemoryBroker::new();
    broker.declare("orders");
    let outbox = MemoryOutbox::new();
    let batch = [
        Envelope::new("orders", "a"),
        Envelope::new("orders", "b"),
        Envelope::new("orders", "c"),
    ];
    outbox.enqueue_batch(&batch).unwrap();
    let relay = Relay::new(outbox.clone(), Reversed(broker.publisher()));
    let round = relay.run_once().await.unwrap();
    // Reversed, only the middle receipt lands on its own message.
    assert_eq!((round.published, round.rescheduled), (1, 2));
    let snapshot = outbox.snapshot(None).await.unwrap();
    let status = |id| {
        snapshot
            .entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| (e.status, e.last_error.clone().unwrap_or_default()))
            .unwrap()
    };
    assert_eq!(status(batch[1].id).0, OutboxStatus::Published);
    for envelope in [&batch[0], &batch[2]] {
        let (state, error) = status(envelope.id);
        assert_eq!(state, OutboxStatus::Pending);
        assert!(error.contains("not for this message"), "{error}");
    }
}

/// A handler that never returns is cancelled at `max_handler_time` (its context's token
/// fired, its future dropped) and the run counts as a retryable failure: after
/// `max_attempts` such runs the message is dead-lettered, the error naming the limit.
#[tokio::test(start_paused = true)]
async fn a_handler_past_max_handler_time_is_cancelled_and_counted() {
    use zerolost_core::{HandlerContext, handler_fn_with_context};
    let broker = MemoryBroker::new();
    broker.declare("d");
    broker.declare("d.dlq");
    let env = Envelope::new("d", "hangs");
    broker.publisher().publish(&env).await.unwrap();
    let (runs, cancelled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler = handler_fn_with_context({
        let (runs, cancelled) = (runs.clone(), cancelled.clone());
        move |_: Envelope, ctx: HandlerContext| {
            let (runs, cancelled) = (runs.clone(), cancelled.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let watch = ctx.cancellation_token().clone();
                tokio::spawn(async move {
                    watch.cancelled().await;
                    cancelled.fetch_add(1, Ordering::SeqCst);
                });
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    });
    let config = ConsumerConfig {
        max_attempts: 2,
        max_handler_time: Duration::from_secs(60),
        retry_backoff: zerolost_core::Backoff::exponential(
            Duration::from_millis(10),
            Duration::from_millis(10),
        ),
        ..ConsumerConfig::default()
    };
    let dedupe = MemoryDedupe::new();
    let consumer = Consumer::new(
        dedupe.clone(),
        handler,
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(config)
    .unwrap();
    consume_until(&consumer, &broker, 200, |t| t.dead_lettered == 1).await;
    assert_eq!(
        consumer.totals().dead_lettered,
        1,
        "{:?}",
        consumer.totals()
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    tokio::task::yield_now().await;
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        2,
        "each run's context was cancelled"
    );
    let mut dlq = broker.subscribe("d.dlq").unwrap();
    let dead = zerolost_core::Subscriber::next(&mut dlq).await.unwrap();
    let failure = zerolost_core::Failure::from_headers(&dead.message.headers).unwrap();
    assert!(
        failure.error.contains("max_handler_time"),
        "{}",
        failure.error
    );
    assert_eq!(failure.attempts, 2);
}

/// A dedupe store whose first processed mark fails twice as Redis does when it dies, then
/// finds the claim gone (it expired during the outage and was taken over).
struct OutageThenLeaseLost {
    inner: MemoryDedupe,
    completes: AtomicUsize,
}

#[async_trait]
impl DedupeStore for OutageThenLeaseLost {
    async fn claim(&self, id: zerolost_core::MessageId, lease: Duration) -> Result<Claim, Error> {
        self.inner.claim(id, lease).await
    }
    async fn extend(
        &self,
        token: &zerolost_core::ClaimToken,
        lease: Duration,
    ) -> Result<(), Error> {
        self.inner.extend(token, lease).await
    }
    async fn complete(
        &self,
        token: &zerolost_core::ClaimToken,
        outcome: zerolost_core::Outcome,
        keep_for: Duration,
    ) -> Result<(), Error> {
        match self.completes.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err(Error::unavailable("redis", "broken pipe")),
            2 => Err(Error::LeaseLost { id: token.id }),
            _ => self.inner.complete(token, outcome, keep_for).await,
        }
    }
    async fn release(&self, token: &zerolost_core::ClaimToken) -> Result<(), Error> {
        self.inner.release(token).await
    }
    async fn failures(
        &self,
        id: zerolost_core::MessageId,
    ) -> Result<Option<zerolost_core::FailureRecord>, Error> {
        self.inner.failures(id).await
    }
    async fn record_failure(
        &self,
        id: zerolost_core::MessageId,
        error: &str,
    ) -> Result<zerolost_core::FailureRecord, Error> {
        self.inner.record_failure(id, error).await
    }
}

/// The consumer stops taking messages while its store is down (fails closed); a store that
/// answers again, even with "your claim is gone", is back: the consumer takes the next
/// message instead of waiting for good (found by `zerolost-lab chaos`: consumers idle for
/// minutes after a Redis kill, 100 messages unacked).
#[tokio::test(start_paused = true)]
async fn a_store_that_answers_after_an_outage_opens_the_intake_again() {
    let broker = MemoryBroker::new();
    broker.declare("d");
    broker.declare("d.dlq");
    let (first, second) = (Envelope::new("d", "a"), Envelope::new("d", "b"));
    for env in [&first, &second] {
        broker.publisher().publish(env).await.unwrap();
    }
    let dedupe = OutageThenLeaseLost {
        inner: MemoryDedupe::new(),
        completes: AtomicUsize::new(0),
    };
    let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = handler_fn({
        let runs = runs.clone();
        move |env: Envelope| {
            let runs = runs.clone();
            async move {
                runs.lock().unwrap().push(env.id);
                Ok(())
            }
        }
    });
    let consumer = Consumer::new(
        dedupe,
        handler,
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(ConsumerConfig {
        concurrency: 1,
        claim_lease: Duration::from_secs(10),
        ..ConsumerConfig::default()
    })
    .unwrap();
    consume_until(&consumer, &broker, 120, |t| t.processed == 2).await;
    let totals = consumer.totals();
    assert_eq!(totals.processed, 2, "{totals:?}");
    assert_eq!(
        totals.abandoned, 1,
        "the first mark found its claim gone: {totals:?}"
    );
    let runs = runs.lock().unwrap();
    assert!(
        runs.contains(&second.id),
        "the next message was taken: {runs:?}"
    );
    assert_eq!(broker.depth("d"), (0, 0));
}

/// A DLQ whose route is missing for a while, as RocketMQ's is while its broker restarts.
struct RouteComesBack {
    inner: DeadLetterPublisher<zerolost_core::memory::MemoryPublisher>,
    unroutable: AtomicUsize,
}

#[async_trait]
impl zerolost_core::DeadLetterSink for RouteComesBack {
    async fn dead_letter(
        &self,
        envelope: &Envelope,
        failure: &zerolost_core::Failure,
    ) -> Result<Receipt, Error> {
        if self.unroutable.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Err(Error::Unroutable {
                destination: "d.dlq".into(),
            });
        }
        self.inner.dead_letter(envelope, failure).await
    }
}

/// A dead letter whose DLQ has no route for a few seconds waits for the route and lands in
/// the DLQ; it is not kept aside as refused (found by `zerolost-lab chaos` on RocketMQ: a poison
/// message dead-lettered during a broker kill was parked).
#[tokio::test(start_paused = true)]
async fn a_dlq_without_a_route_for_a_while_still_gets_the_dead_letter() {
    let broker = MemoryBroker::new();
    broker.declare("d");
    broker.declare("d.dlq");
    let poison = Envelope::new("d", "poison");
    broker.publisher().publish(&poison).await.unwrap();
    let sink = RouteComesBack {
        inner: DeadLetterPublisher::new(broker.publisher()),
        unroutable: AtomicUsize::new(5),
    };
    let dedupe = MemoryDedupe::new();
    let handler = handler_fn(|_: Envelope| async {
        Err(zerolost_core::HandlerError::permanent("bad address"))
    });
    let consumer = Consumer::new(dedupe.clone(), handler, sink);
    consume_until(&consumer, &broker, 120, |t| t.dead_lettered == 1).await;
    assert_eq!(
        consumer.totals().dead_lettered,
        1,
        "{:?}",
        consumer.totals()
    );
    use zerolost_core::ConsumerLedger;
    assert!(
        dedupe.parked_dead_letters("d").await.unwrap().is_empty(),
        "nothing kept aside as refused"
    );
    assert_eq!(broker.depth("d.dlq").0, 1, "the dead letter is in the DLQ");
    let mut dlq = broker.subscribe("d.dlq").unwrap();
    let dead = zerolost_core::Subscriber::next(&mut dlq).await.unwrap();
    assert_eq!(
        dead.message.headers.get(zerolost_core::MESSAGE_ID_HEADER),
        Some(&poison.id.to_string())
    );
}

/// Runs `consumer` on `destination` of `broker` until the returned token is cancelled.
fn consume(
    consumer: &Consumer,
    broker: &MemoryBroker,
    destination: &str,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<zerolost_core::ConsumerTotals, Error>>,
) {
    let stop = CancellationToken::new();
    let sub = broker.subscribe(destination).unwrap();
    let task = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(sub, stop).await }
    });
    (stop, task)
}

/// Runs `consumer` on `d` of `broker` until `done` holds for its totals (checked every
/// second, at most `seconds` times), then stops it.
async fn consume_until(
    consumer: &Consumer,
    broker: &MemoryBroker,
    seconds: u32,
    done: impl Fn(&zerolost_core::ConsumerTotals) -> bool,
) {
    let (stop, task) = consume(consumer, broker, "d");
    for _ in 0..seconds {
        if done(&consumer.totals()) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Counts `close` calls on the subscriber it wraps.
struct CountingClose<S> {
    inner: S,
    closes: Arc<AtomicUsize>,
}

#[async_trait]
impl<S: zerolost_core::Subscriber> zerolost_core::Subscriber for CountingClose<S> {
    async fn next(&mut self) -> Result<zerolost_core::Delivery, Error> {
        self.inner.next().await
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.closes.fetch_add(1, Ordering::SeqCst);
        self.inner.close().await
    }
}

/// `run` closes a subscriber it owns when it ends; a borrowed one comes back open, and
/// takes the next message.
#[tokio::test(start_paused = true)]
async fn run_closes_an_owned_subscriber_and_hands_back_a_borrowed_one() {
    let broker = MemoryBroker::new();
    broker.declare("d");
    broker.declare("d.dlq");
    let consumer = Consumer::new(
        Arc::new(MemoryDedupe::new()),
        handler_fn(|_: Envelope| async { Ok(()) }),
        DeadLetterPublisher::new(broker.publisher()),
    );
    let closes = Arc::new(AtomicUsize::new(0));
    let counted = |closes: &Arc<AtomicUsize>| CountingClose {
        inner: broker.subscribe("d").unwrap(),
        closes: closes.clone(),
    };

    let stop = CancellationToken::new();
    stop.cancel();
    consumer.run(counted(&closes), stop.clone()).await.unwrap();
    assert_eq!(
        closes.load(Ordering::SeqCst),
        1,
        "an owned subscriber is closed"
    );

    let mut borrowed = counted(&closes);
    consumer.run(&mut borrowed, stop).await.unwrap();
    assert_eq!(closes.load(Ordering::SeqCst), 1, "a borrowed one is not");
    broker
        .publisher()
        .publish(&Envelope::new("d", "x"))
        .await
        .unwrap();
    let delivery = zerolost_core::Subscriber::next(&mut borrowed)
        .await
        .unwrap();
    delivery.ack().await.unwrap();
    zerolost_core::Subscriber::close(&mut borrowed)
        .await
        .unwrap();
    assert!(matches!(
        zerolost_core::Subscriber::next(&mut borrowed).await,
        Err(Error::Closed(_))
    ));
}
