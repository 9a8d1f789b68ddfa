//! `zerolost`: run the pipeline end to end (`demo`) and operate it (`relay`, `doctor`,
//! `outbox`, `bench`, `chaos`).

mod bench;
mod bench_broker;
mod bench_kafka;
mod bench_rabbitmq;
mod bench_rocketmq;
mod chaos;
mod config;
mod demo;
mod ops;
mod report;
mod stores;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lose no message and apply none twice: transactional outbox, confirmed publish,
/// idempotent consumer, DLQ, reconciliation by id.
#[derive(Debug, Parser)]
#[command(name = "zerolost", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline end to end under injected faults and reconcile by id
    /// (exit 1 if anything was lost or applied twice).
    Demo(demo::DemoArgs),
    /// Measure the store cycle: SQL outbox enqueue and relay rows/s, Redis dedupe ops/s.
    Bench(bench::BenchArgs),
    /// Run the outbox relay as a daemon (SIGTERM/SIGINT: graceful; /metrics, /healthz).
    Relay(ops::relay::RelayArgs),
    /// Check every configured store and broker: reachable, migrated, durable, settings safe
    /// (exit 1 on any unsafe finding).
    Doctor(ops::doctor::DoctorArgs),
    /// Dead letters: `list`, `show ID`, `redrive [--id ID | --all] [--dry-run]`.
    Dlq(ops::dlq::DlqArgs),
    /// Outbox rows: `stats`, `park list`, `unpark`.
    Outbox(ops::outbox::OutboxArgs),
    /// Reconcile the outbox with the consumers' ledger by id (exit 1 when anything is
    /// missing); `--repair` re-sends the missing.
    Reconcile(ops::reconcile::ReconcileArgs),
    /// Run the pipeline as separate processes on real services under seeded kills, broker
    /// and service restarts and network faults; verdict by id (exit 1 on any loss or
    /// duplicate effect).
    Chaos(chaos::ChaosArgs),
    /// One consumer process of a chaos run (started by `zerolost chaos`).
    #[command(hide = true)]
    ChaosConsumer(chaos::child::ConsumerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // lapin logs every dropped connection at ERROR (zerolost reports and retries them
    // itself) and a returned message with its payload at WARN: off by default. The daemon
    // logs its own life at INFO. The demo's broker chaos (brokers of the Kafka mock cluster
    // taken down) makes librdkafka log refused connections at ERROR: the demo counts those
    // faults itself, so its default leaves them out.
    let default_filter = match cli.command {
        // The RocketMQ client logs every route refresh and reconnect at WARN; the relay
        // reports its own retries.
        Command::Relay(_) => {
            "info,lapin=off,rocketmq_client_rust=error,rocketmq_transport=error,rocketmq_runtime=error"
        }
        Command::Demo(_) => "error,lapin=off,librdkafka=off,rdkafka::client=off",
        // The orchestrator's own clients (DLQ reads) see the brokers it kills: errors only.
        // A consumer child logs warnings to its log file.
        Command::Chaos(_) => {
            "error,lapin=off,librdkafka=off,rdkafka::client=off,rocketmq_client_rust=off"
        }
        Command::ChaosConsumer(_) => {
            "warn,lapin=off,rocketmq_client_rust=error,rocketmq_transport=error,rocketmq_runtime=error"
        }
        _ => "error,lapin=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZEROLOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zerolost: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Relay(args) => runtime.block_on(ops::relay::run(args)),
        Command::Doctor(args) => runtime.block_on(ops::doctor::run(args)),
        Command::Outbox(args) => runtime.block_on(ops::outbox::run(args)),
        Command::Dlq(args) => runtime.block_on(ops::dlq::run(args)),
        Command::Reconcile(args) => runtime.block_on(ops::reconcile::run(args)),
        Command::Chaos(args) => runtime.block_on(chaos::run(args)),
        Command::ChaosConsumer(args) => runtime.block_on(chaos::child::run(args)),
    };
    // Dropping a runtime waits without limit for blocking work (a client's thread stuck on
    // a dead socket); the command is done, so the exit waits 5 s at most.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zerolost: {e}");
            ExitCode::from(2)
        }
    }
}
