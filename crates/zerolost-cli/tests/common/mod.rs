//! Helpers shared by the CLI's test binaries: a working directory, the `zerolost` binary,
//! a SQLite store in it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use zerolost_rabbitmq::testkit::{test_management_url, test_url};

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

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` on the daemon: `(status code, body)`, or `None` while it does not listen.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}

/// The value of a metric line `name value` in a Prometheus text page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Polls `probe` every 50 ms until it gives a value; panics naming `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM to `child`.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits up to `limit` for `child` to exit; its exit code.
pub fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let status = wait_for("the relay to exit", limit, || {
        child.try_wait().ok().flatten()
    });
    status.code().unwrap_or(-1)
}

/// A config for RabbitMQ with one destination, the SQLite outbox in `dir`, fast relay
/// ticks and the daemon's HTTP on `port`.
pub fn rabbit_config_text(dir: &Path, destination: &str, port: u16) -> String {
    format!(
        "broker = \"rabbitmq\"\ndestinations = [\"{destination}\"]\n\
         [outbox]\nurl = \"sqlite://{}\"\n\
         [relay]\nbatch_size = 20\nstats_interval = \"200ms\"\ndlq_interval = \"200ms\"\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n\
         [rabbitmq]\nurl = \"{}\"\nmanagement_url = \"{}\"\nvhost = \"zerolost\"\n",
        dir.join("outbox.sqlite").display(),
        test_url(),
        test_management_url()
    )
}
