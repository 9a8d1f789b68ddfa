//! Conformance beyond the happy path: claims renewed while a slow handler runs, fencing
//! numbers, a handler cancelled before its lost lease ends, and a failure path that counts
//! nothing once the claim is no longer its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use zerolost_core::{
    Claim, ConsumerConfig, DedupeStore, Envelope, Error, Handler, HandlerContext, HandlerError,
    MessageId, Outcome, Publisher,
};

use super::support::{Running, claim_fresh, eventually, ok, test_consumer_config};
use crate::{Backend, EffectLog, Stores, SwitchableDedupe};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One handler run as [`TimedHandler`] saw it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The message.
    pub id: MessageId,
    /// The claim's fencing number.
    pub fence: u64,
    /// When the run began.
    pub started: Instant,
    /// When it ended (finished, or its future was dropped).
    pub ended: Option<Instant>,
    /// Whether it got to the end and applied its effect.
    pub finished: bool,
    /// Whether its context was cancelled when it ended.
    pub context_cancelled: bool,
}

/// A handler whose first `slow_runs` runs of each id take `work`, then apply an effect;
/// every run is recorded with its time span, even one cancelled mid-way (its future
/// dropped). The ground truth for "two holders ran at once".
#[derive(Clone)]
pub struct TimedHandler {
    effects: EffectLog,
    work: Duration,
    slow_runs: u32,
    runs: Arc<Mutex<Vec<Run>>>,
}

impl TimedHandler {
    /// Runs taking `work` each (the first `slow_runs` per id; later ones are quick).
    pub fn new(work: Duration, slow_runs: u32) -> Self {
        Self {
            effects: EffectLog::new(),
            work,
            slow_runs,
            runs: Arc::default(),
        }
    }

    /// The effects applied.
    pub fn effects(&self) -> &EffectLog {
        &self.effects
    }

    /// Every run so far.
    pub fn runs(&self) -> Vec<Run> {
        lock(&self.runs).clone()
    }

    /// Pairs of runs of one id whose time spans overlap (ends of unfinished runs: now).
    pub fn overlaps(&self) -> Vec<(Run, Run)> {
        let runs = self.runs();
        let now = Instant::now();
        let mut found = Vec::new();
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                let (a_end, b_end) = (a.ended.unwrap_or(now), b.ended.unwrap_or(now));
                if a.id == b.id && a.started < b_end && b.started < a_end {
                    found.push((a.clone(), b.clone()));
                }
            }
        }
        found
    }
}

/// Records the end of a run when dropped: at its end, or when its future is dropped.
struct RunGuard {
    runs: Arc<Mutex<Vec<Run>>>,
    index: usize,
    context: HandlerContext,
    finished: bool,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut runs = lock(&self.runs);
        let run = &mut runs[self.index];
        run.ended = Some(Instant::now());
        run.finished = self.finished;
        run.context_cancelled = self.context.is_cancelled();
    }
}

#[async_trait]
impl Handler for TimedHandler {
    async fn handle(&self, _: &Envelope) -> Result<(), HandlerError> {
        Err(HandlerError::permanent("TimedHandler needs the claim"))
    }

    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        context: &HandlerContext,
    ) -> Result<(), HandlerError> {
        let (index, earlier) = {
            let mut runs = lock(&self.runs);
            let earlier = runs.iter().filter(|r| r.id == envelope.id).count();
            runs.push(Run {
                id: envelope.id,
                fence: context.fence(),
                started: Instant::now(),
                ended: None,
                finished: false,
                context_cancelled: false,
            });
            (runs.len() - 1, earlier)
        };
        let mut guard = RunGuard {
            runs: self.runs.clone(),
            index,
            context: context.clone(),
            finished: false,
        };
        if earlier < self.slow_runs as usize {
            tokio::time::sleep(self.work).await;
        }
        self.effects.apply(envelope.id);
        guard.finished = true;
        Ok(())
    }
}

fn leased(lease: Duration) -> ConsumerConfig {
    ConsumerConfig {
        claim_lease: lease,
        ..test_consumer_config()
    }
}

