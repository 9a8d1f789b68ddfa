//! Helpers shared by the CLI's test binaries: a working directory, the `zerolost` binary,
//! a SQLite store in it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use zerolost_sqlx::{SqliteStore, Tables};

/// A fresh working directory for one test.
pub fn workdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zerolost-ops-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The `zerolost` binary, run in `dir`.
pub fn zerolost(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zerolost"));
    command.current_dir(dir);
    command
}

/// Runs `zerolost ARGS` in `dir`: (exit code, stdout, stderr).
pub fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = zerolost(dir).args(args).output().expect("run zerolost");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The SQLite outbox and inbox `outbox.sqlite` in `dir`, migrated.
pub async fn sqlite(dir: &Path) -> SqliteStore {
    let url = format!("sqlite://{}", dir.join("outbox.sqlite").display());
    let store = SqliteStore::connect(&url, Tables::default())
        .await
        .expect("sqlite");
    store.migrate().await.expect("migrate");
    store
}
