//! The crate's error type: every error says whether trying again can help.

use zerolost_core::Error as CoreError;

/// What went wrong in a SQL outbox or inbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// A table name, prefix or schema is not a plain SQL identifier.
    #[error(
        "invalid {what} `{value}`: use 1 to {max} ASCII letters, digits or `_`, not starting with a digit"
    )]
    InvalidIdentifier {
        /// Which name (`prefix`, `schema`).
        what: &'static str,
        /// The refused value.
        value: String,
        /// The longest allowed value.
        max: usize,
    },
    /// A setting that this database does not support.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// A message id was enqueued twice.
    #[error("message id already in the outbox: {0}")]
    DuplicateId(String),
    /// A stored row could not be read back.
    #[error("corrupt {what} in table row: {reason}")]
    Corrupt {
        /// The column.
        what: &'static str,
        /// Why it could not be read.
        reason: String,
    },
    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The database refused or failed an operation.
    #[error("{database} {operation} failed: {source}")]
    Database {
        /// `postgres`, `mysql` or `sqlite`.
        database: &'static str,
        /// What was being done (`lease`, `enqueue`, ...).
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl SqlError {
    /// True when the operation may succeed if tried again (connection lost, pool
    /// exhausted, deadlock, serialization failure, database busy).
    pub fn is_retryable(&self) -> bool {
        match self {
            SqlError::Database { source, .. } => is_transient(source),
            SqlError::Migrate(sqlx::migrate::MigrateError::Execute(source)) => is_transient(source),
            _ => false,
        }
    }

    pub(crate) fn db(
        database: &'static str,
        operation: &'static str,
    ) -> impl Fn(sqlx::Error) -> SqlError {
        move |source| SqlError::Database {
            database,
            operation,
            source,
        }
    }
}

/// Whether a driver error is transient.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => is_transient_database_error(db.as_ref()),
        _ => false,
    }
}

fn is_transient_database_error(db: &dyn sqlx::error::DatabaseError) -> bool {
    #[cfg(feature = "mysql")]
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return mysql_transient(mysql.number());
    }
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(sqlite_transient);
    }
    db.code().is_some_and(|code| sqlstate_transient(&code))
}

/// SQLSTATE classes that mean "try again": connection exception, insufficient resources,
/// operator intervention (admin shutdown), serialization failure, deadlock, lock not available.
fn sqlstate_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "40001" | "40P01" | "55P03")
}

/// MySQL/MariaDB error numbers that mean "try again": lock wait timeout, deadlock, too many
/// connections, server shutdown, server gone away, connection lost.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
fn mysql_transient(number: u16) -> bool {
    matches!(number, 1205 | 1213 | 1040 | 1053 | 2006 | 2013)
}

/// SQLite result codes that mean "try again": BUSY and LOCKED (extended codes keep the
/// primary code in the low byte).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn sqlite_transient(code: i64) -> bool {
    matches!(code & 0xff, 5 | 6)
}

impl From<SqlError> for CoreError {
    fn from(error: SqlError) -> Self {
        match error {
            SqlError::InvalidIdentifier { .. } | SqlError::Unsupported(_) => {
                CoreError::Config(error.to_string())
            }
            SqlError::DuplicateId(_) => CoreError::Invalid {
                reason: error.to_string(),
            },
            SqlError::Database { ref source, .. } if is_closed(source) => {
                CoreError::Closed("the SQL connection pool".into())
            }
            SqlError::Database { database, .. } if error.is_retryable() => {
                let reason = error.to_string();
                CoreError::unavailable(database, reason)
            }
            other => {
                let retryable = other.is_retryable();
                CoreError::backend("SQL store", retryable, other)
            }
        }
    }
}

fn is_closed(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolClosed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_are_retryable() {
        for code in ["08006", "40001", "40P01", "57P01", "53300"] {
            assert!(sqlstate_transient(code), "{code}");
        }
        for code in ["23505", "42P01", "22021", "42601"] {
            assert!(!sqlstate_transient(code), "{code}");
        }
        assert!(mysql_transient(1213) && mysql_transient(1205) && !mysql_transient(1062));
        assert!(sqlite_transient(5) && sqlite_transient(517) && sqlite_transient(6));
        assert!(!sqlite_transient(19) && !sqlite_transient(2067));
    }

    #[test]
    fn classification_reaches_the_core_error() {
        let pool_timeout: CoreError = SqlError::Database {
            database: "postgres",
            operation: "lease",
            source: sqlx::Error::PoolTimedOut,
        }
        .into();
        assert!(pool_timeout.is_retryable());
        let bad_name: CoreError = SqlError::InvalidIdentifier {
            what: "prefix",
            value: "x; drop".into(),
            max: 40,
        }
        .into();
        assert!(!bad_name.is_retryable());
        assert!(bad_name.to_string().contains("x; drop"));
    }
}
