//! # zerolost
//!
//! Lose no message and apply none twice, across RabbitMQ, Kafka and RocketMQ.
//! This facade re-exports [`zerolost_core`] and, behind cargo features, the backends.
#![warn(missing_docs)]

pub use zerolost_core::*;
