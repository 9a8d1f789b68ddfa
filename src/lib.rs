//! # zerolost
//!
//! Lose no message and apply none twice, across RabbitMQ, Kafka and RocketMQ: a
//! transactional outbox, confirmed publish, an idempotent consumer with retries and a
//! dead-letter queue, and reconciliation by message id.
//!
//! This facade re-exports [`zerolost_core`] (the envelope, the traits, [`Relay`],
//! [`Consumer`], [`Reconciler`]) and, behind cargo features, the backends:
//!
//! | feature | what it brings | module |
//! | --- | --- | --- |
//! | `postgres` | PostgreSQL outbox and inbox | [`sql`] (`PgStore`) |
//! | `mysql` | MySQL 8 / MariaDB ≥ 10.6 outbox and inbox | [`sql`] (`MySqlStore`) |
//! | `sqlite` | SQLite outbox and inbox | [`sql`] (`SqliteStore`) |
//! | `redis` | Redis dedupe store | [`redis`] |
//! | `kafka` | Kafka publisher, subscriber, DLQ topic, audit | [`kafka`] |
//! | `rabbitmq` | RabbitMQ publisher, subscriber, quorum queues, audit | [`rabbitmq`] |
//! | `rocketmq` | RocketMQ publisher, subscriber, audit | [`rocketmq`] |
//! | `memory` | the in-memory broker and stores with seeded faults (tests, demos) | [`memory`] |
//!
//! No feature is on by default: a build holds only what it names.
//!
//! A handler, run by a [`Consumer`] after its claim on the message id (implementing
//! [`Handler`] needs no dependency of its own: [`async_trait`] is re-exported):
//!
//! ```
//! use zerolost::{Envelope, Handler, HandlerError, async_trait};
//!
//! struct ChargeCard;
//!
//! #[async_trait]
//! impl Handler for ChargeCard {
//!     async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
//!         let order: u64 = std::str::from_utf8(&envelope.payload)
//!             .ok()
//!             .and_then(|text| text.parse().ok())
//!             .ok_or_else(|| HandlerError::permanent("not an order number"))?;
//!         // ... charge the card for `order`; a failure the next try may not repeat:
//!         let _ = order;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! The whole pipeline on the in-memory backend is `examples/quickstart.rs`
//! (`cargo run --example quickstart --features memory`).
#![warn(missing_docs)]

pub use zerolost_core::*;

/// The SQL outbox and inbox (PostgreSQL, MySQL/MariaDB, SQLite): features `postgres`,
/// `mysql`, `sqlite`.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub use zerolost_sqlx as sql;

/// The Redis dedupe store: feature `redis`.
#[cfg(feature = "redis")]
pub use zerolost_redis as redis;

/// The Kafka backend: feature `kafka`.
#[cfg(feature = "kafka")]
pub use zerolost_kafka as kafka;

/// The RabbitMQ backend: feature `rabbitmq`.
#[cfg(feature = "rabbitmq")]
pub use zerolost_rabbitmq as rabbitmq;

/// The RocketMQ backend: feature `rocketmq`.
#[cfg(feature = "rocketmq")]
pub use zerolost_rocketmq as rocketmq;
