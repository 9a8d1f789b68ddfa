//! The crate's error type: every error says whether trying again can help.

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use zerolost_core::Error as CoreError;

/// What went wrong in the RabbitMQ backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RabbitError {
    /// A setting that would allow message loss, refused.
    #[error("unsafe RabbitMQ setting `{setting}`: {fix}")]
    Unsafe {
        /// The setting.
        setting: String,
        /// What to change.
        fix: String,
    },
    /// A name or value the broker cannot take (too long, empty where a name is needed).
    #[error("invalid RabbitMQ input: {0}")]
    Invalid(String),
    /// No connection within the timeout, or the connection failed (the URL is redacted).
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect {
        /// The broker's address, without credentials.
        url: String,
        /// Why.
        reason: String,
        /// Whether trying again can help (refused credentials or vhost: no).
        retryable: bool,
    },
    /// An AMQP operation failed.
    #[error("RabbitMQ {operation} failed: {source}")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker returned the message (`basic.return`): no queue is bound for it, or its
    /// exchange does not exist.
    #[error("unroutable: no queue is bound for exchange `{exchange}` with this routing key")]
    Unroutable {
        /// The exchange.
        exchange: String,
    },
    /// The broker nacked the message: it did not store it (e.g. a full quorum queue with
    /// `reject-publish`).
    #[error("the broker nacked the message on `{exchange}`")]
    Nacked {
        /// The exchange.
        exchange: String,
    },
    /// No confirm arrived in time; the message may or may not be stored.
    #[error("no publisher confirm within {0:?}; the message may or may not be stored")]
    ConfirmTimeout(std::time::Duration),
    /// The management HTTP API failed or answered unexpectedly.
    #[error("RabbitMQ management API: {reason}")]
    Management {
        /// What failed (the URL without credentials).
        reason: String,
        /// False when the API refused the credentials (401/403): trying again cannot help.
        retryable: bool,
    },
}

/// Whether a broker's or client's error can go away by itself.
pub(crate) fn lapin_is_retryable(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => !matches!(
                soft,
                AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::NOTFOUND
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::CONTENTTOOLARGE
            ),
            AMQPErrorKind::Hard(hard) => !matches!(
                hard,
                AMQPHardError::FRAMEERROR
                    | AMQPHardError::SYNTAXERROR
                    | AMQPHardError::COMMANDINVALID
                    | AMQPHardError::NOTALLOWED
                    | AMQPHardError::NOTIMPLEMENTED
                    | AMQPHardError::INVALIDPATH
            ),
        },
        lapin::ErrorKind::InvalidProtocolVersion(_)
        | lapin::ErrorKind::SerialisationError(_)
        | lapin::ErrorKind::AuthProviderError(_) => false,
        // IO errors, closed channels and connections, missing heartbeats, runtime
        // shutdown: the broker may be back soon.
        _ => true,
    }
}

/// True when the broker answered "not found" (missing exchange or queue).
pub(crate) fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

impl RabbitError {
    /// True when the operation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            RabbitError::Unsafe { .. }
            | RabbitError::Invalid(_)
            | RabbitError::Unroutable { .. } => false,
            RabbitError::Connect { retryable, .. } => *retryable,
            RabbitError::Amqp { source, .. } => lapin_is_retryable(source),
            RabbitError::Management { retryable, .. } => *retryable,
            RabbitError::Nacked { .. } | RabbitError::ConfirmTimeout(_) => true,
        }
    }

    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> Self {
        move |source| RabbitError::Amqp { operation, source }
    }
}

impl From<RabbitError> for CoreError {
    fn from(error: RabbitError) -> Self {
        match error {
            RabbitError::Unsafe { setting, fix } => CoreError::UnsafeConfig { setting, fix },
            RabbitError::Invalid(reason) => CoreError::Invalid { reason },
            RabbitError::Unroutable { exchange } => CoreError::Unroutable {
                destination: exchange,
            },
            RabbitError::Nacked { .. } | RabbitError::ConfirmTimeout(_) => {
                CoreError::NotConfirmed {
                    reason: error.to_string(),
                }
            }
            RabbitError::Connect {
                ref url,
                ref reason,
                retryable: true,
            } => CoreError::unavailable(url, reason),
            RabbitError::Amqp { ref source, .. } if is_not_found(source) => CoreError::Rejected {
                reason: error.to_string(),
            },
            other => {
                let retryable = other.is_retryable();
                CoreError::backend("rabbitmq", retryable, other)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::AMQPError;

    fn protocol(kind: AMQPErrorKind) -> lapin::Error {
        lapin::ErrorKind::ProtocolError(AMQPError::new(kind, "test".into())).into()
    }

    #[test]
    fn broker_answers_are_classified() {
        for retryable in [
            protocol(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)),
            protocol(AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)),
            lapin::ErrorKind::MissingHeartbeatError.into(),
            lapin::ErrorKind::IOError(std::sync::Arc::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            )))
            .into(),
        ] {
            let e = RabbitError::Amqp {
                operation: "basic.publish",
                source: retryable,
            };
            assert!(e.is_retryable(), "{e}");
            assert!(CoreError::from(e).is_retryable());
        }
        for permanent in [
            protocol(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)),
            protocol(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)),
            protocol(AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)),
        ] {
            let e = RabbitError::Amqp {
                operation: "queue.declare",
                source: permanent,
            };
            assert!(!e.is_retryable(), "{e}");
            assert!(!CoreError::from(e).is_retryable());
        }
        let unroutable = CoreError::from(RabbitError::Unroutable {
            exchange: "orders".into(),
        });
        assert!(
            matches!(unroutable, CoreError::Unroutable { ref destination } if destination == "orders")
        );
        assert!(
            CoreError::from(RabbitError::Nacked {
                exchange: "x".into()
            })
            .is_retryable()
        );
        assert!(
            CoreError::from(RabbitError::ConfirmTimeout(std::time::Duration::from_secs(
                1
            )))
            .is_retryable()
        );
    }
}
