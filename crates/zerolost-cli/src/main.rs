//! `zerolost`: operate the pipeline (`relay`, `doctor`, `dlq`, `outbox`, `reconcile`).

use std::process::ExitCode;

use clap::Parser;
use zerolost_cli::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = cli.default_log_filter();
    zerolost_cli::process::run(&filter, cli.run())
}
