//! `zerolost-lab bench --store`: throughput of the outbox's store cycle (enqueue; lease → confirmed
//! publish → mark) on a SQL database, and of the Redis dedupe store's claim + complete.
//! Each figure is the median of `--repeat` runs.

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;
use zerolost_core::{
    Claim, DedupeStore, Envelope, Error, MessageId, Outcome, Publisher, Receipt, RelayConfig,
};

use super::fixture::{envelopes, fresh, timed_drain};
use crate::kinds::BenchTarget;

/// One measured figure. Field names are a contract: add fields, never rename.
#[derive(Debug, Serialize)]
struct Measurement {
    name: String,
    batch: usize,
    items: usize,
    median_s: f64,
    per_s: f64,
    runs_s: Vec<f64>,
    /// Relays running at once (relay measurements only).
    #[serde(skip_serializing_if = "Option::is_none")]
    relays: Option<usize>,
}

impl Measurement {
    fn with_relays(mut self, relays: usize) -> Self {
        self.relays = Some(relays);
        self
    }
}

/// The `--json` output. Field names are a contract: add fields, never rename.
#[derive(Debug, Serialize)]
struct BenchReport {
    store: BenchTarget,
    measurements: Vec<Measurement>,
}

/// A publisher that confirms at once and stores nothing: the broker costs nothing, so the
/// figure is the store's cycle alone.
struct NoopPublisher;

#[async_trait]
impl Publisher for NoopPublisher {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        Ok(Receipt {
            id: envelope.id,
            destination: envelope.destination.clone(),
            position: None,
        })
    }
}

/// Runs `run` `repeat` times and reports the median.
async fn measure<F, Fut>(
    name: &str,
    batch: usize,
    items: usize,
    repeat: usize,
    mut run: F,
) -> Result<Measurement, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Duration, Error>>,
{
    let mut runs = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        runs.push(run().await?.as_secs_f64());
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Ok(Measurement {
        name: name.to_owned(),
        batch,
        items,
        median_s: median,
        per_s: items as f64 / median.max(1e-9),
        runs_s: runs,
        relays: None,
    })
}

async fn enqueue_run(
    target: BenchTarget,
    url: &str,
    rows: usize,
    batch: usize,
) -> Result<Duration, Error> {
    let fresh = fresh(target, url).await?;
    let all = envelopes(rows);
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        fresh.enqueue.enqueue(chunk).await?;
    }
    let elapsed = started.elapsed();
    fresh.drop.await?;
    Ok(elapsed)
}

async fn relay_run(
    target: BenchTarget,
    url: &str,
    rows: usize,
    batch: usize,
    relays: usize,
) -> Result<Duration, Error> {
    let config = RelayConfig {
        batch_size: batch,
        ..RelayConfig::default()
    };
    timed_drain(target, url, &envelopes(rows), NoopPublisher, config, relays).await
}

async fn redis_run(url: &str, ids: usize, in_flight: usize) -> Result<Duration, Error> {
    let dedupe = zerolost_redis::RedisDedupe::connect(url)
        .await?
        .with_prefix(&format!("zlbench:{}:", std::process::id()))?;
    let started = Instant::now();
    let results: Vec<Result<(), Error>> = futures::stream::iter((0..ids).map(|_| {
        let dedupe = dedupe.clone();
        async move {
            let id = MessageId::new();
            match dedupe.claim(id, Duration::from_secs(30)).await? {
                Claim::Claimed(token) => {
                    dedupe
                        .complete(&token, Outcome::Processed, Duration::from_secs(60))
                        .await
                }
                other => Err(Error::Invalid {
                    reason: format!("fresh id not claimable: {other:?}"),
                }),
            }
        }
    }))
    .buffer_unordered(in_flight)
    .collect()
    .await;
    let elapsed = started.elapsed();
    results.into_iter().collect::<Result<Vec<()>, Error>>()?;
    Ok(elapsed)
}

/// What `zerolost-lab bench --store` runs.
pub struct StoreBench {
    /// The store measured.
    pub target: BenchTarget,
    /// Its server's URL.
    pub url: String,
    /// Rows (or Redis ids) per batched measurement.
    pub rows: usize,
    /// Runs per measurement (the median is reported).
    pub repeat: usize,
    /// Only measurements whose name contains this.
    pub only: Option<String>,
    /// One JSON object instead of the table.
    pub json: bool,
}

/// Runs the store benchmark and prints the figures.
pub async fn run(args: StoreBench) -> Result<ExitCode, Error> {
    let (target, url) = (args.target, args.url.clone());
    let (rows, repeat) = (args.rows.max(1), args.repeat);
    let single = (rows / 25).clamp(1, 2_000);
    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| name.contains(only));
    let mut measurements = Vec::new();
    if target == BenchTarget::Redis {
        for in_flight in [1, 64] {
            let n = if in_flight == 1 { single } else { rows };
            let name = format!("redis claim+complete, {in_flight} in flight");
            if !wanted(&name) {
                continue;
            }
            measurements.push(
                measure(&name, in_flight, n, repeat, || {
                    redis_run(&url, n, in_flight)
                })
                .await?,
            );
        }
    } else {
        for (batch, n) in [(1, single), (100, rows)] {
            let name = format!("enqueue, {batch} per transaction");
            if !wanted(&name) {
                continue;
            }
            measurements.push(
                measure(&name, batch, n, repeat, || {
                    enqueue_run(target, &url, n, batch)
                })
                .await?,
            );
        }
        for (batch, n, relays) in [
            (1, single, 1),
            (100, rows, 1),
            (500, rows, 1),
            (500, rows, 4),
        ] {
            let name = format!("relay lease→publish→mark, batch {batch}, {relays} relay(s)");
            if !wanted(&name) {
                continue;
            }
            measurements.push(
                measure(&name, batch, n, repeat, || {
                    relay_run(target, &url, n, batch, relays)
                })
                .await?
                .with_relays(relays),
            );
        }
    }
    let report = BenchReport {
        store: target,
        measurements,
    };
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::backend("writing the JSON report", false, e))?;
        println!("{json}");
    } else {
        println!(
            "zerolost-lab bench --store {:?} (median of {} runs)",
            target,
            repeat.max(1)
        );
        println!(
            "{:<52} {:>9} {:>10} {:>12}",
            "measurement", "items", "median s", "per second"
        );
        for m in &report.measurements {
            println!(
                "{:<52} {:>9} {:>10.3} {:>12.0}",
                m.name, m.items, m.median_s, m.per_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
