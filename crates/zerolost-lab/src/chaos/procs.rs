//! The run's child processes: two relay daemons (`zerolost-lab relay`, the operator's
//! relay built in) and two `zerolost-lab chaos-consumer`s, each logging to its own file in
//! the run directory.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use zerolost_core::Error;

use super::world::World;

/// What a child does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `zerolost-lab relay` (the operator's relay).
    Relay,
    /// `zerolost-lab chaos-consumer`.
    Consumer,
}

/// A child that exited when nobody stopped it.
#[derive(Debug, Clone, Serialize)]
pub struct UnexpectedExit {
    /// `relay-1`, `consumer-2`, ...
    pub name: String,
    /// How it ended.
    pub status: String,
    /// Seconds into the run.
    pub at_s: f64,
}

/// How a child answered the final SIGTERM.
#[derive(Debug, Clone, Serialize)]
pub struct Shutdown {
    /// Its name.
    pub name: String,
    /// Its exit code (`None`: killed after the grace period, or by a signal).
    pub exit_code: Option<i32>,
    /// Seconds from SIGTERM to exit.
    pub took_s: f64,
}

struct Proc {
    role: Role,
    name: String,
    config: PathBuf,
    child: Option<Child>,
}

/// The environment variable that gives a chaos consumer the database, unproxied, where it
/// records its handler runs.
pub const RECORD_URL_ENV: &str = "ZEROLOST_CHAOS_RECORD_URL";

/// The children of a run.
pub struct Procs {
    exe: PathBuf,
    record_url: String,
    destination: String,
    effects_table: String,
    reruns_table: String,
    runs_table: String,
    redis_prefix: Option<String>,
    run_dir: PathBuf,
    procs: Vec<Proc>,
    started: tokio::time::Instant,
    /// Children that exited on their own (each was started again).
    pub unexpected: Vec<UnexpectedExit>,
    /// When consumer processes were frozen (SIGSTOP … SIGCONT).
    pub pauses: Vec<super::runs::Pause>,
    /// When consumer processes were cut off from their dedupe store.
    pub cuts: Vec<super::runs::Span>,
    /// Processes killed, or that died on their own, during the run.
    pub killed: Vec<i64>,
}

