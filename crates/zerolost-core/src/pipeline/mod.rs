//! The broker-neutral pipeline: [`Relay`], [`Consumer`], [`Reconciler`].

mod claim_keeper;
mod consumer;
mod reconcile;
mod relay;
mod retry;
mod stage;

pub use consumer::{Consumer, ConsumerConfig, ConsumerTotals, Disposition};
pub use reconcile::{CountView, ParkedMessage, ReconcileReport, Reconciler};
pub use relay::{Relay, RelayConfig, RelayRound, RelayTotals};