/// Dedupe-store contract for long work: `extend` keeps a claim past its first lease; a
/// stale or finished token cannot extend; every claim of an id (takeover, after a release,
/// after a dead letter was forgotten) has a larger fencing number than the one before.
pub async fn dedupe_claims_are_renewed_and_fenced(stores: &dyn Stores) {
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let store = dedupe.store.as_ref();
    let lease = Duration::from_millis(600);
    let hour = Duration::from_secs(3600);
    let id = MessageId::new();
    let first = claim_fresh(store, id, lease).await;
    assert!(first.fence >= 1, "a granted claim has a fencing number");
    for _ in 0..3 {
        tokio::time::sleep(lease / 2).await;
        ok(store.extend(&first, lease).await, "extend a held claim");
    }
    assert_eq!(
        ok(store.claim(id, lease).await, "claim"),
        Claim::HeldByOther,
        "an extended claim still holds after its first lease"
    );
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let second = claim_fresh(store, id, hour).await;
    assert!(
        second.fence > first.fence,
        "a takeover raises the fencing number: {} then {}",
        first.fence,
        second.fence
    );
    assert!(
        matches!(
            store.extend(&first, hour).await,
            Err(Error::LeaseLost { .. })
        ),
        "a taken-over token cannot extend"
    );
    ok(store.extend(&second, hour).await, "the new holder extends");
    ok(
        store.complete(&second, Outcome::Processed, hour).await,
        "complete",
    );
    assert!(
        matches!(
            store.extend(&second, hour).await,
            Err(Error::LeaseLost { .. })
        ),
        "a finished claim cannot be extended"
    );

    let released = MessageId::new();
    let a = claim_fresh(store, released, hour).await;
    ok(store.release(&a).await, "release");
    let b = claim_fresh(store, released, hour).await;
    assert!(b.fence > a.fence, "a claim after a release outranks it");

    let dead = MessageId::new();
    let a = claim_fresh(store, dead, hour).await;
    ok(
        store.complete(&a, Outcome::DeadLettered, hour).await,
        "complete",
    );
    assert!(ok(dedupe.ledger.forget_dead_letter(dead).await, "forget"));
    let b = claim_fresh(store, dead, hour).await;
    assert!(
        b.fence > a.fence,
        "a redriven copy's claim outranks the dead-lettered one"
    );
}

/// A handler three times slower than the claim lease, two copies of each id: the claim is
/// renewed while it runs, so each id runs once, never two at a time, and has one effect;
/// the second copies are suppressed.
pub async fn slow_handler_keeps_its_claim(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let lease = Duration::from_millis(600);
    let handler = TimedHandler::new(lease * 3, u32::MAX);
    let running = Running::start(
        backend,
        &dest,
        dedupe.store.clone(),
        handler.clone(),
        leased(lease),
    )
    .await;
    let originals: Vec<Envelope> = (0..5)
        .map(|i| Envelope::new(&dest, format!("slow {i}")))
        .collect();
    let publisher = ok(backend.publisher().await, "publisher");
    for env in originals.iter().chain(originals.iter()) {
        ok(publisher.publish(env).await, "publish a copy");
    }
    eventually(
        backend.patience() * 2,
        "5 processed, 5 copies suppressed",
        || async {
            let t = running.consumer.totals();
            t.processed == 5 && t.duplicates >= 5
        },
    )
    .await;
    let totals = running.stop().await;
    for env in &originals {
        assert_eq!(handler.effects().count(env.id), 1, "effects of {}", env.id);
    }
    // One finished run per id. A run cut off because a renewal came too late (a loaded
    // machine) may be followed by another, never beside it.
    let runs = handler.runs();
    let finished: Vec<&Run> = runs.iter().filter(|r| r.finished).collect();
    assert_eq!(finished.len(), 5, "one finished run per id: {runs:#?}");
    assert!(
        runs.iter().all(|r| r.finished || r.context_cancelled),
        "a run that did not finish was cancelled: {runs:#?}"
    );
    assert!(handler.overlaps().is_empty(), "{:#?}", handler.overlaps());
    assert_eq!(totals.dead_lettered, 0, "{totals:?}");
}

