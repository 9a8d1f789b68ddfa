//! The operator commands: `relay`, `doctor`, `outbox`, (and their shared pieces).

pub mod connect;
pub mod dlq;
pub mod doctor;
pub mod outbox;
pub mod reconcile;
pub mod relay;

use std::path::PathBuf;

use clap::Args;
use zerolost_core::Error;

use crate::config::Config;

/// `--config`, shared by the operator commands.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file; default `zerolost.toml` when it exists, else only the
    /// `ZEROLOST_<SECTION>__<KEY>` environment.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl ConfigArg {
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
