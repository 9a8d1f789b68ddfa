//! What the lab's commands run on: the kinds of store named on their command lines, the
//! test servers' URLs, and the error for a part this build left out.

use clap::ValueEnum;
use serde::Serialize;

/// Where the outbox lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// In-process outbox.
    Memory,
    /// SQLite outbox table in the `--db` file (WAL, synchronous=FULL), recreated each run.
    Sqlite,
    /// PostgreSQL (`ZEROLOST_PG_URL`, else the test server): tables `zerolost_demo_*`,
    /// dropped and made anew each run.
    Postgres,
    /// MySQL / MariaDB (`ZEROLOST_MYSQL_URL`, else the test server): tables
    /// `zerolost_demo_*`, dropped and made anew each run.
    Mysql,
}

/// Where processed ids are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DedupeKind {
    /// In-process dedupe store (takes the injected dedupe outages).
    Memory,
    /// Inbox table in the outbox's SQL database (SQLite when the outbox is in memory).
    #[value(alias = "sqlite")]
    Inbox,
    /// Redis (`ZEROLOST_REDIS_URL`, else the test server), under a key prefix of the run's own.
    Redis,
}

/// A store a measurement (or a chaos run) uses: `zerolost-lab bench --store`.
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

/// The URL of a store's server: its environment variable, else the project's test server
/// (`scripts/services/`); empty for the embedded ones.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
pub fn default_url(target: BenchTarget) -> String {
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

/// A seed from the clock, for runs that were given none.
pub fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
        .unwrap_or(1)
}

/// The error for a broker or store this build of the lab left out: the feature to add.
#[cfg(not(all(
    feature = "rabbitmq",
    feature = "rocketmq",
    feature = "postgres",
    feature = "mysql",
    feature = "redis"
)))]
pub fn not_built(what: &str, feature: &str) -> zerolost_core::Error {
    zerolost_core::Error::Config(format!(
        "{what} is not in this build of zerolost-lab: build it with `--features {feature}` \
         (cargo run --release -p zerolost-lab --features {feature} -- …)"
    ))
}
