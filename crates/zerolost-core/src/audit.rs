//! Durability findings: what each backend's audit reports about a broker or destination.

use serde::{Deserialize, Serialize};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A confirmed message can be lost.
    Unsafe,
    /// Nothing is lost, but a safety net is missing.
    Advice,
}

/// One way a broker, topic or queue falls short of the durable layout, with its fix.
///
/// ```
/// use zerolost_core::{Finding, Severity};
/// let finding = Finding {
///     subject: "topic orders: min.insync.replicas".into(),
///     found: "1".into(),
///     required: "2".into(),
///     severity: Severity::Unsafe,
///     fix: "kafka-configs.sh --alter --entity-type topics --entity-name orders --add-config min.insync.replicas=2".into(),
/// };
/// assert_eq!(finding.severity, Severity::Unsafe);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What is checked (`queue orders: type`, `broker a (host:port): flushDiskType`).
    pub subject: String,
    /// The value found.
    pub found: String,
    /// The value required.
    pub required: String,
    /// How bad it is.
    pub severity: Severity,
    /// The command, declaration or config line that fixes it.
    pub fix: String,
}
