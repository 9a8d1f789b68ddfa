//! `zerolost-lab chaos`: the pipeline as separate OS processes on real services, under a
//! seeded schedule of process kills, broker kills, network faults and service restarts;
//! the verdict by message id.
//!
//! This process produces (messages enqueued in SQL transactions, paced), two relay daemons
//! (`zerolost-lab relay`: the operator's `zerolost relay`, built in) publish, two
//! `zerolost-lab chaos-consumer`s consume with the SQL inbox or
//! Redis and write one effect row per message. The children reach the database, Redis and
//! RabbitMQ through Toxiproxy. At the end every child gets SIGTERM, and the verdict is
//! read from the outbox, the effects table and the DLQ.

pub mod child;
mod effects;
mod inject;
mod marks;
mod plan;
mod procs;
mod runs;
mod secure;
mod spec;
mod toxi;
mod world;

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use serde::Serialize;
use tokio::time::Instant;
use zerolost_core::{Envelope, Error, MessageId, OutboxStatus};
use zerolost_testkit::{Enqueue, Verdict};

use effects::{POISON_HEADER, SLOW_HEADER};
use inject::Injected;
use procs::{Procs, Shutdown, UnexpectedExit, round3};
use world::{MAX_MESSAGE_BYTES, World, backend_name};

use zerolost_cli::ops::connect::patiently;

pub use spec::{ChaosArgs, ChaosBackend, ChaosDedupe, ChaosStore};

/// The `--json` output. Field names are a contract: add fields, never rename.
#[derive(Debug, Serialize)]
struct ChaosReport {
    backend: ChaosBackend,
    store: ChaosStore,
    dedupe: ChaosDedupe,
    messages: u64,
    seed: u64,
    faults_planned: usize,
    faults_injected: usize,
    /// Faults injected, by kind.
    faults: BTreeMap<&'static str, usize>,
    fault_log: Vec<Injected>,
    produced: usize,
    published: usize,
    processed: usize,
    dead_lettered: usize,
    parked: usize,
    lost: usize,
    duplicate_effects: u64,
    lost_ids: Vec<String>,
    unexpected_dead_letters: usize,
    unexpected_parked: usize,
    duplicates_suppressed: u64,
    /// `--dedupe redis`: handler runs that found their effect already applied under its key
    /// (a consumer died or lost Redis between the effect and the mark; see
    /// docs/reliability.md). Always 0 with the inbox, whose mark commits with the effect.
    handler_reruns: u64,
    /// Messages whose handler first waited 1.5 claim leases (a slow API call).
    slow_handlers: usize,
    /// Every handler run, as the consumers recorded it: overlapping runs of one message
    /// (while the earlier one's process was not frozen) fail the run.
    runs: runs::RunsVerdict,
    /// When consumers were frozen (`consumer_pause`).
    pauses: Vec<runs::Pause>,
    /// When consumers were cut off from their dedupe store (`store_cut`).
    cuts: Vec<runs::Span>,
    unexpected_exits: Vec<UnexpectedExit>,
    shutdown: Vec<Shutdown>,
    leased_after_shutdown: usize,
    producer_retries: u64,
    timed_out: bool,
    elapsed_s: f64,
    run_dir: String,
    replay: String,
    ok: bool,
}

/// How long the final readings wait for a service the last fault restarted (a pooled
/// connection may have been cut).
const FINAL_READ: Duration = Duration::from_secs(10);

/// What the producer made.
struct Produced {
    poison: HashSet<MessageId>,
    unsendable: HashSet<MessageId>,
    slow: usize,
}

/// How long a designated slow message's handler waits: 1.5 times the consumers' 10 s
/// claim lease.
const SLOW_MS: u64 = 15_000;

/// What the run left behind, read once every child has stopped.
struct Readings {
    produced_ids: Vec<MessageId>,
    published: usize,
    verdict: Verdict,
    leased_after_shutdown: usize,
    duplicates_suppressed: u64,
    handler_reruns: u64,
}

