//! # zerolost
//!
//! Lose no message and apply none twice, across RabbitMQ, Kafka and RocketMQ.
//! This facade re-exports [`zerolost_core`] and, behind cargo features, the backends.
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
