//! Reading a dead-letter queue back and redriving its messages to where they came from.
//!
//! Redrive order, so nothing is lost or applied twice: (1) the consumer ledger forgets the
//! id's dead-letter mark (a processed id is never forgotten), (2) the message is published
//! to its original destination **with confirms**, (3) only then is it removed from the DLQ.
//! A crash between steps leaves the message in the DLQ; redriving it again is safe, since a
//! copy that was processed meanwhile is now marked processed and suppressed downstream.
//!
//! Two refusals keep a redrive from applying a message twice or losing it: a message first
//! published before the consumers' dedupe window (`keep_for`) is refused, since a copy
//! processed then may be forgotten; and a message whose dead-letter mark the ledger does not
//! hold is refused (not published, kept in the DLQ), since a ledger that is not the
//! consumers' (another Redis prefix, other inbox tables) would let the consumers suppress
//! the redriven copy as already finished. [`RedriveOptions`] overrides each, explicitly.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::dedupe::ParkedDeadLetter;
use crate::{
    ConsumerLedger, Envelope, Error, Failure, Incoming, MESSAGE_ID_HEADER, MessageId, Publisher,
    dlq_headers,
};

/// One message read back from a dead-letter queue.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterMessage {
    /// Its id (`None` for a message dead-lettered because it carried none).
    pub id: Option<MessageId>,
    /// The message as it is redriven: original destination, key, payload, the
    /// application's headers (the failure metadata removed).
    #[serde(skip)]
    pub envelope: Envelope,
    /// Why it was dead-lettered, when the metadata is there.
    pub failure: Option<Failure>,
    /// Payload size in bytes.
    pub payload_len: usize,
    /// Set when the DLQ refused the message for good and the consumers kept it in their
    /// store instead: why the DLQ refused it (see [`parking`](crate::parking)).
    pub parked: Option<String>,
}

impl DeadLetterMessage {
    /// Reads a message delivered from the DLQ of `original_destination`.
    pub fn from_incoming(original_destination: &str, message: Incoming) -> Self {
        let failure = Failure::from_headers(&message.headers);
        let id = message
            .headers
            .get(MESSAGE_ID_HEADER)
            .and_then(|v| v.parse().ok());
        let payload_len = message.payload.len();
        let mut envelope = message.into_envelope(id.unwrap_or_default());
        envelope.destination = failure.as_ref().map_or_else(
            || original_destination.to_owned(),
            |f| f.original_destination.clone(),
        );
        for name in [
            dlq_headers::ERROR,
            dlq_headers::REASON,
            dlq_headers::ATTEMPTS,
            dlq_headers::ORIGINAL_DESTINATION,
            dlq_headers::FIRST_FAILURE_AT,
            dlq_headers::LAST_FAILURE_AT,
        ] {
            envelope.headers.remove(name);
        }
        Self {
            id,
            envelope,
            failure,
            payload_len,
            parked: None,
        }
    }
}

/// A backend's dead-letter queue as an operator sees it: list, and remove after a redrive.
#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// The messages dead-lettered from `destination`, oldest first, left in place.
    async fn list(&self, destination: &str) -> Result<Vec<DeadLetterMessage>, Error>;
    /// Removes the messages with these ids from `destination`'s DLQ; returns how many.
    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error>;
    /// How many dead letters `destination` has (the relay's gauge). The default counts
    /// [`list`](DeadLetterQueue::list); a backend overrides it with a cheaper read.
    async fn depth(&self, destination: &str) -> Result<usize, Error> {
        Ok(self.list(destination).await?.len())
    }
}

#[async_trait]
impl<T: DeadLetterQueue + ?Sized> DeadLetterQueue for Arc<T> {
    async fn list(&self, destination: &str) -> Result<Vec<DeadLetterMessage>, Error> {
        (**self).list(destination).await
    }
    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        (**self).remove(destination, ids).await
    }
    async fn depth(&self, destination: &str) -> Result<usize, Error> {
        (**self).depth(destination).await
    }
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// Chosen messages that were published (confirmed) to their original destination.
    pub redriven: Vec<MessageId>,
    /// Of those, removed from the DLQ.
    pub removed: usize,
    /// Chosen ids not found in the DLQ.
    pub not_found: Vec<MessageId>,
    /// Chosen messages left in the DLQ because their publish failed, with the error.
    pub failed: Vec<(MessageId, String)>,
    /// Messages without an id, which are never redriven (nothing downstream could
    /// deduplicate them).
    pub skipped_without_id: usize,
    /// Chosen messages not redriven (left in the DLQ, nothing published) and why: beyond
    /// the dedupe window, or no dead-letter mark in the ledger.
    pub refused: Vec<(MessageId, String)>,
}

