//! `zerolost reconcile`: outbox against the consumers' ledger, by id, with the source
//! article's count view beside it; `--repair` re-sends what is missing through the outbox.

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use zerolost_core::{Error, ReconcileReport, Reconciler};

use super::Global;
use super::connect::{OutboxDb, ledger};

/// Arguments of `zerolost reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Only messages created at or after this time (RFC 3339, e.g. 2026-11-26T00:00:00Z),
    /// or this long ago (e.g. 24h). Default: the consumers' window (`[consumer] keep_for`,
    /// 24h), the span their ledger vouches for; older messages are reported "beyond the
    /// ledger window", never as lost.
    #[arg(long)]
    since: Option<String>,
    /// How long after its publish a message may still be on its way (not yet missing).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Re-enqueue the missing messages (same ids: a late copy is suppressed downstream).
    #[arg(long)]
    repair: bool,
    /// With --repair: re-enqueue the messages beyond the ledger window too. Their processed
    /// marks may be gone, so one that was processed is applied again.
    #[arg(long, requires = "repair")]
    beyond_window: bool,
    /// Refuse to repair more than this many messages (a loss that large needs a person;
    /// the source article's threshold).
    #[arg(long, default_value_t = 1000)]
    max_repair: usize,
}

/// `reconcile --json`.
#[derive(Debug, Serialize)]
struct Output<'a> {
    report: &'a ReconcileReport,
    lost: usize,
    repaired: usize,
    repair_refused: bool,
    /// Messages beyond the ledger window (`report.beyond_window`), and how many of them
    /// were re-enqueued (only with `--beyond-window`).
    beyond_window: usize,
    repaired_beyond_window: usize,
}

fn since(text: &str) -> Result<DateTime<Utc>, Error> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        Error::Config(format!(
            "--since {text:?}: give an RFC 3339 time (2026-11-26T00:00:00Z) or a duration (24h)"
        ))
    })?;
    let ago = chrono::Duration::from_std(ago)
        .map_err(|_| Error::Config(format!("--since {text:?} is too long ago")))?;
    Ok(Utc::now() - ago)
}

/// Reconciles; exit 1 when anything is missing, 3 when a repair was refused as too large.
pub async fn run(args: ReconcileArgs, global: &Global) -> Result<ExitCode, Error> {
    let config = global.load()?;
    let window = config.consumer.keep_for;
    let since = match args.since.as_deref() {
        Some(text) => since(text)?,
        None => Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
    };
    let outbox = OutboxDb::connect(config.outbox()?).await?.outbox();
    let reconciler = Reconciler::new(outbox, ledger(&config).await?)
        .with_grace(args.grace)
        .with_window(window);
    let report = reconciler.reconcile(Some(since)).await?;
    let lost = report.missing.len();
    let beyond_window = report.beyond_window.len();
    let repair_refused =
        args.repair && lost + beyond_window * usize::from(args.beyond_window) > args.max_repair;
    let (repaired, repaired_beyond_window) = if args.repair && !repair_refused {
        let beyond = if args.beyond_window {
            reconciler.repair_beyond_window(&report).await?
        } else {
            0
        };
        (reconciler.repair(&report).await?, beyond)
    } else {
        (0, 0)
    };
    if global.json {
        let output = Output {
            report: &report,
            lost,
            repaired,
            repair_refused,
            beyond_window,
            repaired_beyond_window,
        };
        println!("{}", super::to_json(&output)?);
    } else {
        print_table(&report);
        if beyond_window > 0 && !args.beyond_window {
            println!(
                "\n{beyond_window} message(s) published but created before the ledger window ({}, [consumer] keep_for): \
                 the consumers' marks for them may be gone, so they are neither lost nor safe to re-send; \
                 --repair leaves them (--repair --beyond-window re-sends them, and any that was processed is applied again)",
                humantime::format_duration(window)
            );
        }
        if repaired_beyond_window > 0 {
            println!(
                "re-enqueued {repaired_beyond_window} message(s) beyond the ledger window (--beyond-window)"
            );
        }
        if repair_refused {
            println!(
                "\nREPAIR REFUSED: {lost} missing is above --max-repair {}: investigate before re-sending",
                args.max_repair
            );
        } else if args.repair {
            println!("\nrepaired: {repaired} message(s) re-enqueued; the relay sends them again");
        } else if lost > 0 {
            println!("\nre-send them with: zerolost reconcile --repair");
        }
    }
    Ok(match (lost, repair_refused) {
        (0, _) => ExitCode::SUCCESS,
        (_, true) => ExitCode::from(3),
        _ => ExitCode::from(1),
    })
}

fn print_table(r: &ReconcileReport) {
    let c = &r.counts;
    println!(
        "{:<28} {:>10}   {:<26} {:>10}",
        "by id", "", "by count (the article)", ""
    );
    let rows = [
        (
            "produced (outbox rows)",
            r.produced,
            "produced",
            c.produced as i64,
        ),
        (
            "published (confirmed)",
            r.published,
            "stored in the MQ",
            c.published as i64,
        ),
        ("processed", r.processed, "consumed", c.consumed as i64),
        (
            "dead-lettered",
            r.dead_lettered.len(),
            "producer→MQ gap",
            c.producer_to_broker_gap,
        ),
        (
            "parked (not sendable)",
            r.parked.len(),
            "MQ→consumer gap",
            c.broker_to_consumer_gap,
        ),
        ("pending (not sent yet)", r.pending, "", 0),
        ("in flight (within grace)", r.in_flight, "", 0),
        ("LOST (missing after grace)", r.missing.len(), "", 0),
        ("beyond the ledger window", r.beyond_window.len(), "", 0),
        ("unknown to the outbox", r.unknown.len(), "", 0),
    ];
    for (label, value, count_label, count) in rows {
        if count_label.is_empty() {
            println!("{label:<28} {value:>10}");
        } else {
            println!("{label:<28} {value:>10}   {count_label:<26} {count:>10}");
        }
    }
    println!("duplicates suppressed: {}", r.duplicates_suppressed);
    for id in r.missing.iter().take(20) {
        println!("  missing {id}");
    }
    if r.missing.len() > 20 {
        println!("  … and {} more (--json lists all)", r.missing.len() - 20);
    }
    for parked in r.parked.iter().take(5) {
        println!(
            "  parked {} after {} attempts: {}",
            parked.id, parked.attempts, parked.reason
        );
    }
}
