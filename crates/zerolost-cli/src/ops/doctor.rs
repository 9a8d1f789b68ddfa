//! `zerolost doctor`: every configured store and broker — reachable, migrated, durable,
//! client settings safe — as a table of findings with the fix for each.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use zerolost_core::{Error, Finding, LinkSecurity, Severity};

use super::Global;
use super::connect::OutboxDb;
#[cfg(feature = "kafka")]
use super::connect::kafka_config;
#[cfg(feature = "rabbitmq")]
use super::connect::rabbit_config;
#[cfg(feature = "rocketmq")]
use super::connect::rocket_config;
use crate::config::Config;

/// Arguments of `zerolost doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    Advice,
    Unsafe,
    /// The check could not run (unreachable, refused).
    Error,
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Check {
    target: String,
    check: String,
    status: Status,
    detail: String,
    fix: String,
}

impl Check {
    fn ok(target: &str, check: &str, detail: impl Into<String>) -> Self {
        Self::new(target, check, Status::Ok, detail, "")
    }
    fn new(
        target: &str,
        check: &str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            target: target.into(),
            check: check.into(),
            status,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
    fn error(target: &str, check: &str, error: &Error, fix: &str) -> Self {
        Self::new(target, check, Status::Error, error.to_string(), fix)
    }
    #[cfg(any(feature = "kafka", feature = "rabbitmq", feature = "rocketmq"))]
    fn finding(target: &str, finding: Finding) -> Self {
        Self::from_finding(target, finding)
    }
    fn from_finding(target: &str, finding: Finding) -> Self {
        let status = match finding.severity {
            Severity::Unsafe => Status::Unsafe,
            Severity::Advice => Status::Advice,
        };
        Self::new(
            target,
            &finding.subject,
            status,
            format!("found {}, need {}", finding.found, finding.required),
            finding.fix,
        )
    }
}

/// `doctor --json`: `ok` is false when any check is unsafe or could not run; `links`
/// says per link whether it is encrypted and authenticated.
#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
    links: Vec<LinkSecurity>,
}

