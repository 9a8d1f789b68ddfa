//! `zerolost dlq list | show ID | redrive [--id ID… | --all] [--dry-run]`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde::Serialize;
use zerolost_core::parking::WithParked;
use zerolost_core::redrive::{DeadLetterMessage, DeadLetterQueue, RedriveOptions, redrive};
use zerolost_core::{Error, MessageId};

use super::connect::{broker_not_built, ledger, publisher};
use super::{Choice, Global, to_json};
use crate::config::Config;

/// Arguments of `zerolost dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Whose DLQ: the destination the messages were consumed from (default: the config's
    /// only destination).
    #[arg(long, short, global = true)]
    destination: Option<String>,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Dead letters with their reason, attempts and error.
    List,
    /// One dead letter: metadata, headers and payload.
    Show {
        /// Its message id.
        id: MessageId,
    },
    /// Publishes dead letters back to their destination with confirms; each is removed
    /// from the DLQ only after its confirm, and the consumers' ledger forgets its
    /// dead-letter mark first so the redriven copy is processed.
    Redrive {
        #[command(flatten)]
        choice: Choice,
        /// Publish even when the consumers' ledger holds no dead-letter mark for the message
        /// (an earlier redrive removed it and did not publish). Without it such a message is
        /// refused: a ledger that is not the consumers' (another `[redis] prefix`, other
        /// `[inbox]` tables) would let them swallow the copy as already finished.
        #[arg(long)]
        without_mark: bool,
    },
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    message: &'a DeadLetterMessage,
    destination: &'a str,
    key: Option<&'a str>,
}

/// The configured broker's DLQ.
// Without any broker only the "not built" arm is left.
#[cfg_attr(
    not(any(feature = "kafka", feature = "rabbitmq", feature = "rocketmq")),
    allow(unreachable_code)
)]
pub(crate) async fn dead_letter_queue(config: &Config) -> Result<Arc<dyn DeadLetterQueue>, Error> {
    #[cfg(any(feature = "kafka", feature = "rabbitmq", feature = "rocketmq"))]
    use {super::connect, crate::config::BrokerKind};
    Ok(match config.broker {
        #[cfg(feature = "rabbitmq")]
        Some(BrokerKind::Rabbitmq) => Arc::new(zerolost_rabbitmq::RabbitDeadLetters::new(
            connect::rabbit_config(config)?,
        )),
        #[cfg(feature = "kafka")]
        Some(BrokerKind::Kafka) => Arc::new(zerolost_kafka::dead_letters(&connect::kafka_config(
            config,
        )?)?),
        #[cfg(feature = "rocketmq")]
        Some(BrokerKind::Rocketmq) => {
            let runtime = zerolost_rocketmq::RocketRuntime::shared()?;
            Arc::new(
                zerolost_rocketmq::dead_letters(&runtime, &connect::rocket_config(config)?).await?,
            )
        }
        #[allow(unreachable_patterns)]
        Some(other) => return Err(broker_not_built(other)),
        None => {
            return Err(Error::Config(
                "broker: say whose DLQ to read (\"kafka\", \"rabbitmq\" or \"rocketmq\")".into(),
            ));
        }
    })
}

fn destination(args: &DlqArgs, config: &Config) -> Result<String, Error> {
    if let Some(destination) = &args.destination {
        return Ok(destination.clone());
    }
    match config.destinations.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(Error::Config(
            "name the destination with --destination (the config lists none)".into(),
        )),
        many => Err(Error::Config(format!(
            "name the destination with --destination (the config lists {})",
            many.join(", ")
        ))),
    }
}

/// Runs a `dlq` command; `redrive` exits 1 when a chosen message was not redriven.
pub async fn run(args: DlqArgs, global: &Global) -> Result<ExitCode, Error> {
    let config = global.load()?;
    let destination = destination(&args, &config)?;
    let mut dlq = dead_letter_queue(&config).await?;
    if config.inbox.is_some() || config.redis.is_some() {
        // Dead letters the DLQ refused are kept in the consumers' store: list them too.
        dlq = Arc::new(WithParked::new(dlq, ledger(&config).await?));
    }
    match args.command {
        DlqCommand::List => list(dlq.as_ref(), &destination, global.json).await,
        DlqCommand::Show { id } => show(dlq.as_ref(), &destination, id).await,
        DlqCommand::Redrive {
            choice,
            without_mark,
        } => {
            let request = Redrive {
                choice,
                without_mark,
                json: global.json,
            };
            run_redrive(&config, dlq.as_ref(), &destination, request).await
        }
    }
}

