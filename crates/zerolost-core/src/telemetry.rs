//! Metric names the pipeline records through the [`metrics`] facade.
//!
//! Nothing is exported unless the application installs a recorder (the `zerolost relay`
//! daemon installs a Prometheus one); without one each call is a no-op. Names follow
//! Prometheus conventions: `_total` counters, `_seconds` histograms, plain gauges.
//!
//! ```
//! assert_eq!(zerolost_core::telemetry::RELAY_PUBLISHED, "zerolost_relay_published_total");
//! ```

use std::time::Duration;

/// Counter: outbox rows the broker confirmed and the relay marked published.
pub const RELAY_PUBLISHED: &str = "zerolost_relay_published_total";
/// Counter: failed publish attempts rescheduled with backoff (retries).
pub const RELAY_RETRIES: &str = "zerolost_relay_retries_total";
/// Counter: rows parked (permanent error or attempts exhausted).
pub const RELAY_PARKED: &str = "zerolost_relay_parked_total";
/// Counter: leases found taken over by another relay before the row was marked.
pub const RELAY_LOST_LEASES: &str = "zerolost_relay_lost_leases_total";
/// Counter: outbox store errors the relay met (each retried).
pub const RELAY_STORE_ERRORS: &str = "zerolost_relay_store_errors_total";
/// Histogram: seconds from handing a batch to the publisher to its last confirm.
pub const PUBLISH_CONFIRM_SECONDS: &str = "zerolost_publish_confirm_seconds";
/// Counter, label `outcome` (`processed`, `duplicate`, `deferred`, `retried`,
/// `dead_lettered`, `abandoned`): deliveries the consumer settled.
pub const CONSUMER_DELIVERIES: &str = "zerolost_consumer_deliveries_total";
/// Histogram: seconds from receiving a delivery to settling it.
pub const CONSUMER_SETTLE_SECONDS: &str = "zerolost_consumer_settle_seconds";
/// Counter: dedupe-store or DLQ errors the consumer met (each retried).
pub const CONSUMER_STORE_ERRORS: &str = "zerolost_consumer_store_errors_total";
/// Gauge, label `status` (`pending`, `published`, `parked`, `leased`): outbox rows.
pub const OUTBOX_ROWS: &str = "zerolost_outbox_rows";
/// Gauge: age in seconds of the oldest pending outbox row (0 when none): alert on it.
pub const OUTBOX_OLDEST_PENDING_SECONDS: &str = "zerolost_outbox_oldest_pending_seconds";
/// Gauge, label `destination`: messages waiting in a dead-letter queue.
pub const DLQ_DEPTH: &str = "zerolost_dlq_depth";
/// Gauge, label `destination`: consumer lag in time, the age of the last message a
/// consumer received (now − the time its id was minted, at enqueue).
pub const CONSUMER_LAG_SECONDS: &str = "zerolost_consumer_lag_seconds";

pub(crate) fn relay_round(published: usize, retries: usize, parked: usize, lost: usize) {
    metrics::counter!(RELAY_PUBLISHED).increment(published as u64);
    metrics::counter!(RELAY_RETRIES).increment(retries as u64);
    metrics::counter!(RELAY_PARKED).increment(parked as u64);
    metrics::counter!(RELAY_LOST_LEASES).increment(lost as u64);
}

pub(crate) fn confirm_latency(elapsed: Duration) {
    metrics::histogram!(PUBLISH_CONFIRM_SECONDS).record(elapsed.as_secs_f64());
}

pub(crate) fn relay_store_error() {
    metrics::counter!(RELAY_STORE_ERRORS).increment(1);
}

pub(crate) fn consumer_settled(outcome: &'static str, elapsed: Duration) {
    metrics::counter!(CONSUMER_DELIVERIES, "outcome" => outcome).increment(1);
    metrics::histogram!(CONSUMER_SETTLE_SECONDS).record(elapsed.as_secs_f64());
}

pub(crate) fn consumer_lag(destination: &str, lag: Duration) {
    metrics::gauge!(CONSUMER_LAG_SECONDS, "destination" => destination.to_owned())
        .set(lag.as_secs_f64());
}

pub(crate) fn consumer_store_error() {
    metrics::counter!(CONSUMER_STORE_ERRORS).increment(1);
}

/// Publishes the number of messages waiting in `destination`'s dead-letter queue.
pub fn record_dlq_depth(destination: &str, depth: usize) {
    metrics::gauge!(DLQ_DEPTH, "destination" => destination.to_owned()).set(depth as f64);
}

/// Publishes an outbox's row counts and oldest-pending age as gauges (a daemon calls it
/// on a timer).
pub fn record_outbox(counts: &crate::OutboxCounts, now: chrono::DateTime<chrono::Utc>) {
    let rows = [
        ("pending", counts.pending),
        ("published", counts.published),
        ("parked", counts.parked),
        ("leased", counts.leased),
    ];
    for (status, n) in rows {
        metrics::gauge!(OUTBOX_ROWS, "status" => status).set(n as f64);
    }
    let age = counts
        .oldest_pending
        .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
    metrics::gauge!(OUTBOX_OLDEST_PENDING_SECONDS).set(age);
}
