//! Carries out one planned fault on the run's processes, services and links.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;
use zerolost_core::{Envelope, Error};

use super::plan::{FaultKind, Planned};
use super::procs::{Procs, Role, round3};
use super::spec::{ChaosBackend, ChaosStore};
use super::toxi;
use super::world::World;

/// A fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    /// Seconds into the run.
    pub at_s: f64,
    /// What.
    pub kind: FaultKind,
    /// On what (`relay-2`, `kafka node 3`, `database link`).
    pub target: String,
    /// How it went.
    pub detail: String,
    /// Seconds from the fault to the end of its recovery step (restart, link back).
    pub took_s: f64,
}

impl Injected {
    /// One line on stderr.
    pub fn print(&self) {
        eprintln!(
            "chaos: [{:>7.1} s] {} {}: {} (recovered in {:.1} s)",
            self.at_s,
            self.kind.name(),
            self.target,
            self.detail,
            self.took_s
        );
    }
}

/// How long a killed relay or consumer stays down.
const DOWN: Duration = Duration::from_secs(1);
/// How long a link stays cut.
const CUT: Duration = Duration::from_secs(3);
/// How long latency stays on a link.
const SLOW: Duration = Duration::from_secs(5);
/// Latency added, and its jitter (milliseconds).
const LATENCY_MS: (u64, u64) = (300, 100);
/// How long a killed Kafka leader stays down.
const LEADER_DOWN: Duration = Duration::from_secs(3);
/// How long two of three Kafka nodes stay down.
const TWO_DOWN: Duration = Duration::from_secs(8);
/// How long a consumer stays frozen: past its 10 s claim lease.
const FROZEN: Duration = Duration::from_secs(15);
/// How long a consumer stays cut off from its dedupe store: past its 10 s claim lease.
const STORE_CUT: Duration = Duration::from_secs(15);

/// Which kinds of fault apply to a run's setup, and how many of the first ones every plan
/// has: the faults that break claim leases (a pause, a store cut, a Redis kill -9).
pub fn applicable(backend: ChaosBackend, world: &World) -> (Vec<FaultKind>, usize) {
    let mut kinds = vec![FaultKind::ConsumerPause];
    if !world.consumer_links.is_empty() {
        kinds.push(FaultKind::StoreCut);
    }
    if world.redis_prefix.is_some() {
        kinds.push(FaultKind::RedisKill);
    }
    let required = kinds.len();
    kinds.extend([
        FaultKind::RelayKill,
        FaultKind::ConsumerKill,
        FaultKind::BrokerKill,
    ]);
    if backend == ChaosBackend::Kafka {
        kinds.push(FaultKind::BrokersDown);
    }
    if !used_links(world).is_empty() {
        kinds.push(FaultKind::NetworkCut);
        kinds.push(FaultKind::NetworkLatency);
    }
    if world.redis_prefix.is_some() {
        kinds.push(FaultKind::RedisRestart);
    }
    if world.links.iter().any(|l| l.name == "database") {
        kinds.push(FaultKind::DatabaseRestart);
    }
    (kinds, required)
}

/// The links the children use: the shared ones and each consumer's own link to its store
/// (the consumers reach Redis only through their own, so the shared Redis link is left out).
fn used_links(world: &World) -> Vec<&super::world::Link> {
    world
        .links
        .iter()
        .filter(|l| l.name != "redis")
        .chain(&world.consumer_links)
        .collect()
}

