//! Finding the message id on a delivery, including from foreign producers.

use crate::{Incoming, MESSAGE_ID_HEADER, MessageId};

/// What to do with a delivery that carries no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingIdPolicy {
    /// Dead-letter it with reason "missing message id" (default): it cannot be deduplicated.
    #[default]
    DeadLetter,
    /// Derive the id from destination + payload (identical payloads count as one message).
    DeriveFromContent,
}

/// Where an id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// The zerolost (or configured) header.
    Header,
    /// A field of the JSON payload (a business id).
    PayloadField,
    /// The record key (Kafka) or routing key.
    Key,
    /// The broker's native id field (Kafka: the record's position).
    Native,
    /// Derived from the content.
    Content,
}

/// Finds a delivery's id, trying in order: the id header (`zerolost-id`, or the one named
/// by [`with_header`](IdExtractor::with_header)); a JSON payload field, when named
/// ([`with_payload_field`](IdExtractor::with_payload_field), e.g. the source article's
/// business id); the message key, when chosen ([`with_key`](IdExtractor::with_key)); the
/// broker's native id (on by default: AMQP `message_id`, RocketMQ keys; on Kafka the
/// record's *position*, which dedupes redeliveries of a record but not a producer's
/// re-send); else the [`MissingIdPolicy`]. Non-UUID ids map to stable UUID v5s.
///
/// Choose a source that names one message, and every copy of it: a key shared by many
/// messages (a customer id as the Kafka partition key) would suppress all but the first.
///
/// ```
/// use zerolost_core::{Envelope, IdExtractor, IdSource, Incoming};
/// let env = Envelope::new("orders", "x");
/// let (id, _) = IdExtractor::default().extract(&Incoming::from_envelope(&env)).unwrap();
/// assert_eq!(id, env.id);
///
/// // A foreign producer whose JSON carries the business id.
/// let mut foreign = Incoming::from_envelope(&Envelope::new("orders", r#"{"order_id":"A-42"}"#));
/// foreign.headers.clear();
/// let by_order = IdExtractor::default().with_payload_field("order_id");
/// assert_eq!(by_order.extract(&foreign).unwrap().1, IdSource::PayloadField);
/// ```
#[derive(Debug, Clone)]
pub struct IdExtractor {
    header: String,
    payload_field: Option<String>,
    use_key: bool,
    use_native: bool,
    missing: MissingIdPolicy,
}

impl Default for IdExtractor {
    fn default() -> Self {
        Self {
            header: MESSAGE_ID_HEADER.to_owned(),
            payload_field: None,
            use_key: false,
            use_native: true,
            missing: MissingIdPolicy::DeadLetter,
        }
    }
}

impl IdExtractor {
    /// Reads the id from another header (a foreign producer's convention).
    pub fn with_header(mut self, header: impl Into<String>) -> Self {
        self.header = header.into();
        self
    }

    /// Reads the id from a top-level field of a JSON payload (a string or a number), after
    /// the header: a foreign producer's business id.
    pub fn with_payload_field(mut self, field: impl Into<String>) -> Self {
        self.payload_field = Some(field.into());
        self
    }

    /// Uses the message key (Kafka record key, AMQP routing key) as the id, after the header
    /// and payload field: only where every message has a key of its own.
    pub fn with_key(mut self, use_key: bool) -> Self {
        self.use_key = use_key;
        self
    }

    /// Whether to fall back to the broker's native id field (default true; on Kafka the
    /// record's position).
    pub fn with_native_fallback(mut self, use_native: bool) -> Self {
        self.use_native = use_native;
        self
    }

    /// What to do when no id is found.
    pub fn with_missing_policy(mut self, policy: MissingIdPolicy) -> Self {
        self.missing = policy;
        self
    }