/// How a redrive treats what it cannot vouch for.
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    /// Only report the choice; change nothing.
    pub dry_run: bool,
    /// The consumers' dedupe window (`keep_for`, default 24 h): messages first published
    /// before it are refused.
    pub window: Duration,
    /// Redrive messages beyond the window too (a copy processed then is applied again).
    pub beyond_window: bool,
    /// Redrive messages whose dead-letter mark the ledger does not hold (after an earlier
    /// redrive that removed the mark but did not publish).
    pub without_mark: bool,
}

impl Default for RedriveOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            window: crate::dedupe::DEFAULT_KEEP_FOR,
            beyond_window: false,
            without_mark: false,
        }
    }
}

/// Which dead letters to redrive.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every message with an id.
    All,
    /// These ids.
    Ids(Vec<MessageId>),
}

/// Redrives dead letters of `destination`: forget the ledger's mark, publish with
/// confirms, remove from the DLQ after the confirm. What it cannot vouch for is refused
/// (see the module docs); `options.dry_run` only reports the choice and the window refusals.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use zerolost_core::memory::{MemoryBroker, MemoryDedupe};
/// use zerolost_core::redrive::{RedriveOptions, Selection, redrive};
/// let broker = MemoryBroker::new();
/// broker.declare("orders");
/// let report = redrive(&broker, &broker.publisher(), &MemoryDedupe::new(),
///     "orders", &Selection::All, &RedriveOptions::default()).await.unwrap();
/// assert!(report.redriven.is_empty());
/// # });
/// # }
/// ```
pub async fn redrive(
    dlq: &dyn DeadLetterQueue,
    publisher: &dyn Publisher,
    ledger: &dyn ConsumerLedger,
    destination: &str,
    selection: &Selection,
    options: &RedriveOptions,
) -> Result<RedriveReport, Error> {
    let messages = dlq.list(destination).await?;
    let mut report = RedriveReport::default();
    let chosen = choose(&messages, selection, &mut report);
    let horizon =
        Utc::now() - chrono::Duration::from_std(options.window).unwrap_or(chrono::Duration::MAX);
    let mut kept = Vec::with_capacity(chosen.len());
    for message in chosen {
        let first = first_published(message);
        if options.beyond_window || first.is_some_and(|at| at >= horizon) {
            kept.push(message);
        } else {
            let why = beyond_window(first, options.window);
            report.refused.push((message_id(message), why));
        }
    }
    if options.dry_run {
        report.redriven = kept.iter().map(|m| message_id(m)).collect();
        return Ok(report);
    }
    let mut sendable = Vec::with_capacity(kept.len());
    for message in kept {
        let id = message_id(message);
        if ledger.forget_dead_letter(id).await? || options.without_mark {
            sendable.push((id, message.envelope.clone()));
        } else {
            report.refused.push((id, NO_MARK.to_owned()));
        }
    }
    let envelopes: Vec<Envelope> = sendable.iter().map(|(_, e)| e.clone()).collect();
    let results = publisher.publish_batch(&envelopes).await;
    for ((id, _), result) in sendable.iter().zip(results) {
        match result {
            Ok(_) => report.redriven.push(*id),
            Err(e) => report.failed.push((*id, e.to_string())),
        }
    }
    if !report.redriven.is_empty() {
        report.removed = dlq.remove(destination, &report.redriven).await?;
    }
    Ok(report)
}

const NO_MARK: &str = "the consumers' ledger holds no dead-letter mark for it: either this ledger is not the \
     consumers' (another [redis] prefix, other [inbox] tables; they would suppress the redriven copy as \
     already finished) or an earlier redrive removed the mark and did not publish; check, then pass \
     --without-mark (RedriveOptions::without_mark)";

fn beyond_window(first: Option<DateTime<Utc>>, window: Duration) -> String {
    let age = first.map_or_else(
        || "of unknown age (its id carries no time)".to_owned(),
        |at| format!("first published {}", at.format("%Y-%m-%dT%H:%M:%SZ")),
    );
    format!(
        "beyond the consumers' dedupe window: {age}, and processed marks are kept {}; a copy \
         processed then may be forgotten and would be applied again; pass --beyond-window \
         (RedriveOptions::beyond_window) to redrive it anyway",
        humanize(window)
    )
}

fn humanize(window: Duration) -> String {
    let secs = window.as_secs();
    match secs {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s => format!("{s}s"),
    }
}

