//! What a chaos run is: its arguments, the kinds of broker, database and dedupe store it
//! runs on, and the prefix of its tables on the shared servers.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

/// Tables of a chaos run on the shared servers: dropped and made anew each run.
pub const TABLE_PREFIX: &str = "zerolost_chaos_";

/// The broker of a chaos run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChaosBackend {
    /// The 3-node Kafka cluster (`kafka.sh start cluster`): RF 3, min ISR 2.
    Kafka,
    /// RabbitMQ (quorum queues), reached through Toxiproxy.
    Rabbitmq,
    /// RocketMQ (SYNC_FLUSH broker).
    Rocketmq,
}

/// The SQL database of the outbox (and of the inbox and effects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChaosStore {
    /// PostgreSQL, through Toxiproxy.
    Postgres,
    /// MySQL / MariaDB, through Toxiproxy.
    Mysql,
    /// A SQLite file shared by the processes.
    Sqlite,
}

/// The consumers' dedupe store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChaosDedupe {
    /// The SQL inbox, in the effect's transaction.
    Inbox,
    /// Redis, through Toxiproxy.
    Redis,
}

/// Arguments of `zerolost-lab chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Broker.
    #[arg(long, value_enum)]
    pub(super) backend: ChaosBackend,
    /// SQL database of the outbox.
    #[arg(long, value_enum, default_value_t = ChaosStore::Postgres)]
    pub(super) store: ChaosStore,
    /// Dedupe store of the consumers.
    #[arg(long, value_enum, default_value_t = ChaosDedupe::Inbox)]
    pub(super) dedupe: ChaosDedupe,
    /// Messages produced.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(100..=100_000_000))]
    pub(super) messages: u64,
    /// Faults injected, one after another, spread over the production.
    #[arg(long, default_value_t = 8)]
    pub(super) faults: usize,
    /// Seed of the fault schedule (a random one is chosen and printed when omitted).
    #[arg(long)]
    pub(super) seed: Option<u64>,
    /// Messages produced per second (default: production lasts about 7 s per fault, so
    /// every fault strikes while messages flow).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) rate: Option<u64>,
    /// Give up waiting for the messages after this many seconds (default: 300 + 1 per
    /// 100 messages).
    #[arg(long)]
    pub(super) deadline: Option<u64>,
    /// The service scripts (default `scripts/services`, or `ZEROLOST_SERVICES_DIR`).
    #[arg(long)]
    pub(super) services: Option<PathBuf>,
    /// Where each run keeps its config and the children's logs.
    #[arg(long, default_value = ".zerolost/chaos")]
    pub(super) run_dir: PathBuf,
    /// Every link over TLS with the test CA: the database (verify-full), Redis (rediss,
    /// ACL user), RabbitMQ (amqps), Kafka (SASL_SSL); not with RocketMQ.
    #[arg(long)]
    pub(super) tls: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(super) json: bool,
}