/// Reads the outbox, the effects, the DLQ and the ledger, and judges them by id.
async fn read_outcome(world: &World, produced: &Produced) -> Result<Readings, Error> {
    let snapshot = patiently("the outbox", FINAL_READ, || world.outbox.snapshot(None)).await?;
    let produced_ids: Vec<MessageId> = snapshot.entries.iter().map(|e| e.id).collect();
    let parked = snapshot.ids_in(OutboxStatus::Parked);
    let published = snapshot.ids_in(OutboxStatus::Published).len();
    let effects = patiently("the effects", FINAL_READ, || {
        world.db.counts(&world.effects_table)
    })
    .await?;
    let dead: HashSet<MessageId> =
        patiently("the DLQ", FINAL_READ, || dead_letter_ids(world)).await?;
    let verdict = Verdict::compute(
        &produced_ids,
        &effects,
        &dead,
        &parked,
        &produced.poison,
        &produced.unsendable,
    );
    let leased_after_shutdown =
        patiently("the outbox counts", FINAL_READ, || world.outbox.counts())
            .await?
            .leased;
    let duplicates_suppressed = patiently("the ledger", FINAL_READ, || {
        world.ledger.duplicates_suppressed()
    })
    .await?;
    let handler_reruns = patiently("the re-runs", FINAL_READ, || {
        world.db.rows(&world.reruns_table)
    })
    .await?;
    Ok(Readings {
        produced_ids,
        published,
        verdict,
        leased_after_shutdown,
        duplicates_suppressed,
        handler_reruns,
    })
}

/// The verdict on every recorded handler run, under what the run did to the consumers.
async fn judge_runs(
    world: &World,
    procs: &Procs,
    dedupe: ChaosDedupe,
) -> Result<runs::RunsVerdict, Error> {
    let recorded = patiently("the runs", FINAL_READ, || world.db.runs(&world.runs_table)).await?;
    let marks_table = marks::marks_table(&world.runs_table);
    let failed_marks = patiently("the refused marks", FINAL_READ, || {
        world.db.failed_marks(&marks_table)
    })
    .await?;
    let seen = runs::Circumstances {
        pauses: &procs.pauses,
        failed_marks: &failed_marks,
        killed: &procs.killed,
        marks_apart: dedupe == ChaosDedupe::Redis,
    };
    Ok(runs::verdict(&recorded, &seen))
}

