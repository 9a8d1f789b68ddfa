//! The durability audit: do the brokers that serve a topic flush a message to disk before
//! they answer `SEND_OK`?

use rocketmq_client_rust::{BrokerAdmin, DefaultMQAdminExt};
use serde::Serialize;
use zerolost_core::{Error, Finding, Severity};

use crate::{RocketConfig, RocketError, RocketRuntime};

/// The audit of the brokers serving one topic: empty `findings` means durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// The topic.
    pub topic: String,
    /// The brokers checked (`name@address`).
    pub brokers: Vec<String>,
    /// Everything that falls short.
    pub findings: Vec<Finding>,
}

impl Audit {
    /// True when nothing falls short.
    pub fn is_durable(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Unsafe)
    }
}

/// Checks every master broker serving `topic`: `flushDiskType=SYNC_FLUSH` (a `SEND_OK`
/// then means the message is on disk), and for a master with slaves `brokerRole=SYNC_MASTER`
/// (a `SEND_OK` then means a slave has it too). Each finding names the `broker.conf` line
/// that fixes it. A topic without a route is `Error::Unroutable`.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_rocketmq::{RocketConfig, RocketRuntime, audit};
/// let report = audit(&RocketRuntime::shared()?, &RocketConfig::new("127.0.0.1:9876"), "orders").await?;
/// for f in &report.findings {
///     println!("{}: {} (need {}): {}", f.subject, f.found, f.required, f.fix);
/// }
/// # Ok(()) }
/// ```
pub async fn audit(
    runtime: &RocketRuntime,
    config: &RocketConfig,
    topic: &str,
) -> Result<Audit, Error> {
    crate::topology::with_admin(runtime, config, async |admin| {
        Box::pin(audit_with(admin, topic)).await
    })
    .await
    .map_err(Error::from)
}

pub(crate) async fn audit_with(
    admin: &DefaultMQAdminExt,
    topic: &str,
) -> Result<Audit, RocketError> {
    let route = crate::topology::route(admin, topic).await?;
    let mut brokers = Vec::new();
    let mut findings = Vec::new();
    for broker in &route.broker_datas {
        let name = broker.broker_name().to_string();
        let has_slaves = broker.broker_addrs().keys().any(|id| *id != 0);
        let Some(master) = broker.broker_addrs().get(&0) else {
            continue;
        };
        brokers.push(format!("{name}@{master}"));
        let settings = match Box::pin(admin.get_broker_config(master.clone())).await {
            Ok(settings) => settings,
            Err(e) => {
                let operation = "read a broker's config";
                let client = admin.client_config();
                return Err(crate::link::broker_call_failed(client, operation, master, e).await);
            }
        };
        let value = |key: &str| {
            settings
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let subject = |what: &str| format!("broker {name} ({master}): {what}");
        let flush = value("flushDiskType");
        if flush != "SYNC_FLUSH" {
            findings.push(Finding {
                severity: Severity::Unsafe,
                subject: subject("flushDiskType"),
                found: flush,
                required: "SYNC_FLUSH".into(),
                fix: "set `flushDiskType=SYNC_FLUSH` in the broker's broker.conf and restart it: \
                      with ASYNC_FLUSH a SEND_OK message can be lost when the machine crashes"
                    .into(),
            });
        }
        let role = value("brokerRole");
        if has_slaves && role != "SYNC_MASTER" {
            findings.push(Finding {
                severity: Severity::Unsafe,
                subject: subject("brokerRole"),
                found: role,
                required: "SYNC_MASTER".into(),
                fix: "set `brokerRole=SYNC_MASTER` on the master (its slaves stay SLAVE): with \
                      ASYNC_MASTER a SEND_OK message can be lost with the master"
                    .into(),
            });
        }
    }
    Ok(Audit {
        topic: topic.to_owned(),
        brokers,
        findings,
    })
}