/// When a dead letter was first published: its UUIDv7 id's time, else its first failure.
fn first_published(message: &DeadLetterMessage) -> Option<DateTime<Utc>> {
    message
        .id
        .and_then(|id| id.minted_at())
        .map(DateTime::<Utc>::from)
        .or_else(|| message.failure.as_ref().map(|f| f.first_failure_at))
}

fn message_id(message: &DeadLetterMessage) -> MessageId {
    message.id.unwrap_or_default()
}

/// The chosen messages with an id, one copy per id (a DLQ can hold two copies of one id
/// after an earlier interrupted redrive); notes ids not found and messages without one.
fn choose<'a>(
    messages: &'a [DeadLetterMessage],
    selection: &Selection,
    report: &mut RedriveReport,
) -> Vec<&'a DeadLetterMessage> {
    let chosen: Vec<&DeadLetterMessage> = match selection {
        Selection::All => {
            report.skipped_without_id = messages.iter().filter(|m| m.id.is_none()).count();
            messages.iter().filter(|m| m.id.is_some()).collect()
        }
        Selection::Ids(ids) => {
            let present: HashSet<MessageId> = messages.iter().filter_map(|m| m.id).collect();
            report.not_found = ids
                .iter()
                .filter(|id| !present.contains(id))
                .copied()
                .collect();
            let wanted: HashSet<&MessageId> = ids.iter().collect();
            messages
                .iter()
                .filter(|m| m.id.as_ref().is_some_and(|id| wanted.contains(id)))
                .collect()
        }
    };
    let mut seen = HashSet::new();
    chosen
        .into_iter()
        .filter(|m| m.id.is_some_and(|id| seen.insert(id)))
        .collect()
}

/// Header of a redrive marker on a log-based DLQ: the id whose earlier copies it hides.
pub const REDRIVEN_HEADER: &str = "zerolost-dlq-redriven";
/// Header of a redrive marker: how many copies of the id it hides.
pub const HIDES_HEADER: &str = "zerolost-dlq-hides";

/// Reads a whole topic (a log) back, for [`LogDeadLetters`].
#[async_trait]
pub trait LogReader: Send + Sync {
    /// Every record of `topic` now, left in place.
    async fn read_all(&self, topic: &str) -> Result<Vec<Incoming>, Error>;
}

/// A dead-letter queue on a log (a Kafka or RocketMQ topic), where records cannot be
/// deleted: `remove` appends a **redrive marker** (a short text payload, headers
/// [`REDRIVEN_HEADER`] = the id and [`HIDES_HEADER`] = how many copies it hides), published
/// with confirms, and `list` leaves out what markers hide. A copy dead-lettered again
/// after the redrive is counted past the marker and listed again. Readers of the DLQ topic
/// other than zerolost should skip records with the marker header.
pub struct LogDeadLetters {
    reader: Arc<dyn LogReader>,
    publisher: Arc<dyn Publisher>,
    naming: fn(&str) -> String,
}

impl LogDeadLetters {
    /// The DLQ topic of a destination `d` is `naming(d)`; markers go through `publisher`.
    pub fn new(
        reader: impl LogReader + 'static,
        publisher: Arc<dyn Publisher>,
        naming: fn(&str) -> String,
    ) -> Self {
        Self {
            reader: Arc::new(reader),
            publisher,
            naming,
        }
    }

    /// The records still dead, in log order: every record without an id, and for each id
    /// with more copies than its markers hide, its latest copy.
    async fn live(&self, destination: &str) -> Result<Vec<Incoming>, Error> {
        let records = self.reader.read_all(&(self.naming)(destination)).await?;
        let tally = tally(&records);
        let mut latest: HashMap<MessageId, usize> = HashMap::new();
        let mut keep = vec![false; records.len()];
        for (index, record) in records.iter().enumerate() {
            match Record::of(record) {
                Record::Marker { .. } => {}
                Record::Copy(None) => keep[index] = true,
                Record::Copy(Some(id)) => {
                    if tally
                        .get(&id)
                        .is_some_and(|(copies, hidden)| copies > hidden)
                    {
                        latest.insert(id, index);
                    }
                }
            }
        }
        for index in latest.into_values() {
            keep[index] = true;
        }
        Ok(records
            .into_iter()
            .zip(keep)
            .filter_map(|(record, keep)| keep.then_some(record))
            .collect())
    }
}

/// What one record of a log-based DLQ is.
enum Record {
    /// A dead letter (`None`: it carries no id).
    Copy(Option<MessageId>),
    /// A redrive marker hiding `hides` earlier copies of `id`.
    Marker { id: MessageId, hides: usize },
}

