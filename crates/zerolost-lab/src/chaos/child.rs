//! `zerolost-lab chaos-consumer` (hidden): one consumer process of a chaos run. It consumes the
//! run's destination with the run's dedupe store (SQL inbox or Redis) and writes one effect
//! row per message. SIGTERM/SIGINT: graceful stop, exit 0. SIGUSR1: at the next ack — the
//! handler's work committed, the ack not yet sent — the process kills itself with SIGKILL.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use zerolost_core::{
    Acknowledger, Backoff, CancellationToken, Consumer, ConsumerConfig, ConsumerTotals,
    DeadLetterSink, Delivery, Envelope, Error, Handler, HandlerContext, HandlerError, IdExtractor,
    Subscriber,
};
use zerolost_sqlx::InTransaction;

use super::effects::{DirectEffects, Effects, EffectsDb, FencedTables, SLOW_HEADER};
use super::marks::{WatchedMarks, marks_table};
use super::runs::now_us;
use zerolost_cli::config::Config;
use zerolost_cli::ops::connect::{OutboxDb, STARTUP_PATIENCE, patiently};

/// Arguments of `zerolost-lab relay`: the operator's relay, built into the lab so a chaos
/// run needs one binary.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The run's config file.
    #[arg(long, short)]
    config: PathBuf,
}

impl RelayArgs {
    /// Runs `zerolost relay --config FILE` until SIGTERM / SIGINT.
    pub async fn run(self) -> Result<ExitCode, Error> {
        let global = zerolost_cli::ops::Global {
            config: Some(self.config),
            json: false,
        };
        zerolost_cli::ops::relay::run(zerolost_cli::ops::relay::RelayArgs {}, &global).await
    }
}

/// Arguments of `zerolost-lab chaos-consumer`.
#[derive(Debug, Args)]
pub struct ConsumerArgs {
    /// The run's config file (broker, `[inbox]` or `[redis]`).
    #[arg(long)]
    config: PathBuf,
    /// The destination consumed.
    #[arg(long)]
    destination: String,
    /// This consumer's name (written with each effect).
    #[arg(long)]
    name: String,
    /// The effects table.
    #[arg(long)]
    effects_table: String,
    /// The table of handler re-runs (with `[redis]`).
    #[arg(long)]
    reruns_table: Option<String>,
    /// The table where every handler run is recorded (start, end, fence).
    #[arg(long)]
    runs_table: String,
    /// Key prefix in Redis (with `[redis]`).
    #[arg(long)]
    redis_prefix: Option<String>,
}

/// The consumer's settings in a chaos run: claims short enough that a killed consumer's
/// messages come back within seconds.
fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        concurrency: 16,
        claim_lease: Duration::from_secs(10),
        retry_backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2)),
        ..ConsumerConfig::default()
    }
}

/// Runs one consumer until SIGTERM.
pub async fn run(args: ConsumerArgs) -> Result<ExitCode, Error> {
    let config = Config::load(Some(&args.config))?;
    let backend = super::world::backend_for(&config, true).await?;
    let sink = patiently("the DLQ publisher", STARTUP_PATIENCE, || {
        backend.dead_letter_sink()
    })
    .await?;
    let effects = Effects {
        table: args.effects_table.clone(),
        consumer: args.name.clone(),
    };
    let consumer = match (&config.inbox, &config.redis) {
        (Some(inbox), _) => {
            let db = patiently("the inbox", STARTUP_PATIENCE, || {
                OutboxDb::connect_inbox(inbox)
            });
            let db = db.await?;
            let recorder = recorder(EffectsDb::of(&db)).await?;
            inbox_consumer(db, effects, sink, recorder, &args.runs_table)?
        }
        (None, Some(redis)) => {
            let section = config.outbox()?;
            let outbox = patiently("the database", STARTUP_PATIENCE, || {
                OutboxDb::connect(section)
            })
            .await?;
            let dedupe = patiently("redis", STARTUP_PATIENCE, || {
                zerolost_redis::RedisDedupe::connect_with_tls(redis.url.expose(), &redis.tls)
            })
            .await?;
            let dedupe = match &args.redis_prefix {
                Some(prefix) => dedupe.with_prefix(prefix)?,
                None => dedupe,
            };
            let db = EffectsDb::of(&outbox);
            let handler = DirectEffects {
                db: db.clone(),
                tables: FencedTables {
                    applied: super::world::applied_table(&effects.table),
                    effects: effects.table,
                    reruns: args.reruns_table.clone().ok_or_else(|| {
                        Error::Config("chaos-consumer with [redis] needs --reruns-table".into())
                    })?,
                },
                consumer: effects.consumer,
            };
            let recorder = recorder(db).await?;
            let dedupe = WatchedMarks {
                inner: dedupe,
                db: recorder.clone(),
                table: marks_table(&args.runs_table),
            };
            let handler = RecordedRuns::new(handler, recorder, &args.runs_table);
            Consumer::new(dedupe, handler, sink).with_config(consumer_config())?
        }
        (None, None) => {
            return Err(Error::Config(
                "chaos-consumer needs an [inbox] or a [redis] section".into(),
            ));
        }
    };
    let armed = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    watch_signals(stop.clone(), armed.clone(), args.name.clone())?;
    let subscriber = DyingSubscriber {
        inner: patiently("the subscriber", STARTUP_PATIENCE, || {
            backend.subscriber(&args.destination)
        })
        .await?,
        armed,
        name: args.name.clone(),
    };
    eprintln!(
        "chaos-consumer {}: consuming {}",
        args.name, args.destination
    );
    let totals = consumer.run(subscriber, stop).await?;
    print_totals(&args.name, &totals);
    Ok(ExitCode::SUCCESS)
}