    /// The id and where it came from; `None` means: dead-letter as "missing message id".
    pub fn extract(&self, message: &Incoming) -> Option<(MessageId, IdSource)> {
        let non_empty = |s: &&String| !s.trim().is_empty();
        if let Some(value) = message.headers.get(&self.header).filter(non_empty) {
            return Some((MessageId::from_native(value), IdSource::Header));
        }
        if let Some(value) = self
            .payload_field
            .as_deref()
            .and_then(|field| payload_field(&message.payload, field))
        {
            return Some((MessageId::from_native(&value), IdSource::PayloadField));
        }
        if self.use_key
            && let Some(key) = message.key.as_ref().filter(non_empty)
        {
            return Some((MessageId::from_native(key), IdSource::Key));
        }
        if self.use_native
            && let Some(native) = message.native_id.as_ref().filter(non_empty)
        {
            return Some((MessageId::from_native(native), IdSource::Native));
        }
        match self.missing {
            MissingIdPolicy::DeadLetter => None,
            MissingIdPolicy::DeriveFromContent => Some((
                MessageId::from_content(&message.destination, &message.payload),
                IdSource::Content,
            )),
        }
    }
}

/// A top-level string or number field of a JSON object payload.
fn payload_field(payload: &[u8], field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    match value.get(field)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::BTreeMap;

    fn foreign(headers: &[(&str, &str)], native: Option<&str>) -> Incoming {
        Incoming {
            destination: "d".into(),
            key: None,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            native_id: native.map(str::to_owned),
            payload: Bytes::from_static(b"p"),
        }
    }

    #[test]
    fn header_wins_then_native_then_policy() {
        let x = IdExtractor::default();
        let (id, src) = x
            .extract(&foreign(&[("zerolost-id", "a")], Some("b")))
            .unwrap();
        assert_eq!((id, src), (MessageId::from_native("a"), IdSource::Header));
        let (id, src) = x.extract(&foreign(&[], Some("b"))).unwrap();
        assert_eq!((id, src), (MessageId::from_native("b"), IdSource::Native));
        assert!(x.extract(&foreign(&[], None)).is_none());
        assert!(
            x.extract(&foreign(&[("zerolost-id", " ")], Some("")))
                .is_none()
        );
    }

    #[test]
    fn payload_field_and_key_are_chosen_explicitly_in_order() {
        let mut m = foreign(&[], Some("topic/0/7"));
        m.key = Some("customer-7".into());
        m.payload = Bytes::from_static(br#"{"order_id": 42}"#);
        let default = IdExtractor::default();
        assert_eq!(
            default.extract(&m).unwrap().1,
            IdSource::Native,
            "key and payload ignored by default"
        );
        let keyed = IdExtractor::default().with_key(true);
        assert_eq!(
            keyed.extract(&m).unwrap(),
            (MessageId::from_native("customer-7"), IdSource::Key)
        );
        let by_field = keyed.clone().with_payload_field("order_id");
        assert_eq!(
            by_field.extract(&m).unwrap(),
            (MessageId::from_native("42"), IdSource::PayloadField)
        );
        m.payload = Bytes::from_static(b"not json");
        assert_eq!(
            by_field.extract(&m).unwrap().1,
            IdSource::Key,
            "falls through"
        );
        let header = foreign(&[("zerolost-id", "h")], None);
        assert_eq!(by_field.extract(&header).unwrap().1, IdSource::Header);
    }

    #[test]
    fn configurable_header_and_content_policy() {
        let x = IdExtractor::default()
            .with_header("x-order-id")
            .with_native_fallback(false)
            .with_missing_policy(MissingIdPolicy::DeriveFromContent);
        let (_, src) = x.extract(&foreign(&[("x-order-id", "7")], None)).unwrap();
        assert_eq!(src, IdSource::Header);
        let (a, src) = x.extract(&foreign(&[], Some("ignored"))).unwrap();
        assert_eq!(src, IdSource::Content);
        let (b, _) = x.extract(&foreign(&[], None)).unwrap();
        assert_eq!(a, b);
    }
}
