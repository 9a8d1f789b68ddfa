//! Transactional outbox and inbox for zerolost on PostgreSQL, MySQL/MariaDB and SQLite.
//!
//! - **Outbox**: [`SqlOutbox::enqueue`] writes the message in the application's own
//!   transaction, next to its business rows; the relay leases due rows (`FOR UPDATE SKIP
//!   LOCKED`, or one atomic `UPDATE … RETURNING` on SQLite) with a token and an expiry, and
//!   every later write checks the token, so a relay whose lease expired cannot overwrite
//!   another's work.
//! - **Inbox**: [`SqlInbox`] is a [`DedupeStore`](zerolost_core::DedupeStore) with leased
//!   claims; wrapped around a [`TransactionalHandler`] by [`InTransaction`], its processed
//!   mark commits in the same transaction as the handler's writes.
//! - **Retention**: [`SqlStore::purge`] deletes finished rows in bounded batches.
//!
//! Table names come from [`Tables`] (validated prefix and schema). Times are epoch
//! milliseconds from the database's clock, so relays on several hosts share one clock.
//!
//! One store type per database, behind a feature: [`PgStore`] (`postgres`),
//! [`MySqlStore`] (`mysql`), [`SqliteStore`] (`sqlite`). The stores are written once over
//! the sealed [`Dialect`] trait, which sqlx's `Postgres`, `MySql` and `Sqlite` implement
//! in `postgres.rs`, `mysql.rs` and `sqlite.rs`, each with its own statements and hooks
//! (lease, claim, id lists), like sqlx's own driver crates.
#![warn(missing_docs)]

mod driver;
mod error;
mod exec;
mod inbox;
mod ledger;
mod outbox;
mod params;
mod rows;
mod schema;
mod statements;
mod store;
mod tables;
mod tls;
mod transactional;

#[cfg(feature = "sqlite")]
mod group;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use driver::Dialect;
pub use error::SqlError;
pub use inbox::SqlInbox;
pub use outbox::SqlOutbox;
pub use statements::Migration;
pub use store::{Purged, Retention, SqlStore, begin_error};
pub use tables::Tables;
pub use tls::url_requires_tls;
pub use transactional::{InTransaction, TransactionalHandler};

#[cfg(feature = "mysql")]
pub use mysql::{MySqlInbox, MySqlOutbox, MySqlStore};
#[cfg(feature = "postgres")]
pub use postgres::{PgInbox, PgOutbox, PgStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteInbox, SqliteOutbox, SqliteStore};

pub use sqlx;