fn print_totals(name: &str, totals: &ConsumerTotals) {
    match serde_json::to_string(totals) {
        Ok(json) => println!("chaos-consumer {name} stopped: {json}"),
        Err(e) => println!("chaos-consumer {name} stopped ({e})"),
    }
}

/// Where the handler runs are recorded: the database without a proxy when the run names it
/// (no fault keeps a run from the verdict), else `db`.
async fn recorder(db: EffectsDb) -> Result<EffectsDb, Error> {
    match std::env::var(super::procs::RECORD_URL_ENV) {
        Ok(url) => {
            patiently("the runs' database", STARTUP_PATIENCE, || {
                EffectsDb::connect(&url)
            })
            .await
        }
        Err(_) => Ok(db),
    }
}

fn inbox_consumer(
    db: OutboxDb,
    effects: Effects,
    sink: Arc<dyn DeadLetterSink>,
    recorder: EffectsDb,
    runs: &str,
) -> Result<Consumer, Error> {
    let consumer = match db {
        OutboxDb::Sqlite(store) => {
            let inbox = store.inbox();
            let handler = InTransaction::new(inbox.clone(), effects);
            Consumer::new(inbox, RecordedRuns::new(handler, recorder, runs), sink)
        }
        OutboxDb::Postgres(store) => {
            let inbox = store.inbox();
            let handler = InTransaction::new(inbox.clone(), effects);
            Consumer::new(inbox, RecordedRuns::new(handler, recorder, runs), sink)
        }
        OutboxDb::MySql(store) => {
            let inbox = store.inbox();
            let handler = InTransaction::new(inbox.clone(), effects);
            Consumer::new(inbox, RecordedRuns::new(handler, recorder, runs), sink)
        }
    };
    consumer.with_config(consumer_config())
}

fn watch_signals(
    stop: CancellationToken,
    armed: Arc<AtomicBool>,
    name: String,
) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::backend("install the signal handlers", false, e);
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(io)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = usr1.recv() => {
                    eprintln!("chaos-consumer {name}: armed, dying at the next ack");
                    armed.store(true, Ordering::SeqCst);
                }
            }
        }
        eprintln!("chaos-consumer {name}: stopping");
        stop.cancel();
    });
    Ok(())
}

/// Hands deliveries through; once armed, the next ack kills the process instead.
struct DyingSubscriber {
    inner: Box<dyn Subscriber>,
    armed: Arc<AtomicBool>,
    name: String,
}

#[async_trait]
impl Subscriber for DyingSubscriber {
    async fn next(&mut self) -> Result<Delivery, Error> {
        let (armed, name) = (self.armed.clone(), self.name.clone());
        Ok(self.inner.next().await?.wrap(|delivery| DyingAck {
            delivery,
            armed,
            name,
        }))
    }
}

struct DyingAck {
    delivery: Delivery,
    armed: Arc<AtomicBool>,
    name: String,
}

#[async_trait]
impl Acknowledger for DyingAck {
    async fn ack(self: Box<Self>) -> Result<(), Error> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let id = IdExtractor::default()
                .extract(&self.delivery.message)
                .map(|(id, _)| id.to_string())
                .unwrap_or_default();
            eprintln!(
                "chaos-consumer {}: SIGKILL after the handler of {id}, before its ack",
                self.name
            );
            // kill -9 of this very process: no ack, no cleanup, no flush.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            std::future::pending::<()>().await;
        }
        self.delivery.ack().await
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), Error> {
        self.delivery.nack(requeue).await
    }
}

/// Records every run of the inner handler in the runs table (its start before, its end
/// when it finishes or is cut off), and makes a designated slow message wait first (a slow
/// API call longer than the claim lease).
struct RecordedRuns<H> {
    inner: H,
    db: EffectsDb,
    table: String,
}

impl<H> RecordedRuns<H> {
    fn new(inner: H, db: EffectsDb, table: &str) -> Self {
        Self {
            inner,
            db,
            table: table.to_owned(),
        }
    }
}

/// Records the run's end when dropped: at its end, or when the consumer cancels it. The
/// time is taken at once; the write goes on in the background.
struct RunEnd {
    db: EffectsDb,
    table: String,
    run_id: String,
    succeeded: bool,
}

impl Drop for RunEnd {
    fn drop(&mut self) {
        let (db, table, run_id) = (self.db.clone(), self.table.clone(), self.run_id.clone());
        let (at, succeeded) = (now_us(), self.succeeded);
        tokio::spawn(async move {
            if let Err(e) = db.run_ended(&table, &run_id, at, succeeded).await {
                eprintln!("chaos-consumer: the end of run {run_id} is not recorded: {e}");
            }
        });
    }
}

#[async_trait]
impl<H: Handler> Handler for RecordedRuns<H> {
    async fn handle(&self, _: &Envelope) -> Result<(), HandlerError> {
        Err(HandlerError::permanent(
            "chaos runs need the consumer's claim",
        ))
    }

    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        context: &HandlerContext,
    ) -> Result<(), HandlerError> {
        let run_id = zerolost_core::MessageId::new().to_string();
        self.db
            .run_started(&self.table, &run_id, envelope.id, context.fence())
            .await
            .map_err(HandlerError::interrupted)?;
        let mut end = RunEnd {
            db: self.db.clone(),
            table: self.table.clone(),
            run_id,
            succeeded: false,
        };
        if let Some(ms) = envelope
            .headers
            .get(SLOW_HEADER)
            .and_then(|v| v.parse().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let result = self.inner.handle_claimed(envelope, context).await;
        end.succeeded = result.is_ok();
        result
    }
}
