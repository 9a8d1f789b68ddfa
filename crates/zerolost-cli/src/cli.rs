//! The `zerolost` command line: one grammar, global options anywhere on the line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zerolost_core::Error;

use crate::ops::{self, Global};

/// Lose no message and apply none twice: transactional outbox, confirmed publish,
/// idempotent consumer, DLQ, reconciliation by id.
#[derive(Debug, Parser)]
#[command(name = "zerolost", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the outbox relay as a daemon (SIGTERM/SIGINT: graceful; /metrics, /healthz).
    Relay(ops::relay::RelayArgs),
    /// Check every configured store and broker: reachable, migrated, durable, settings safe
    /// (exit 1 on any unsafe finding).
    Doctor(ops::doctor::DoctorArgs),
    /// Dead letters: `list`, `show ID`, `redrive [--id ID | --all] [--dry-run]`.
    Dlq(ops::dlq::DlqArgs),
    /// Outbox rows: `stats`, `park list`, `unpark`.
    Outbox(ops::outbox::OutboxArgs),
    /// Create or upgrade the tables of the `[outbox]` and `[inbox]` databases (the relay
    /// does it at start unless `outbox.migrate = false`); `--print` shows the SQL and
    /// connects to nothing.
    Migrate(ops::migrate::MigrateArgs),
    /// Reconcile the outbox with the consumers' ledger by id (exit 1 when anything is
    /// missing); `--repair` re-sends the missing.
    Reconcile(ops::reconcile::ReconcileArgs),
}

impl Cli {
    /// The log filter when `ZEROLOST_LOG` is not set: the daemon logs its own life at INFO.
    pub fn default_log_filter(&self) -> String {
        match self.command {
            Command::Relay(_) => format!("info,{}", crate::process::QUIET_CLIENTS),
            _ => "error,lapin=off".to_owned(),
        }
    }

    /// Runs the command.
    pub async fn run(self) -> Result<ExitCode, Error> {
        let global = &self.global;
        match self.command {
            Command::Relay(args) => ops::relay::run(args, global).await,
            Command::Doctor(args) => ops::doctor::run(args, global).await,
            Command::Outbox(args) => ops::outbox::run(args, global).await,
            Command::Dlq(args) => ops::dlq::run(args, global).await,
            Command::Reconcile(args) => ops::reconcile::run(args, global).await,
            Command::Migrate(args) => ops::migrate::run(args, global).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_stand_anywhere_on_the_line() {
        for line in [
            "zerolost outbox stats --config x.toml --json",
            "zerolost --config x.toml --json outbox stats",
            "zerolost outbox --config x.toml stats",
            "zerolost dlq list -d orders --json",
            "zerolost dlq -d orders list",
            "zerolost -c x.toml dlq redrive -d orders --all",
            "zerolost reconcile --grace 10m --repair --json",
            "zerolost relay --config zerolost.toml",
            "zerolost doctor --json -c x.toml",
            "zerolost outbox park list --limit 5 --json",
            "zerolost migrate --print -c x.toml",
            "zerolost migrate --json",
        ] {
            let parsed = Cli::try_parse_from(line.split_whitespace());
            assert!(parsed.is_ok(), "{line}: {}", parsed.unwrap_err());
        }
        let cli = Cli::try_parse_from("zerolost dlq list -c a.toml --json".split(' ')).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.config.as_deref(), Some("a.toml".as_ref()));
    }
}
