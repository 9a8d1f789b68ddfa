//! The crate's error type: every error says whether trying again can help.

use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode as Code};
use zerolost_core::Error as CoreError;

/// What went wrong in the Kafka backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// A setting that would allow message loss, refused.
    #[error("unsafe Kafka setting `{setting}`: {fix}")]
    Unsafe {
        /// The setting.
        setting: String,
        /// What to change.
        fix: String,
    },
    /// librdkafka refused the configuration.
    #[error("Kafka client configuration: {0}")]
    Config(#[source] ClientError),
    /// Producing one message failed.
    #[error("publishing to `{topic}` failed: {source}")]
    Produce {
        /// The destination topic.
        topic: String,
        /// The client's error.
        #[source]
        source: ClientError,
        /// Whether the broker may create the topic on first use.
        auto_create: bool,
    },
    /// Any other client operation failed.
    #[error("Kafka {operation} failed: {source}")]
    Client {
        /// What was being done.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// A client operation failed while the link itself reported an error (a TLS handshake
    /// or a SASL login that failed), named with its cause.
    #[error("Kafka {operation} failed: {source}; the link reported: {link}")]
    Link {
        /// What was being done.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: ClientError,
        /// The link's last error, with its cause.
        link: String,
    },
    /// The delivery report never arrived (the producer was dropped while it was in flight).
    #[error("the delivery report for `{topic}` was lost; the message may or may not be stored")]
    ReportLost {
        /// The destination topic.
        topic: String,
    },
}

/// How a broker or client error code should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Try again later: the broker may store it next time.
    Retryable,
    /// The topic does not exist.
    UnknownTopic,
    /// Trying again cannot help.
    Permanent,
}

/// Classifies an error code from a delivery report or request.
pub(crate) fn classify(code: Code) -> Class {
    match code {
        Code::UnknownTopicOrPartition | Code::UnknownTopic | Code::UnknownPartition => {
            Class::UnknownTopic
        }
        Code::MessageSizeTooLarge
        | Code::InvalidMessageSize
        | Code::InvalidMessage
        | Code::InvalidRecord
        | Code::InvalidRequiredAcks
        | Code::TopicAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::TransactionalIdAuthorizationFailed
        | Code::InvalidTopic
        | Code::MessageBatchTooLarge
        | Code::UnsupportedForMessageFormat
        | Code::InvalidArgument
        | Code::UnsupportedCompressionType => Class::Permanent,
        // NOT_ENOUGH_REPLICAS(_AFTER_APPEND), request/message timeouts, transport failures,
        // leader changes, a full local queue, fatal idempotence errors (the producer is
        // rebuilt) and everything unknown: the message may or may not be stored, and the
        // relay sends it again; the consumer deduplicates.
        _ => Class::Retryable,
    }
}

fn code_of(error: &ClientError) -> Option<Code> {
    error.rdkafka_error_code()
}

impl KafkaError {
    /// True when the operation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            KafkaError::Unsafe { .. } | KafkaError::Config(_) => false,
            KafkaError::ReportLost { .. } => true,
            KafkaError::Produce {
                source,
                auto_create,
                ..
            } => match code_of(source).map(classify) {
                Some(Class::Permanent) => false,
                Some(Class::UnknownTopic) => *auto_create,
                Some(Class::Retryable) | None => true,
            },
            KafkaError::Client { source, .. } | KafkaError::Link { source, .. } => {
                !matches!(code_of(source).map(classify), Some(Class::Permanent))
            }
        }
    }
}

impl From<KafkaError> for CoreError {
    fn from(error: KafkaError) -> Self {
        match error {
            KafkaError::Unsafe { setting, fix } => CoreError::UnsafeConfig { setting, fix },
            KafkaError::Config(source) => CoreError::Config(format!("Kafka client: {source}")),
            KafkaError::Produce {
                ref topic,
                ref source,
                auto_create,
            } => {
                let reason = source.to_string();
                match code_of(source).map(classify) {
                    Some(Class::UnknownTopic) if !auto_create => CoreError::Unroutable {
                        destination: topic.clone(),
                    },
                    Some(Class::Permanent) => CoreError::Rejected { reason },
                    _ => CoreError::NotConfirmed { reason },
                }
            }
            KafkaError::ReportLost { .. } => CoreError::NotConfirmed {
                reason: error.to_string(),
            },
            KafkaError::Client { .. } | KafkaError::Link { .. } => {
                let retryable = error.is_retryable();
                CoreError::backend("kafka", retryable, error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(code: Code, auto_create: bool) -> KafkaError {
        KafkaError::Produce {
            topic: "orders".into(),
            source: ClientError::MessageProduction(code),
            auto_create,
        }
    }

    #[test]
    fn broker_answers_are_classified_as_the_issue_lists() {
        for code in [
            Code::NotEnoughReplicas,
            Code::NotEnoughReplicasAfterAppend,
            Code::RequestTimedOut,
            Code::MessageTimedOut,
            Code::BrokerTransportFailure,
            Code::AllBrokersDown,
            Code::NotLeaderForPartition,
        ] {
            let e = produce(code, false);
            assert!(e.is_retryable(), "{code:?}");
            assert!(CoreError::from(e).is_retryable(), "{code:?}");
        }
        for code in [
            Code::MessageSizeTooLarge,
            Code::TopicAuthorizationFailed,
            Code::InvalidRecord,
        ] {
            let e = produce(code, false);
            assert!(!e.is_retryable(), "{code:?}");
            assert!(
                matches!(CoreError::from(e), CoreError::Rejected { .. }),
                "{code:?}"
            );
        }
        let unknown = CoreError::from(produce(Code::UnknownTopicOrPartition, false));
        assert!(
            matches!(unknown, CoreError::Unroutable { ref destination } if destination == "orders")
        );
        assert!(!unknown.is_retryable());
        let created_later = CoreError::from(produce(Code::UnknownTopicOrPartition, true));
        assert!(created_later.is_retryable());
    }
}
