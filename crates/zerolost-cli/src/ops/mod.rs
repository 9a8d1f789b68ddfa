//! The operator commands: `relay`, `doctor`, `dlq`, `outbox`, `reconcile`, `migrate`, and
//! their shared pieces.

pub mod connect;
pub mod dlq;
pub mod doctor;
mod links;
pub mod migrate;
pub mod outbox;
pub mod reconcile;
pub mod relay;
#[cfg(feature = "tls")]
mod tls_probe;

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use zerolost_core::redrive::Selection;
use zerolost_core::{Error, MessageId};

use crate::config::Config;

/// The options every operator command takes, before or after the command's name
/// (`zerolost --json outbox stats` and `zerolost outbox stats --json` are the same).
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// The config file; default `zerolost.toml` when it exists, else only the
    /// `ZEROLOST_<SECTION>__<KEY>` environment.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// One JSON value instead of the table, for commands that print a result.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Global {
    /// Loads the named file (which must exist), or `./zerolost.toml` if present.
    pub fn load(&self) -> Result<Config, Error> {
        let default = PathBuf::from("zerolost.toml");
        let path = match &self.config {
            Some(path) => Some(path.clone()),
            None => default.exists().then_some(default),
        };
        Config::load(path.as_deref())
    }
}

/// `--id ID… | --all [--dry-run]`: which messages a command changes (`outbox unpark`,
/// `dlq redrive`).
#[derive(Debug, Args)]
pub struct Choice {
    /// These messages (repeat `--id`).
    #[arg(long = "id", required_unless_present = "all")]
    pub ids: Vec<MessageId>,
    /// All of them.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Say what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also messages first published before the consumers' dedupe window (`[consumer]
    /// keep_for`): refused without it, since a copy processed then may be forgotten and
    /// would be applied again.
    #[arg(long)]
    pub beyond_window: bool,
}

impl Choice {
    /// The choice as a redrive selection.
    pub fn selection(&self) -> Selection {
        if self.all {
            Selection::All
        } else {
            Selection::Ids(self.ids.clone())
        }
    }
}

/// The error for a part of the config this build left out: which cargo feature brings it.
pub fn not_built(what: &str, feature: &str) -> Error {
    Error::Config(format!(
        "{what}: this zerolost was built without it; build it with the `{feature}` feature \
         (cargo install zerolost-cli --features {feature}, or the default features)"
    ))
}

/// One line of JSON.
pub fn to_json(value: &impl Serialize) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Config(format!("cannot write JSON: {e}")))
}
