//! `zerolost-lab demo`: enqueue → relay → broker → consumer → reconcile, under seeded faults.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use zerolost_core::memory::{FaultConfig, FaultCounts, FaultKind};
use zerolost_core::{CountView, Error};
use zerolost_kafka::TopicSpec;
use zerolost_kafka::testkit::KafkaBackend;
use zerolost_testkit::scenario::{self, Progress, ScenarioBroker, ScenarioConfig, ScenarioOutcome};
use zerolost_testkit::timeline::Latencies;

#[cfg(not(all(feature = "rabbitmq", feature = "rocketmq")))]
use crate::kinds::not_built;
use crate::kinds::{DedupeKind, StoreKind, rand_seed};

/// Where messages travel. More backends arrive with their crates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// In-process broker with at-least-once delivery (no servers).
    Memory,
    /// librdkafka's in-process 3-broker mock cluster, with broker-down and request-error faults.
    KafkaMock,
    /// A real Kafka (`ZEROLOST_KAFKA_BROKERS`, else the single-node test broker).
    Kafka,
    /// A real RabbitMQ (`ZEROLOST_AMQP_URL`, else the test broker): quorum queues.
    Rabbitmq,
    /// A real RocketMQ (`ZEROLOST_ROCKETMQ_NAMESRV`, else the test name server): SYNC_FLUSH.
    Rocketmq,
}

/// How many faults to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultLevel {
    /// No faults.
    None,
    /// A steady trickle of every kind.
    Default,
    /// Many faults of every kind.
    Heavy,
}

/// Arguments of `zerolost-lab demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Messages to produce.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    messages: u64,
    /// Seed of the fault schedule (a random one is chosen and printed when omitted).
    #[arg(long)]
    seed: Option<u64>,
    /// Fault level.
    #[arg(long, value_enum, default_value_t = FaultLevel::Default)]
    faults: FaultLevel,
    /// Broker backend.
    #[arg(long, value_enum, default_value_t = BackendKind::KafkaMock)]
    backend: BackendKind,
    /// Outbox store.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Dedupe store.
    #[arg(long, value_enum, default_value_t = DedupeKind::Inbox)]
    dedupe: DedupeKind,
    /// SQLite database file for `--store sqlite` / `--dedupe inbox` (recreated each run).
    #[arg(long, default_value = ".zerolost/demo.sqlite")]
    db: std::path::PathBuf,
    /// Also write a self-contained HTML report (SVG charts) to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The `--json` output. Field names are a contract: add fields, never rename.
#[derive(Debug, Serialize)]
struct DemoReport {
    backend: BackendKind,
    store: StoreKind,
    dedupe: DedupeKind,
    messages: u64,
    published: usize,
    processed: usize,
    dead_lettered: usize,
    parked: usize,
    lost: usize,
    duplicate_effects: u64,
    faults_injected: u64,
    elapsed_s: f64,
    seed: u64,
    fault_level: FaultLevel,
    faults: FaultCounts,
    duplicates_suppressed: u64,
    relay_restarts: u64,
    broker_stored: usize,
    counts: CountView,
    lost_ids: Vec<String>,
    unexpected_dead_letters: usize,
    unexpected_parked: usize,
    timed_out: bool,
    ok: bool,
    /// Faults injected into the broker from outside the pipeline (the Kafka mock's chaos,
    /// RabbitMQ connections closed by the broker).
    broker_faults: u64,
    /// Latency percentiles per stage (milliseconds).
    latencies: Latencies,
    /// Where the HTML report was written, if asked for.
    report: Option<String>,
}

