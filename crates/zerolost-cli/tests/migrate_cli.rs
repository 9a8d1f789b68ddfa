//! `zerolost migrate [--print]`: applies the schema once and reports it up to date after;
//! `--print` connects to nothing, and its script, applied with the database's own client
//! (psql, mysql), leaves tables the relay's stores use and `migrate` finds applied.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use zerolost_core::{Envelope, OutboxStore};
use zerolost_sqlx::{Dialect, SqlStore};
use zerolost_sqlx::{MySqlStore, PgStore, SqliteStore, Tables};

mod common;
use common::{run, workdir};

const PG_URL: (&str, &str) = (
    "ZEROLOST_PG_URL",
    "postgres://zerolost:zerolost@127.0.0.1:55432/zerolost",
);
const MYSQL_URL: (&str, &str) = (
    "ZEROLOST_MYSQL_URL",
    "mysql://zerolost:zerolost@127.0.0.1:53306/zerolost",
);

/// Runs `zerolost ARGS --json` in `dir`; the parsed output of a successful run.
fn json(dir: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let (code, out, err) = run(dir, &args);
    assert_eq!(code, 0, "zerolost {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The versions `migrate --json` applied to its first store.
fn applied(report: &Value) -> Vec<i64> {
    report["stores"][0]["applied"]
        .as_array()
        .expect("applied")
        .iter()
        .map(|v| v.as_i64().expect("a version"))
        .collect()
}

/// A config whose `[outbox]` is `url` with `prefix`.
fn config(dir: &Path, url: &str, prefix: &str) {
    let text = format!("[outbox]\nurl = \"{url}\"\ntable_prefix = \"{prefix}\"\n");
    std::fs::write(dir.join("zerolost.toml"), text).expect("config");
}

/// Pipes `script` into `program args`, which must succeed.
fn apply_with(program: &str, args: &[&str], script: &str) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).expect("write script");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} refused the script: {err}");
}

/// The script `migrate --print --json` shows for the config in `dir`.
fn printed_script(dir: &Path) -> String {
    let printed = json(dir, &["migrate", "--print"]);
    printed["stores"][0]["script"]
        .as_str()
        .expect("script")
        .to_owned()
}

/// `migrate` finds the store's tables applied, and its outbox enqueues and leases one
/// message: the tables are whole. Drops them after.
async fn migrated_and_whole<DB: Dialect>(dir: &Path, store: &SqlStore<DB>, drop: bool) {
    assert_eq!(
        applied(&json(dir, &["migrate"])),
        Vec::<i64>::new(),
        "all applied"
    );
    assert!(
        store
            .pending_migrations()
            .await
            .expect("pending")
            .is_empty()
    );
    let outbox = store.outbox();
    outbox
        .enqueue_now(&[Envelope::new("orders", "1")])
        .await
        .expect("enqueue");
    let leased = outbox
        .lease(10, std::time::Duration::from_secs(30))
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1, "the enqueued row is due");
    if drop {
        store.drop_tables().await.expect("drop");
    }
}

#[tokio::test]
async fn sqlite_migrate_applies_once_and_print_connects_to_nothing() {
    let dir = workdir("migrate-sqlite");
    let db = dir.join("app.sqlite");
    config(&dir, &format!("sqlite://{}", db.display()), "billing_");

    let (code, out, err) = run(&dir, &["migrate", "--print"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("CREATE TABLE IF NOT EXISTS \"billing_outbox\""),
        "{out}"
    );
    assert!(out.contains("INSERT INTO billing_migrations"), "{out}");
    assert!(!db.exists(), "--print opened the database");

    assert_eq!(applied(&json(&dir, &["migrate"])), vec![1, 2, 3]);
    let (code, out, _) = run(&dir, &["migrate"]);
    assert_eq!(code, 0);
    assert!(out.contains("outbox (sqlite): tables up to date"), "{out}");

    let url = format!("sqlite://{}", db.display());
    let tables = Tables::default().with_prefix("billing_").expect("prefix");
    let store = SqliteStore::connect(&url, tables).await.expect("connect");
    migrated_and_whole(&dir, &store, false).await;
}

#[tokio::test]
async fn migrate_refuses_a_config_without_a_database() {
    let dir = workdir("migrate-none");
    std::fs::write(dir.join("zerolost.toml"), "[relay]\nbatch_size = 10\n").expect("config");
    let (code, _, err) = run(&dir, &["migrate"]);
    assert_ne!(code, 0);
    assert!(err.contains("nothing to migrate"), "{err}");
    std::fs::write(dir.join("zerolost.toml"), "[outbox]\nurl = \"redis://x\"\n").expect("config");
    let (code, _, err) = run(&dir, &["migrate", "--print"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("not a sqlite://, postgres:// or mysql:// URL"),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_schema_applied_with_psql_is_what_migrate_expects() {
    let url = zerolost_testkit::service_url(PG_URL.0, PG_URL.1);
    let prefix = format!("zlt_mig_{}_", std::process::id());
    let tables = Tables::default().with_prefix(&prefix).expect("prefix");
    let connected = PgStore::connect(&url, tables).await;
    let Some(store) = zerolost_testkit::require_service("postgres", connected) else {
        return;
    };
    let dir = workdir("migrate-pg");
    config(&dir, &url, &prefix);

    let script = printed_script(&dir);
    let psql = [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-d",
        &url,
        "-f",
        "-",
    ];
    apply_with("psql", &psql, &script);
    migrated_and_whole(&dir, &store, true).await;
}

#[tokio::test]
async fn mysql_schema_applied_with_the_mysql_client_is_what_migrate_expects() {
    let url = zerolost_testkit::service_url(MYSQL_URL.0, MYSQL_URL.1);
    let prefix = format!("zlt_mig_{}_", std::process::id());
    let tables = Tables::default().with_prefix(&prefix).expect("prefix");
    let connected = MySqlStore::connect(&url, tables).await;
    let Some(store) = zerolost_testkit::require_service("mysql", connected) else {
        return;
    };
    let dir = workdir("migrate-mysql");
    config(&dir, &url, &prefix);

    // mysql://user:password@host:port/database
    let rest = url.trim_start_matches("mysql://");
    let (credentials, rest) = rest.split_once('@').expect("user in URL");
    let (user, password) = credentials.split_once(':').expect("password in URL");
    let (address, database) = rest.split_once('/').expect("database in URL");
    let (host, port) = address.split_once(':').expect("port in URL");
    let password = format!("-p{password}");
    let client = ["-h", host, "-P", port, "-u", user, &password, database];
    apply_with("mysql", &client, &printed_script(&dir));
    migrated_and_whole(&dir, &store, true).await;
}
