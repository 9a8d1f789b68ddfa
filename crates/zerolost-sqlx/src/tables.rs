//! Table names: a validated prefix and optional schema. Names are checked once, here,
//! and only then formatted into SQL; nothing else is ever spliced into a statement.

use crate::SqlError;

/// Longest prefix: PostgreSQL's 63-byte identifier limit minus the longest suffix.
const MAX_PREFIX: usize = 40;
/// Longest schema name (PostgreSQL's identifier limit).
const MAX_SCHEMA: usize = 63;

/// Where zerolost's tables live: `[schema.]{prefix}outbox`, `{prefix}inbox` and
/// `{prefix}migrations`.
///
/// ```
/// use zerolost_sqlx::Tables;
/// let tables = Tables::default().with_prefix("billing_")?;
/// assert_eq!(tables.outbox_name(), "billing_outbox");
/// assert!(Tables::default().with_prefix("x; DROP TABLE users").is_err());
/// # Ok::<(), zerolost_sqlx::SqlError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    schema: Option<String>,
    prefix: String,
}

impl Default for Tables {
    /// No schema (the connection's default), prefix `zerolost_`.
    fn default() -> Self {
        Self {
            schema: None,
            prefix: "zerolost_".into(),
        }
    }
}

impl Tables {
    /// Uses `prefix` before every table name; refused unless it is a plain identifier.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, SqlError> {
        validate("prefix", prefix, MAX_PREFIX)?;
        self.prefix = prefix.to_owned();
        Ok(self)
    }

    /// Puts the tables in `schema` (PostgreSQL schema, MySQL database); refused unless it is
    /// a plain identifier.
    pub fn in_schema(mut self, schema: &str) -> Result<Self, SqlError> {
        validate("schema", schema, MAX_SCHEMA)?;
        self.schema = Some(schema.to_owned());
        Ok(self)
    }

    /// The schema, if one was set.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The outbox table's unqualified name.
    pub fn outbox_name(&self) -> String {
        format!("{}outbox", self.prefix)
    }

    /// The table of dead letters the DLQ refused (kept by the consumers): unqualified name.
    pub fn parked_name(&self) -> String {
        format!("{}parked_dead_letters", self.prefix)
    }

    /// The inbox table's unqualified name.
    pub fn inbox_name(&self) -> String {
        format!("{}inbox", self.prefix)
    }

    /// The migration history table's unqualified name.
    pub fn migrations_name(&self) -> String {
        format!("{}migrations", self.prefix)
    }

    /// The PostgreSQL lease function's unqualified name.
    pub fn lease_function_name(&self) -> String {
        format!("{}outbox_lease", self.prefix)
    }

    /// The prefix before every table, index and function name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name` qualified with the schema and quoted with `quote`.
    pub(crate) fn qualified(&self, name: &str, quote: char) -> String {
        match &self.schema {
            Some(schema) => format!("{quote}{schema}{quote}.{quote}{name}{quote}"),
            None => format!("{quote}{name}{quote}"),
        }
    }
}

fn validate(what: &'static str, value: &str, max: usize) -> Result<(), SqlError> {
    let mut chars = value.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if starts_well && rest_ok && value.len() <= max {
        Ok(())
    } else {
        Err(SqlError::InvalidIdentifier {
            what,
            value: value.chars().take(80).collect(),
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            "1abc",
            "a b",
            "a;drop table x",
            "a\"b",
            "a`b",
            "a.b",
            "ä",
            "a-b",
            &"x".repeat(41),
        ] {
            assert!(
                matches!(
                    Tables::default().with_prefix(bad),
                    Err(SqlError::InvalidIdentifier { .. })
                ),
                "{bad:?} must be refused"
            );
        }
        assert!(Tables::default().in_schema("public; --").is_err());
    }

    #[test]
    fn plain_names_are_accepted_and_quoted() {
        let tables = Tables::default()
            .with_prefix("app_1_")
            .and_then(|t| t.in_schema("Billing"))
            .expect("valid");
        assert_eq!(tables.outbox_name(), "app_1_outbox");
        assert_eq!(
            tables.qualified(&tables.inbox_name(), '"'),
            "\"Billing\".\"app_1_inbox\""
        );
    }
}