impl DemoReport {
    fn new(args: &DemoArgs, seed: u64, o: &ScenarioOutcome) -> Self {
        let v = &o.verdict;
        Self {
            backend: args.backend,
            store: args.store,
            dedupe: args.dedupe,
            messages: args.messages,
            published: o.reconcile.published,
            processed: v.processed,
            dead_lettered: v.dead_lettered,
            parked: v.parked,
            lost: v.lost.len(),
            duplicate_effects: v.duplicate_effects,
            faults_injected: o.faults.total() + o.broker_faults,
            elapsed_s: (o.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            seed,
            fault_level: args.faults,
            faults: o.faults.clone(),
            duplicates_suppressed: o.consumer.duplicates,
            relay_restarts: o.relay_restarts,
            broker_stored: o.broker_stored,
            counts: o.reconcile.counts,
            lost_ids: v.lost.iter().take(100).map(ToString::to_string).collect(),
            unexpected_dead_letters: v.unexpected_dead_letters.len()
                + v.poison_not_dead_lettered.len(),
            unexpected_parked: v.unexpected_parked.len() + v.unsendable_not_parked.len(),
            timed_out: o.timed_out,
            ok: v.is_clean() && !o.timed_out && o.leased_after_shutdown == 0,
            broker_faults: o.broker_faults,
            latencies: o.latencies.clone(),
            report: args.report.as_ref().map(|p| p.display().to_string()),
        }
    }
}

/// Runs the demo; exit code 1 when anything was lost or applied twice.
pub async fn run(args: DemoArgs) -> Result<ExitCode, Error> {
    let seed = args.seed.unwrap_or_else(rand_seed);
    let faults = match args.faults {
        FaultLevel::None => FaultConfig::none().with_seed(seed),
        FaultLevel::Default => FaultConfig::light(seed),
        FaultLevel::Heavy => FaultConfig::heavy(seed),
    };
    let messages = usize::try_from(args.messages)
        .map_err(|_| Error::Config("--messages is too large for this machine".into()))?;
    let config = ScenarioConfig::demo(messages, faults);
    if !args.json {
        println!(
            "zerolost-lab demo: {} messages, backend {}, store {}, dedupe {}, faults {}, seed {seed}",
            args.messages,
            name(args.backend),
            name(args.store),
            name(args.dedupe),
            name(args.faults)
        );
        println!("replay with: {}", replay_command(&args, seed));
    }
    let progress = Arc::new(Progress::default());
    let bars = Bars::new(args.messages, !args.json && std::io::stdout().is_terminal());
    let ticker = {
        let (progress, bars) = (progress.clone(), bars.clone());
        tokio::spawn(async move {
            loop {
                bars.update(&progress);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let stores = crate::stores::open(&args.db, args.store, args.dedupe).await?;
    let broker = scenario_broker(args.backend).await?;
    let outcome = scenario::run_on(&config, progress.clone(), broker, move |faults| {
        stores.build(faults)
    })
    .await;
    ticker.abort();
    bars.update(&progress);
    bars.finish();
    let outcome = outcome?;
    let report = DemoReport::new(&args, seed, &outcome);
    if let Some(path) = &args.report {
        crate::report::write(path, &report_input(&args, &report, &outcome))?;
    }
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::backend("writing the JSON report", false, e))?;
        println!("{json}");
    } else {
        print_table(&report, &outcome);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The broker of the run. Kafka producers refuse payloads over the scenario's limit, so the
/// designated unsendable messages are parked as on the in-memory broker.
async fn scenario_broker(kind: BackendKind) -> Result<ScenarioBroker, Error> {
    let limit = scenario::MAX_MESSAGE_BYTES.to_string();
    let backend = match kind {
        BackendKind::Memory => return Ok(ScenarioBroker::Memory),
        BackendKind::Rabbitmq => return rabbitmq_broker().await,
        BackendKind::Rocketmq => return rocketmq_broker().await,
        BackendKind::KafkaMock => KafkaBackend::mock()?,
        BackendKind::Kafka => {
            let config = zerolost_kafka::testkit::single_node_config();
            zerolost_kafka::ensure_topic(&config, "zerolost-demo-probe", TopicSpec::SINGLE_NODE)
                .await
                .map_err(|e| {
                    Error::Config(format!(
                        "no Kafka at {} ({e}); start one with scripts/services/kafka.sh start single, \
                         or set ZEROLOST_KAFKA_BROKERS",
                        config.brokers()
                    ))
                })?;
            KafkaBackend::real(config, TopicSpec::SINGLE_NODE)
        }
    };
    let backend = KafkaBackend {
        config: backend.config.clone().set("message.max.bytes", &limit),
        ..backend
    };
    let chaos = backend.mock_chaos();
    Ok(ScenarioBroker::Backend {
        backend: Arc::new(backend),
        chaos,
    })
}

#[cfg(not(feature = "rabbitmq"))]
async fn rabbitmq_broker() -> Result<ScenarioBroker, Error> {
    Err(not_built("--backend rabbitmq", "rabbitmq"))
}

/// RabbitMQ: the test broker (or `ZEROLOST_AMQP_URL`), refusing the scenario's oversized
/// messages like a broker with that `max_message_size`; every 2 s the broker closes one of
/// zerolost's connections (management API, `ZEROLOST_RABBITMQ_MGMT_URL`).
#[cfg(feature = "rabbitmq")]
async fn rabbitmq_broker() -> Result<ScenarioBroker, Error> {
    let config =
        zerolost_rabbitmq::testkit::test_config().max_message_size(scenario::MAX_MESSAGE_BYTES);
    zerolost_rabbitmq::declare_exchange(&config, "zerolost-demo-probe")
        .await
        .map_err(|e| {
            Error::Config(format!(
                "no RabbitMQ at {} ({e}); start one with scripts/services/rabbitmq.sh start, \
                 or set ZEROLOST_AMQP_URL",
                config.redacted_url()
            ))
        })?;
    let backend = zerolost_rabbitmq::testkit::RabbitBackend::new(config);
    // Without the management API the run goes on, without broker-side faults.
    let chaos = backend
        .connection_chaos()
        .inspect_err(|e| tracing::warn!(error = %e, "no connection chaos"))
        .ok();
    Ok(ScenarioBroker::Backend {
        backend: Arc::new(backend),
        chaos,
    })
}

#[cfg(not(feature = "rocketmq"))]
async fn rocketmq_broker() -> Result<ScenarioBroker, Error> {
    Err(not_built("--backend rocketmq", "rocketmq"))
}

/// RocketMQ: the test name server (or `ZEROLOST_ROCKETMQ_NAMESRV`) and its SYNC_FLUSH
/// cluster, refusing the scenario's oversized messages like a broker with that
/// `maxMessageSize`. No broker-side faults: the scenario's own ones apply.
#[cfg(feature = "rocketmq")]
async fn rocketmq_broker() -> Result<ScenarioBroker, Error> {
    use zerolost_rocketmq::testkit::{RocketBackend, TEST_CLUSTER, test_name_server};
    let name_server = test_name_server();
    tokio::net::TcpStream::connect(&name_server)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "no RocketMQ name server at {name_server} ({e}); start one with \
                 scripts/services/rocketmq.sh start, or set ZEROLOST_ROCKETMQ_NAMESRV"
            ))
        })?;
    let config = zerolost_rocketmq::RocketConfig::new(name_server)
        .max_message_size(scenario::MAX_MESSAGE_BYTES);
    let backend = RocketBackend::new(
        zerolost_rocketmq::RocketRuntime::shared()?,
        config,
        zerolost_rocketmq::TopicSpec::new(TEST_CLUSTER),
    );
    Ok(ScenarioBroker::Backend {
        backend: Arc::new(backend),
        chaos: None,
    })
}

/// The value's name as typed on the command line.
fn name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// The reconciliation by id, and the article's count view beside it.
type Rows = Vec<(&'static str, String)>;

fn reconciliation_rows(r: &DemoReport) -> (Rows, Rows) {
    let by_id = vec![
        ("produced", r.messages.to_string()),
        ("published (confirmed)", r.published.to_string()),
        ("processed once", r.processed.to_string()),
        ("dead-lettered (poison)", r.dead_lettered.to_string()),
        ("parked (unsendable)", r.parked.to_string()),
        ("lost", r.lost.to_string()),
        ("duplicate effects", r.duplicate_effects.to_string()),
        ("duplicates suppressed", r.duplicates_suppressed.to_string()),
    ];
    let by_count = vec![
        ("produced", r.counts.produced.to_string()),
        ("published", r.counts.published.to_string()),
        ("consumed", r.counts.consumed.to_string()),
        (
            "producer→broker gap",
            r.counts.producer_to_broker_gap.to_string(),
        ),
        (
            "broker→consumer gap",
            r.counts.broker_to_consumer_gap.to_string(),
        ),
        ("stored by broker (copies)", r.broker_stored.to_string()),
    ];
    (by_id, by_count)
}

/// The one-line verdict.
fn verdict_line(r: &DemoReport) -> String {
    if r.ok {
        "OK: nothing lost, nothing applied twice".to_owned()
    } else {
        format!(
            "FAILED: {} lost, {} duplicate effects, {} unexpected DLQ, {} unexpected parked{}",
            r.lost,
            r.duplicate_effects,
            r.unexpected_dead_letters,
            r.unexpected_parked,
            if r.timed_out { ", timed out" } else { "" }
        )
    }
}

fn replay_command(args: &DemoArgs, seed: u64) -> String {
    format!(
        "zerolost-lab demo --backend {} --store {} --dedupe {} --messages {} --faults {} --seed {seed}",
        name(args.backend),
        name(args.store),
        name(args.dedupe),
        args.messages,
        name(args.faults)
    )
}

fn report_input<'a>(
    args: &DemoArgs,
    r: &DemoReport,
    o: &'a ScenarioOutcome,
) -> crate::report::ReportInput<'a> {
    let (by_id, by_count) = reconciliation_rows(r);
    let fault_counts = FaultKind::ALL
        .into_iter()
        .map(|kind| (kind.name().to_owned(), r.faults.get(kind)))
        .filter(|(_, n)| *n > 0)
        .collect();
    crate::report::ReportInput {
        title: format!(
            "{} messages · backend {} · outbox {} · dedupe {} · faults {} · seed {} · {:.1} s",
            r.messages,
            name(args.backend),
            name(args.store),
            name(args.dedupe),
            name(args.faults),
            r.seed,
            r.elapsed_s
        ),
        replay: replay_command(args, r.seed),
        ok: r.ok,
        verdict: verdict_line(r),
        by_id,
        by_count,
        fault_counts,
        timeline: &o.timeline,
        latencies: &o.latencies,
    }
}

