//! The crate's error type: every error says whether trying again can help.

use rocketmq_client_rust::ClientError;
use rocketmq_error::RecoveryHint;
use zerolost_core::Error as CoreError;

/// What went wrong in the RocketMQ backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RocketError {
    /// A setting that would allow message loss, refused.
    #[error("unsafe RocketMQ setting `{setting}`: {fix}")]
    Unsafe {
        /// The setting.
        setting: String,
        /// What to change.
        fix: String,
    },
    /// A value the client or broker cannot take.
    #[error("invalid RocketMQ input: {0}")]
    Invalid(String),
    /// A client operation failed. When the broker answered, its response code is named
    /// (the client keeps the code, not always the broker's own words).
    #[error("RocketMQ {operation} failed: {}", client_text(.source))]
    Client {
        /// What was being done.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// A call to a broker failed, and a probe of its link named the fault (TLS or
    /// plaintext mismatch, certificate, client certificate).
    #[error("RocketMQ {operation} failed: {}; the link to {address}: {cause}", client_text(.source))]
    Link {
        /// What was being done.
        operation: &'static str,
        /// The broker's address.
        address: String,
        /// The fault the probe found, named.
        cause: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// The broker answered, but not `SEND_OK`: the message may be stored without the
    /// durability asked for (flush or replication timed out), so it is sent again.
    #[error("the broker answered {status} for a message to `{topic}`, not SEND_OK")]
    NotStored {
        /// The topic.
        topic: String,
        /// `FLUSH_DISK_TIMEOUT`, `FLUSH_SLAVE_TIMEOUT` or `SLAVE_NOT_AVAILABLE`.
        status: &'static str,
    },
    /// The name server knows no route to the topic: it does not exist (topics are not
    /// created on first use).
    #[error(
        "unroutable: no route to topic `{topic}` (create it, e.g. scripts/services/rocketmq.sh topic {topic})"
    )]
    NoRoute {
        /// The topic.
        topic: String,
    },
    /// A delivery was settled after the consumer had given the message back (it was shutting
    /// down, or the listener's wait timed out): the message is consumed again.
    #[error(
        "a message of `{topic}` was given back before it was settled (the consumer stopped, or \
         its listener's wait timed out); it comes again"
    )]
    GivenBack {
        /// The topic.
        topic: String,
    },
    /// The message is bigger than the configured `max_message_size`.
    #[error("message body of {size} bytes exceeds max_message_size ({limit} bytes)")]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The client's runtime could not start.
    #[error("RocketMQ client runtime: {0}")]
    Runtime(String),
}

/// The texts of an error and its sources, joined; a source that only repeats the text
/// before it (the client wraps its errors in copies of themselves) is left out.
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error.to_string();
    let mut text = last.clone();
    let mut source = error.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if next != last {
            text.push_str(": ");
            text.push_str(&next);
        }
        last = next;
        source = inner.source();
    }
    text
}

/// A client error's text: its own and its sources', then the broker's response code by name
/// when the broker answered.
fn client_text(error: &ClientError) -> String {
    let text = chain_text(error);
    let text = match error.broker_response_code() {
        Some(code) => format!("{text} (broker response {})", response_code_text(code)),
        None => text,
    };
    zerolost_core::explain_link_error(&text)
}

/// A RocketMQ response code a send or a pull can get, by its name in RocketMQ's
/// `ResponseCode`, with what it usually means where that is not plain from the name.
fn response_code_text(code: i32) -> String {
    let (name, meaning) = match code {
        1 => ("SYSTEM_ERROR", ""),
        2 => (
            "SYSTEM_BUSY",
            ": the broker is shedding load (its send queue or page cache is busy); try again",
        ),
        13 => ("MESSAGE_ILLEGAL", ""),
        14 => (
            "SERVICE_NOT_AVAILABLE",
            ": the broker's store is not writable; most often its disk is 90 % used (a mark \
             broker.conf cannot raise), else the broker is shutting down or is a slave",
        ),
        16 => ("NO_PERMISSION", ""),
        17 => ("TOPIC_NOT_EXIST", ""),
        _ => return format!("code {code}"),
    };
    format!("{name} (code {code}){meaning}")
}

/// How a client error should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The name server knows no route to the topic.
    NoRoute,
    /// Trying again cannot help.
    Permanent,
    /// The message may or may not be stored; try again.
    Retryable,
}

/// Maps a client error of `operation` to [`RocketError::Client`].
pub(crate) fn client(operation: &'static str) -> impl FnOnce(ClientError) -> RocketError {
    move |source| RocketError::Client { operation, source }
}