/// Runs every check; exit 1 on an unsafe finding or an unreachable service.
pub async fn run(_args: DoctorArgs, global: &Global) -> Result<ExitCode, Error> {
    let config = global.load()?;
    let mut checks = Vec::new();
    check_outbox(&config, &mut checks).await;
    #[cfg(feature = "redis")]
    check_redis(&config, &mut checks).await;
    #[cfg(not(feature = "redis"))]
    left_out(config.redis.is_some(), "redis", &mut checks);
    #[cfg(feature = "kafka")]
    check_kafka(&config, &mut checks).await;
    #[cfg(not(feature = "kafka"))]
    left_out(config.kafka.is_some(), "kafka", &mut checks);
    #[cfg(feature = "rabbitmq")]
    check_rabbitmq(&config, &mut checks).await;
    #[cfg(not(feature = "rabbitmq"))]
    left_out(config.rabbitmq.is_some(), "rabbitmq", &mut checks);
    #[cfg(feature = "rocketmq")]
    check_rocketmq(&config, &mut checks).await;
    #[cfg(not(feature = "rocketmq"))]
    left_out(config.rocketmq.is_some(), "rocketmq", &mut checks);
    let links = super::links::report(&config).await;
    check_links(&links, &mut checks);
    if checks.is_empty() {
        return Err(Error::Config(
            "nothing to check: the config names no [outbox], [redis], [kafka], [rabbitmq] or [rocketmq]"
                .into(),
        ));
    }
    let ok = checks
        .iter()
        .all(|c| matches!(c.status, Status::Ok | Status::Advice));
    let report = Report { ok, checks, links };
    if global.json {
        println!("{}", super::to_json(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A check per link: its finding (plaintext to another machine, a certificate near or
/// past its end), or a failed certificate read on an encrypted link.
fn check_links(links: &[LinkSecurity], checks: &mut Vec<Check>) {
    for link in links {
        let target = format!("{} {}", link.link, link.endpoint);
        let detail = format!(
            "{}, {}{}",
            if link.encrypted {
                "encrypted"
            } else {
                "plaintext"
            },
            if link.authenticated {
                "authenticated"
            } else {
                "no credentials"
            },
            link.cert_days_left
                .map(|d| format!(", certificate: {d} days left"))
                .unwrap_or_default()
        );
        if let Some(finding) = link.finding() {
            let mut check = Check::from_finding(&target, finding);
            check.detail = format!("{detail}; {}", check.detail);
            checks.push(check);
        } else if let (true, Some(note)) = (link.encrypted, &link.note) {
            checks.push(Check::new(
                &target,
                "link security",
                Status::Error,
                format!("{detail}; {note}"),
                "see the cause; fix the link's TLS settings or the server's certificate",
            ));
        } else {
            checks.push(Check::ok(&target, "link security", detail));
        }
    }
}

fn print_table(report: &Report) {
    let width = |f: fn(&Check) -> usize| report.checks.iter().map(f).max().unwrap_or(0);
    let (target_w, check_w) = (width(|c| c.target.len()), width(|c| c.check.len()));
    for c in &report.checks {
        let status = match c.status {
            Status::Ok => "ok",
            Status::Advice => "ADVICE",
            Status::Unsafe => "UNSAFE",
            Status::Error => "ERROR",
        };
        println!(
            "{status:<6}  {:<target_w$}  {:<check_w$}  {}",
            c.target, c.check, c.detail
        );
        if !c.fix.is_empty() {
            println!("{:<6}  {:<target_w$}  fix: {}", "", "", c.fix);
        }
    }
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    println!(
        "\n{} checks: {} ok, {} advice, {} unsafe, {} errors — {}",
        report.checks.len(),
        count(Status::Ok),
        count(Status::Advice),
        count(Status::Unsafe),
        count(Status::Error),
        if report.ok { "healthy" } else { "NOT SAFE" }
    );
}

async fn check_outbox(config: &Config, checks: &mut Vec<Check>) {
    let Some(section) = &config.outbox else {
        return;
    };
    let target = format!("outbox {}", section.url);
    let db = match OutboxDb::connect(section).await {
        Ok(db) => db,
        Err(e) => {
            checks.push(Check::error(
                &target,
                "reachable",
                &e,
                "check outbox.url, the database server and its credentials",
            ));
            return;
        }
    };
    checks.push(Check::ok(&target, "reachable", db.engine()));
    match db.pending_migrations().await {
        Ok(pending) if pending.is_empty() => {
            checks.push(Check::ok(&target, "migrations", "all applied"));
        }
        Ok(pending) => {
            let detail = format!("not applied: {pending:?}");
            let (status, fix) = if section.migrate {
                (
                    Status::Advice,
                    "`zerolost relay` applies them when it starts (outbox.migrate = true)",
                )
            } else {
                (
                    Status::Unsafe,
                    "set outbox.migrate = true for one start of `zerolost relay`, or call the store's migrate()",
                )
            };
            checks.push(Check::new(&target, "migrations", status, detail, fix));
        }
        Err(e) => checks.push(Check::error(&target, "migrations", &e, "")),
    }
}

/// A configured section this build cannot check: unsafe, since nothing vouches for it.
#[cfg(not(all(
    feature = "redis",
    feature = "kafka",
    feature = "rabbitmq",
    feature = "rocketmq"
)))]
fn left_out(configured: bool, feature: &str, checks: &mut Vec<Check>) {
    if configured {
        checks.push(Check::new(
            feature,
            "built in",
            Status::Unsafe,
            super::not_built(&format!("[{feature}]"), feature).to_string(),
            format!("use a zerolost built with the `{feature}` feature"),
        ));
    }
}

#[cfg(feature = "redis")]
async fn check_redis(config: &Config, checks: &mut Vec<Check>) {
    let Some(section) = &config.redis else {
        return;
    };
    let target = format!("redis {}", section.url);
    let connected = match section.connect_url() {
        Ok(url) => zerolost_redis::RedisDedupe::connect_with_tls(url.expose(), &section.tls).await,
        Err(e) => Err(e),
    };
    match connected {
        Ok(_) => checks.push(Check::ok(&target, "reachable", "dedupe store")),
        Err(e) => checks.push(Check::error(
            &target,
            "reachable",
            &e,
            "check redis.url and that Redis runs",
        )),
    }
}

/// Adds the client-settings check; `None` when the settings are refused.
#[cfg(any(feature = "kafka", feature = "rabbitmq", feature = "rocketmq"))]
fn settings<T>(target: &str, built: Result<T, Error>, checks: &mut Vec<Check>) -> Option<T> {
    match built {
        Ok(config) => {
            checks.push(Check::ok(target, "client settings", "safe"));
            Some(config)
        }
        Err(e) => {
            checks.push(Check::new(
                target,
                "client settings",
                Status::Unsafe,
                e.to_string(),
                "remove the unsafe setting (or allow it explicitly, knowing it can lose messages)",
            ));
            None
        }
    }
}

#[cfg(any(feature = "kafka", feature = "rabbitmq", feature = "rocketmq"))]
fn audit_result(
    target: &str,
    destination: &str,
    audit: Result<Vec<Finding>, Error>,
    checks: &mut Vec<Check>,
) {
    match audit {
        Ok(findings) if findings.is_empty() => checks.push(Check::ok(
            target,
            &format!("{destination}: durability"),
            "durable",
        )),
        Ok(findings) => {
            for finding in findings {
                checks.push(Check::finding(target, finding));
            }
        }
        Err(e) => checks.push(Check::error(
            target,
            &format!("{destination}: durability"),
            &e,
            "check the broker is reachable and the destination exists",
        )),
    }
}

#[cfg(feature = "kafka")]
async fn check_kafka(config: &Config, checks: &mut Vec<Check>) {
    let Some(section) = &config.kafka else {
        return;
    };
    let target = format!("kafka {}", section.brokers);
    let Some(kafka) = settings(&target, kafka_config(config), checks) else {
        return;
    };
    match zerolost_kafka::check_link(&kafka).await {
        Ok(()) => checks.push(Check::ok(&target, "reachable", "metadata read")),
        Err(e) => {
            checks.push(Check::error(
                &target,
                "reachable",
                &e,
                "check kafka.brokers, its TLS and SASL settings, and that the brokers run",
            ));
            return;
        }
    }
    // The consumers of the application share `[kafka.client]`: their settings too.
    match kafka.consumer_config("zerolost-doctor") {
        Ok(_) => checks.push(Check::ok(&target, "consumer settings", "safe")),
        Err(e) => checks.push(Check::new(
            &target,
            "consumer settings",
            Status::Unsafe,
            e.to_string(),
            "remove the unsafe consumer setting from kafka.client (or list it in kafka.allow_unsafe, knowing it can lose messages)",
        )),
    }
    for destination in &config.destinations {
        let audit = zerolost_kafka::audit(&kafka, destination)
            .await
            .map(|a| a.findings);
        audit_result(&target, destination, audit, checks);
    }
}

#[cfg(feature = "rabbitmq")]
async fn check_rabbitmq(config: &Config, checks: &mut Vec<Check>) {
    let Some(section) = &config.rabbitmq else {
        return;
    };
    let target = format!("rabbitmq {}", section.url);
    let Some(_) = settings(&target, rabbit_config(config), checks) else {
        return;
    };
    let management = match section.management_connect_url() {
        Ok(url) => url,
        Err(e) => {
            checks.push(Check::error(
                &target,
                "management API",
                &e,
                "fix [rabbitmq]",
            ));
            return;
        }
    };
    let Some(management) = &management else {
        checks.push(Check::new(
            &target,
            "durability audit",
            Status::Advice,
            "skipped: no rabbitmq.management_url",
            "set rabbitmq.management_url (http://user:password@host:15672) so queues can be audited",
        ));
        return;
    };
    let api = zerolost_rabbitmq::ManagementApi::new(management.expose(), &section.vhost)
        .and_then(|api| api.with_tls(section.tls.clone()));
    let api = match api {
        Ok(api) => api,
        Err(e) => {
            checks.push(Check::error(
                &target,
                "management API",
                &e.into(),
                "fix rabbitmq.management_url",
            ));
            return;
        }
    };
    for destination in &config.destinations {
        let audit = zerolost_rabbitmq::audit(&api, destination)
            .await
            .map(|a| a.findings);
        audit_result(&target, destination, audit, checks);
        let dlq = zerolost_core::default_dlq_name(destination);
        let audit = zerolost_rabbitmq::audit_dead_letters(&api, destination)
            .await
            .map(|a| a.findings);
        audit_result(&target, &dlq, audit, checks);
    }
}

#[cfg(feature = "rocketmq")]
async fn check_rocketmq(config: &Config, checks: &mut Vec<Check>) {
    let Some(section) = &config.rocketmq else {
        return;
    };
    let target = format!("rocketmq {}", section.name_server);
    let Some(rocket) = settings(&target, rocket_config(config), checks) else {
        return;
    };
    let runtime = match zerolost_rocketmq::RocketRuntime::shared() {
        Ok(runtime) => runtime,
        Err(e) => {
            checks.push(Check::error(&target, "client runtime", &e.into(), ""));
            return;
        }
    };
    for destination in &config.destinations {
        let audit = zerolost_rocketmq::audit(&runtime, &rocket, destination)
            .await
            .map(|a| a.findings);
        audit_result(&target, destination, audit, checks);
    }
}
