//! RabbitMQ backend for zerolost.
//!
//! - [`RabbitPublisher`]: publisher confirms, persistent (`delivery_mode=2`) and mandatory
//!   messages; each message resolved by its own ack, nack or return; reconnects by itself.
//! - [`RabbitSubscriber`]: manual acks, `basic.qos` prefetch, `x-delivery-count` and the
//!   redelivered flag carried into the delivery; reconnects (and redeclares) by itself.
//! - [`RabbitConfig`]: client settings; turning confirms or persistence off is refused
//!   unless explicitly allowed.
//! - [`declare_destination`]: a durable exchange, a **quorum** queue with a delivery limit
//!   and a dead-letter exchange and quorum queue `<name>.dlq`.
//! - [`audit`]: checks a queue through the management API (type, durability,
//!   dead-lettering, policies that drop messages); each finding names its fix.
//! - [`queue_contents`]: reads a queue back without consuming it.

mod audit;
mod config;
mod dlq;
mod error;
mod inspect;
mod link;
mod message;
mod publisher;
mod subscriber;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tls;
mod topology;

pub use audit::{Audit, ManagementApi, audit, audit_dead_letters};
pub use config::RabbitConfig;
pub use dlq::RabbitDeadLetters;
pub use error::RabbitError;
pub use inspect::queue_contents;
pub use link::check_link;
pub use publisher::RabbitPublisher;
pub use subscriber::RabbitSubscriber;
pub use topology::{QueueSpec, declare_destination, declare_exchange, delete_destination};
pub use zerolost_core::{Finding, Severity};