/// Like [`client`], but "no route to the topic" becomes [`RocketError::NoRoute`].
pub(crate) fn routed<'a>(
    operation: &'static str,
    topic: &'a str,
) -> impl FnOnce(ClientError) -> RocketError + 'a {
    move |source| match classify(&source) {
        Class::NoRoute => RocketError::NoRoute {
            topic: topic.to_owned(),
        },
        _ => RocketError::Client { operation, source },
    }
}

pub(crate) fn classify(error: &ClientError) -> Class {
    let text = chain_text(error).to_ascii_lowercase();
    // "CODE: 17 DESC: No topic route info in name server for the topic: …" (TOPIC_NOT_EXIST).
    if text.contains("no topic route info") || text.contains("no route info") {
        return Class::NoRoute;
    }
    if text.contains("message body size")
        || text.contains("too large")
        || text.contains("no permission")
    {
        return Class::Permanent;
    }
    match error.descriptor().recovery_hint() {
        RecoveryHint::Never | RecoveryHint::OperatorAction | RecoveryHint::RefreshCredentials => {
            Class::Permanent
        }
        _ => Class::Retryable,
    }
}

impl RocketError {
    /// True when the operation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            RocketError::Unsafe { .. }
            | RocketError::Invalid(_)
            | RocketError::Runtime(_)
            | RocketError::TooLarge { .. }
            | RocketError::NoRoute { .. } => false,
            // A link fault lasts until the settings or the broker change; retried, not
            // parked, so nothing waits for an unpark once it is fixed.
            RocketError::NotStored { .. }
            | RocketError::GivenBack { .. }
            | RocketError::Link { .. } => true,
            RocketError::Client { source, .. } => classify(source) == Class::Retryable,
        }
    }
}

impl From<RocketError> for CoreError {
    fn from(error: RocketError) -> Self {
        match error {
            RocketError::Unsafe { setting, fix } => CoreError::UnsafeConfig { setting, fix },
            RocketError::Invalid(reason) => CoreError::Invalid { reason },
            RocketError::Runtime(reason) => {
                CoreError::Config(format!("RocketMQ client runtime: {reason}"))
            }
            RocketError::NoRoute { topic } => CoreError::Unroutable { destination: topic },
            RocketError::TooLarge { .. } => CoreError::Rejected {
                reason: error.to_string(),
            },
            RocketError::NotStored { .. } => CoreError::NotConfirmed {
                reason: error.to_string(),
            },
            RocketError::GivenBack { .. } => CoreError::Backend {
                context: "settle a RocketMQ delivery".into(),
                retryable: true,
                source: Box::new(error),
            },
            RocketError::Link { .. } => CoreError::NotConfirmed {
                reason: error.to_string(),
            },
            RocketError::Client { ref source, .. } => match classify(source) {
                Class::NoRoute | Class::Permanent => CoreError::Rejected {
                    reason: error.to_string(),
                },
                Class::Retryable => CoreError::NotConfirmed {
                    reason: error.to_string(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_answer_names_its_response_code_and_stays_retryable() {
        let answer = ClientError::broker_operation_failed("BROKER_OPERATION", 14, "not writable");
        // As the client's send path hands it over: wrapped in a copy of itself.
        let wrapped = ClientError::from_error(answer.clone().into_error());
        let error = RocketError::Client {
            operation: "send",
            source: wrapped,
        };
        let text = error.to_string();
        assert!(text.starts_with("RocketMQ send failed: "), "{text}");
        assert_eq!(text.matches("Broker operation failed").count(), 1, "{text}");
        assert!(text.contains("SERVICE_NOT_AVAILABLE (code 14)"), "{text}");
        assert!(text.contains("disk is 90 % used"), "{text}");
        assert!(error.is_retryable());
        assert!(matches!(
            CoreError::from(error),
            CoreError::NotConfirmed { .. }
        ));

        let busy = RocketError::Client {
            operation: "send",
            source: ClientError::broker_operation_failed("BROKER_OPERATION", 2, ""),
        };
        assert!(busy.to_string().contains("SYSTEM_BUSY (code 2)"), "{busy}");
        assert!(busy.is_retryable());

        let other = RocketError::Client {
            operation: "send",
            source: ClientError::broker_operation_failed("BROKER_OPERATION", 215, ""),
        };
        assert!(
            other.to_string().ends_with("(broker response code 215)"),
            "{other}"
        );
    }
}
