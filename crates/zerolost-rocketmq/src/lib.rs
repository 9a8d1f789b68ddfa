//! RocketMQ backend for zerolost.
//!
//! - [`RocketPublisher`]: synchronous sends where only `SEND_OK` counts; flush and
//!   replication timeouts are retryable, a topic without a route is unroutable.
//! - [`RocketSubscriber`]: a push consumer that reports `CONSUME_SUCCESS` only after the
//!   pipeline acked; a nack is `RECONSUME_LATER`.
//! - [`declare_destination`], [`dlq_topic`], [`topic_contents`]: topics and their DLQ.
//! - [`RocketConfig`]: client settings; fire-and-forget sending is refused unless
//!   explicitly allowed; ACL keys ([`AclKeys`]) and TLS (the `tls` feature).
//! - [`RocketRuntime`]: the client runtime producers share.
//! - [`audit`]: checks the brokers serving a topic (`SYNC_FLUSH`, `SYNC_MASTER` with slaves);
//!   each finding names its fix.

// The client's send futures are deep types; proving them `Send` needs a higher limit.
#![recursion_limit = "256"]

mod acl;
mod audit;
mod config;
mod dlq;
mod error;
mod link;
mod message;
mod publisher;
mod reader;
mod runtime;
mod subscriber;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tls;
mod topology;

pub use acl::AclKeys;
pub use audit::{Audit, audit};
pub use config::RocketConfig;
pub use dlq::dead_letters;
pub use error::RocketError;
pub use publisher::RocketPublisher;
pub use reader::topic_contents;
pub use runtime::RocketRuntime;
pub use subscriber::RocketSubscriber;
pub use topology::{TopicSpec, declare_destination, dlq_topic};
pub use zerolost_core::{Finding, Severity};
