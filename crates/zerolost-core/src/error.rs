//! Errors. Every error answers [`Error::is_retryable`]: retryable means "the outcome is
//! unknown or transient, try again and let the consumer deduplicate"; permanent means
//! "trying again cannot help": the relay parks the row, the consumer dead-letters.

use std::time::Duration;

use crate::MessageId;
use crate::id::ParseIdError;

/// A boxed error from a handler or a backend client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every zerolost operation: publish, subscribe, store, configuration.
///
/// Backend crates convert their client errors into this enum, choosing the variant
/// (and so the retry class) from the broker's or database's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A broker, database or store could not be reached (retryable).
    #[error("{service} is unavailable: {reason}")]
    Unavailable {
        /// What was unreachable (redacted: no credentials).
        service: String,
        /// Why.
        reason: String,
    },
    /// No answer within the timeout: the operation may or may not have happened (retryable).
    #[error(
        "{operation} timed out after {after:?}; the outcome is unknown, so it is retried and deduplicated downstream"
    )]
    Timeout {
        /// The operation that timed out.
        operation: String,
        /// The timeout.
        after: Duration,
    },
    /// The broker did not confirm durability: nack, lost confirm, not enough in-sync
    /// replicas, flush timeout (retryable).
    #[error("broker did not confirm the message: {reason}")]
    NotConfirmed {
        /// The broker's answer.
        reason: String,
    },
    /// Nothing accepts messages for this destination: no queue bound, unknown topic,
    /// no route (permanent).
    #[error("unroutable: no queue or topic accepts messages for destination `{destination}`")]
    Unroutable {
        /// The destination.
        destination: String,
    },
    /// The broker refused the message for good: too large, not authorised, invalid (permanent).
    #[error("rejected by the broker: {reason}")]
    Rejected {
        /// The broker's reason.
        reason: String,
    },
    /// Bad input from the caller: duplicate id, malformed id or name (permanent).
    #[error("invalid input: {reason}")]
    Invalid {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A lease or claim on this message is no longer held by the caller: it expired and
    /// another worker took it over (permanent for the caller; the other worker finishes).
    #[error(
        "the lease on message {id} is no longer held by this worker (it expired and was taken over)"
    )]
    LeaseLost {
        /// The message.
        id: MessageId,
    },
    /// A setting that would allow message loss; refused unless `allow_unsafe` is called (permanent).
    #[error("unsafe setting `{setting}`: {fix}")]
    UnsafeConfig {
        /// The setting.
        setting: String,
        /// What to change.
        fix: String,
    },
    /// A configuration value that cannot work (permanent).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The component was shut down (permanent).
    #[error("{0} is closed")]
    Closed(String),
    /// Any other backend error, classified by the backend.
    #[error("{context}: {source}")]
    Backend {
        /// What was being done.
        context: String,
        /// Whether trying again can help.
        retryable: bool,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl From<ParseIdError> for Error {
    fn from(e: ParseIdError) -> Self {
        Error::Invalid {
            reason: e.to_string(),
        }
    }
}

impl Error {
    /// Whether trying again can help (and so: reschedule, not park; redeliver, not dead-letter).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Timeout { .. } | Error::NotConfirmed { .. } => true,
            Error::Backend { retryable, .. } => *retryable,
            Error::Unroutable { .. }
            | Error::Rejected { .. }
            | Error::Invalid { .. }
            | Error::LeaseLost { .. }
            | Error::UnsafeConfig { .. }
            | Error::Config(_)
            | Error::Closed(_) => false,
        }
    }

    /// `Unavailable` with a redacted service name.
    pub fn unavailable(service: &str, reason: impl std::fmt::Display) -> Self {
        Error::Unavailable {
            service: redact_url(service),
            reason: redact_text(&reason.to_string()),
        }
    }

    /// `Backend` with its retry class.
    pub fn backend(
        context: impl Into<String>,
        retryable: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            context: context.into(),
            retryable,
            source: source.into(),
        }
    }
}

/// The handler's verdict on a failed message: try again later, or give up at once.
///
/// ```
/// use zerolost_core::HandlerError;
/// let e = HandlerError::permanent("amount is negative");
/// assert!(!e.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// Transient (a downstream service is down): redeliver, dead-letter after `max_attempts`.
    #[error("{0}")]
    Retryable(BoxError),
    /// The message can never succeed (poison): dead-letter at once.
    #[error("{0}")]
    Permanent(BoxError),
    /// The work was cut short by something other than the message: the claim was lost or
    /// the dedupe store failed (a transactional handler's inbox). Redelivered without
    /// counting an attempt, so it never pushes a healthy message toward the DLQ.
    #[error("{0}")]
    Interrupted(BoxError),
}

