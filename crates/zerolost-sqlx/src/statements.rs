//! The SQL text every store runs, built once per store from validated table names: the
//! statements all databases share here, each database's own in its driver module
//! (`postgres.rs`, `mysql.rs`, `sqlite.rs`). Parameters are always bound, never formatted in.

use std::borrow::Cow;

use crate::Tables;

/// How a database spells what the shared statements need.
#[derive(Debug)]
pub struct Syntax {
    /// The database's name in errors and logs.
    pub label: &'static str,
    /// The identifier quote.
    pub quote: char,
    /// The database clock in epoch milliseconds: one clock for every relay and consumer.
    pub now: &'static str,
    /// Placeholders are `$1, $2, …` (PostgreSQL) instead of `?`.
    pub numbered: bool,
    /// An id filter is one array parameter (`= ANY(?)`) instead of `IN (?, …)`.
    pub id_array: bool,
}

impl Syntax {
    /// Rewrites `?` placeholders as `$1, $2, …` where the database wants them.
    pub fn placeholders(&self, sql: String) -> String {
        if !self.numbered {
            return sql;
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// Quoted, qualified table names and the clock, for building statements.
#[derive(Debug)]
pub struct Names {
    /// The outbox table.
    pub outbox: String,
    /// The inbox table.
    pub inbox: String,
    /// The table of dead letters the DLQ refused.
    pub parked: String,
    /// The database clock expression.
    pub now: &'static str,
    /// The syntax the names were quoted for.
    pub syntax: &'static Syntax,
    /// The validated names they were built from.
    pub tables: Tables,
}

impl Names {
    fn new(syntax: &'static Syntax, tables: &Tables) -> Self {
        let q = syntax.quote;
        Self {
            outbox: tables.qualified(&tables.outbox_name(), q),
            inbox: tables.qualified(&tables.inbox_name(), q),
            parked: tables.qualified(&tables.parked_name(), q),
            now: syntax.now,
            syntax,
            tables: tables.clone(),
        }
    }

    /// `sql` with the database's placeholders.
    pub fn sql(&self, sql: String) -> String {
        self.syntax.placeholders(sql)
    }

    /// When an inbox row may be claimed afresh; `cur` names the existing row (`t.`,
    /// `table.` or nothing).
    pub fn reclaimable(&self, cur: &str) -> String {
        let now = self.now;
        format!(
            "{cur}state = 0 OR ({cur}state = 1 AND {cur}claim_expires_at <= {now}) \
             OR ({cur}state >= 2 AND {cur}keep_until <= {now})"
        )
    }

    /// A claim as one upsert returning the fencing number (PostgreSQL, SQLite): `target`
    /// is the table as the INSERT names it, `cur` the existing row in the UPDATE.
    pub fn upsert_claim(&self, target: &str, cur: &str) -> String {
        let (now, reclaimable) = (self.now, self.reclaimable(cur));
        self.sql(format!(
            "INSERT INTO {target} (id, state, claim_token, claim_expires_at, fence) VALUES (?, 1, ?, {now} + ?, 1) \
             ON CONFLICT (id) DO UPDATE SET \
             attempts = CASE WHEN {cur}state >= 2 THEN 0 ELSE {cur}attempts END, \
             state = 1, claim_token = excluded.claim_token, \
             claim_expires_at = excluded.claim_expires_at, finished_at = NULL, keep_until = NULL, \
             fence = {cur}fence + 1 \
             WHERE {reclaimable} RETURNING fence"
        ))
    }

    /// A failure count as one upsert (PostgreSQL, SQLite); names as in [`Names::upsert_claim`].
    pub fn upsert_failure(&self, target: &str, cur: &str) -> String {
        let now = self.now;
        self.sql(format!(
            "INSERT INTO {target} (id, state, claim_expires_at, attempts, first_failure_at, last_failure_at, last_error) \
             VALUES (?, 0, {now}, 1, {now}, {now}, ?) ON CONFLICT (id) DO UPDATE SET \
             attempts = {cur}attempts + 1, \
             first_failure_at = COALESCE({cur}first_failure_at, excluded.first_failure_at), \
             last_failure_at = excluded.last_failure_at, last_error = excluded.last_error"
        ))
    }

    /// Inbox rows retention deletes: finished past their window, or free and untouched
    /// for longer than the parameter.
    pub fn stale_inbox(&self) -> String {
        let now = self.now;
        format!(
            "(state >= 2 AND keep_until <= {now}) \
             OR (state = 0 AND COALESCE(last_failure_at, claim_expires_at, 0) < {now} - ?)"
        )
    }

    /// Retention deletes as `DELETE … WHERE id IN (SELECT … LIMIT ?)` (PostgreSQL, SQLite).
    pub fn purge_by_subquery(&self) -> (String, String) {
        let (o, i, now, stale) = (&self.outbox, &self.inbox, self.now, self.stale_inbox());
        (
            self.sql(format!(
                "DELETE FROM {o} WHERE id IN (SELECT id FROM {o} WHERE status = 1 \
                 AND published_at < {now} - ? LIMIT ?)"
            )),
            self.sql(format!(
                "DELETE FROM {i} WHERE id IN (SELECT id FROM {i} WHERE {stale} LIMIT ?)"
            )),
        )
    }
}

/// The columns and placeholders of a parked dead letter's INSERT.
pub const PARK_COLUMNS: &str = "(id, original_destination, destination, msg_key, headers, \
     payload, created_at, failure, refused, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Columns a leased row comes back with, in order.
pub const RECORD_COLUMNS: &str = "id, destination, msg_key, headers, payload, attempts, created_at";

/// The statements one database writes its own way.
#[derive(Debug, Default)]
pub struct Own {
    /// PostgreSQL/SQLite: the whole lease; MySQL: the locking select.
    pub lease: String,
    /// MySQL only: stamps the selected rows; followed by an id list.
    pub lease_stamp_prefix: String,
    /// PostgreSQL/SQLite: upsert returning the fence; MySQL: insert-if-absent.
    pub claim: String,
    /// MySQL only: the conditional take-over.
    pub claim_take: String,
    /// Counts a duplicate of a finished id (PostgreSQL/SQLite return its state).
    pub count_duplicate: String,
    /// Counts one failure of an id.
    pub record_failure: String,
    /// The sum of duplicates, as a BIGINT column `total`.
    pub duplicates_total: String,
    /// Deletes published outbox rows older than a window, at most a limit.
    pub purge_outbox: String,
    /// Deletes stale inbox rows, at most a limit.
    pub purge_inbox: String,
    /// Inserts a parked dead letter unless its id is there.
    pub park_dead_letter: String,
}

/// Every statement the stores run.
#[derive(Debug)]
pub struct Statements {
    /// How the database spells things.
    pub syntax: &'static Syntax,
    /// The table names.
    pub tables: Tables,
    /// Quoted, qualified table names.
    pub names: Names,
    /// The database's own statements.
    pub own: Own,
    /// The multi-row INSERT up to `VALUES`.
    pub enqueue_prefix: String,
    /// The one-row INSERT.
    pub enqueue_one: String,
    /// Followed by an id list ([`Statements::with_ids`]); the token is the first parameter.
    pub mark_prefix: String,
    /// Followed by an id list; the token is the first parameter.
    pub release_prefix: String,
    /// Followed by an id list.
    pub requeue_prefix: String,
    pub reschedule: String,
    pub park: String,
    pub snapshot: String,
    pub snapshot_since: String,
    pub counts: String,
    pub fence_of: String,
    pub extend_claim: String,
    pub state_of: String,
    pub complete: String,
    pub release_claim: String,
    pub forget_dead_letter: String,
    pub failures: String,
    pub finished: String,
    pub finished_since: String,
    pub parked_of: String,
    /// Followed by an id list; the destination is the first parameter.
    pub unpark_prefix: String,
}

impl Statements {
    /// The statements for `tables` in `syntax`, with the database's `own`.
    pub fn new(syntax: &'static Syntax, tables: &Tables, own: fn(&Names) -> Own) -> Self {
        let names = Names::new(syntax, tables);
        let own = own(&names);
        let (o, now) = (&names.outbox, names.now);
        let snapshot = format!(
            "SELECT id, destination, status, attempts, lease_expires_at, last_error, created_at, \
             published_at, {now} AS now_ms FROM {o}"
        );
        let mut statements = Statements {
            syntax,
            tables: tables.clone(),
            own,
            enqueue_prefix: format!(
                "INSERT INTO {o} (id, destination, msg_key, headers, payload, status, attempts, \
                 next_attempt_at, created_at) VALUES "
            ),
            enqueue_one: String::new(),
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
            reschedule: names.sql(format!(
                "UPDATE {o} SET attempts = ?, next_attempt_at = {now} + ?, last_error = ?, \
                 lease_token = NULL, lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND status = 0"
            )),
            park: names.sql(format!(
                "UPDATE {o} SET status = 2, attempts = ?, last_error = ?, lease_token = NULL, \
                 lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND status = 0"
            )),
            snapshot_since: names.sql(format!("{snapshot} WHERE created_at >= ?")),
            snapshot,
            counts: format!(
                "SELECT status, COUNT(*) AS n, COUNT(CASE WHEN lease_expires_at > {now} THEN 1 END) AS leased, \
                 MIN(created_at) AS oldest FROM {o} GROUP BY status"
            ),
            fence_of: String::new(),
            extend_claim: String::new(),
            state_of: String::new(),
            complete: String::new(),
            release_claim: String::new(),
            forget_dead_letter: String::new(),
            failures: String::new(),
            finished: String::new(),
            finished_since: String::new(),
            parked_of: String::new(),
            unpark_prefix: String::new(),
            names,
        };
        statements.inbox_statements();
        statements.enqueue_one = statements.enqueue_text(1);
        statements
    }

    /// The inbox's and the parked table's shared statements.
    fn inbox_statements(&mut self) {
        let n = &self.names;
        let (i, p, now) = (&n.inbox, &n.parked, n.now);
        self.fence_of = n.sql(format!(
            "SELECT fence FROM {i} WHERE id = ? AND claim_token = ?"
        ));
        self.extend_claim = n.sql(format!(
            "UPDATE {i} SET claim_expires_at = {now} + ? WHERE id = ? AND claim_token = ? AND state = 1"
        ));
        self.state_of = n.sql(format!("SELECT state FROM {i} WHERE id = ?"));
        self.complete = n.sql(format!(
            "UPDATE {i} SET finished_at = CASE WHEN state = 1 THEN {now} ELSE finished_at END, \
             state = ?, keep_until = {now} + ?, attempts = 0 \
             WHERE id = ? AND claim_token = ? AND (state = 1 OR state = ?)"
        ));
        self.release_claim = n.sql(format!(
            "UPDATE {i} SET state = 0, claim_token = NULL, claim_expires_at = {now} \
             WHERE id = ? AND claim_token = ? AND state = 1"
        ));
        // The row stays (free, failures cleared) so that its fencing number keeps growing.
        self.forget_dead_letter = n.sql(format!(
            "UPDATE {i} SET state = 0, claim_token = NULL, claim_expires_at = {now}, finished_at = NULL, \
             keep_until = NULL, attempts = 0, first_failure_at = NULL, last_failure_at = NULL, \
             last_error = NULL WHERE id = ? AND state = 3"
        ));
        self.failures = n.sql(format!(
            "SELECT attempts, first_failure_at, last_failure_at, last_error FROM {i} WHERE id = ?"
        ));
        // Only marks still kept: past keep_until an id is claimable afresh, so the ledger
        // no longer vouches for it (as Redis's expired keys and the memory store).
        self.finished = format!(
            "SELECT id, state, finished_at FROM {i} WHERE state >= 2 AND keep_until > {now}"
        );
        self.finished_since = n.sql(format!("{} AND finished_at >= ?", self.finished));
        self.parked_of = n.sql(format!(
            "SELECT id, destination, msg_key, headers, payload, created_at, failure, refused, parked_at \
             FROM {p} WHERE original_destination = ? ORDER BY parked_at, id"
        ));
        self.unpark_prefix = format!("DELETE FROM {p} WHERE original_destination = ? AND id");
    }

    /// `prefix` (ending in `id`) followed by a filter on `n` ids: `= ANY(?)` with one array
    /// parameter, or `IN (?, …)`. Only placeholders are added.
    pub fn with_ids(&self, prefix: &str, n: usize) -> String {
        let sql = if self.syntax.id_array {
            format!("{prefix} = ANY(?)")
        } else {
            format!("{prefix} IN ({})", vec!["?"; n.max(1)].join(", "))
        };
        self.syntax.placeholders(sql)
    }

    /// The multi-row INSERT of `rows` outbox rows (nine parameters each); the one-row
    /// form, an application's usual enqueue, is built once.
    pub fn enqueue(&self, rows: usize) -> Cow<'_, str> {
        match rows {
            0 | 1 => Cow::Borrowed(&self.enqueue_one),
            _ => Cow::Owned(self.enqueue_text(rows)),
        }
    }

    fn enqueue_text(&self, rows: usize) -> String {
        let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let mut sql = String::with_capacity(self.enqueue_prefix.len() + rows * (row.len() + 2));
        sql.push_str(&self.enqueue_prefix);
        for n in 0..rows.max(1) {
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(row);
        }
        self.syntax.placeholders(sql)
    }

    /// `scripts` (migration templates) with table and index names filled in.
    pub fn migrations(&self, scripts: &[Script]) -> Vec<Migration> {
        let lease_fn = self
            .tables
            .qualified(&self.tables.lease_function_name(), '"');
        scripts
            .iter()
            .map(|script| Migration {
                version: script.version,
                description: script.description,
                sql: script
                    .template
                    .replace("{outbox}", &self.names.outbox)
                    .replace("{inbox}", &self.names.inbox)
                    .replace("{parked}", &self.names.parked)
                    .replace("{lease_fn}", &lease_fn)
                    .replace("{prefix}", self.tables.prefix()),
            })
            .collect()
    }

    /// `DROP TABLE` for every table the migrations create, history last.
    pub fn drop_tables(&self) -> Vec<String> {
        let t = &self.tables;
        [
            t.outbox_name(),
            t.inbox_name(),
            t.parked_name(),
            t.migrations_name(),
        ]
        .iter()
        .map(|name| {
            format!(
                "DROP TABLE IF EXISTS {}",
                t.qualified(name, self.syntax.quote)
            )
        })
        .collect()
    }
}

/// How a database spells sqlx's migration history table and a byte string, for the
/// script [`SqlStore::script_for`](crate::SqlStore::script_for) prints.
#[derive(Debug)]
pub struct History {
    /// The `installed_on` column's type and default.
    pub installed_on: &'static str,
    /// The binary type of the `checksum` column.
    pub binary: &'static str,
    /// A byte string literal from its hex digits, around them.
    pub hex: (&'static str, &'static str),
}

/// One migration as shipped: its version, what it does, and its SQL with `{outbox}`,
/// `{inbox}`, `{parked}`, `{lease_fn}` and `{prefix}` to fill in.
#[derive(Debug)]
pub struct Script {
    /// The version recorded in the history table.
    pub version: i64,
    /// What the migration does.
    pub description: &'static str,
    /// The SQL template.
    pub template: &'static str,
}

/// One migration for a store's tables: what `migrate` applies and `zerolost migrate
/// --print` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The version recorded in the history table.
    pub version: i64,
    /// What the migration does.
    pub description: &'static str,
    /// The SQL, with the store's table names.
    pub sql: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    static NUMBERED: Syntax = Syntax {
        label: "test",
        quote: '"',
        now: "0",
        numbered: true,
        id_array: true,
    };

    #[test]
    fn placeholders_are_numbered_where_the_database_wants_them() {
        assert_eq!(
            NUMBERED.placeholders("a = ? AND b = ?".into()),
            "a = $1 AND b = $2"
        );
    }

    #[test]
    fn statements_use_the_quoted_table_names() {
        let tables = Tables::default().with_prefix("t1_").expect("valid");
        let sql = Statements::new(&NUMBERED, &tables, |_| Own::default());
        assert!(sql.complete.contains("\"t1_inbox\""));
        assert!(sql.enqueue(2).contains("\"t1_outbox\""));
        assert!(sql.enqueue(2).ends_with("$17, $18)"));
        assert_eq!(
            sql.with_ids(&sql.requeue_prefix, 3),
            format!("{} = ANY($1)", sql.requeue_prefix)
        );
    }
}