impl Procs {
    /// `relays` relays and a consumer per consumer config of `world`, not started yet.
    pub fn new(world: &World, relays: usize) -> Result<Self, Error> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::Config(format!("cannot find the zerolost binary: {e}")))?;
        let mut procs = Vec::new();
        for i in 1..=relays {
            procs.push(Proc {
                role: Role::Relay,
                name: format!("relay-{i}"),
                config: world.config_path.clone(),
                child: None,
            });
        }
        for (i, config) in world.consumer_configs.iter().enumerate() {
            procs.push(Proc {
                role: Role::Consumer,
                name: format!("consumer-{}", i + 1),
                config: config.clone(),
                child: None,
            });
        }
        Ok(Self {
            exe,
            record_url: world.direct_db_url.clone(),
            destination: world.destination.clone(),
            effects_table: world.effects_table.clone(),
            reruns_table: world.reruns_table.clone(),
            runs_table: world.runs_table.clone(),
            redis_prefix: world.redis_prefix.clone(),
            run_dir: world.run_dir.clone(),
            procs,
            started: tokio::time::Instant::now(),
            unexpected: Vec::new(),
            pauses: Vec::new(),
            cuts: Vec::new(),
            killed: Vec::new(),
        })
    }

    /// Indexes of the children with `role`.
    pub fn of(&self, role: Role) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].role == role)
            .collect()
    }

    /// Child `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.procs[i].name
    }

    /// Starts every child.
    pub fn start_all(&mut self) -> Result<(), Error> {
        for i in 0..self.procs.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// Starts child `i` (its log file is appended to).
    pub fn start(&mut self, i: usize) -> Result<(), Error> {
        let proc = &self.procs[i];
        let log_path = self.run_dir.join(format!("{}.log", proc.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::Config(format!("cannot open {}: {e}", log_path.display())))?;
        let err = log
            .try_clone()
            .map_err(|e| Error::Config(format!("cannot open {}: {e}", log_path.display())))?;
        let mut command = Command::new(&self.exe);
        match proc.role {
            Role::Relay => {
                command.arg("relay").arg("--config").arg(&proc.config);
            }
            Role::Consumer => {
                command
                    .env(RECORD_URL_ENV, &self.record_url)
                    .arg("chaos-consumer")
                    .arg("--config")
                    .arg(&proc.config)
                    .args(["--destination", &self.destination])
                    .args(["--name", &proc.name])
                    .args(["--effects-table", &self.effects_table])
                    .args(["--runs-table", &self.runs_table]);
                if let Some(prefix) = &self.redis_prefix {
                    command
                        .args(["--redis-prefix", prefix])
                        .args(["--reruns-table", &self.reruns_table]);
                }
            }
        }
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(|| {
                // The child dies with this process (killed, crashed, interrupted): no relay
                // of an abandoned run keeps leasing rows from the next run's outbox.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        // The children log by their own defaults; ZEROLOST_CHAOS_LOG, when set, is their filter.
        command.env_remove("ZEROLOST_LOG");
        if let Ok(filter) = std::env::var("ZEROLOST_CHAOS_LOG") {
            command.env("ZEROLOST_LOG", filter);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Config(format!("cannot start {}: {e}", proc.name)))?;
        self.procs[i].child = Some(child);
        Ok(())
    }

    /// Child `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].child.as_ref().and_then(Child::id)
    }

    /// Sends `signal` to child `i` (if it runs).
    pub fn signal(&self, i: usize, signal: Signal) {
        if let Some(pid) = self.procs[i].child.as_ref().and_then(Child::id) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// kill -9 of child `i`; waits until it is gone.
    pub async fn kill(&mut self, i: usize) {
        self.note_death(i);
        if let Some(mut child) = self.procs[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Notes child `i`'s process as killed (for the runs' verdict).
    pub fn note_death(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            self.killed.push(i64::from(pid));
        }
    }

    /// Waits up to `limit` for child `i` to exit; `None` if it still runs.
    pub async fn wait_exit(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        let child = self.procs[i].child.as_mut()?;
        let status = tokio::time::timeout(limit, child.wait()).await.ok()?.ok();
        self.procs[i].child = None;
        status
    }

    /// Notes and restarts children that exited on their own.
    pub fn reap(&mut self) -> Result<(), Error> {
        for i in 0..self.procs.len() {
            let exited = match self.procs[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            self.note_death(i);
            self.procs[i].child = None;
            self.unexpected.push(UnexpectedExit {
                name: self.procs[i].name.clone(),
                status: exited.to_string(),
                at_s: self.started.elapsed().as_secs_f64(),
            });
            eprintln!(
                "chaos: {} exited on its own ({exited}); starting it again. The end of its log:\n{}",
                self.procs[i].name,
                self.log_tail(i, 25)
            );
            self.start(i)?;
        }
        Ok(())
    }

    /// The end of child `i`'s log (or why it cannot be read).
    fn log_tail(&self, i: usize, lines: usize) -> String {
        let path = self.run_dir.join(format!("{}.log", self.procs[i].name));
        match std::fs::read(&path) {
            Ok(bytes) => tail_of(&String::from_utf8_lossy(&bytes), lines),
            Err(e) => format!("  (cannot read {}: {e})", path.display()),
        }
    }

    /// SIGTERM to every child, then waits up to `grace` for each; the rest are killed.
    pub async fn terminate_all(&mut self, grace: Duration) -> Vec<Shutdown> {
        let sent = tokio::time::Instant::now();
        for i in 0..self.procs.len() {
            self.signal(i, Signal::SIGTERM);
        }
        let mut out = Vec::new();
        for i in 0..self.procs.len() {
            let name = self.procs[i].name.clone();
            let left = grace.saturating_sub(sent.elapsed());
            let status = self.wait_exit(i, left).await;
            if status.is_none() && self.procs[i].child.is_some() {
                self.kill(i).await;
                eprintln!(
                    "chaos: {name} did not stop within {grace:?} of SIGTERM; killed. The end of its log:\n{}",
                    self.log_tail(i, 25)
                );
            }
            out.push(Shutdown {
                name,
                exit_code: status.and_then(|s| s.code()),
                took_s: round3(sent.elapsed().as_secs_f64()),
            });
        }
        out
    }
}

/// The last `lines` lines of `log`, indented, without terminal colours.
fn tail_of(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("  | {}", strip_colours(line)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `line` without ANSI colour sequences (`ESC [ ... m`).
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Rounds to milliseconds, for the report.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_keeps_the_last_lines_without_colours() {
        let log = "one\n\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m two\nthree\n";
        assert_eq!(tail_of(log, 2), "  | 2026  WARN two\n  | three");
        assert_eq!(tail_of(log, 10).lines().count(), 3);
        assert_eq!(tail_of("", 5), "");
    }
}
