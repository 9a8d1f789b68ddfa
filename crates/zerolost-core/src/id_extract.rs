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
    /// The broker's native id field.
    Native,
    /// Derived from the content.
    Content,
}

/// Finds a delivery's id: the id header first, else the broker's native id field, else
/// the [`MissingIdPolicy`]. Non-UUID ids (foreign producers) map to stable UUID v5s.
///
/// ```
/// use zerolost_core::{Envelope, IdExtractor, Incoming};
/// let env = Envelope::new("orders", "x");
/// let (id, _) = IdExtractor::default().extract(&Incoming::from_envelope(&env)).unwrap();
/// assert_eq!(id, env.id);
/// ```
#[derive(Debug, Clone)]
pub struct IdExtractor {
    header: String,
    use_native: bool,
    missing: MissingIdPolicy,
}

impl Default for IdExtractor {
    fn default() -> Self {
        Self {
            header: MESSAGE_ID_HEADER.to_owned(),
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

    /// Whether to fall back to the broker's native id field (default true).
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
