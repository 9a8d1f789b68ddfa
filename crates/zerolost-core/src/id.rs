//! Message identity: one UUID v7 per message, carried end to end.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for ids derived from a foreign producer's native id or content (UUID v5).
const FOREIGN_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_3a52_8d0b_4c3e_9f1a_2b7c_5d4e_8a10);

/// The identity of one message: a UUID v7 (time-ordered) minted when the message is created.
///
/// It travels in the broker's native id field *and* in the [`MESSAGE_ID_HEADER`](crate::MESSAGE_ID_HEADER)
/// header, so any consumer can deduplicate on it.
///
/// ```
/// use zerolost_core::MessageId;
/// let id = MessageId::new();
/// assert_eq!(id, id.to_string().parse().unwrap());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// Mints a new time-ordered id (UUID v7).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The id as a UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// When the id was minted, for ids that carry a time (UUID v7, as [`MessageId::new`]
    /// makes them); `None` for ids derived from foreign or content ids.
    ///
    /// ```
    /// use zerolost_core::MessageId;
    /// let minted = MessageId::new().minted_at().unwrap();
    /// assert!(minted.elapsed().unwrap().as_secs() < 5);
    /// assert!(MessageId::from_native("order-7").minted_at().is_none());
    /// ```
    pub fn minted_at(&self) -> Option<std::time::SystemTime> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
    }

    /// Maps a foreign producer's native id (any string) to a stable `MessageId`:
    /// a UUID is taken as is, anything else is hashed into a UUID v5, so the same
    /// native id always yields the same `MessageId`.
    pub fn from_native(native: &str) -> Self {
        match Uuid::parse_str(native.trim()) {
            Ok(uuid) => Self(uuid),
            Err(_) => Self(Uuid::new_v5(&FOREIGN_NAMESPACE, native.as_bytes())),
        }
    }

    /// Derives a stable id from a message's destination and payload (UUID v5), for
    /// messages that carry no id at all and whose policy is to deduplicate by content.
    pub fn from_content(destination: &str, payload: &[u8]) -> Self {
        let mut name = Vec::with_capacity(destination.len() + 1 + payload.len());
        name.extend_from_slice(destination.as_bytes());
        name.push(0);
        name.extend_from_slice(payload);
        Self(Uuid::new_v5(&FOREIGN_NAMESPACE, &name))
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0.hyphenated())
    }
}

/// Text that is not a message id; becomes [`Error::Invalid`](crate::Error::Invalid) with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError(String);

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseIdError {}

impl FromStr for MessageId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|e| ParseIdError(format!("`{s}` is not a message id (UUID): {e}")))
    }
}

impl From<Uuid> for MessageId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_and_ordered() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn native_ids_map_stably() {
        assert_eq!(
            MessageId::from_native("order-42"),
            MessageId::from_native("order-42")
        );
        assert_ne!(
            MessageId::from_native("order-42"),
            MessageId::from_native("order-43")
        );
        let id = MessageId::new();
        assert_eq!(MessageId::from_native(&id.to_string()), id);
    }

    #[test]
    fn content_ids_separate_destination_and_payload() {
        assert_ne!(
            MessageId::from_content("ab", b"c"),
            MessageId::from_content("a", b"bc")
        );
    }

    #[test]
    fn parse_rejects_garbage_with_a_clear_error() {
        let err = "nope".parse::<MessageId>().unwrap_err();
        assert!(err.to_string().contains("not a message id"));
        let err = crate::Error::from(err);
        assert!(err.to_string().contains("not a message id"));
        assert!(!err.is_retryable());
    }
}
