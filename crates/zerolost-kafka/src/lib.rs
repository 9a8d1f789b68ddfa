//! Kafka backend for zerolost.
//!
//! - [`KafkaPublisher`]: confirmed publish (`acks=all`, idempotent producer, at most 5
//!   requests in flight), each message resolved from its own delivery report.
//! - [`KafkaSubscriber`]: manual commits of the contiguous done offsets per partition,
//!   key-ordered hand-out, local redelivery of handed-back messages, rebalance handling.
//! - [`KafkaConfig`]: client settings with the loss-relevant ones pinned; weakening one is
//!   refused unless explicitly allowed.
//! - [`ensure_topic`]: topics with 3 replicas, `min.insync.replicas=2`, no unclean
//!   leader election.
//! - [`audit`]: checks a topic and the brokers' defaults against that layout; each
//!   finding names its fix.
//! - [`mock`]: librdkafka's in-process mock cluster, for tests and the zero-setup demo.

mod admin;
mod audit;
mod config;
mod dlq;
mod error;
mod inspect;
mod link;
pub mod mock;
mod publisher;
mod subscriber;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "tls")]
mod verify;

pub use admin::{TopicSpec, ensure_topic};
pub use audit::{Audit, audit};
pub use config::KafkaConfig;
pub use dlq::dead_letters;
pub use error::KafkaError;
pub use inspect::topic_contents;
pub use link::check_link;
pub use publisher::KafkaPublisher;
pub use subscriber::{
    GroupEvent, KafkaSubscriber, OFFSET_HEADER, Ordering, PARTITION_HEADER, SubscriberOptions,
    TOPIC_HEADER,
};
pub use zerolost_core::{Finding, Severity};
