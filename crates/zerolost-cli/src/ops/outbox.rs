//! `zerolost outbox stats | park list | unpark`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use zerolost_core::{Error, MessageId, OutboxEntry, OutboxStatus};

use super::connect::OutboxDb;
use super::{Choice, ConfigArg, to_json};

/// Arguments of `zerolost outbox`.
#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// Rows by state, leased rows, and the oldest pending row's age.
    Stats {
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Parked rows (those the relay gave up on) and their reasons.
    Park {
        #[command(subcommand)]
        command: ParkCommand,
    },
    /// Makes parked rows pending again, so the relay retries them.
    Unpark(Choice),
}

#[derive(Debug, Subcommand)]
enum ParkCommand {
    /// Lists parked rows, oldest first.
    List {
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// `outbox stats --json`.
#[derive(Debug, Serialize)]
struct Stats {
    pending: usize,
    published: usize,
    parked: usize,
    leased: usize,
    oldest_pending_age_s: Option<f64>,
}

/// Runs an `outbox` command.
pub async fn run(args: OutboxArgs) -> Result<ExitCode, Error> {
    let config = args.config.load()?;
    let db = OutboxDb::connect(config.outbox()?).await?;
    let outbox = db.outbox();
    match args.command {
        OutboxCommand::Stats { json } => {
            let counts = outbox.counts().await?;
            let stats = Stats {
                pending: counts.pending,
                published: counts.published,
                parked: counts.parked,
                leased: counts.leased,
                oldest_pending_age_s: counts
                    .oldest_pending
                    .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0),
            };
            if json {
                println!("{}", to_json(&stats)?);
            } else {
                println!("pending    {:>10}", stats.pending);
                println!("  leased   {:>10}", stats.leased);
                println!("published  {:>10}", stats.published);
                println!("parked     {:>10}", stats.parked);
                match stats.oldest_pending_age_s {
                    Some(age) => println!("oldest pending row: {age:.1} s old"),
                    None => println!("nothing pending"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Park {
            command: ParkCommand::List { limit, json },
        } => {
            let parked = parked_rows(&outbox).await?;
            let shown: Vec<&OutboxEntry> = parked.iter().take(limit).collect();
            if json {
                println!("{}", to_json(&shown)?);
            } else if parked.is_empty() {
                println!("no parked rows");
            } else {
                println!(
                    "{:<36}  {:<20}  {:>8}  reason",
                    "id", "destination", "attempts"
                );
                for row in &shown {
                    println!(
                        "{:<36}  {:<20}  {:>8}  {}",
                        row.id,
                        row.destination,
                        row.attempts,
                        row.last_error.as_deref().unwrap_or("-")
                    );
                }
                if parked.len() > shown.len() {
                    println!("… and {} more (--limit)", parked.len() - shown.len());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Unpark(choice) => {
            let parked = parked_rows(&outbox).await?;
            let dry_run = choice.dry_run;
            let chosen: Vec<MessageId> = if choice.all {
                parked.iter().map(|row| row.id).collect()
            } else {
                let ids = choice.ids;
                let unknown: Vec<String> = ids
                    .iter()
                    .filter(|id| !parked.iter().any(|row| row.id == **id))
                    .map(ToString::to_string)
                    .collect();
                if !unknown.is_empty() {
                    return Err(Error::Config(format!(
                        "not parked (or not in the outbox): {}",
                        unknown.join(", ")
                    )));
                }
                ids
            };
            if dry_run {
                println!("would unpark {} row(s):", chosen.len());
                for id in &chosen {
                    println!("  {id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let requeued = outbox.requeue(&chosen).await?;
            println!("unparked {requeued} row(s); the relay publishes them on its next rounds");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn parked_rows(
    outbox: &std::sync::Arc<dyn zerolost_core::OutboxStore>,
) -> Result<Vec<OutboxEntry>, Error> {
    let mut parked: Vec<OutboxEntry> = outbox
        .snapshot(None)
        .await?
        .entries
        .into_iter()
        .filter(|row| row.status == OutboxStatus::Parked)
        .collect();
    parked.sort_by_key(|row| (row.created_at, row.id));
    Ok(parked)
}
