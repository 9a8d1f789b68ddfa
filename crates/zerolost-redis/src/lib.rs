//! Redis dedupe store for zerolost: the article's idempotency check (`MSG:<id>` processed
//! mark, `LOCK:<id>` claim), done as leases: a claim is `SET NX PX` with a random token,
//! complete and release are Lua compare-and-set on that token, the processed mark is
//! checked again under the claim, and failure counters carry a TTL. Keys put the id in a
//! `{hash tag}` so one id's keys share a Redis Cluster slot.
//!
//! The mark is written after the handler's effect; a crash between the two can repeat the
//! effect once. Where that matters, use the SQL inbox of `zerolost-sqlx`, whose mark
//! commits with the handler's writes.
#![warn(missing_docs)]

mod error;
mod keys;
mod parking;
mod scripts;
mod store;
mod tls;

pub use error::RedisStoreError;
pub use store::RedisDedupe;
pub use tls::client;
