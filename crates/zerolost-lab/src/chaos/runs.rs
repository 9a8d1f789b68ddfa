//! Every handler run of a chaos run, recorded by the consumers in `<prefix>runs` (message
//! id, process, fencing number, time span, whether the handler succeeded), and the verdict
//! on them, whatever the effects table says:
//! - two runs of one message that overlap in time are a failure, unless the earlier one's
//!   process was frozen (SIGSTOP) when the later one began;
//! - a run after an earlier run of the message that succeeded is a failure. With marks kept
//!   apart from the effect (Redis) it is allowed where the earlier one's process was killed
//!   or its store refused the earlier run's processed mark (cut off, killed, restarting:
//!   the Redis gap, see `marks`); with the SQL inbox the mark commits with the effect and
//!   nothing is allowed. A renewal that does not hold, or a mark the store acknowledged and
//!   then lost, shows here.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use zerolost_core::{Error, MessageId};

use super::effects::{EffectsDb, db_error, numbered};

/// Microseconds since the epoch: one clock for every process of the run (one machine).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// One recorded handler run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The message.
    pub id: MessageId,
    /// The consumer process.
    pub pid: i64,
    /// The claim's fencing number.
    pub fence: i64,
    /// Start, µs since the epoch.
    pub started: i64,
    /// End (finished or cut off), when its consumer could record it.
    pub ended: Option<i64>,
    /// The handler returned success.
    pub succeeded: bool,
}

/// A span during which a consumer process was frozen (SIGSTOP to SIGCONT) or cut off from
/// its dedupe store (link refused to link back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// The process.
    pub pid: i64,
    /// Start, µs since the epoch.
    pub from: i64,
    /// End.
    pub to: i64,
}

/// A consumer frozen.
pub type Pause = Span;

/// What happened to the consumer processes, for the verdict.
#[derive(Debug, Clone, Copy)]
pub struct Circumstances<'a> {
    /// When consumers were frozen.
    pub pauses: &'a [Pause],
    /// Processed marks the store refused: (message id, fence of the claim).
    pub failed_marks: &'a HashSet<(MessageId, i64)>,
    /// Consumer processes killed, or that died, during the run.
    pub killed: &'a [i64],
    /// The processed mark is written apart from the effect (Redis), so a consumer that dies
    /// or is cut off between the two leaves a re-run behind.
    pub marks_apart: bool,
}

impl Circumstances<'_> {
    /// Why a re-run after `earlier`'s success is allowed, if it is.
    fn excuse(&self, earlier: &Run) -> Option<Excuse> {
        if !self.marks_apart {
            return None;
        }
        if self.failed_marks.contains(&(earlier.id, earlier.fence)) {
            return Some(Excuse::MarkRefused);
        }
        self.killed.contains(&earlier.pid).then_some(Excuse::Killed)
    }
}

enum Excuse {
    Killed,
    MarkRefused,
}

/// What the runs say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunsVerdict {
    /// Handler runs recorded.
    pub runs: usize,
    /// Runs whose end was not recorded (their process was killed): left out of the check.
    pub without_end: usize,
    /// Pairs of runs of one message that overlapped while the earlier one's process ran.
    pub overlapping: usize,
    /// Pairs that overlapped only because the earlier one's process was frozen.
    pub overlapping_while_frozen: usize,
    /// Up to 20 messages with an overlap, for the report.
    pub overlapping_ids: Vec<String>,
    /// Runs after a success of the same message whose process lived on: a mark lost or
    /// never written.
    pub reruns_after_success: usize,
    /// Runs after a success whose process was then killed (the Redis gap, allowed).
    pub reruns_after_kill: usize,
    /// Runs after a success whose processed mark the store refused (cut off, killed,
    /// restarting: the Redis gap, allowed).
    pub reruns_after_refused_mark: usize,
    /// Up to 20 messages re-run after a success, for the report.
    pub rerun_ids: Vec<String>,
}

/// Checks every pair of runs of one message under what happened to their processes.
pub fn verdict(runs: &[Run], seen: &Circumstances) -> RunsVerdict {
    let mut by_id: HashMap<MessageId, Vec<&Run>> = HashMap::new();
    for run in runs {
        by_id.entry(run.id).or_default().push(run);
    }
    let mut out = RunsVerdict {
        runs: runs.len(),
        without_end: runs.iter().filter(|r| r.ended.is_none()).count(),
        ..RunsVerdict::default()
    };
    for (id, mut of_id) in by_id {
        of_id.sort_by_key(|r| r.started);
        for (i, earlier) in of_id.iter().enumerate() {
            let Some(end) = earlier.ended else { continue };
            for later in &of_id[i + 1..] {
                if later.started >= end {
                    if earlier.succeeded {
                        match seen.excuse(earlier) {
                            Some(Excuse::Killed) => out.reruns_after_kill += 1,
                            Some(Excuse::MarkRefused) => out.reruns_after_refused_mark += 1,
                            None => {
                                out.reruns_after_success += 1;
                                if out.rerun_ids.len() < 20 {
                                    out.rerun_ids.push(id.to_string());
                                }
                            }
                        }
                    }
                    continue;
                }
                let frozen = seen.pauses.iter().any(|p| {
                    p.pid == earlier.pid && p.from <= later.started && later.started < p.to
                });
                if frozen {
                    out.overlapping_while_frozen += 1;
                } else {
                    out.overlapping += 1;
                    if out.overlapping_ids.len() < 20 {
                        out.overlapping_ids.push(id.to_string());
                    }
                }
            }
        }
    }
    out
}

