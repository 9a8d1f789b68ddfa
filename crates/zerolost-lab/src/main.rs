//! `zerolost-lab`: the pipeline end to end under injected faults (`demo`), as separate
//! processes on real services under kills and cuts (`chaos`), and measured against the raw
//! clients (`bench`). The operator's command is `zerolost` (crate `zerolost-cli`).

#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "chaos")]
mod chaos;
mod demo;
mod kinds;
mod report;
mod stores;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The zerolost lab: the demo, chaos runs and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "zerolost-lab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline end to end under injected faults and reconcile by id
    /// (exit 1 if anything was lost or applied twice).
    Demo(demo::DemoArgs),
    /// Measure a store's cycle or a broker, raw client against zerolost (feature `bench`).
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    /// Run the pipeline as separate processes on real services under seeded kills, broker
    /// and service restarts and network faults; verdict by id (exit 1 on any loss or
    /// duplicate effect; feature `chaos`).
    #[cfg(feature = "chaos")]
    Chaos(chaos::ChaosArgs),
    /// One consumer process of a chaos run (started by `zerolost-lab chaos`).
    #[cfg(feature = "chaos")]
    #[command(hide = true)]
    ChaosConsumer(chaos::child::ConsumerArgs),
    /// One relay of a chaos run: the operator's `zerolost relay`, built in (started by
    /// `zerolost-lab chaos`).
    #[cfg(feature = "chaos")]
    #[command(hide = true)]
    Relay(chaos::child::RelayArgs),
}

impl Command {
    /// The log filter without `ZEROLOST_LOG`. The demo's broker chaos (brokers of the Kafka
    /// mock cluster taken down) makes librdkafka log refused connections at ERROR: the demo
    /// counts those faults itself. A chaos run's own clients see the brokers it kills.
    fn log_filter(&self) -> &'static str {
        match self {
            Command::Demo(_) => "error,lapin=off,librdkafka=off,rdkafka::client=off",
            #[cfg(feature = "chaos")]
            Command::Chaos(_) => {
                "error,lapin=off,librdkafka=off,rdkafka::client=off,rocketmq_client_rust=off"
            }
            #[cfg(feature = "chaos")]
            Command::ChaosConsumer(_) => {
                "warn,lapin=off,rocketmq_client_rust=error,rocketmq_transport=error,rocketmq_runtime=error"
            }
            #[cfg(feature = "chaos")]
            Command::Relay(_) => {
                "info,lapin=off,rocketmq_client_rust=error,rocketmq_transport=error,rocketmq_runtime=error"
            }
            #[allow(unreachable_patterns)]
            _ => "error,lapin=off",
        }
    }

    async fn run(self) -> Result<ExitCode, zerolost_core::Error> {
        match self {
            Command::Demo(args) => demo::run(args).await,
            #[cfg(feature = "bench")]
            Command::Bench(args) => bench::run(args).await,
            #[cfg(feature = "chaos")]
            Command::Chaos(args) => chaos::run(args).await,
            #[cfg(feature = "chaos")]
            Command::ChaosConsumer(args) => chaos::child::run(args).await,
            #[cfg(feature = "chaos")]
            Command::Relay(args) => args.run().await,
        }
    }
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let filter = tracing_subscriber_filter(command.log_filter());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("zerolost-lab: cannot start the async runtime");
        return ExitCode::from(2);
    };
    let result = runtime.block_on(command.run());
    // A client thread stuck on a dead socket would hold the exit without limit.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result.unwrap_or_else(|e| {
        eprintln!("zerolost-lab: {e}");
        ExitCode::from(2)
    })
}

fn tracing_subscriber_filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("ZEROLOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}
