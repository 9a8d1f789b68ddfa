//! The `zerolost` operator command as a library: its config file, the operator commands
//! (`relay`, `doctor`, `dlq`, `outbox`, `reconcile`), and the process frame they run in.
//!
//! The binary is `zerolost`; the lab (`zerolost-lab`: demo, chaos, bench) builds on the
//! same config and connections. A cargo feature per broker (`kafka`, `rabbitmq`,
//! `rocketmq`) and per store (`postgres`, `mysql`, `sqlite`, `redis`) decides what is
//! compiled in; a config naming one left out gets an error that names the feature.
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod links;
pub mod ops;
pub mod process;
pub mod secrets;
