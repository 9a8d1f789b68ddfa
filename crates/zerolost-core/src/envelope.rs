//! The message as zerolost carries it, and as a broker hands it back.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::MessageId;

/// Header that carries the message id on every broker, beside the broker's native id field.
pub const MESSAGE_ID_HEADER: &str = "zerolost-id";

/// One message: id, destination (topic, exchange or queue), optional partition/routing key,
/// string headers and an opaque payload.
///
/// `Debug` prints the payload's length, never its bytes: payloads are not logged.
///
/// ```
/// use zerolost_core::Envelope;
/// let env = Envelope::new("orders", "order 42 created").with_key("42").with_header("tenant", "acme");
/// assert_eq!(env.wire_headers()["zerolost-id"], env.id.to_string());
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id; the deduplication key downstream.
    pub id: MessageId,
    /// Topic, exchange or queue the message goes to.
    pub destination: String,
    /// Partition key (Kafka), routing key (RabbitMQ) or sharding key (RocketMQ).
    pub key: Option<String>,
    /// Application headers (the id header is added on the wire, see [`Envelope::wire_headers`]).
    pub headers: BTreeMap<String, String>,
    /// The message body.
    pub payload: Bytes,
    /// When the message was created.
    pub created_at: DateTime<Utc>,
}

impl Envelope {
    /// A new message with a fresh id.
    pub fn new(destination: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            id: MessageId::new(),
            destination: destination.into(),
            key: None,
            headers: BTreeMap::new(),
            payload: payload.into(),
            created_at: Utc::now(),
        }
    }

    /// Sets the id (e.g. a business id mapped with [`MessageId::from_native`]).
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.id = id;
        self
    }

    /// Sets the partition/routing key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds one header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the W3C `traceparent` header, so the consumer's span joins the producer's trace
    /// (see [`trace`](crate::trace)).
    pub fn with_trace_parent(self, parent: &crate::trace::TraceParent) -> Self {
        self.with_header(crate::trace::TRACEPARENT_HEADER, parent.to_string())
    }

    /// The `traceparent` this message carries, if a valid one.
    pub fn trace_parent(&self) -> Option<crate::trace::TraceParent> {
        self.headers
            .get(crate::trace::TRACEPARENT_HEADER)
            .and_then(|v| crate::trace::TraceParent::parse(v))
    }

    /// The headers as they go on the wire: the application's plus [`MESSAGE_ID_HEADER`].
    pub fn wire_headers(&self) -> BTreeMap<String, String> {
        let mut headers = self.headers.clone();
        headers.insert(MESSAGE_ID_HEADER.to_owned(), self.id.to_string());
        headers
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("id", &self.id)
            .field("destination", &self.destination)
            .field("key", &self.key)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("payload_len", &self.payload.len())
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A message as a broker delivered it: possibly from a foreign producer, so its id is
/// not known yet (see [`IdExtractor`](crate::IdExtractor)).
#[derive(Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Topic or queue it was received from.
    pub destination: String,
    /// Partition/routing key, if any.
    pub key: Option<String>,
    /// All headers/properties as strings, including [`MESSAGE_ID_HEADER`] when present.
    pub headers: BTreeMap<String, String>,
    /// The broker's native id of the message: AMQP `message_id`, RocketMQ's keys (else its
    /// msgId). Kafka has no message id: there it is the record's position
    /// `topic/partition/offset`, the same for every redelivery of that record but new for a
    /// producer's re-send, so it cannot deduplicate re-sends (see [`IdExtractor`](crate::IdExtractor)).
    pub native_id: Option<String>,
    /// The message body.
    pub payload: Bytes,
}

impl Incoming {
    /// The message as a broker would deliver an [`Envelope`] zerolost published.
    pub fn from_envelope(envelope: &Envelope) -> Self {
        Self {
            destination: envelope.destination.clone(),
            key: envelope.key.clone(),
            headers: envelope.wire_headers(),
            native_id: Some(envelope.id.to_string()),
            payload: envelope.payload.clone(),
        }
    }

    /// Turns the delivery into an [`Envelope`] under the given id (the id header is dropped
    /// from the application headers; `created_at` is the time of receipt).
    pub fn into_envelope(self, id: MessageId) -> Envelope {
        let mut headers = self.headers;
        headers.remove(MESSAGE_ID_HEADER);
        Envelope {
            id,
            destination: self.destination,
            key: self.key,
            headers,
            payload: self.payload,
            created_at: Utc::now(),
        }
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("destination", &self.destination)
            .field("key", &self.key)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("native_id", &self.native_id)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_payload() {
        let env = Envelope::new("t", "secret-card-number");
        let text = format!("{env:?} {:?}", Incoming::from_envelope(&env));
        assert!(!text.contains("secret-card-number"));
        assert!(text.contains("payload_len: 18"));
    }

    #[test]
    fn round_trip_through_incoming_keeps_everything() {
        let env = Envelope::new("t", "x").with_key("k").with_header("h", "v");
        let back = Incoming::from_envelope(&env).into_envelope(env.id);
        assert_eq!(back.id, env.id);
        assert_eq!(back.headers, env.headers);
        assert_eq!(back.key, env.key);
        assert_eq!(back.payload, env.payload);
    }

    #[test]
    fn envelope_is_serde() {
        let env = Envelope::new("t", "x").with_header("h", "v");
        let json = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, env);
    }
}
