//! The dead-letter queue: where a message goes when it cannot be processed, with the
//! metadata an operator needs to fix and redrive it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Envelope, Error, Publisher, Receipt};

/// Header names of the failure metadata on a dead-lettered message.
pub mod dlq_headers {
    /// The last error's text.
    pub const ERROR: &str = "zerolost-dlq-error";
    /// Why it was dead-lettered: `permanent`, `exhausted`, `missing_id`.
    pub const REASON: &str = "zerolost-dlq-reason";
    /// How many times processing failed.
    pub const ATTEMPTS: &str = "zerolost-dlq-attempts";
    /// The destination it was consumed from.
    pub const ORIGINAL_DESTINATION: &str = "zerolost-dlq-original-destination";
    /// RFC 3339 time of the first failure.
    pub const FIRST_FAILURE_AT: &str = "zerolost-dlq-first-failure-at";
    /// RFC 3339 time of the last failure.
    pub const LAST_FAILURE_AT: &str = "zerolost-dlq-last-failure-at";
}

/// The longest error text a dead letter carries (bytes); a longer one is cut, so the
/// failure metadata cannot push a message over the DLQ's size limit on its own.
pub const MAX_ERROR_TEXT: usize = 1024;

/// `text` cut to [`MAX_ERROR_TEXT`] bytes at a character boundary, saying how much was cut.
pub(crate) fn bounded(text: &str) -> String {
    if text.len() <= MAX_ERROR_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes cut)", &text[..end], text.len() - end)
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The handler said the message can never succeed.
    Permanent,
    /// The handler failed `max_attempts` times.
    Exhausted,
    /// The message carried no id to deduplicate on.
    MissingId,
}

impl DeadLetterReason {
    fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Permanent => "permanent",
            DeadLetterReason::Exhausted => "exhausted",
            DeadLetterReason::MissingId => "missing_id",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "permanent" => Some(DeadLetterReason::Permanent),
            "exhausted" => Some(DeadLetterReason::Exhausted),
            "missing_id" => Some(DeadLetterReason::MissingId),
            _ => None,
        }
    }
}

/// The failure metadata that travels with a dead-lettered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Why.
    pub reason: DeadLetterReason,
    /// The last error's text.
    pub error: String,
    /// How many times processing failed.
    pub attempts: u32,
    /// The destination the message was consumed from.
    pub original_destination: String,
    /// First failure.
    pub first_failure_at: DateTime<Utc>,
    /// Last failure.
    pub last_failure_at: DateTime<Utc>,
}

impl Failure {
    /// The metadata as message headers (see [`dlq_headers`]); the error text is cut to
    /// [`MAX_ERROR_TEXT`] bytes.
    pub fn to_headers(&self) -> BTreeMap<String, String> {
        let mut h = BTreeMap::new();
        h.insert(dlq_headers::REASON.into(), self.reason.as_str().into());
        h.insert(dlq_headers::ERROR.into(), bounded(&self.error));
        h.insert(dlq_headers::ATTEMPTS.into(), self.attempts.to_string());
        h.insert(
            dlq_headers::ORIGINAL_DESTINATION.into(),
            self.original_destination.clone(),
        );
        h.insert(
            dlq_headers::FIRST_FAILURE_AT.into(),
            self.first_failure_at.to_rfc3339(),
        );
        h.insert(
            dlq_headers::LAST_FAILURE_AT.into(),
            self.last_failure_at.to_rfc3339(),
        );
        h
    }

    /// Reads the metadata back from a dead-lettered message's headers.
    pub fn from_headers(headers: &BTreeMap<String, String>) -> Option<Self> {
        let time = |name: &str| {
            DateTime::parse_from_rfc3339(headers.get(name)?)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        Some(Self {
            reason: DeadLetterReason::parse(headers.get(dlq_headers::REASON)?)?,
            error: headers.get(dlq_headers::ERROR)?.clone(),
            attempts: headers.get(dlq_headers::ATTEMPTS)?.parse().ok()?,
            original_destination: headers.get(dlq_headers::ORIGINAL_DESTINATION)?.clone(),
            first_failure_at: time(dlq_headers::FIRST_FAILURE_AT)?,
            last_failure_at: time(dlq_headers::LAST_FAILURE_AT)?,
        })
    }
}

/// Takes messages that cannot be processed. `dead_letter` resolves `Ok` only after the
/// same confirm rule as [`Publisher::publish`]; the consumer acks the original only then.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Stores `envelope` in the dead-letter queue with its failure metadata.
    async fn dead_letter(&self, envelope: &Envelope, failure: &Failure) -> Result<Receipt, Error>;
}

#[async_trait]
impl<T: DeadLetterSink + ?Sized> DeadLetterSink for Arc<T> {
    async fn dead_letter(&self, envelope: &Envelope, failure: &Failure) -> Result<Receipt, Error> {
        (**self).dead_letter(envelope, failure).await
    }
}

/// The default DLQ name for a destination: `<destination>.dlq`.
pub fn default_dlq_name(destination: &str) -> String {
    format!("{destination}.dlq")
}

/// A [`DeadLetterSink`] that publishes to a DLQ destination through any confirmed
/// [`Publisher`]: same id, same payload, original headers plus the failure metadata.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use zerolost_core::{DeadLetterPublisher, memory::MemoryBroker};
/// let broker = MemoryBroker::new();
/// let dlq = DeadLetterPublisher::new(broker.publisher()); // orders -> orders.dlq
/// # }
/// ```
pub struct DeadLetterPublisher<P> {
    publisher: P,
    naming: fn(&str) -> String,
}

impl<P: Publisher> DeadLetterPublisher<P> {
    /// Publishes dead letters of `d` to `<d>.dlq`.
    pub fn new(publisher: P) -> Self {
        Self {
            publisher,
            naming: default_dlq_name,
        }
    }

    /// Uses another DLQ naming rule.
    pub fn with_naming(mut self, naming: fn(&str) -> String) -> Self {
        self.naming = naming;
        self
    }
}

#[async_trait]
impl<P: Publisher> DeadLetterSink for DeadLetterPublisher<P> {
    async fn dead_letter(&self, envelope: &Envelope, failure: &Failure) -> Result<Receipt, Error> {
        let mut dead = envelope.clone();
        dead.destination = (self.naming)(&failure.original_destination);
        dead.headers.extend(failure.to_headers());
        self.publisher.publish(&dead).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_error_texts_are_cut_at_a_character_boundary() {
        let long = "é".repeat(2000);
        let cut = bounded(&long);
        assert!(cut.len() < MAX_ERROR_TEXT + 40, "{}", cut.len());
        assert!(cut.ends_with("more bytes cut)"));
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn failure_round_trips_through_headers() {
        let now = Utc::now();
        let f = Failure {
            reason: DeadLetterReason::Exhausted,
            error: "db down".into(),
            attempts: 3,
            original_destination: "orders".into(),
            first_failure_at: now,
            last_failure_at: now,
        };
        let back = Failure::from_headers(&f.to_headers()).unwrap();
        assert_eq!(back.attempts, 3);
        assert_eq!(back.reason, DeadLetterReason::Exhausted);
        assert_eq!(back.original_destination, "orders");
        assert_eq!(
            back.first_failure_at.timestamp_micros(),
            now.timestamp_micros()
        );
    }
}
