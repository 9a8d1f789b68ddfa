//! `zerolost-lab bench --backend kafka-mock|kafka|rabbitmq|rocketmq`: in one process and one
//! run, the raw client against zerolost on the same broker — relay (raw confirmed publish vs
//! the outbox relay) and consume (raw consume + commit/ack vs the zerolost consumer with its
//! dedupe store). The broker-specific halves are in `kafka.rs`, `rabbitmq.rs` and
//! `rocketmq.rs`.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use zerolost_core::Error;

use super::harness::{BrokerBench, BrokerTarget, rate};

/// One side-by-side figure. Field names are a contract: add fields, never rename.
#[derive(Debug, Serialize)]
struct Comparison {
    name: &'static str,
    backend: BrokerTarget,
    messages: usize,
    raw_msgs_per_s: f64,
    zerolost_msgs_per_s: f64,
    ratio: f64,
    /// What zerolost's side used (outbox store or dedupe store).
    zerolost_store: String,
}

/// The `--json` output of a broker benchmark. Field names are a contract.
#[derive(Debug, Serialize)]
struct BrokerReport {
    results: Vec<Comparison>,
}

/// Runs the side-by-side benchmark and prints it.
pub async fn run(bench: BrokerBench) -> Result<ExitCode, Error> {
    let n = bench.messages;
    let measured = match bench.backend {
        BrokerTarget::KafkaMock | BrokerTarget::Kafka => super::kafka::measure(&bench).await?,
        BrokerTarget::Rabbitmq => super::rabbitmq::measure(&bench).await?,
        BrokerTarget::Rocketmq => super::rocketmq::measure(&bench).await?,
    };
    let (raw_relay, zl_relay, raw_consumed, zl_consumed, dedupe_store) = (
        measured.raw_relay,
        measured.zerolost_relay,
        measured.raw_consume,
        measured.zerolost_consume,
        measured.dedupe_store,
    );
    let compare = |name, store: String, raw: Duration, zl: Duration| {
        let (raw, zl) = (rate(n, raw), rate(n, zl));
        Comparison {
            name,
            backend: bench.backend,
            messages: n,
            raw_msgs_per_s: raw,
            zerolost_msgs_per_s: zl,
            ratio: zl / raw.max(1e-9),
            zerolost_store: store,
        }
    };
    let report = BrokerReport {
        results: vec![
            compare(
                "relay",
                format!("{:?} outbox", bench.outbox).to_lowercase(),
                raw_relay,
                zl_relay,
            ),
            compare(
                "consume",
                format!("{dedupe_store} dedupe"),
                raw_consumed,
                zl_consumed,
            ),
        ],
    };
    if bench.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::backend("writing the JSON report", false, e))?;
        println!("{json}");
    } else {
        println!(
            "zerolost-lab bench --backend {:?} ({n} messages, one run)",
            bench.backend
        );
        println!(
            "{:<9} {:>14} {:>16} {:>7}  zerolost side",
            "", "raw msgs/s", "zerolost msgs/s", "ratio"
        );
        for r in &report.results {
            println!(
                "{:<9} {:>14.0} {:>16.0} {:>7.2}  {}",
                r.name, r.raw_msgs_per_s, r.zerolost_msgs_per_s, r.ratio, r.zerolost_store
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