fn print_table(r: &DemoReport, o: &ScenarioOutcome) {
    let f = &r.faults;
    let (by_id, by_count) = reconciliation_rows(r);
    println!();
    println!(
        "{:<26}{:>10}    {:<28}{:>10}",
        "by message id", "", "article's count view", ""
    );
    for i in 0..by_id.len().max(by_count.len()) {
        let (a, av) = by_id.get(i).cloned().unwrap_or_default();
        let (b, bv) = by_count.get(i).cloned().unwrap_or_default();
        println!("{a:<26}{av:>10}    {b:<28}{bv:>10}");
    }
    println!();
    println!(
        "faults injected: {} (publish failed {}, lost confirm {}, confirm timeout {}, crash before ack {}, dedupe outage {}, relay crash {}, broker {}; relays restarted {})",
        r.faults_injected,
        f.publish_failed,
        f.lost_confirm,
        f.confirm_timeout,
        f.crash_before_ack,
        f.dedupe_outage,
        f.relay_crash,
        r.broker_faults,
        r.relay_restarts
    );
    println!(
        "consumer: {} retried, {} deferred (claimed elsewhere), {} store errors held through, {} acks lost",
        o.consumer.retried, o.consumer.deferred, o.consumer.store_errors, o.consumer.ack_errors
    );
    let l = &o.latencies;
    println!(
        "latency p50 / p99 / max: enqueue→confirm {:.0} / {:.0} / {:.0} ms, enqueue→effect {:.0} / {:.0} / {:.0} ms",
        l.enqueue_to_confirm.p50_ms,
        l.enqueue_to_confirm.p99_ms,
        l.enqueue_to_confirm.max_ms,
        l.end_to_end.p50_ms,
        l.end_to_end.p99_ms,
        l.end_to_end.max_ms
    );
    println!("elapsed: {:.2} s", r.elapsed_s);
    if let Some(path) = &r.report {
        println!("report: {path}");
    }
    println!("verdict: {}", verdict_line(r));
    for id in &r.lost_ids {
        println!("  lost: {id}");
    }
}

