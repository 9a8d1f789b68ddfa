//! The in-memory backend: a broker with at-least-once delivery, an outbox, a dedupe
//! store and ledgers, all with seeded fault injection. For tests and the zero-setup
//! demo; it keeps nothing across a restart.
//!
//! Time is read from tokio's clock, so tests can run on paused time
//! (`#[tokio::test(start_paused = true)]`) and leases still expire.

mod broker;
mod dedupe;
mod faults;
mod outbox;
mod state;

pub use broker::{MemoryAcker, MemoryBroker, MemoryPublisher, MemorySubscriber};
pub use dedupe::MemoryDedupe;
pub use faults::{FaultConfig, FaultCounts, FaultEvent, FaultInjector, FaultKind};
pub use outbox::MemoryOutbox;
