//! The SQL text of every statement, per database, built once from validated table names.
// Every dialect's text is here whichever drivers are enabled; with one driver, the others'
// parts go unused.
#![cfg_attr(
    not(all(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]

use crate::Tables;

/// Which SQL dialect a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    /// The database's name in errors and logs.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    pub(crate) fn quote(self) -> char {
        match self {
            Dialect::MySql => '`',
            Dialect::Postgres | Dialect::Sqlite => '"',
        }
    }

    /// The database clock in epoch milliseconds: one clock for every relay and consumer.
    fn now(self) -> &'static str {
        match self {
            Dialect::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
            Dialect::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
            // Integer arithmetic on the text of 'now' (one instant per statement): the
            // floating-point `julianday('now')` form came out 1 ms short about one time in
            // eight, so a row enqueued in the same millisecond was not due yet.
            Dialect::Sqlite => {
                "(CAST(strftime('%s', 'now') AS INTEGER) * 1000 + CAST(substr(strftime('%f', 'now'), 4, 3) AS INTEGER))"
            }
        }
    }

    /// Rewrites `?` placeholders as `$1, $2, ...` for PostgreSQL.
    fn numbered(self, sql: &str) -> String {
        if self != Dialect::Postgres {
            return sql.to_owned();
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// What a claim attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimState {
    /// The claim is ours, with this fencing number.
    Claimed(i64),
    /// The id is finished, in this inbox state.
    Finished(i16),
    /// Someone else holds a live claim.
    Held,
}

/// Every statement the stores run. Parameters are always bound, never formatted in.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) dialect: Dialect,
    /// Quoted, qualified table names.
    pub(crate) outbox: String,
    pub(crate) inbox: String,
    /// Templates for the migrations: table and index names.
    pub(crate) tables: Tables,
    pub(crate) enqueue_prefix: String,
    /// PostgreSQL/SQLite: one statement; MySQL: the locking select.
    pub(crate) lease: String,
    /// MySQL only: stamps the selected rows (see [`Statements::lease_stamp`]).
    pub(crate) lease_stamp_prefix: String,
    /// Followed by an id list (see [`Statements::with_ids`]); the token is the first parameter.
    pub(crate) mark_prefix: String,
    pub(crate) release_prefix: String,
    /// Followed by an id list.
    pub(crate) requeue_prefix: String,
    pub(crate) reschedule: String,
    pub(crate) park: String,
    pub(crate) snapshot: String,
    pub(crate) snapshot_since: String,
    /// PostgreSQL/SQLite: upsert returning the new state; MySQL: insert-if-absent.
    pub(crate) claim: String,
    /// MySQL only: the conditional take-over.
    pub(crate) claim_take: String,
    /// MySQL only: the fencing number of a claim just taken.
    pub(crate) fence_of: String,
    pub(crate) extend_claim: String,
    pub(crate) count_duplicate: String,
    pub(crate) state_of: String,
    pub(crate) complete: String,
    pub(crate) release_claim: String,
    pub(crate) forget_dead_letter: String,
    pub(crate) failures: String,
    pub(crate) record_failure: String,
    pub(crate) finished: String,
    pub(crate) finished_since: String,
    pub(crate) duplicates_total: String,
    pub(crate) counts: String,
    pub(crate) purge_outbox: String,
    pub(crate) purge_inbox: String,
    /// The table of dead letters the DLQ refused, quoted and qualified.
    pub(crate) parked: String,
    pub(crate) park_dead_letter: String,
    pub(crate) parked_of: String,
    /// Followed by an id list; the destination is the first parameter.
    pub(crate) unpark_prefix: String,
}

/// Columns a leased row comes back with, in order.
const RECORD_COLUMNS: &str = "id, destination, msg_key, headers, payload, attempts, created_at";