/// Progress bars per stage, hidden when stdout is not a terminal.
#[derive(Clone)]
struct Bars {
    enqueued: ProgressBar,
    published: ProgressBar,
    finished: ProgressBar,
}

impl Bars {
    fn new(total: u64, visible: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style =
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos:>8}/{len} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bar = |name: &'static str| {
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(style.clone());
            bar.set_prefix(name);
            bar
        };
        Self {
            enqueued: bar("enqueued"),
            published: bar("published"),
            finished: bar("consumed"),
        }
    }

    fn update(&self, p: &Progress) {
        self.enqueued
            .set_position(p.enqueued.load(Ordering::Relaxed));
        self.published
            .set_position(p.published.load(Ordering::Relaxed));
        self.finished
            .set_position(p.finished.load(Ordering::Relaxed));
    }

    fn finish(&self) {
        self.enqueued.finish();
        self.published.finish();
        self.finished.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerolost_core::{ConsumerTotals, MessageId, ReconcileReport};
    use zerolost_testkit::Verdict;

    fn outcome(verdict: Verdict) -> ScenarioOutcome {
        ScenarioOutcome {
            verdict,
            faults: FaultCounts::default(),
            relay_restarts: 0,
            consumer: ConsumerTotals::default(),
            broker_stored: 0,
            reconcile: ReconcileReport::default(),
            leased_after_shutdown: 0,
            elapsed: Duration::from_millis(1500),
            timed_out: false,
            broker: "memory".into(),
            broker_faults: 0,
            timeline: Default::default(),
            latencies: Default::default(),
        }
    }

    /// The verdict of a run that produced `produced` and applied `effects`.
    fn verdict(produced: &[MessageId], effects: &[(MessageId, u32)]) -> Verdict {
        let none = Default::default();
        let effects = effects.iter().copied().collect();
        Verdict::compute(produced, &effects, &none, &none, &none, &none)
    }

    fn args() -> DemoArgs {
        DemoArgs {
            messages: 2,
            seed: Some(1),
            faults: FaultLevel::Default,
            backend: BackendKind::Memory,
            store: StoreKind::Memory,
            dedupe: DedupeKind::Memory,
            db: ".zerolost/demo.sqlite".into(),
            report: None,
            json: true,
        }
    }

    #[test]
    fn a_lost_or_doubled_message_fails_the_demo() {
        let (a, b) = (MessageId::new(), MessageId::new());
        assert!(DemoReport::new(&args(), 1, &outcome(verdict(&[a, b], &[(a, 1), (b, 1)]))).ok);

        let report = DemoReport::new(&args(), 1, &outcome(verdict(&[a, b], &[(a, 1)])));
        assert!(!report.ok);
        assert_eq!(report.lost, 1);
        assert_eq!(report.lost_ids, vec![b.to_string()]);

        let report = DemoReport::new(&args(), 1, &outcome(verdict(&[a, b], &[(a, 1), (b, 2)])));
        assert!(!report.ok);
        assert_eq!(report.duplicate_effects, 1);
    }
}
