//! `zerolost bench`: throughput of the outbox's store cycle (enqueue; lease → confirmed
//! publish → mark) on a SQL database, and of the Redis dedupe store's claim + complete.
//! Each figure is the median of `--repeat` runs.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde::Serialize;
use zerolost_core::{
    Claim, DedupeStore, Envelope, Error, MessageId, OutboxStore, Outcome, Publisher, Receipt,
    Relay, RelayConfig,
};
use zerolost_sqlx::{MySqlStore, PgStore, SqliteStore, Tables};
use zerolost_testkit::Enqueue;

use crate::stores::SqlEnqueue;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchTarget {
    /// SQLite outbox (a fresh file under .zerolost/).
    Sqlite,
    /// PostgreSQL outbox (`--url`, else ZEROLOST_PG_URL, else the test server).
    Postgres,
    /// MySQL/MariaDB outbox (`--url`, else ZEROLOST_MYSQL_URL, else the test server).
    Mysql,
    /// Redis dedupe store (`--url`, else ZEROLOST_REDIS_URL, else the test server).
    Redis,
    /// In-memory outbox (no store cost: the pipeline's own overhead).
    Memory,
}

/// Arguments of `zerolost bench`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["store", "backend"])))]
pub struct BenchArgs {
    /// The store to measure.
    #[arg(long, value_enum)]
    store: Option<BenchTarget>,
    /// The broker to measure: raw client vs zerolost, relay and consume, side by side.
    #[arg(long, value_enum)]
    backend: Option<crate::bench_broker::BrokerTarget>,
    /// Messages per broker measurement.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// The outbox the relay reads in the broker measurement (URL from the environment).
    #[arg(long, value_enum, default_value = "sqlite")]
    outbox: BenchTarget,
    /// The consumer's dedupe store in the broker measurement.
    #[arg(long, value_enum, default_value = "redis")]
    dedupe: crate::bench_broker::DedupeChoice,
    /// Messages per listener call on both sides of a RocketMQ consume measurement (the push
    /// consumer's batch size; see `RocketConfig::consume_batch`). Other backends ignore it.
    #[arg(long, default_value_t = 1)]
    consume_batch: u32,
    /// Server URL (default: the environment variable, else the project's test server).
    #[arg(long)]
    url: Option<String>,
    /// Rows (or Redis ids) per batched measurement.
    #[arg(long, default_value_t = 50_000)]
    rows: usize,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Run only the measurements whose name contains this text (e.g. "batch 500").
    #[arg(long)]
    only: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

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

/// A fresh outbox for one measurement run, and how to drop it.
struct Fresh {
    outbox: Arc<dyn OutboxStore>,
    enqueue: Arc<dyn Enqueue>,
    drop: std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>,
}

async fn fresh(target: BenchTarget, url: &str) -> Result<Fresh, Error> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tables = Tables::default().with_prefix(&format!("zlbench_{}_{n}_", std::process::id()))?;
    macro_rules! open {
        ($store:expr) => {{
            let store = $store;
            store.migrate().await?;
            let dropper = store.clone();
            Fresh {
                outbox: Arc::new(store.outbox()),
                enqueue: Arc::new(SqlEnqueue(store.outbox())),
                drop: Box::pin(async move { dropper.drop_tables().await }),
            }
        }};
    }
    Ok(match target {
        BenchTarget::Postgres => open!(PgStore::connect(url, tables).await?),
        BenchTarget::Mysql => open!(MySqlStore::connect(url, tables).await?),
        BenchTarget::Sqlite => {
            std::fs::create_dir_all(".zerolost")
                .map_err(|e| Error::Config(format!("cannot create .zerolost/: {e}")))?;
            let file = format!(".zerolost/bench-{}-{n}.sqlite", std::process::id());
            let store = SqliteStore::connect(&format!("sqlite://{file}"), tables).await?;
            let mut fresh = open!(store);
            fresh.drop = Box::pin(async move {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{file}{suffix}"));
                }
                Ok(())
            });
            fresh
        }
        BenchTarget::Redis => return Err(Error::Config("redis has no outbox".into())),
        BenchTarget::Memory => {
            let outbox = zerolost_core::memory::MemoryOutbox::new();
            Fresh {
                outbox: Arc::new(outbox.clone()),
                enqueue: Arc::new(outbox),
                drop: Box::pin(async { Ok(()) }),
            }
        }
    })
}

pub(crate) fn envelopes(n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| Envelope::new("bench", format!("{{\"order\":{i},\"amount\":1250}}")))
        .collect()
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

/// Enqueues `batch` into a fresh outbox of `target`, then times `rounds` relay rounds in
/// flight at once (leases are exclusive, as with that many relays) draining it through
/// `publisher`; drops the outbox. Fails unless every row was published.
pub(crate) async fn timed_drain(
    target: BenchTarget,
    url: &str,
    batch: &[Envelope],
    publisher: impl Publisher + 'static,
    config: RelayConfig,
    rounds: usize,
) -> Result<Duration, Error> {
    let fresh = fresh(target, url).await?;
    for chunk in batch.chunks(1000) {
        fresh.enqueue.enqueue(chunk).await?;
    }
    let relay = Arc::new(Relay::new(fresh.outbox.clone(), publisher).with_config(config)?);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..rounds.max(1) {
        let relay = relay.clone();
        workers.spawn(async move {
            let mut published = 0;
            loop {
                let round = relay.run_once().await?;
                if round.leased == 0 {
                    return Ok::<usize, Error>(published);
                }
                published += round.published;
            }
        });
    }
    let mut published = 0;
    while let Some(done) = workers.join_next().await {
        published += done.map_err(|e| Error::backend("relay task", false, e.to_string()))??;
    }
    let elapsed = started.elapsed();
    fresh.drop.await?;
    if published != batch.len() {
        return Err(Error::Invalid {
            reason: format!("the relays published {published} of {} rows", batch.len()),
        });
    }
    Ok(elapsed)
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

pub(crate) fn default_url(target: BenchTarget) -> String {
    let (var, default) = match target {
        BenchTarget::Postgres => (
            "ZEROLOST_PG_URL",
            "postgres://zerolost:zerolost@127.0.0.1:55432/zerolost",
        ),
        BenchTarget::Mysql => (
            "ZEROLOST_MYSQL_URL",
            "mysql://zerolost:zerolost@127.0.0.1:53306/zerolost",
        ),
        BenchTarget::Redis => ("ZEROLOST_REDIS_URL", "redis://127.0.0.1:56379"),
        BenchTarget::Sqlite | BenchTarget::Memory => ("", ""),
    };
    zerolost_testkit::service_url(var, default)
}

/// Runs the benchmark and prints the figures.
pub async fn run(args: BenchArgs) -> Result<ExitCode, Error> {
    let Some(target) = args.store else {
        let Some(backend) = args.backend else {
            return Err(Error::Config("name --store or --backend".into()));
        };
        let outbox_url = default_url(args.outbox);
        let redis_url = default_url(BenchTarget::Redis);
        return crate::bench_broker::run(crate::bench_broker::BrokerBench {
            backend,
            messages: args.messages.max(1),
            outbox: args.outbox,
            outbox_url,
            dedupe: args.dedupe,
            redis_url,
            brokers: args.url.clone(),
            consume_batch: args.consume_batch,
            json: args.json,
        })
        .await;
    };
    let url = args.url.clone().unwrap_or_else(|| default_url(target));
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
            "zerolost bench --store {:?} (median of {} runs)",
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
