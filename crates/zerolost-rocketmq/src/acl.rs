//! RocketMQ access keys: every request of the producer, the consumers and the admin client
//! is signed with the secret key (the client's `AclClientRPCHook`), as a broker with
//! authentication (ACL) requires.

use std::fmt;

use rocketmq_client_rust::{AclClientRPCHook, SessionCredentials};

/// An access key and its secret key; `Debug` shows the access key only.
///
/// ```
/// use zerolost_rocketmq::AclKeys;
/// let keys = AclKeys::new("relay", "s3cret");
/// assert!(!format!("{keys:?}").contains("s3cret"));
/// assert_eq!(keys.access_key(), "relay");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AclKeys {
    access_key: String,
    secret_key: String,
}

impl AclKeys {
    /// The keys a broker's ACL knows (RocketMQ 5's user name and password, or an ACL 1.0
    /// access key and secret key).
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }

    /// The access key.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The client's signing hook for these keys.
    pub(crate) fn hook(&self) -> AclClientRPCHook {
        AclClientRPCHook::new(SessionCredentials::with_keys(
            self.access_key.as_str(),
            self.secret_key.as_str(),
        ))
    }
}

impl fmt::Debug for AclKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclKeys")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .finish()
    }
}
