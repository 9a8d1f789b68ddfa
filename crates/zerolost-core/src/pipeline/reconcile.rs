//! End-to-end reconciliation by message id, with the source article's count view beside it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{ConsumerLedger, Error, MessageId, OutboxStatus, OutboxStore, Outcome};

/// A parked outbox row and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedMessage {
    /// The message.
    pub id: MessageId,
    /// Why it could not be sent.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
}

/// The source article's count-based view: equal counts can hide one loss plus one
/// duplicate, which is why the verdict comes from ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CountView {
    /// Rows in the outbox.
    pub produced: usize,
    /// Rows the broker confirmed.
    pub published: usize,
    /// Messages the consumer side finished (processed or dead-lettered).
    pub consumed: usize,
    /// `produced - published` ("lost between producer and MQ" in the article).
    pub producer_to_broker_gap: i64,
    /// `published - consumed` ("lost between MQ and consumer" in the article).
    pub broker_to_consumer_gap: i64,
}

/// What reconciliation found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// The outbox store's clock at the snapshot.
    pub taken_at: DateTime<Utc>,
    /// Outbox rows in the window.
    pub produced: usize,
    /// Rows not yet published (waiting, leased or backing off).
    pub pending: usize,
    /// Rows the broker confirmed.
    pub published: usize,
    /// Rows parked, with reasons.
    pub parked: Vec<ParkedMessage>,
    /// Published messages the consumer processed.
    pub processed: usize,
    /// Published messages the consumer dead-lettered.
    pub dead_lettered: Vec<MessageId>,
    /// Published longer than the grace period ago, yet neither processed nor dead-lettered.
    pub missing: Vec<MessageId>,
    /// Published within the grace period and not finished yet (not counted as missing).
    pub in_flight: usize,
    /// Published, not finished by the ledger's account, and created before the ledger's
    /// window began (`horizon`): the consumers' processed marks last only `keep_for`, so
    /// the ledger cannot vouch for these either way. Never counted as missing, and
    /// [`Reconciler::repair`] leaves them alone (a copy processed then would be applied again).
    pub beyond_window: Vec<MessageId>,
    /// The start of the ledger's window: messages created before it are beyond the window.
    pub horizon: Option<DateTime<Utc>>,
    /// Finished by the consumer but not in the outbox (foreign producers, or outside the window).
    pub unknown: Vec<MessageId>,
    /// Redeliveries suppressed as duplicates, where the ledger counts them.
    pub duplicates_suppressed: u64,
    /// The article's count view.
    pub counts: CountView,
}

impl ReconcileReport {
    /// Nothing missing.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Compares the outbox ledger with the consumer ledger by id: what was produced,
/// published, processed, dead-lettered, parked, and what is missing after a grace
/// period; [`repair`](Reconciler::repair) makes the outbox send the missing again.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use std::time::Duration;
/// use zerolost_core::{Reconciler, memory::{MemoryDedupe, MemoryOutbox}};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let reconciler = Reconciler::new(MemoryOutbox::new(), MemoryDedupe::new())
///     .with_grace(Duration::from_secs(300));
/// let report = reconciler.reconcile(None).await.unwrap();
/// assert!(report.is_clean());
/// # });
/// # }
/// ```
pub struct Reconciler {
    outbox: Arc<dyn OutboxStore>,
    ledger: Arc<dyn ConsumerLedger>,
    grace: Duration,
    window: Duration,
}

impl Reconciler {
    /// A reconciler over an outbox and a consumer ledger, with a 5-minute grace period and
    /// a 24-hour ledger window (the consumer's default `keep_for`).
    pub fn new(outbox: impl OutboxStore + 'static, ledger: impl ConsumerLedger + 'static) -> Self {
        Self {
            outbox: Arc::new(outbox),
            ledger: Arc::new(ledger),
            grace: Duration::from_secs(300),
            window: crate::dedupe::DEFAULT_KEEP_FOR,
        }
    }

    /// How long the consumers remember what they finished (their `keep_for`): messages
    /// created longer ago are reported as beyond the window, never as missing.
    pub fn with_window(mut self, keep_for: Duration) -> Self {
        self.window = keep_for;
        self
    }

    /// How long after its publish a message may still be on its way.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Reconciles the messages created since `since` (all when `None`).
    pub async fn reconcile(&self, since: Option<DateTime<Utc>>) -> Result<ReconcileReport, Error> {
        let outbox = self.outbox.snapshot(since).await?;
        let finished = self.ledger.finished(since).await?;
        let duplicates_suppressed = self.ledger.duplicates_suppressed().await?;
        let outcome: HashMap<MessageId, Outcome> =
            finished.entries.iter().map(|e| (e.id, e.outcome)).collect();
        let grace = chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX);
        let settled_before = outbox.taken_at.checked_sub_signed(grace);
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        let horizon = outbox.taken_at.checked_sub_signed(window);

        let mut report = ReconcileReport {
            taken_at: outbox.taken_at,
            horizon,
            produced: outbox.entries.len(),
            duplicates_suppressed,
            ..ReconcileReport::default()
        };
        let mut known = HashSet::with_capacity(outbox.entries.len());
        for entry in &outbox.entries {
            known.insert(entry.id);
            match entry.status {
                OutboxStatus::Pending => report.pending += 1,
                OutboxStatus::Parked => report.parked.push(ParkedMessage {
                    id: entry.id,
                    reason: entry.last_error.clone().unwrap_or_default(),
                    attempts: entry.attempts,
                }),
                OutboxStatus::Published => {
                    report.published += 1;
                    match outcome.get(&entry.id) {
                        Some(Outcome::Processed) => report.processed += 1,
                        Some(Outcome::DeadLettered) => report.dead_lettered.push(entry.id),
                        None if horizon.is_some_and(|h| entry.created_at < h) => {
                            report.beyond_window.push(entry.id);
                        }
                        None => {
                            let settled = match (entry.published_at, settled_before) {
                                (Some(at), Some(limit)) => at <= limit,
                                _ => false,
                            };
                            if settled {
                                report.missing.push(entry.id);
                            } else {
                                report.in_flight += 1;
                            }
                        }
                    }
                }
            }
        }
        report.unknown = finished
            .entries
            .iter()
            .filter(|e| !known.contains(&e.id))
            .map(|e| e.id)
            .collect();
        let consumed = finished.entries.len();
        report.counts = CountView {
            produced: report.produced,
            published: report.published,
            consumed,
            producer_to_broker_gap: report.produced as i64 - report.published as i64,
            broker_to_consumer_gap: report.published as i64 - consumed as i64,
        };
        Ok(report)
    }

    /// Makes the outbox send every missing message again (same id, so a copy that did
    /// arrive after all is suppressed downstream); returns how many were requeued. Messages
    /// beyond the ledger's window are not among them: see
    /// [`repair_beyond_window`](Reconciler::repair_beyond_window).
    pub async fn repair(&self, report: &ReconcileReport) -> Result<usize, Error> {
        if report.missing.is_empty() {
            return Ok(0);
        }
        self.outbox.requeue(&report.missing).await
    }

    /// Makes the outbox send the messages beyond the ledger's window again: an operator's
    /// explicit choice, since a copy processed before its mark expired is applied again.
    pub async fn repair_beyond_window(&self, report: &ReconcileReport) -> Result<usize, Error> {
        if report.beyond_window.is_empty() {
            return Ok(0);
        }
        self.outbox.requeue(&report.beyond_window).await
    }
}
