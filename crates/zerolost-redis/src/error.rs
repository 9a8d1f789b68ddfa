//! The crate's error type: every error says whether trying again can help.

use redis::RetryMethod;
use zerolost_core::Error as CoreError;

/// What went wrong in the Redis dedupe store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The key prefix is not allowed.
    #[error(
        "invalid key prefix `{0}`: use up to 64 printable ASCII characters without spaces, braces or `*?[]`"
    )]
    InvalidPrefix(String),
    /// A stored value could not be read back.
    #[error("corrupt value at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
    /// Redis refused or failed a command.
    #[error("redis {operation} failed: {source}")]
    Command {
        /// What was being done (`claim`, `complete`, ...).
        operation: &'static str,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
}

impl RedisStoreError {
    /// True when the operation may succeed if tried again (connection refused or dropped,
    /// timeout, server loading, cluster reconfiguring).
    pub fn is_retryable(&self) -> bool {
        match self {
            RedisStoreError::Command { source, .. } => {
                source.is_timeout() || !matches!(source.retry_method(), RetryMethod::NoRetry)
            }
            RedisStoreError::InvalidPrefix(_) | RedisStoreError::Corrupt { .. } => false,
        }
    }

    pub(crate) fn command(operation: &'static str) -> impl Fn(redis::RedisError) -> Self {
        move |source| RedisStoreError::Command { operation, source }
    }
}

impl From<RedisStoreError> for CoreError {
    fn from(error: RedisStoreError) -> Self {
        match error {
            RedisStoreError::InvalidPrefix(_) => CoreError::Config(error.to_string()),
            ref e if e.is_retryable() => CoreError::unavailable("redis", e),
            other => CoreError::backend("redis dedupe store", false, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_loss_is_retryable_and_type_errors_are_not() {
        let io =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let refused = RedisStoreError::command("claim")(io);
        assert!(refused.is_retryable());
        assert!(CoreError::from(refused).is_retryable());
        let typed = redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "bad"));
        assert!(!RedisStoreError::command("claim")(typed).is_retryable());
        assert!(!CoreError::from(RedisStoreError::InvalidPrefix("a b".into())).is_retryable());
    }
}