impl HandlerError {
    /// Work cut short by the claim or the store, not by the message (not counted as an attempt).
    pub fn interrupted(error: impl Into<BoxError>) -> Self {
        HandlerError::Interrupted(error.into())
    }

    /// Whether this failure was an interruption (claim lost, store failed), not an attempt.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, HandlerError::Interrupted(_))
    }

    /// A transient failure.
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        HandlerError::Retryable(error.into())
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        HandlerError::Permanent(error.into())
    }

    /// Whether the message should be redelivered.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HandlerError::Retryable(_) | HandlerError::Interrupted(_)
        )
    }
}

impl From<Error> for HandlerError {
    fn from(error: Error) -> Self {
        if error.is_retryable() {
            HandlerError::Retryable(Box::new(error))
        } else {
            HandlerError::Permanent(Box::new(error))
        }
    }
}

/// Removes the password (and user) from every `scheme://user:pass@host` URL in a text, and
/// the value of every secret query parameter (`password=`, `sslpassword=`, `secret=`,
/// `token=`, …), so connection strings can appear in logs and errors.
///
/// ```
/// use zerolost_core::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://***@db:5432/x");
/// assert_eq!(
///     redact_url("mysql://db/x?user=app&password=s3cret&ssl-mode=VERIFY_IDENTITY"),
///     "mysql://db/x?user=app&password=***&ssl-mode=VERIFY_IDENTITY"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    redact_query(&redact_text(url))
}

/// Query parameters whose values are secrets (matched case-insensitively, by suffix, so
/// `sslpassword`, `auth_token` and `client_secret` count).
const SECRET_PARAMS: [&str; 4] = ["password", "passwd", "secret", "token"];

/// Replaces the value of each secret parameter that follows `?`, `&` or `;`.
fn redact_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        let name_start = before
            .rfind(|c: char| matches!(c, '?' | '&' | ';') || c.is_whitespace())
            .map_or(0, |i| i + 1);
        let name = before[name_start..].to_ascii_lowercase();
        let secret = name_start > 0
            && before[..name_start].ends_with(['?', '&', ';'])
            && SECRET_PARAMS.iter().any(|p| name.ends_with(p));
        out.push_str(before);
        out.push('=');
        let value = &after[1..];
        let end = value
            .find(|c: char| matches!(c, '&' | ';' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(value.len());
        if secret && end > 0 {
            out.push_str("***");
        } else {
            out.push_str(&value[..end]);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(Error::unavailable("redis://x", "down").is_retryable());
        assert!(
            Error::NotConfirmed {
                reason: "nack".into()
            }
            .is_retryable()
        );
        assert!(
            !Error::Unroutable {
                destination: "x".into()
            }
            .is_retryable()
        );
        assert!(
            !Error::Rejected {
                reason: "too large".into()
            }
            .is_retryable()
        );
        assert!(Error::backend("x", true, "io").is_retryable());
        assert!(!Error::backend("x", false, "auth").is_retryable());
    }

    #[test]
    fn secrets_are_redacted() {
        let e = Error::unavailable(
            "amqp://guest:hunter2@localhost:5672/%2f",
            "connect to amqp://guest:hunter2@localhost:5672 refused",
        );
        let text = e.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("guest"), "{text}");
        assert!(text.contains("localhost:5672"));
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn secret_query_parameters_are_redacted() {
        let url = "postgres://db/app?sslmode=verify-full&sslpassword=k3y&password=hunter2 then \
                   mysql://db/x;Token=t0k&user=app";
        let text = redact_url(url);
        for secret in ["k3y", "hunter2", "t0k"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("sslmode=verify-full"), "{text}");
        assert!(text.contains("user=app"), "{text}");
        assert!(text.contains("sslpassword=***&password=***"), "{text}");
        // Not a query parameter: left alone.
        assert_eq!(redact_url("password=x"), "password=x");
    }

    #[test]
    fn store_errors_become_handler_errors_with_their_class() {
        assert!(HandlerError::from(Error::unavailable("db", "x")).is_retryable());
        assert!(!HandlerError::from(Error::Invalid { reason: "x".into() }).is_retryable());
    }
}