/// A store that stops answering while a slow handler runs, for longer than the lease: the
/// renewal fails, so the handler is cancelled (its future dropped, its context cancelled)
/// before the lease it last got ends; when the store is back the message is taken over
/// and applied once.
pub async fn lost_renewal_cancels_the_handler(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let switch = Arc::new(SwitchableDedupe::new(dedupe.store.clone()));
    let lease = Duration::from_millis(900);
    let handler = TimedHandler::new(lease * 3, 1);
    let running = Running::start(
        backend,
        &dest,
        switch.clone(),
        handler.clone(),
        leased(lease),
    )
    .await;
    let env = Envelope::new(&dest, "slow, then the store goes away");
    ok(
        ok(backend.publisher().await, "publisher")
            .publish(&env)
            .await,
        "publish",
    );
    eventually(backend.patience(), "the handler started", || async {
        !handler.runs().is_empty()
    })
    .await;
    switch.set_down(true);
    eventually(lease * 2, "the handler is cancelled", || async {
        handler.runs()[0].ended.is_some()
    })
    .await;
    let last_grant = switch.last_grant().unwrap_or_else(|| panic!("no grant"));
    tokio::time::sleep(lease * 2).await;
    switch.set_down(false);
    eventually(
        backend.patience(),
        "processed after the store is back",
        || async { running.consumer.totals().processed == 1 },
    )
    .await;
    running.stop().await;
    let runs = handler.runs();
    let first = &runs[0];
    assert!(!first.finished, "the first run was cut off: {first:?}");
    assert!(first.context_cancelled, "its context was cancelled");
    let ended = first.ended.unwrap_or_else(|| panic!("no end"));
    assert!(
        ended < last_grant + lease,
        "cancelled {:?} before the lease ended",
        last_grant + lease - ended
    );
    assert_eq!(handler.effects().count(env.id), 1, "one effect: {runs:#?}");
    assert!(handler.overlaps().is_empty(), "{:#?}", handler.overlaps());
    assert!(
        runs[1].fence > first.fence,
        "the takeover has a larger fence"
    );
}

/// The failure path counts nothing without the claim: a handler whose claim was taken
/// over (and the message processed by the new holder) and that then fails permanently
/// does not dead-letter it; a run interrupted by its store (`HandlerError::Interrupted`)
/// is redelivered without counting an attempt, even at `max_attempts = 1`.
pub async fn failures_count_only_under_a_held_claim(backend: &dyn Backend, stores: &dyn Stores) {
    let dest = ok(backend.destination().await, "destination");
    let dedupe = ok(stores.dedupe().await, "dedupe store");
    let store = dedupe.store.clone();
    let effects = EffectLog::new();
    let calls: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let (taken, interrupted) = (
        Envelope::new(&dest, "taken over"),
        Envelope::new(&dest, "interrupted twice"),
    );
    let handler = zerolost_core::handler_fn_with_context({
        let (store, effects, calls) = (store.clone(), effects.clone(), calls.clone());
        let (taken, interrupted) = (taken.id, interrupted.id);
        move |env: Envelope, ctx: HandlerContext| {
            let (store, effects, calls) = (store.clone(), effects.clone(), calls.clone());
            async move {
                let call = {
                    let mut calls = lock(&calls);
                    let n = calls.entry(env.id).or_insert(0);
                    *n += 1;
                    *n
                };
                if env.id == taken && call == 1 {
                    // Another consumer takes the claim over and processes the message.
                    ok(store.release(ctx.claim()).await, "release");
                    let other = claim_fresh(store.as_ref(), env.id, Duration::from_secs(60)).await;
                    effects.apply(env.id);
                    ok(
                        store
                            .complete(&other, Outcome::Processed, Duration::from_secs(3600))
                            .await,
                        "the other holder completes",
                    );
                    return Err(HandlerError::permanent("failed after losing the claim"));
                }
                if env.id == interrupted && call <= 2 {
                    return Err(HandlerError::interrupted("the inbox went away"));
                }
                effects.apply(env.id);
                Ok(())
            }
        }
    });
    let config = ConsumerConfig {
        max_attempts: 1,
        ..test_consumer_config()
    };
    let running = Running::start(backend, &dest, store.clone(), handler, config).await;
    let publisher = ok(backend.publisher().await, "publisher");
    ok(publisher.publish(&taken).await, "publish");
    ok(publisher.publish(&interrupted).await, "publish");
    eventually(backend.patience(), "both settled", || async {
        let t = running.consumer.totals();
        t.processed == 1 && t.duplicates >= 1
    })
    .await;
    let totals = running.stop().await;
    assert_eq!(totals.dead_lettered, 0, "nothing dead-lettered: {totals:?}");
    for id in [taken.id, interrupted.id] {
        assert_eq!(effects.count(id), 1, "effects of {id}");
        assert_eq!(
            ok(store.failures(id).await, "failures"),
            None,
            "no attempt counted for {id}"
        );
    }
    assert_eq!(lock(&calls).get(&interrupted.id), Some(&3));
    let dlq = ok(backend.dead_letter_ids(&dest).await, "read the DLQ");
    assert!(dlq.is_empty(), "the DLQ holds {dlq:?}");
}
