//! `zerolost outbox stats | park list | unpark`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use zerolost_core::{Error, MessageId, OutboxEntry, OutboxStatus};

use super::connect::OutboxDb;
use super::{Choice, Global, to_json};

/// Arguments of `zerolost outbox`.
#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// Rows by state, leased rows, and the oldest pending row's age.
    Stats,
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
pub async fn run(args: OutboxArgs, global: &Global) -> Result<ExitCode, Error> {
    let config = global.load()?;
    let json = global.json;
    let db = OutboxDb::connect(config.outbox()?).await?;
    let outbox = db.outbox();
    match args.command {
        OutboxCommand::Stats => {
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
            command: ParkCommand::List { limit },
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
            let window = config.consumer.keep_for;
            unpark(&outbox, choice, window).await
        }
    }
}

/// Makes the chosen parked rows pending again; rows created before the consumers' window
/// are refused without `--beyond-window` (exit 1 when any chosen row was refused).
async fn unpark(
    outbox: &std::sync::Arc<dyn zerolost_core::OutboxStore>,
    choice: super::Choice,
    window: std::time::Duration,
) -> Result<ExitCode, Error> {
    let parked = parked_rows(outbox).await?;
    let chosen: Vec<&OutboxEntry> = if choice.all {
        parked.iter().collect()
    } else {
        let unknown: Vec<String> = choice
            .ids
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
        parked
            .iter()
            .filter(|row| choice.ids.contains(&row.id))
            .collect()
    };
    let horizon =
        chrono::Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let (ids, refused): (Vec<MessageId>, Vec<MessageId>) = {
        let (kept, old): (Vec<&OutboxEntry>, Vec<&OutboxEntry>) = chosen
            .into_iter()
            .partition(|row| choice.beyond_window || row.created_at >= horizon);
        (
            kept.iter().map(|r| r.id).collect(),
            old.iter().map(|r| r.id).collect(),
        )
    };
    if !refused.is_empty() {
        println!(
            "refused {} row(s) created more than {} ago, before the consumers' dedupe window ([consumer] keep_for): \
             a copy that was delivered and processed then may be forgotten and would be applied again; \
             pass --beyond-window to unpark them anyway:",
            refused.len(),
            humantime::format_duration(window)
        );
        for id in &refused {
            println!("  {id}");
        }
    }
    if choice.dry_run {
        println!("would unpark {} row(s):", ids.len());
        for id in &ids {
            println!("  {id}");
        }
    } else {
        let requeued = if ids.is_empty() {
            0
        } else {
            outbox.requeue(&ids).await?
        };
        println!("unparked {requeued} row(s); the relay publishes them on its next rounds");
    }
    Ok(if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
