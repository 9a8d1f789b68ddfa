//! `zerolost-lab bench`: throughput of a store's cycle (`--store`: SQL outbox enqueue and
//! relay, Redis claim + complete) or of a broker, raw client against zerolost side by side
//! (`--backend`).

mod broker;
mod fixture;
mod harness;
mod kafka;
mod rabbitmq;
mod rocketmq;
mod store;

use std::process::ExitCode;

use clap::Args;
use zerolost_core::Error;

use crate::kinds::{BenchTarget, default_url};
use harness::{BrokerBench, BrokerTarget, DedupeChoice};

/// Arguments of `zerolost-lab bench`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["store", "backend"])))]
pub struct BenchArgs {
    /// The store to measure.
    #[arg(long, value_enum)]
    store: Option<BenchTarget>,
    /// The broker to measure: raw client vs zerolost, relay and consume, side by side.
    #[arg(long, value_enum)]
    backend: Option<BrokerTarget>,
    /// Messages per broker measurement.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// The outbox the relay reads in the broker measurement (URL from the environment).
    #[arg(long, value_enum, default_value = "sqlite")]
    outbox: BenchTarget,
    /// The consumer's dedupe store in the broker measurement.
    #[arg(long, value_enum, default_value = "redis")]
    dedupe: DedupeChoice,
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

/// Runs the chosen benchmark and prints the figures.
pub async fn run(args: BenchArgs) -> Result<ExitCode, Error> {
    if let Some(target) = args.store {
        let url = args.url.clone().unwrap_or_else(|| default_url(target));
        return store::run(store::StoreBench {
            target,
            url,
            rows: args.rows.max(1),
            repeat: args.repeat,
            only: args.only,
            json: args.json,
        })
        .await;
    }
    let Some(backend) = args.backend else {
        return Err(Error::Config("name --store or --backend".into()));
    };
    broker::run(BrokerBench {
        backend,
        messages: args.messages.max(1),
        outbox: args.outbox,
        outbox_url: default_url(args.outbox),
        dedupe: args.dedupe,
        redis_url: default_url(BenchTarget::Redis),
        brokers: args.url.clone(),
        consume_batch: args.consume_batch,
        json: args.json,
    })
    .await
}