impl Statements {
    pub(crate) fn new(dialect: Dialect, tables: &Tables) -> Self {
        let q = dialect.quote();
        let o = tables.qualified(&tables.outbox_name(), q);
        let i = tables.qualified(&tables.inbox_name(), q);
        let now = dialect.now();
        let n = |sql: String| dialect.numbered(&sql);
        // In upserts the existing row is named by an alias (PostgreSQL) or the table
        // (SQLite); MySQL's plain UPDATE names it by nothing.
        let (alias, cur) = match dialect {
            Dialect::Postgres => (format!("{i} AS t"), "t.".to_owned()),
            Dialect::Sqlite => (i.clone(), format!("{i}.")),
            Dialect::MySql => (i.clone(), String::new()),
        };
        let reclaimable = format!(
            "{cur}state = 0 OR ({cur}state = 1 AND {cur}claim_expires_at <= {now}) \
             OR ({cur}state >= 2 AND {cur}keep_until <= {now})"
        );
        // A lease writes only unindexed columns, so PostgreSQL can update the row in place
        // (HOT); leased rows stay in the due index and are skipped by this filter.
        let unleased = format!("(lease_expires_at IS NULL OR lease_expires_at <= {now})");
        let (lease, lease_stamp_prefix) = match dialect {
            Dialect::Postgres => (
                format!(
                    "SELECT id, destination, msg_key, headers, payload, attempts, created_at \
                     FROM {}($1, $2, $3)",
                    tables.qualified(&tables.lease_function_name(), q)
                ),
                String::new(),
            ),
            Dialect::Sqlite => (
                format!(
                    "UPDATE {o} SET lease_token = ?, lease_expires_at = {now} + ? \
                     WHERE id IN (SELECT id FROM {o} WHERE status = 0 AND next_attempt_at <= {now} \
                     AND {unleased} ORDER BY next_attempt_at LIMIT ?) RETURNING {RECORD_COLUMNS}"
                ),
                String::new(),
            ),
            Dialect::MySql => (
                format!(
                    "SELECT {RECORD_COLUMNS} FROM {o} WHERE status = 0 AND next_attempt_at <= {now} \
                     AND {unleased} ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED"
                ),
                format!("UPDATE {o} SET lease_token = ?, lease_expires_at = {now} + ? WHERE id"),
            ),
        };
        let (claim, claim_take, count_duplicate) = match dialect {
            Dialect::MySql => (
                format!(
                    "INSERT INTO {i} (id, state, claim_expires_at) VALUES (?, 0, {now}) \
                     ON DUPLICATE KEY UPDATE id = id"
                ),
                format!(
                    "UPDATE {i} SET attempts = IF(state >= 2, 0, attempts), state = 1, claim_token = ?, \
                     claim_expires_at = {now} + ?, finished_at = NULL, keep_until = NULL, fence = fence + 1 \
                     WHERE id = ? AND ({reclaimable})"
                ),
                format!("UPDATE {i} SET duplicates = duplicates + 1 WHERE id = ? AND state >= 2"),
            ),
            Dialect::Postgres | Dialect::Sqlite => (
                n(format!(
                    "INSERT INTO {alias} (id, state, claim_token, claim_expires_at, fence) VALUES (?, 1, ?, {now} + ?, 1) \
                         ON CONFLICT (id) DO UPDATE SET \
                         attempts = CASE WHEN {cur}state >= 2 THEN 0 ELSE {cur}attempts END, \
                         state = 1, claim_token = excluded.claim_token, \
                         claim_expires_at = excluded.claim_expires_at, finished_at = NULL, keep_until = NULL, \
                         fence = {cur}fence + 1 \
                         WHERE {reclaimable} RETURNING fence"
                )),
                String::new(),
                n(format!(
                    "UPDATE {i} SET duplicates = duplicates + 1 WHERE id = ? AND state >= 2 RETURNING state"
                )),
            ),
        };
        let record_failure = match dialect {
            Dialect::MySql => format!(
                "INSERT INTO {i} (id, state, claim_expires_at, attempts, first_failure_at, last_failure_at, last_error) \
                 VALUES (?, 0, {now}, 1, {now}, {now}, ?) ON DUPLICATE KEY UPDATE attempts = attempts + 1, \
                 first_failure_at = COALESCE(first_failure_at, VALUES(first_failure_at)), \
                 last_failure_at = VALUES(last_failure_at), last_error = VALUES(last_error)"
            ),
            Dialect::Postgres | Dialect::Sqlite => n(format!(
                "INSERT INTO {alias} (id, state, claim_expires_at, attempts, first_failure_at, last_failure_at, last_error) \
                     VALUES (?, 0, {now}, 1, {now}, {now}, ?) ON CONFLICT (id) DO UPDATE SET \
                     attempts = {cur}attempts + 1, \
                     first_failure_at = COALESCE({cur}first_failure_at, excluded.first_failure_at), \
                     last_failure_at = excluded.last_failure_at, last_error = excluded.last_error"
            )),
        };
        let duplicates_total = match dialect {
            Dialect::Postgres => {
                format!("SELECT CAST(COALESCE(SUM(duplicates), 0) AS BIGINT) FROM {i}")
            }
            Dialect::MySql => {
                format!("SELECT CAST(COALESCE(SUM(duplicates), 0) AS SIGNED) FROM {i}")
            }
            Dialect::Sqlite => format!("SELECT COALESCE(SUM(duplicates), 0) FROM {i}"),
        };
        let (purge_outbox, purge_inbox) = match dialect {
            Dialect::MySql => (
                format!("DELETE FROM {o} WHERE status = 1 AND published_at < {now} - ? LIMIT ?"),
                format!(
                    "DELETE FROM {i} WHERE (state >= 2 AND keep_until <= {now}) \
                     OR (state = 0 AND COALESCE(last_failure_at, claim_expires_at, 0) < {now} - ?) LIMIT ?"
                ),
            ),
            Dialect::Postgres | Dialect::Sqlite => (
                n(format!(
                    "DELETE FROM {o} WHERE id IN (SELECT id FROM {o} WHERE status = 1 \
                     AND published_at < {now} - ? LIMIT ?)"
                )),
                n(format!(
                    "DELETE FROM {i} WHERE id IN (SELECT id FROM {i} WHERE (state >= 2 AND keep_until <= {now}) \
                     OR (state = 0 AND COALESCE(last_failure_at, claim_expires_at, 0) < {now} - ?) LIMIT ?)"
                )),
            ),
        };
        let p = tables.qualified(&tables.parked_name(), q);
        let park_columns = "(id, original_destination, destination, msg_key, headers, payload, created_at, \
             failure, refused, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let park_dead_letter = match dialect {
            Dialect::MySql => format!("INSERT IGNORE INTO {p} {park_columns}"),
            Dialect::Postgres | Dialect::Sqlite => n(format!(
                "INSERT INTO {p} {park_columns} ON CONFLICT (id) DO NOTHING"
            )),
        };
        let snapshot_select = format!(
            "SELECT id, destination, status, attempts, lease_expires_at, last_error, created_at, \
             published_at, {now} AS now_ms FROM {o}"
        );
        Statements {
            dialect,
            tables: tables.clone(),
            enqueue_prefix: format!(
                "INSERT INTO {o} (id, destination, msg_key, headers, payload, status, attempts, \
                 next_attempt_at, created_at) "
            ),
            lease,
            lease_stamp_prefix,
            mark_prefix: format!(
                "UPDATE {o} SET status = 1, published_at = {now}, lease_token = NULL, \
                 lease_expires_at = NULL, last_error = NULL WHERE status = 0 AND lease_token = ? AND id"
            ),
            release_prefix: format!(
                "UPDATE {o} SET lease_token = NULL, lease_expires_at = NULL \
                 WHERE status = 0 AND lease_token = ? AND id"
            ),
            requeue_prefix: format!(
                "UPDATE {o} SET status = 0, attempts = 0, next_attempt_at = {now}, published_at = NULL, \
                 lease_token = NULL, lease_expires_at = NULL WHERE status <> 0 AND id"
            ),
            reschedule: n(format!(
                "UPDATE {o} SET attempts = ?, next_attempt_at = {now} + ?, last_error = ?, \
                 lease_token = NULL, lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND status = 0"
            )),
            park: n(format!(
                "UPDATE {o} SET status = 2, attempts = ?, last_error = ?, lease_token = NULL, \
                 lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND status = 0"
            )),
            snapshot: snapshot_select.clone(),
            snapshot_since: n(format!("{snapshot_select} WHERE created_at >= ?")),
            claim,
            claim_take,
            fence_of: n(format!(
                "SELECT fence FROM {i} WHERE id = ? AND claim_token = ?"
            )),
            extend_claim: n(format!(
                "UPDATE {i} SET claim_expires_at = {now} + ? WHERE id = ? AND claim_token = ? AND state = 1"
            )),
            count_duplicate,
            state_of: n(format!("SELECT state FROM {i} WHERE id = ?")),
            complete: n(format!(
                "UPDATE {i} SET finished_at = CASE WHEN state = 1 THEN {now} ELSE finished_at END, \
                 state = ?, keep_until = {now} + ?, attempts = 0 \
                 WHERE id = ? AND claim_token = ? AND (state = 1 OR state = ?)"
            )),
            release_claim: n(format!(
                "UPDATE {i} SET state = 0, claim_token = NULL, claim_expires_at = {now} \
                 WHERE id = ? AND claim_token = ? AND state = 1"
            )),
            // The row stays (free, failures cleared) so that its fencing number keeps growing.
            forget_dead_letter: n(format!(
                "UPDATE {i} SET state = 0, claim_token = NULL, claim_expires_at = {now}, finished_at = NULL, \
                 keep_until = NULL, attempts = 0, first_failure_at = NULL, last_failure_at = NULL, \
                 last_error = NULL WHERE id = ? AND state = 3"
            )),
            failures: n(format!(
                "SELECT attempts, first_failure_at, last_failure_at, last_error FROM {i} WHERE id = ?"
            )),
            record_failure,
            // Only marks still kept: past keep_until an id is claimable afresh, so the ledger
            // no longer vouches for it (as Redis's expired keys and the memory store).
            finished: format!(
                "SELECT id, state, finished_at FROM {i} WHERE state >= 2 AND keep_until > {now}"
            ),
            finished_since: n(format!(
                "SELECT id, state, finished_at FROM {i} WHERE state >= 2 AND keep_until > {now} \
                 AND finished_at >= ?"
            )),
            duplicates_total,
            counts: format!(
                "SELECT status, COUNT(*) AS n, COUNT(CASE WHEN lease_expires_at > {now} THEN 1 END) AS leased, \
                 MIN(created_at) AS oldest \
                 FROM {o} GROUP BY status"
            ),
            purge_outbox,
            purge_inbox,
            park_dead_letter,
            parked_of: n(format!(
                "SELECT id, destination, msg_key, headers, payload, created_at, failure, refused, parked_at \
                 FROM {p} WHERE original_destination = ? ORDER BY parked_at, id"
            )),
            unpark_prefix: format!("DELETE FROM {p} WHERE original_destination = ? AND id"),
            parked: p,
            outbox: o,
            inbox: i,
        }
    }

    /// `prefix` (ending in `id`) followed by a filter on `n` ids: `= ANY(?)` on PostgreSQL
    /// (one array parameter), `IN (?, ...)` elsewhere. Only placeholders are added.
    pub(crate) fn with_ids(&self, prefix: &str, n: usize) -> String {
        let sql = match self.dialect {
            Dialect::Postgres => format!("{prefix} = ANY(?)"),
            Dialect::MySql | Dialect::Sqlite => {
                let marks = vec!["?"; n.max(1)].join(", ");
                format!("{prefix} IN ({marks})")
            }
        };
        self.dialect.numbered(&sql)
    }

    /// The MySQL statement that stamps `n` selected rows with a lease.
    pub(crate) fn lease_stamp(&self, n: usize) -> String {
        self.with_ids(&self.lease_stamp_prefix, n)
    }

    /// The migration scripts for this database, with table and index names filled in.
    pub(crate) fn migrations(&self) -> Vec<(i64, &'static str, String)> {
        let scripts: &[(i64, &'static str, &str)] = match self.dialect {
            Dialect::Postgres => &[
                (
                    1,
                    "outbox and inbox",
                    include_str!("migrations/postgres/0001_outbox_inbox.sql"),
                ),
                (
                    2,
                    "lease function",
                    include_str!("migrations/postgres/0002_lease_function.sql"),
                ),
                (
                    3,
                    "inbox fence",
                    include_str!("migrations/postgres/0003_inbox_fence.sql"),
                ),
                (
                    4,
                    "parked dead letters",
                    include_str!("migrations/postgres/0004_parked_dead_letters.sql"),
                ),
            ],
            Dialect::MySql => &[
                (
                    1,
                    "outbox and inbox",
                    include_str!("migrations/mysql/0001_outbox_inbox.sql"),
                ),
                (
                    2,
                    "inbox fence",
                    include_str!("migrations/mysql/0002_inbox_fence.sql"),
                ),
                (
                    3,
                    "parked dead letters",
                    include_str!("migrations/mysql/0003_parked_dead_letters.sql"),
                ),
            ],
            Dialect::Sqlite => &[
                (
                    1,
                    "outbox and inbox",
                    include_str!("migrations/sqlite/0001_outbox_inbox.sql"),
                ),
                (
                    2,
                    "inbox fence",
                    include_str!("migrations/sqlite/0002_inbox_fence.sql"),
                ),
                (
                    3,
                    "parked dead letters",
                    include_str!("migrations/sqlite/0003_parked_dead_letters.sql"),
                ),
            ],
        };
        let lease_fn = self
            .tables
            .qualified(&self.tables.lease_function_name(), '"');
        scripts
            .iter()
            .map(|(version, description, template)| {
                let sql = template
                    .replace("{outbox}", &self.outbox)
                    .replace("{inbox}", &self.inbox)
                    .replace("{parked}", &self.parked)
                    .replace("{lease_fn}", &lease_fn)
                    .replace("{prefix}", self.tables.prefix());
                (*version, *description, sql)
            })
            .collect()
    }

    /// Statements that drop everything the migrations created, dependants first.
    pub(crate) fn drop_statements(&self) -> Vec<String> {
        let q = self.dialect.quote();
        let mut statements = Vec::new();
        if self.dialect == Dialect::Postgres {
            statements.push(format!(
                "DROP FUNCTION IF EXISTS {}(UUID, BIGINT, BIGINT)",
                self.tables.qualified(&self.tables.lease_function_name(), q)
            ));
        }
        for name in [
            self.tables.outbox_name(),
            self.tables.inbox_name(),
            self.tables.parked_name(),
            self.tables.migrations_name(),
        ] {
            statements.push(format!(
                "DROP TABLE IF EXISTS {}",
                self.tables.qualified(&name, q)
            ));
        }
        statements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            Dialect::Postgres.numbered("a = ? AND b = ?"),
            "a = $1 AND b = $2"
        );
        assert_eq!(Dialect::MySql.numbered("a = ?"), "a = ?");
    }

    #[test]
    fn statements_use_the_quoted_table_names() {
        let tables = Tables::default().with_prefix("t1_").expect("valid");
        for dialect in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            let sql = Statements::new(dialect, &tables);
            assert!(sql.lease.contains("t1_outbox"), "{dialect:?}");
            assert!(sql.claim.contains("t1_inbox"), "{dialect:?}");
            assert!(sql.migrations()[0].2.contains("t1_outbox"));
            assert!(
                !sql.migrations()[0].2.contains('{'),
                "all placeholders filled"
            );
        }
    }
}