/// Injects `planned` and waits for its recovery step.
pub async fn inject(
    planned: &Planned,
    world: &World,
    procs: &mut Procs,
    backend: ChaosBackend,
    store: ChaosStore,
    at_s: f64,
) -> Result<Injected, Error> {
    let began = tokio::time::Instant::now();
    let (target, detail) = match planned.kind {
        FaultKind::RelayKill => kill_relay(planned.target, world, procs).await?,
        FaultKind::ConsumerKill => kill_consumer(planned.target, procs).await?,
        FaultKind::ConsumerPause => pause_consumer(planned.target, procs).await?,
        FaultKind::StoreCut => cut_consumer_store(planned.target, world, procs).await?,
        FaultKind::BrokerKill => kill_broker(backend, world).await?,
        FaultKind::BrokersDown => two_kafka_nodes_down(world).await?,
        FaultKind::NetworkCut | FaultKind::NetworkLatency => {
            let links = used_links(world);
            let link = links[planned.target % links.len()];
            let detail = if planned.kind == FaultKind::NetworkCut {
                toxi::set_enabled(&link.proxy, false).await?;
                tokio::time::sleep(CUT).await;
                toxi::set_enabled(&link.proxy, true).await?;
                format!("connections cut and refused for {} s", CUT.as_secs())
            } else {
                toxi::add_latency(&link.proxy, LATENCY_MS.0, LATENCY_MS.1).await?;
                tokio::time::sleep(SLOW).await;
                toxi::remove_latency(&link.proxy).await?;
                format!(
                    "{} ± {} ms latency for {} s",
                    LATENCY_MS.0,
                    LATENCY_MS.1,
                    SLOW.as_secs()
                )
            };
            (format!("{} link", link.name), detail)
        }
        FaultKind::RedisRestart => {
            world.services.run("redis", &["restart"]).await?;
            (
                "redis".into(),
                "stopped (SHUTDOWN) and started again".into(),
            )
        }
        FaultKind::RedisKill => kill_redis(world).await?,
        FaultKind::DatabaseRestart => {
            let script = match store {
                ChaosStore::Mysql => "mariadb",
                _ => "postgres",
            };
            world.services.run(script, &["restart"]).await?;
            (
                script.to_owned(),
                "stopped (its open connections closed) and started again".into(),
            )
        }
    };
    Ok(Injected {
        at_s: round3(at_s),
        kind: planned.kind,
        target,
        detail,
        took_s: round3(began.elapsed().as_secs_f64()),
    })
}

/// kill -9 of a relay while rows are leased (waits up to 5 s for a lease).
async fn kill_relay(
    target: usize,
    world: &World,
    procs: &mut Procs,
) -> Result<(String, String), Error> {
    let relays = procs.of(Role::Relay);
    let i = relays[target % relays.len()];
    let mut leased = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        leased = world.outbox.counts().await.map(|c| c.leased).unwrap_or(0);
        if leased > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    procs.kill(i).await;
    tokio::time::sleep(DOWN).await;
    procs.start(i)?;
    Ok((
        procs.name(i).to_owned(),
        format!(
            "kill -9 with {leased} rows leased; started again after {} s",
            DOWN.as_secs()
        ),
    ))
}

/// Arms a consumer to SIGKILL itself at its next ack (after a handler's commit).
async fn kill_consumer(target: usize, procs: &mut Procs) -> Result<(String, String), Error> {
    let consumers = procs.of(Role::Consumer);
    let i = consumers[target % consumers.len()];
    procs.note_death(i);
    procs.signal(i, Signal::SIGUSR1);
    let detail = match procs.wait_exit(i, Duration::from_secs(15)).await {
        Some(status) => format!("killed itself between a handler's commit and its ack ({status})"),
        None => {
            procs.kill(i).await;
            "no ack within 15 s (idle): kill -9".to_owned()
        }
    };
    tokio::time::sleep(DOWN).await;
    procs.start(i)?;
    Ok((
        procs.name(i).to_owned(),
        format!("{detail}; started again after {} s", DOWN.as_secs()),
    ))
}

/// SIGSTOP of a consumer for longer than its claim lease, then SIGCONT; the span is
/// noted for the runs' verdict.
async fn pause_consumer(target: usize, procs: &mut Procs) -> Result<(String, String), Error> {
    let consumers = procs.of(Role::Consumer);
    let i = consumers[target % consumers.len()];
    let Some(pid) = procs.pid(i) else {
        return Ok((
            procs.name(i).to_owned(),
            "not running: nothing frozen".into(),
        ));
    };
    let from = super::runs::now_us();
    procs.signal(i, Signal::SIGSTOP);
    tokio::time::sleep(FROZEN).await;
    procs.signal(i, Signal::SIGCONT);
    procs.pauses.push(super::runs::Pause {
        pid: i64::from(pid),
        from,
        to: super::runs::now_us(),
    });
    Ok((
        procs.name(i).to_owned(),
        format!(
            "frozen (SIGSTOP) for {} s, past its claim lease, then resumed",
            FROZEN.as_secs()
        ),
    ))
}

/// Refuses one consumer's own link to its dedupe store for longer than its claim lease
/// (its open connections cut, new ones refused); the span is noted for the runs' verdict.
async fn cut_consumer_store(
    target: usize,
    world: &World,
    procs: &mut Procs,
) -> Result<(String, String), Error> {
    let consumers = procs.of(Role::Consumer);
    let n = target % consumers.len().min(world.consumer_links.len());
    let (i, link) = (consumers[n], &world.consumer_links[n]);
    let from = super::runs::now_us();
    toxi::set_enabled(&link.proxy, false).await?;
    tokio::time::sleep(STORE_CUT).await;
    toxi::set_enabled(&link.proxy, true).await?;
    if let Some(pid) = procs.pid(i) {
        procs.cuts.push(super::runs::Span {
            pid: i64::from(pid),
            from,
            to: super::runs::now_us(),
        });
    }
    Ok((
        link.name.to_owned(),
        format!(
            "{}'s link to its dedupe store refused for {} s, past its claim lease",
            procs.name(i),
            STORE_CUT.as_secs()
        ),
    ))
}

