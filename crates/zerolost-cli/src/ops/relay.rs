//! `zerolost relay`: the outbox relay as a daemon, with `/metrics` and `/healthz`.
//!
//! SIGTERM or SIGINT stops it gracefully: the round in flight finishes (its rows are
//! marked) or returns its leases, so no row stays leased, and the process exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zerolost_core::{Error, OutboxStore, Relay, telemetry};

use super::Global;
use super::connect::{OutboxDb, patiently, publisher};

/// Arguments of `zerolost relay` (the config comes from `--config`).
#[derive(Debug, Args)]
pub struct RelayArgs {}

/// What `/healthz` reports: the outbox answered recently and the relay is not stopping.
#[derive(Default)]
struct Health {
    /// Unix milliseconds of the last successful outbox query.
    outbox_ok_at: AtomicI64,
    stopping: AtomicBool,
}

/// Runs the relay until SIGTERM / SIGINT.
pub async fn run(_args: RelayArgs, global: &Global) -> Result<ExitCode, Error> {
    let config = global.load()?;
    config.refuse_remote_plaintext()?;
    let section = config.outbox()?;
    let patience = config.relay.startup_patience;
    let db = patiently("the outbox", patience, || OutboxDb::connect(section)).await?;
    if section.migrate {
        patiently("the outbox tables", patience, || db.migrate()).await?;
    }
    let outbox = db.outbox();
    let broker = patiently("the broker", patience, || publisher(&config)).await?;
    let relay = Relay::new(outbox.clone(), broker).with_config(config.relay_config())?;

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let health = Arc::new(Health::default());
    let stats_interval = config.relay.stats_interval;
    // The recorder is installed before any task records, so no first reading is lost.
    if !config.http.listen.is_empty() {
        let metrics = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .map_err(|e| Error::Config(format!("metrics buckets: {e}")))?
            .install_recorder()
            .map_err(|e| Error::Config(format!("cannot install the metrics recorder: {e}")))?;
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "http.listen: cannot listen on {}: {e}",
                    config.http.listen
                ))
            })?;
        info!(address = %config.http.listen, "serving /metrics and /healthz");
        let app = routes(metrics, health.clone(), stats_interval);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                warn!(error = %e, "the metrics server stopped");
            }
        });
    }
    tokio::spawn(watch_outbox(
        outbox,
        stats_interval,
        health.clone(),
        shutdown.clone(),
    ));
    if !config.relay.dlq_interval.is_zero() && !config.destinations.is_empty() {
        let dlq = super::dlq::dead_letter_queue(&config).await?;
        tokio::spawn(watch_dlqs(
            dlq,
            config.destinations.clone(),
            config.relay.dlq_interval,
            shutdown.clone(),
        ));
    }
    info!(
        outbox = db.engine(),
        broker = config.broker.map(|b| b.name()).unwrap_or_default(),
        batch_size = config.relay.batch_size,
        "relay started"
    );
    let totals = relay.run(shutdown.clone()).await;
    health.stopping.store(true, Ordering::Relaxed);
    shutdown.cancel();
    let totals = totals?;
    info!(
        published = totals.published,
        rescheduled = totals.rescheduled,
        parked = totals.parked,
        "relay stopped; no lease is held"
    );
    Ok(ExitCode::SUCCESS)
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                let which = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                info!(
                    signal = which,
                    "stopping: finishing or returning the leased rows"
                );
            }
            _ => warn!("cannot listen for SIGTERM/SIGINT; stop the relay with SIGKILL"),
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_ok() {
        info!("stopping: finishing or returning the leased rows");
    }
    shutdown.cancel();
}

/// Refreshes the outbox gauges every `interval` and notes when the outbox last answered.
async fn watch_outbox(
    outbox: Arc<dyn OutboxStore>,
    interval: Duration,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match outbox.counts().await {
            Ok(counts) => {
                let now = chrono::Utc::now();
                telemetry::record_outbox(&counts, now);
                health
                    .outbox_ok_at
                    .store(now.timestamp_millis(), Ordering::Relaxed);
            }
            Err(e) => warn!(error = %e, "cannot count the outbox rows"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

/// Publishes the DLQ depth of each destination every `interval`.
async fn watch_dlqs(
    dlq: Arc<dyn zerolost_core::redrive::DeadLetterQueue>,
    destinations: Vec<String>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        for destination in &destinations {
            match dlq.depth(destination).await {
                Ok(depth) => telemetry::record_dlq_depth(destination, depth),
                Err(e) => warn!(%destination, error = %e, "cannot read the dead-letter queue"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

fn routes(metrics: PrometheusHandle, health: Arc<Health>, interval: Duration) -> Router {
    Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route(
            "/healthz",
            get(move || async move { healthz(&health, interval) }),
        )
}

fn healthz(health: &Health, interval: Duration) -> (StatusCode, String) {
    if health.stopping.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into());
    }
    let last = health.outbox_ok_at.load(Ordering::Relaxed);
    let age_ms = chrono::Utc::now().timestamp_millis() - last;
    let limit = i64::try_from((interval * 3).as_millis())
        .unwrap_or(i64::MAX)
        .max(10_000);
    if last > 0 && age_ms <= limit {
        (StatusCode::OK, "ok\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the outbox has not answered for {} ms\n", age_ms.max(0)),
        )
    }
}