impl EffectsDb {
    /// Drops and creates the runs table.
    pub async fn recreate_runs(&self, table: &str) -> Result<(), Error> {
        let statements = [
            format!("DROP TABLE IF EXISTS {table}"),
            format!(
                "CREATE TABLE {table} (run_id VARCHAR(36) NOT NULL PRIMARY KEY, \
                 msg_id VARCHAR(36) NOT NULL, pid BIGINT NOT NULL, fence BIGINT NOT NULL, \
                 started_us BIGINT NOT NULL, ended_us BIGINT, succeeded BIGINT NOT NULL DEFAULT 0)"
            ),
        ];
        for sql in statements {
            self.execute(&sql, "create the runs table", &[]).await?;
        }
        Ok(())
    }

    /// Records the start of run `run_id`.
    pub async fn run_started(
        &self,
        table: &str,
        run_id: &str,
        id: MessageId,
        fence: u64,
    ) -> Result<(), Error> {
        let sql = format!(
            "INSERT INTO {table} (run_id, msg_id, pid, fence, started_us) VALUES (?, ?, ?, ?, ?)"
        );
        let args = [
            Arg::Text(run_id.to_owned()),
            Arg::Text(id.to_string()),
            Arg::Int(i64::from(std::process::id())),
            Arg::Int(i64::try_from(fence).unwrap_or(i64::MAX)),
            Arg::Int(now_us()),
        ];
        self.execute(&sql, "record a run", &args).await
    }

    /// Records the end of run `run_id`, at `ended_us`, and whether its handler succeeded.
    pub async fn run_ended(
        &self,
        table: &str,
        run_id: &str,
        ended_us: i64,
        succeeded: bool,
    ) -> Result<(), Error> {
        let sql = format!("UPDATE {table} SET ended_us = ?, succeeded = ? WHERE run_id = ?");
        let args = [
            Arg::Int(ended_us),
            Arg::Int(i64::from(succeeded)),
            Arg::Text(run_id.to_owned()),
        ];
        self.execute(&sql, "record a run's end", &args).await
    }

    /// The messages whose handler succeeded in a run that ended at `since_us` or later.
    pub async fn succeeded_since(
        &self,
        table: &str,
        since_us: i64,
    ) -> Result<Vec<MessageId>, Error> {
        let sql = format!(
            "SELECT DISTINCT msg_id FROM {table} WHERE succeeded = 1 AND ended_us >= {since_us}"
        );
        let rows: Vec<(String,)> = self.select(sql, "read the recent runs").await?;
        rows.into_iter()
            .map(|(id,)| {
                id.parse()
                    .map_err(|e| Error::backend("read a run's id", false, e))
            })
            .collect()
    }

    /// Every recorded run.
    pub async fn runs(&self, table: &str) -> Result<Vec<Run>, Error> {
        let sql =
            format!("SELECT msg_id, pid, fence, started_us, ended_us, succeeded FROM {table}");
        let rows: Vec<(String, i64, i64, i64, Option<i64>, i64)> =
            self.select(sql, "read the runs").await?;
        rows.into_iter()
            .map(|(id, pid, fence, started, ended, succeeded)| {
                Ok(Run {
                    id: id
                        .parse()
                        .map_err(|e| Error::backend("read a run's id", false, e))?,
                    pid,
                    fence,
                    started,
                    ended,
                    succeeded: succeeded != 0,
                })
            })
            .collect()
    }

    /// Runs `sql` (`?` placeholders) with `args` on whichever pool.
    pub(super) async fn execute(
        &self,
        sql: &str,
        what: &'static str,
        args: &[Arg],
    ) -> Result<(), Error> {
        macro_rules! run {
            ($pool:expr, $sql:expr) => {{
                let mut query = sqlx::query(sqlx::AssertSqlSafe($sql));
                for arg in args {
                    query = match arg {
                        Arg::Text(text) => query.bind(text.clone()),
                        Arg::Int(n) => query.bind(*n),
                    };
                }
                query.execute($pool).await.map(drop)
            }};
        }
        match self {
            EffectsDb::Sqlite(pool) => run!(pool, sql.to_owned()),
            EffectsDb::Postgres(pool) => run!(pool, numbered(sql)),
            EffectsDb::MySql(pool) => run!(pool, sql.to_owned()),
        }
        .map_err(db_error(what))
    }
}

