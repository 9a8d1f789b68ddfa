//! # zerolost-testkit
//!
//! One behaviour suite for every zerolost backend, in the style of object_store's and
//! opendal's: a backend's tests implement [`Backend`] (and [`Stores`]) and call the
//! same [`conformance`] functions, which assert real outcomes by message id.
//!
//! ```
//! use zerolost_testkit::{MemoryBackend, MemoryStores, conformance};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! conformance::confirmed_round_trip(&MemoryBackend::new()).await;
//! conformance::redelivery_is_deduplicated(&MemoryBackend::new(), &MemoryStores::new()).await;
//! # });
//! ```
#![warn(missing_docs)]

mod backend;
pub mod conformance;
mod handler;
mod publishers;
pub mod scenario;
mod verdict;

pub use backend::{
    Backend, DeadLetter, DedupeHandle, Enqueue, MemoryBackend, MemoryStores, OutboxHandle, Stores,
};
pub use handler::{EffectLog, RecordingHandler};
pub use publishers::{FlakyPublisher, LossyPublisher, SwitchableDedupe};
pub use verdict::Verdict;

/// Whether tests must fail (not skip) when a server they need is missing:
/// `ZEROLOST_REQUIRE_SERVICES=1`, as CI sets it.
pub fn services_required() -> bool {
    std::env::var("ZEROLOST_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}
