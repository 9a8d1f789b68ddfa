//! `zerolost migrate [--print]`: creates or upgrades the tables of the `[outbox]` and
//! `[inbox]` databases, or prints their DDL without connecting.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use zerolost_core::Error;

use super::connect::OutboxDb;
use super::{Global, to_json};
use crate::config::{Config, SecretUrl};

/// Arguments of `zerolost migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Print the SQL the migrations would run, for the config's tables, and connect to
    /// nothing (to review it, or to apply it with the database's own tools).
    #[arg(long)]
    print: bool,
}

/// One database of the config: `outbox` or `inbox`.
struct Target<'a> {
    key: &'static str,
    url: SecretUrl,
    prefix: Option<&'a str>,
    schema: Option<&'a str>,
}

/// What `migrate --json` reports per database.
#[derive(Debug, Serialize)]
struct Report {
    /// `outbox` or `inbox`.
    store: &'static str,
    /// `sqlite`, `postgres` or `mysql`.
    engine: &'static str,
    /// Versions this run applied (`migrate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<Vec<i64>>,
    /// Every migration with its SQL (`migrate --print`).
    #[serde(skip_serializing_if = "Option::is_none")]
    migrations: Option<Vec<Script>>,
    /// The whole script to apply by hand, history rows included (`migrate --print`).
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<String>,
}

/// One migration as `--print --json` shows it.
#[derive(Debug, Serialize)]
struct Script {
    version: i64,
    description: &'static str,
    sql: String,
}

/// The SQL databases the config names; the inbox only when it is another set of tables.
fn targets(config: &Config) -> Result<Vec<Target<'_>>, Error> {
    let mut targets = Vec::new();
    if let Some(o) = &config.outbox {
        let (url, prefix, schema) = (
            o.connect_url()?,
            o.table_prefix.as_deref(),
            o.schema.as_deref(),
        );
        targets.push(Target {
            key: "outbox",
            url,
            prefix,
            schema,
        });
    }
    if let Some(i) = &config.inbox {
        let (url, prefix, schema) = (
            i.connect_url()?,
            i.table_prefix.as_deref(),
            i.schema.as_deref(),
        );
        let same = targets.first().is_some_and(|o: &Target<'_>| {
            o.url.expose() == url.expose() && o.prefix == prefix && o.schema == schema
        });
        if !same {
            targets.push(Target {
                key: "inbox",
                url,
                prefix,
                schema,
            });
        }
    }
    if targets.is_empty() {
        return Err(Error::Config(
            "nothing to migrate: the config names no [outbox] or [inbox] database".into(),
        ));
    }
    Ok(targets)
}

/// Applies the pending migrations of `target`; the versions it applied.
async fn apply(target: &Target<'_>) -> Result<Report, Error> {
    let db = OutboxDb::open(target.key, &target.url, target.prefix, target.schema).await?;
    let pending = db.pending_migrations().await?;
    db.migrate().await?;
    Ok(Report {
        store: target.key,
        engine: db.engine(),
        applied: Some(pending),
        migrations: None,
        script: None,
    })
}

/// The schema of `target`, without connecting.
fn print(target: &Target<'_>) -> Result<Report, Error> {
    let schema = OutboxDb::schema_for(target.key, &target.url, target.prefix, target.schema)?;
    let migrations = schema
        .migrations
        .into_iter()
        .map(|m| Script {
            version: m.version,
            description: m.description,
            sql: m.sql,
        })
        .collect();
    Ok(Report {
        store: target.key,
        engine: schema.engine,
        applied: None,
        migrations: Some(migrations),
        script: Some(schema.script),
    })
}

/// Runs `migrate`.
pub async fn run(args: MigrateArgs, global: &Global) -> Result<ExitCode, Error> {
    let config = global.load()?;
    let mut reports = Vec::new();
    for target in targets(&config)? {
        reports.push(if args.print {
            print(&target)?
        } else {
            apply(&target).await?
        });
    }
    if global.json {
        println!("{}", to_json(&serde_json::json!({ "stores": reports }))?);
        return Ok(ExitCode::SUCCESS);
    }
    for report in &reports {
        let (store, engine) = (report.store, report.engine);
        if let Some(script) = &report.script {
            println!("-- the {store} database ({engine})\n{script}");
        }
        match report.applied.as_deref() {
            Some([]) => println!("{store} ({engine}): tables up to date"),
            Some(applied) => println!("{store} ({engine}): applied migrations {applied:?}"),
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