/// A bound value.
pub(super) enum Arg {
    Text(String),
    Int(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: MessageId, pid: i64, started: i64, ended: Option<i64>) -> Run {
        Run {
            id,
            pid,
            fence: 1,
            started,
            ended,
            succeeded: false,
        }
    }

    static NONE_REFUSED: std::sync::LazyLock<HashSet<(MessageId, i64)>> =
        std::sync::LazyLock::new(HashSet::new);

    fn redis() -> Circumstances<'static> {
        Circumstances {
            pauses: &[],
            failed_marks: &NONE_REFUSED,
            killed: &[],
            marks_apart: true,
        }
    }

    #[test]
    fn a_run_after_a_success_fails_unless_the_store_refused_its_mark() {
        let id = MessageId::new();
        let ok = Run {
            succeeded: true,
            fence: 4,
            ..run(id, 1, 0, Some(10))
        };
        let again = [ok, run(id, 2, 20, Some(30))];
        let refused: HashSet<_> = [(id, 4)].into();
        let v = verdict(
            &again,
            &Circumstances {
                failed_marks: &refused,
                ..redis()
            },
        );
        assert_eq!(
            (v.reruns_after_success, v.reruns_after_refused_mark),
            (0, 1)
        );
        for (what, refused) in [
            ("another claim's mark refused", [(id, 3)]),
            ("another message's mark refused", [(MessageId::new(), 4)]),
        ] {
            let refused: HashSet<_> = refused.into();
            let v = verdict(
                &again,
                &Circumstances {
                    failed_marks: &refused,
                    ..redis()
                },
            );
            assert_eq!(v.reruns_after_success, 1, "{what}");
        }
        let inbox = Circumstances {
            failed_marks: &refused,
            marks_apart: false,
            ..redis()
        };
        assert_eq!(verdict(&again, &inbox).reruns_after_success, 1, "inbox");
    }

    #[test]
    fn a_run_after_a_success_fails_unless_its_process_was_killed() {
        let id = MessageId::new();
        let ok = Run {
            succeeded: true,
            ..run(id, 1, 0, Some(10))
        };
        let again = [ok.clone(), run(id, 2, 20, Some(30))];
        let v = verdict(&again, &redis());
        assert_eq!((v.reruns_after_success, v.rerun_ids.len()), (1, 1));
        let killed = Circumstances {
            killed: &[1],
            ..redis()
        };
        let v = verdict(&again, &killed);
        assert_eq!((v.reruns_after_success, v.reruns_after_kill), (0, 1));
        let inbox = Circumstances {
            marks_apart: false,
            ..killed
        };
        let v = verdict(&again, &inbox);
        assert_eq!(
            (v.reruns_after_success, v.reruns_after_kill),
            (1, 0),
            "the inbox's mark commits with the effect: a kill excuses nothing"
        );
        let after_failure = [run(id, 1, 0, Some(10)), run(id, 1, 20, Some(30))];
        assert_eq!(
            verdict(&after_failure, &redis()).reruns_after_success,
            0,
            "retries are runs"
        );
    }

    #[test]
    fn runs_that_follow_each_other_pass_and_overlapping_ones_fail() {
        let id = MessageId::new();
        let after = [run(id, 1, 0, Some(10)), run(id, 2, 10, Some(20))];
        assert_eq!(verdict(&after, &redis()).overlapping, 0);
        let beside = [run(id, 1, 0, Some(10)), run(id, 2, 5, Some(20))];
        let v = verdict(&beside, &redis());
        assert_eq!((v.overlapping, v.overlapping_ids.len()), (1, 1));
        let other = [
            run(id, 1, 0, Some(10)),
            run(MessageId::new(), 2, 5, Some(20)),
        ];
        assert_eq!(
            verdict(&other, &redis()).overlapping,
            0,
            "other messages may overlap"
        );
    }

    #[test]
    fn a_frozen_holder_explains_an_overlap_and_an_unknown_end_is_left_out() {
        let id = MessageId::new();
        let beside = [run(id, 1, 0, Some(30)), run(id, 2, 15, Some(20))];
        let pause = Pause {
            pid: 1,
            from: 5,
            to: 25,
        };
        let pauses = [pause];
        let v = verdict(
            &beside,
            &Circumstances {
                pauses: &pauses,
                ..redis()
            },
        );
        assert_eq!((v.overlapping, v.overlapping_while_frozen), (0, 1));
        let other_pid = Pause { pid: 2, ..pause };
        let pauses = [other_pid];
        let frozen = Circumstances {
            pauses: &pauses,
            ..redis()
        };
        assert_eq!(verdict(&beside, &frozen).overlapping, 1);
        let killed = [run(id, 1, 0, None), run(id, 2, 5, Some(20))];
        let v = verdict(&killed, &redis());
        assert_eq!((v.overlapping, v.without_end), (0, 1));
    }
}
