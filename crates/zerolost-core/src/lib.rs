//! # zerolost-core
//!
//! The broker-neutral heart of zerolost: the [`Envelope`] and [`MessageId`], the traits
//! every backend implements ([`Publisher`], [`Subscriber`], [`DedupeStore`],
//! [`DeadLetterSink`], [`OutboxStore`], [`ConsumerLedger`]), the pipeline that runs on
//! any of them ([`Relay`], [`Consumer`], [`Reconciler`]), and an in-memory backend with
//! seeded fault injection ([`memory`]).
//!
//! No broker and no database is named here; backends live in their own crates.
#![warn(missing_docs)]

mod audit;
mod backoff;
mod dead_letter;
mod dedupe;
mod envelope;
mod error;
mod handler;
mod id;
mod id_extract;
mod outbox;
pub mod parking;
mod pipeline;
mod publish;
pub mod redrive;
mod security;
mod subscribe;
pub mod telemetry;
pub mod trace;

#[cfg(feature = "memory")]
pub mod memory;

pub use audit::{Finding, Severity};
pub use backoff::Backoff;
pub use dead_letter::{
    DeadLetterPublisher, DeadLetterReason, DeadLetterSink, Failure, MAX_ERROR_TEXT,
    default_dlq_name, dlq_headers,
};
pub use dedupe::{
    Claim, ClaimToken, ConsumerLedger, DedupeStore, FailureRecord, Outcome, ProcessedEntry,
    Snapshot,
};
pub use envelope::{Envelope, Incoming, MESSAGE_ID_HEADER};
pub use error::{BoxError, Error, HandlerError, redact_url};
pub use handler::{
    FnContextHandler, FnHandler, Handler, HandlerContext, handler_fn, handler_fn_with_context,
};
pub use id::{MessageId, ParseIdError};
pub use id_extract::{IdExtractor, IdSource, MissingIdPolicy};
pub use outbox::{Lease, OutboxCounts, OutboxEntry, OutboxRecord, OutboxStatus, OutboxStore};
pub use pipeline::{
    Consumer, ConsumerConfig, ConsumerTotals, CountView, Disposition, ParkedMessage,
    ReconcileReport, Reconciler, Relay, RelayConfig, RelayRound, RelayTotals,
};
pub use publish::{Publisher, Receipt};
pub use security::{
    ClientIdentity, LinkFailure, LinkSecurity, TlsFiles, explain_link_error, is_loopback_host,
    link_hosts, plaintext_to_tls_hint, read_secret_file, refuse_remote_plaintext, speaks_tls,
    tls_port_hint,
};
pub use subscribe::{Acknowledger, Delivery, Subscriber};
pub use trace::TRACEPARENT_HEADER;

/// Re-exported so callers can stop a [`Relay`] or [`Consumer`] without naming tokio-util.
pub use tokio_util::sync::CancellationToken;

/// Re-exported so implementing [`Handler`], [`Publisher`] or a store needs no dependency of
/// its own: `#[zerolost_core::async_trait]` (or `#[zerolost::async_trait]`).
pub use async_trait::async_trait;