impl Record {
    fn of(record: &Incoming) -> Self {
        let header = |name: &str| record.headers.get(name);
        match header(REDRIVEN_HEADER).and_then(|v| v.parse::<MessageId>().ok()) {
            Some(id) => Record::Marker {
                id,
                hides: header(HIDES_HEADER)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            },
            None => Record::Copy(header(MESSAGE_ID_HEADER).and_then(|v| v.parse().ok())),
        }
    }
}

/// Per id: `(copies written, copies hidden by markers)`.
fn tally(records: &[Incoming]) -> HashMap<MessageId, (usize, usize)> {
    let mut tally: HashMap<MessageId, (usize, usize)> = HashMap::new();
    for record in records {
        match Record::of(record) {
            Record::Copy(Some(id)) => tally.entry(id).or_default().0 += 1,
            Record::Marker { id, hides } => tally.entry(id).or_default().1 += hides,
            Record::Copy(None) => {}
        }
    }
    tally
}

#[async_trait]
impl DeadLetterQueue for LogDeadLetters {
    async fn list(&self, destination: &str) -> Result<Vec<DeadLetterMessage>, Error> {
        Ok(self
            .live(destination)
            .await?
            .into_iter()
            .map(|m| DeadLetterMessage::from_incoming(destination, m))
            .collect())
    }

    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        let topic = (self.naming)(destination);
        let records = self.reader.read_all(&topic).await?;
        let wanted: HashSet<&MessageId> = ids.iter().collect();
        let tally = tally(&records);
        let markers: Vec<Envelope> = tally
            .iter()
            .filter(|(id, (copies, hidden))| wanted.contains(id) && copies > hidden)
            .map(|(id, (copies, hidden))| {
                // A body, not an empty one: RocketMQ refuses empty messages.
                Envelope::new(&topic, format!("zerolost redrive marker for {id}"))
                    .with_header(REDRIVEN_HEADER, id.to_string())
                    .with_header(HIDES_HEADER, (copies - hidden).to_string())
            })
            .collect();
        let mut removed = 0;
        for result in self.publisher.publish_batch(&markers).await {
            result?;
            removed += 1;
        }
        Ok(removed)
    }
}

impl From<&ParkedDeadLetter> for DeadLetterMessage {
    /// A parked dead letter as an operator lists and redrives it.
    fn from(parked: &ParkedDeadLetter) -> Self {
        DeadLetterMessage {
            id: Some(parked.envelope.id),
            envelope: parked.envelope.clone(),
            failure: Some(parked.failure.clone()),
            payload_len: parked.envelope.payload.len(),
            parked: Some(parked.refused.clone()),
        }
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::memory::MemoryBroker;

    struct BrokerLog(MemoryBroker);

    #[async_trait]
    impl LogReader for BrokerLog {
        async fn read_all(&self, topic: &str) -> Result<Vec<Incoming>, Error> {
            Ok(self.0.messages(topic))
        }
    }

    #[tokio::test]
    async fn markers_hide_redriven_copies_and_a_new_copy_shows_again() {
        let broker = MemoryBroker::new();
        broker.declare("orders.dlq");
        let publisher: Arc<dyn Publisher> = Arc::new(broker.publisher());
        let dlq = LogDeadLetters::new(
            BrokerLog(broker.clone()),
            publisher.clone(),
            crate::default_dlq_name,
        );
        let a = Envelope::new("orders.dlq", "a");
        let b = Envelope::new("orders.dlq", "b");
        for envelope in [&a, &a, &b] {
            publisher.publish(envelope).await.unwrap();
        }
        let ids = async || -> Vec<MessageId> {
            let mut ids: Vec<MessageId> = dlq
                .list("orders")
                .await
                .unwrap()
                .iter()
                .filter_map(|m| m.id)
                .collect();
            ids.sort();
            ids
        };
        let mut both = vec![a.id, b.id];
        both.sort();
        assert_eq!(ids().await, both, "one entry per id");
        assert_eq!(dlq.remove("orders", &[a.id]).await.unwrap(), 1);
        assert_eq!(ids().await, vec![b.id]);
        assert_eq!(
            dlq.remove("orders", &[a.id]).await.unwrap(),
            0,
            "nothing left to hide"
        );
        publisher.publish(&a).await.unwrap(); // dead-lettered again after the redrive
        assert_eq!(ids().await, both);
        assert_eq!(dlq.remove("orders", &[a.id, b.id]).await.unwrap(), 2);
        assert!(ids().await.is_empty());
    }
}