/// How far back a Redis kill -9 delivers handled messages again.
const RECENT_US: i64 = 2_000_000;

/// kill -9 of Redis, a restart on its append-only file, then the messages handled in the
/// 2 s before the kill delivered once more (a relay's re-send): a processed mark Redis
/// acknowledged and lost would let one run again, which the runs' verdict fails. (Redis
/// writes its append-only file before it answers, so a killed process loses no answered
/// write; `appendfsync` is about the machine losing power.)
async fn kill_redis(world: &World) -> Result<(String, String), Error> {
    let since = super::runs::now_us() - RECENT_US;
    world.services.run("redis", &["kill"]).await?;
    let ids = world.db.succeeded_since(&world.runs_table, since).await?;
    let copies: Vec<Envelope> = ids
        .iter()
        .map(|&id| {
            let mut copy = Envelope::new(&world.destination, "a re-send after a Redis kill");
            copy.id = id;
            copy
        })
        .collect();
    let publisher = world.backend.publisher().await?;
    for result in publisher.publish_batch(&copies).await {
        result?;
    }
    Ok((
        "redis".into(),
        format!(
            "kill -9, started again on its append-only file; the {} messages handled in the {} s before it delivered again",
            copies.len(),
            RECENT_US / 1_000_000
        ),
    ))
}

async fn kill_broker(backend: ChaosBackend, world: &World) -> Result<(String, String), Error> {
    match backend {
        ChaosBackend::Rabbitmq => {
            world.services.run("rabbitmq", &["kill"]).await?;
            Ok((
                "rabbitmq".into(),
                "kill -9 of the Erlang VM, started again on its data".into(),
            ))
        }
        ChaosBackend::Rocketmq => {
            world.services.run("rocketmq", &["kill"]).await?;
            Ok((
                "rocketmq broker".into(),
                "kill -9 of the broker, started again on its store".into(),
            ))
        }
        ChaosBackend::Kafka => {
            let leader = kafka_leader(world).await;
            let node = leader.to_string();
            world.services.run("kafka", &["kill", &node]).await?;
            tokio::time::sleep(LEADER_DOWN).await;
            world
                .services
                .run("kafka", &["restart-node", &node])
                .await?;
            Ok((
                format!("kafka node {leader}"),
                format!(
                    "kill -9 of the leader of partition 0, down {} s, started again",
                    LEADER_DOWN.as_secs()
                ),
            ))
        }
    }
}

async fn two_kafka_nodes_down(world: &World) -> Result<(String, String), Error> {
    let leader = kafka_leader(world).await;
    let other = leader % 3 + 1;
    let (a, b) = (leader.to_string(), other.to_string());
    world.services.run("kafka", &["kill", &a]).await?;
    world.services.run("kafka", &["kill", &b]).await?;
    tokio::time::sleep(TWO_DOWN).await;
    world.services.run("kafka", &["restart-node", &a]).await?;
    world.services.run("kafka", &["restart-node", &b]).await?;
    Ok((
        format!("kafka nodes {leader} and {other}"),
        format!(
            "kill -9 of two of three nodes (the leader of partition 0 among them), down {} s, started again",
            TWO_DOWN.as_secs()
        ),
    ))
}

/// The node leading partition 0 of the run's topic (node 1 when the metadata says none).
async fn kafka_leader(world: &World) -> i32 {
    let Some(config) = world.kafka.clone() else {
        return 1;
    };
    let topic = world.destination.clone();
    let found = tokio::task::spawn_blocking(move || -> Option<i32> {
        use rdkafka::producer::Producer;
        let publisher = zerolost_kafka::KafkaPublisher::new(&config).ok()?;
        let metadata = publisher
            .producer()
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .ok()?;
        let leader = metadata
            .topics()
            .first()?
            .partitions()
            .iter()
            .find(|p| p.id() == 0)?
            .leader();
        (1..=3).contains(&leader).then_some(leader)
    })
    .await
    .ok()
    .flatten();
    found.unwrap_or(1)
}
