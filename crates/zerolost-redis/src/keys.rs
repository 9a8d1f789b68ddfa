//! Key shapes. The article's `MSG:<id>` and `LOCK:<id>` by default, with the id in a
//! `{hash tag}` so all keys of one id live in one Redis Cluster slot.

use zerolost_core::MessageId;

use crate::RedisStoreError;

/// Builds the keys of one store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Result<Self, RedisStoreError> {
        let ok = prefix.len() <= 64
            && prefix
                .chars()
                .all(|c| c.is_ascii_graphic() && !"{}*?[]\\".contains(c));
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(RedisStoreError::InvalidPrefix(
                prefix.chars().take(80).collect(),
            ))
        }
    }

    /// The processed mark: `MSG:{id}`.
    pub(crate) fn mark(&self, id: MessageId) -> String {
        format!("{}MSG:{{{id}}}", self.prefix)
    }

    /// The claim: `LOCK:{id}`.
    pub(crate) fn lock(&self, id: MessageId) -> String {
        format!("{}LOCK:{{{id}}}", self.prefix)
    }

    /// The failure counter: `FAIL:{id}`.
    pub(crate) fn failures(&self, id: MessageId) -> String {
        format!("{}FAIL:{{{id}}}", self.prefix)
    }

    /// The fencing counter: `FENCE:{id}`.
    pub(crate) fn fence(&self, id: MessageId) -> String {
        format!("{}FENCE:{{{id}}}", self.prefix)
    }

    /// The parked dead letters of `destination` (id → metadata) and their payloads (id →
    /// bytes), sharing the destination as hash tag.
    pub(crate) fn parked(&self, destination: &str) -> (String, String) {
        (
            format!("{}zerolost:parked:{{{destination}}}", self.prefix),
            format!("{}zerolost:parked-payload:{{{destination}}}", self.prefix),
        )
    }

    /// The count of suppressed duplicates.
    pub(crate) fn duplicates(&self) -> String {
        format!("{}zerolost:duplicates", self.prefix)
    }

    /// The SCAN pattern of every processed mark.
    pub(crate) fn mark_pattern(&self) -> String {
        format!("{}MSG:{{*}}", self.prefix)
    }

    /// The id in a processed-mark key.
    pub(crate) fn id_of_mark(&self, key: &str) -> Option<MessageId> {
        let inner = key
            .strip_prefix(&self.prefix)?
            .strip_prefix("MSG:{")?
            .strip_suffix('}')?;
        inner.parse::<uuid::Uuid>().ok().map(MessageId::from_uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_article_with_hash_tags() {
        let keys = Keys::new("").expect("empty prefix");
        let id = MessageId::new();
        assert_eq!(keys.mark(id), format!("MSG:{{{id}}}"));
        assert_eq!(keys.lock(id), format!("LOCK:{{{id}}}"));
        assert_eq!(keys.id_of_mark(&keys.mark(id)), Some(id));
        let scoped = Keys::new("billing:").expect("prefix");
        assert_eq!(scoped.id_of_mark(&scoped.mark(id)), Some(id));
        assert_eq!(scoped.id_of_mark(&keys.mark(id)), None);
    }

    #[test]
    fn prefixes_that_break_hash_tags_or_patterns_are_refused() {
        for bad in ["a b", "{x}", "a*", "a?", "[a]", "é"] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
    }
}