/// `dlq list`: the table, or one JSON array.
async fn list(dlq: &dyn DeadLetterQueue, destination: &str, json: bool) -> Result<ExitCode, Error> {
    let messages = dlq.list(destination).await?;
    if json {
        let rows: Vec<Row<'_>> = messages.iter().map(|m| row(m)).collect();
        println!("{}", to_json(&rows)?);
    } else if messages.is_empty() {
        println!("the DLQ of {destination} is empty");
    } else {
        println!("{:<36}  {:<10}  {:>8}  error", "id", "reason", "attempts");
        for m in &messages {
            let (reason, attempts, error) =
                m.failure
                    .as_ref()
                    .map_or(("?".to_owned(), String::new(), String::new()), |f| {
                        (
                            format!("{:?}", f.reason).to_lowercase(),
                            f.attempts.to_string(),
                            f.error.clone(),
                        )
                    });
            let id =
                m.id.map_or_else(|| "(no id)".to_owned(), |id| id.to_string());
            let parked = m.parked.as_ref().map_or_else(String::new, |why| {
                format!(" [kept by the consumers: the DLQ refused it: {why}]")
            });
            println!("{id:<36}  {reason:<10}  {attempts:>8}  {error}{parked}");
        }
        println!("{} dead letter(s) of {destination}", messages.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `dlq show ID`: one dead letter as JSON, with its headers and payload.
async fn show(
    dlq: &dyn DeadLetterQueue,
    destination: &str,
    id: MessageId,
) -> Result<ExitCode, Error> {
    let messages = dlq.list(destination).await?;
    let Some(m) = messages.iter().find(|m| m.id == Some(id)) else {
        return Err(Error::Config(format!(
            "{id} is not in the DLQ of {destination}"
        )));
    };
    let mut value = serde_json::to_value(row(m))
        .map_err(|e| Error::Config(format!("cannot write JSON: {e}")))?;
    value["headers"] = serde_json::json!(m.envelope.headers);
    value["payload"] = match std::str::from_utf8(&m.envelope.payload) {
        Ok(text) => serde_json::json!(text),
        Err(_) => serde_json::json!({ "bytes": m.envelope.payload.len(), "utf8": false }),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&value)
            .map_err(|e| Error::Config(format!("cannot write JSON: {e}")))?
    );
    Ok(ExitCode::SUCCESS)
}

/// What `dlq redrive` was asked.
struct Redrive {
    choice: Choice,
    without_mark: bool,
    json: bool,
}

/// `dlq redrive`: exit 1 when a chosen message was not redriven.
async fn run_redrive(
    config: &Config,
    dlq: &dyn DeadLetterQueue,
    destination: &str,
    request: Redrive,
) -> Result<ExitCode, Error> {
    let Redrive {
        choice,
        without_mark,
        json,
    } = request;
    // Without the ledger the redriven copy would be suppressed as a duplicate.
    let ledger = ledger(config).await?;
    let publisher = publisher(config).await?;
    let dry_run = choice.dry_run;
    let options = RedriveOptions {
        dry_run,
        window: config.consumer.keep_for,
        beyond_window: choice.beyond_window,
        without_mark,
    };
    let report = redrive(
        dlq,
        publisher.as_ref(),
        ledger.as_ref(),
        destination,
        &choice.selection(),
        &options,
    )
    .await?;
    if json {
        println!("{}", to_json(&report)?);
    } else if dry_run {
        println!(
            "would redrive {} message(s) to {destination}:",
            report.redriven.len()
        );
        for id in &report.redriven {
            println!("  {id}");
        }
    } else {
        println!(
            "redriven {} message(s) to {destination} (confirmed), removed {} from its DLQ",
            report.redriven.len(),
            report.removed
        );
        for (id, error) in &report.failed {
            println!("  NOT redriven {id}: {error} (still in the DLQ)");
        }
    }
    for id in &report.not_found {
        eprintln!("not in the DLQ: {id}");
    }
    if !json {
        for (id, why) in &report.refused {
            println!("  REFUSED {id} (still in the DLQ, nothing published): {why}");
        }
    }
    if report.skipped_without_id > 0 {
        eprintln!(
            "{} dead letter(s) without an id were left: nothing could deduplicate them",
            report.skipped_without_id
        );
    }
    Ok(
        if report.failed.is_empty() && report.not_found.is_empty() && report.refused.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

fn row(message: &DeadLetterMessage) -> Row<'_> {
    Row {
        message,
        destination: &message.envelope.destination,
        key: message.envelope.key.as_deref(),
    }
}