/// Runs a chaos run; exit 1 on any loss, duplicate effect or misbehaving process.
pub async fn run(args: ChaosArgs) -> Result<ExitCode, Error> {
    let seed = args.seed.unwrap_or_else(crate::kinds::rand_seed);
    let replay = replay_command(&args, seed);
    eprintln!("zerolost-lab chaos: seed {seed}; replay with: {replay}");
    let _lock = world::exclusive()?;
    let world = World::prepare(&args, seed).await?;
    let outcome = drive(&args, seed, &world).await;
    world
        .teardown(outcome.as_ref().is_ok_and(|report| report.ok))
        .await;
    let mut report = outcome?;
    report.replay = replay;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::backend("writing the JSON report", false, e))?;
        println!("{json}");
    } else {
        print_table(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The production rate: `--rate`, else about 7 s of production per fault.
fn rate(args: &ChaosArgs) -> u64 {
    args.rate.unwrap_or_else(|| {
        let seconds = 7 * args.faults.max(1) as u64;
        (args.messages / seconds).clamp(50, 20_000)
    })
}

async fn drive(args: &ChaosArgs, seed: u64, world: &World) -> Result<ChaosReport, Error> {
    let started = Instant::now();
    let rate = rate(args);
    let messages = usize::try_from(args.messages)
        .map_err(|_| Error::Config("--messages is too large for this machine".into()))?;
    let (kinds, required) = inject::applicable(args.backend, world);
    let planned = plan::plan(seed, args.faults, &kinds, required);
    eprintln!(
        "chaos: {} messages at {}/s to {}, {} faults from {:?}; logs in {}",
        messages,
        rate,
        world.destination,
        planned.len(),
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        world.run_dir.display()
    );
    let mut procs = Procs::new(world, 2)?;
    procs.start_all()?;
    let (produced, fault_log, retries) =
        produce_under_faults(args, world, &planned, &mut procs, started).await?;
    eprintln!(
        "chaos: [{:>7.1} s] all {messages} messages produced, all faults injected; waiting for the pipeline",
        started.elapsed().as_secs_f64()
    );

    let deadline = Duration::from_secs(args.deadline.unwrap_or(300 + args.messages / 100));
    let timed_out = !settle(world, &mut procs, &produced, messages, started, deadline).await?;
    // Late redeliveries would show as duplicate effects: give them a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    procs.reap()?;
    let shutdown = procs.terminate_all(Duration::from_secs(30)).await;
    let readings = read_outcome(world, &produced).await?;
    let runs = judge_runs(world, &procs, args.dedupe).await?;
    let observed = Observed {
        planned: planned.len(),
        fault_log,
        produced,
        retries,
        timed_out,
        shutdown,
        readings,
        runs,
    };
    Ok(observed.report(args, seed, world, &procs, started))
}

/// Produces at the run's rate in a task while injecting each planned fault once its share
/// of the messages is produced. Returns what was produced, the faults as injected and the
/// producer's retried transactions.
async fn produce_under_faults(
    args: &ChaosArgs,
    world: &World,
    planned: &[plan::Planned],
    procs: &mut Procs,
    started: Instant,
) -> Result<(Produced, Vec<Injected>, u64), Error> {
    let messages = args.messages as usize;
    let produced_count = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn(produce(
        world.enqueue.clone(),
        world.destination.clone(),
        messages,
        rate(args),
        produced_count.clone(),
        retries.clone(),
    ));
    let mut fault_log = Vec::new();
    for p in planned {
        let due = (p.at * messages as f64) as u64;
        while produced_count.load(Ordering::Relaxed) < due && !producer.is_finished() {
            procs.reap()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        procs.reap()?;
        let at = started.elapsed().as_secs_f64();
        let injected = inject::inject(p, world, procs, args.backend, args.store, at).await?;
        injected.print();
        fault_log.push(injected);
    }
    let produced = producer
        .await
        .map_err(|e| Error::backend("the producer task", false, e))??;
    Ok((produced, fault_log, retries.load(Ordering::Relaxed)))
}

/// Everything a run observed, before it is judged and reported.
struct Observed {
    planned: usize,
    fault_log: Vec<Injected>,
    produced: Produced,
    retries: u64,
    timed_out: bool,
    shutdown: Vec<Shutdown>,
    readings: Readings,
    runs: runs::RunsVerdict,
}

impl Observed {
    /// The report, with its verdict: ok only when nothing was lost or applied twice, every
    /// child behaved and exited cleanly, and no claim outlived the shutdown.
    fn report(
        self,
        args: &ChaosArgs,
        seed: u64,
        world: &World,
        procs: &Procs,
        started: Instant,
    ) -> ChaosReport {
        let Readings {
            produced_ids,
            published,
            verdict,
            leased_after_shutdown,
            duplicates_suppressed,
            handler_reruns,
        } = self.readings;
        let mut faults = BTreeMap::new();
        for f in &self.fault_log {
            *faults.entry(f.kind.name()).or_default() += 1;
        }
        let ok = verdict.is_clean()
            && !self.timed_out
            && produced_ids.len() as u64 == args.messages
            && procs.unexpected.is_empty()
            && self.shutdown.iter().all(|s| s.exit_code == Some(0))
            && leased_after_shutdown == 0
            && self.runs.overlapping == 0
            && self.runs.reruns_after_success == 0;
        ChaosReport {
            backend: args.backend,
            store: args.store,
            dedupe: args.dedupe,
            messages: args.messages,
            seed,
            faults_planned: self.planned,
            faults_injected: self.fault_log.len(),
            faults,
            fault_log: self.fault_log,
            produced: produced_ids.len(),
            published,
            processed: verdict.processed,
            dead_lettered: verdict.dead_lettered,
            parked: verdict.parked,
            lost: verdict.lost.len(),
            duplicate_effects: verdict.duplicate_effects,
            lost_ids: verdict
                .lost
                .iter()
                .take(100)
                .map(ToString::to_string)
                .collect(),
            unexpected_dead_letters: verdict.unexpected_dead_letters.len()
                + verdict.poison_not_dead_lettered.len(),
            unexpected_parked: verdict.unexpected_parked.len()
                + verdict.unsendable_not_parked.len(),
            duplicates_suppressed,
            handler_reruns,
            slow_handlers: self.produced.slow,
            runs: self.runs,
            pauses: procs.pauses.clone(),
            cuts: procs.cuts.clone(),
            unexpected_exits: procs.unexpected.clone(),
            shutdown: self.shutdown,
            leased_after_shutdown,
            producer_retries: self.retries,
            timed_out: self.timed_out,
            elapsed_s: round3(started.elapsed().as_secs_f64()),
            run_dir: world.run_dir.display().to_string(),
            replay: String::new(),
            ok,
        }
    }
}

/// Enqueues `messages` in transactions of 50 at `rate` per second. Every 1,000th message
/// is poison (alternately retryable and permanent), every 5,000th is one byte over the
/// broker's limit. A transaction that fails is tried again with the same ids; a retry
/// refused as a duplicate id means the first commit went through.
async fn produce(
    enqueue: Arc<dyn Enqueue>,
    destination: String,
    messages: usize,
    rate: u64,
    produced: Arc<AtomicU64>,
    retries: Arc<AtomicU64>,
) -> Result<Produced, Error> {
    const BATCH: usize = 50;
    let mut out = Produced {
        poison: HashSet::new(),
        unsendable: HashSet::new(),
        slow: 0,
    };
    let started = Instant::now();
    let mut i = 0;
    while i < messages {
        let mut batch = Vec::with_capacity(BATCH);
        for n in i..(i + BATCH).min(messages) {
            let unsendable = n % 5000 == 2499;
            let mut envelope = if unsendable {
                Envelope::new(&destination, Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES + 1]))
            } else {
                Envelope::new(&destination, format!("{{\"order\":{n}}}"))
            };
            if unsendable {
                out.unsendable.insert(envelope.id);
            } else if n % 1000 == 999 {
                let how = if n % 2000 == 999 {
                    "retryable"
                } else {
                    "permanent"
                };
                envelope = envelope.with_header(POISON_HEADER, how);
                out.poison.insert(envelope.id);
            } else if n % 2000 == 1234 {
                envelope = envelope.with_header(SLOW_HEADER, SLOW_MS.to_string());
                out.slow += 1;
            }
            batch.push(envelope);
        }
        let mut attempt = 0u32;
        loop {
            match enqueue.enqueue(&batch).await {
                Ok(()) => break,
                Err(Error::Invalid { .. }) if attempt > 0 => break, // committed before
                Err(e) if attempt < 600 => {
                    attempt += 1;
                    retries.fetch_add(1, Ordering::Relaxed);
                    if attempt == 1 {
                        eprintln!("chaos: producer transaction failed ({e}); trying again");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        i += batch.len();
        produced.store(i as u64, Ordering::Relaxed);
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
    }
    Ok(out)
}

/// Waits until every produced message is applied, dead-lettered or parked and nothing is
/// pending; `false` on the deadline.
async fn settle(
    world: &World,
    procs: &mut Procs,
    produced: &Produced,
    messages: usize,
    started: Instant,
    deadline: Duration,
) -> Result<bool, Error> {
    let expected = (messages - produced.poison.len() - produced.unsendable.len()) as u64;
    let mut last_report = Instant::now();
    loop {
        procs.reap()?;
        let counts = world.outbox.counts().await;
        let applied = world.db.distinct(&world.effects_table).await;
        if let (Ok(counts), Ok(applied)) = (&counts, &applied) {
            if counts.pending == 0
                && *applied >= expected
                && counts.parked >= produced.unsendable.len()
            {
                let dead = dead_letter_ids(world).await.unwrap_or_default();
                if produced.poison.iter().all(|id| dead.contains(id)) {
                    return Ok(true);
                }
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "chaos: [{:>7.1} s] pending {}, applied {applied}/{expected}, parked {}",
                    started.elapsed().as_secs_f64(),
                    counts.pending,
                    counts.parked
                );
                last_report = Instant::now();
            }
        }
        if started.elapsed() > deadline {
            eprintln!("chaos: deadline of {} s passed", deadline.as_secs());
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn dead_letter_ids(world: &World) -> Result<HashSet<MessageId>, Error> {
    world.backend.dead_letter_ids(&world.destination).await
}

fn replay_command(args: &ChaosArgs, seed: u64) -> String {
    let name = |v: &dyn Fn() -> Option<clap::builder::PossibleValue>| {
        v().map(|p| p.get_name().to_owned()).unwrap_or_default()
    };
    format!(
        "zerolost-lab chaos --backend {} --store {} --dedupe {} --messages {} --faults {} --rate {} --seed {seed}{}",
        backend_name(args.backend),
        name(&|| args.store.to_possible_value()),
        name(&|| args.dedupe.to_possible_value()),
        args.messages,
        args.faults,
        rate(args),
        if args.tls { " --tls" } else { "" }
    )
}

fn print_table(r: &ChaosReport) {
    println!(
        "zerolost-lab chaos: {} messages, backend {}, seed {}",
        r.messages,
        backend_name(r.backend),
        r.seed
    );
    println!("replay with: {}\n", r.replay);
    println!(
        "{:>8}  {:<16} {:<24} what happened",
        "at (s)", "fault", "target"
    );
    for f in &r.fault_log {
        println!(
            "{:>8.1}  {:<16} {:<24} {} (recovered in {:.1} s)",
            f.at_s,
            f.kind.name(),
            f.target,
            f.detail,
            f.took_s
        );
    }
    println!();
    let rows: [(&str, String); 14] = [
        ("produced", r.produced.to_string()),
        ("published (confirmed)", r.published.to_string()),
        ("processed once", r.processed.to_string()),
        ("dead-lettered (poison)", r.dead_lettered.to_string()),
        ("parked (unsendable)", r.parked.to_string()),
        ("lost", r.lost.to_string()),
        ("duplicate effects", r.duplicate_effects.to_string()),
        ("duplicates suppressed", r.duplicates_suppressed.to_string()),
        ("handler re-runs (redis gap)", r.handler_reruns.to_string()),
        ("handler runs recorded", r.runs.runs.to_string()),
        (
            "runs overlapping (frozen)",
            format!(
                "{} ({})",
                r.runs.overlapping, r.runs.overlapping_while_frozen
            ),
        ),
        (
            "re-runs after success (kill)",
            format!(
                "{} ({})",
                r.runs.reruns_after_success, r.runs.reruns_after_kill
            ),
        ),
        ("unexpected exits", r.unexpected_exits.len().to_string()),
        ("leased after SIGTERM", r.leased_after_shutdown.to_string()),
    ];
    for (k, v) in rows {
        println!("{k:<28} {v:>10}");
    }
    let clean = r.shutdown.iter().filter(|s| s.exit_code == Some(0)).count();
    println!(
        "SIGTERM: {clean} of {} processes exited 0; elapsed {:.1} s; logs in {}",
        r.shutdown.len(),
        r.elapsed_s,
        r.run_dir
    );
    println!(
        "verdict: {}",
        if r.ok {
            "OK: nothing lost, nothing applied twice"
        } else {
            "FAILED (see above)"
        }
    );
}
