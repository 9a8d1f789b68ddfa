//! Durability on the 3-node KRaft cluster (`scripts/services/kafka.sh start cluster`:
//! replication 3, min.insync.replicas 2, no unclean leader election). These tests kill and
//! restart brokers, so they run one at a time and leave all three nodes up.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fresh_topic;
use rdkafka::producer::Producer;
use zerolost_core::memory::{MemoryDedupe, MemoryOutbox};
use zerolost_core::{
    Consumer, DeadLetterPublisher, Envelope, Handler, HandlerError, Publisher, Relay, RelayConfig,
};
use zerolost_kafka::{
    KafkaConfig, KafkaPublisher, KafkaSubscriber, TopicSpec, audit, ensure_topic,
};
use zerolost_testkit::conformance::{eventually_every, test_consumer_config};

/// One cluster test at a time: they stop and kill nodes.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster() -> Option<KafkaConfig> {
    let brokers = zerolost_testkit::service_url(
        "ZEROLOST_KAFKA_CLUSTER",
        "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094",
    );
    let config = KafkaConfig::new(brokers).set("socket.connection.setup.timeout.ms", "3000");
    let probe = ensure_topic(&config, "zlt-probe", TopicSpec::DURABLE).await;
    zerolost_testkit::require_service("kafka cluster", probe)?;
    Some(config)
}

/// The cluster, held for this test alone, with every node up (a failed test may have left
/// one down); `None` (skip) when unreachable and not required.
async fn exclusive_cluster() -> Option<(KafkaConfig, tokio::sync::MutexGuard<'static, ()>)> {
    let config = cluster().await?;
    let guard = CLUSTER.lock().await;
    heal();
    Some((config, guard))
}

/// Runs `scripts/services/kafka.sh` with `args` (kill / restart-node).
fn kafka_sh(args: &[&str]) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/services/kafka.sh"
    );
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .expect("run kafka.sh");
    assert!(status.success(), "kafka.sh {args:?} failed");
}

/// Leader, replicas and in-sync replicas of one partition.
fn partition_state(
    publisher: &KafkaPublisher,
    topic: &str,
    partition: i32,
) -> (i32, Vec<i32>, Vec<i32>) {
    let metadata = publisher
        .producer()
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let p = metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .expect("partition");
    (p.leader(), p.replicas().to_vec(), p.isr().to_vec())
}

/// Starts any node a failed test left down (idempotent: running nodes are left alone).
fn heal() {
    kafka_sh(&["start", "cluster"]);
}

fn leader_of(publisher: &KafkaPublisher, topic: &str, partition: i32) -> i32 {
    partition_state(publisher, topic, partition).0
}

/// Waits until partition 0 of `topic` has `n` in-sync replicas.
async fn wait_for_isr(publisher: &KafkaPublisher, topic: &str, n: usize) {
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(250),
        &format!("{n} in-sync replicas"),
        async || partition_state(publisher, topic, 0).2.len() == n,
    )
    .await;
}

/// Counts handler calls per id.
#[derive(Default)]
struct CountEffects(std::sync::Mutex<HashMap<String, usize>>);

#[async_trait::async_trait]
impl Handler for CountEffects {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        *self
            .0
            .lock()
            .expect("lock")
            .entry(envelope.id.to_string())
            .or_default() += 1;
        Ok(())
    }
}

/// Consumes `topic` with the zerolost consumer until `n` ids are finished; returns the
/// handler's calls per id and how many redeliveries were suppressed.
async fn effects_of(config: &KafkaConfig, topic: &str, n: usize) -> (HashMap<String, usize>, u64) {
    let effects = Arc::new(CountEffects::default());
    let dedupe = Arc::new(MemoryDedupe::new());
    let publisher = KafkaPublisher::new(config).expect("publisher");
    let consumer = Consumer::new(
        dedupe.clone(),
        effects.clone(),
        DeadLetterPublisher::new(publisher),
    )
    .with_config(zerolost_core::ConsumerConfig {
        concurrency: 64,
        ..test_consumer_config()
    })
    .expect("consumer");
    let subscriber =
        KafkaSubscriber::new(config, &format!("{topic}-verdict"), &[topic]).expect("subscriber");
    let running = common::spawn_consumer(&consumer, subscriber);
    eventually_every(
        Duration::from_secs(180),
        Duration::from_millis(200),
        "every message consumed",
        async || common::finished(&*dedupe).await >= n,
    )
    .await;
    running.stop().await;
    let calls = effects.0.lock().expect("lock").clone();
    (calls, consumer.totals().duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_passes_durable_topics_and_flags_weak_ones() {
    let Some((config, _one_at_a_time)) = exclusive_cluster().await else {
        return;
    };
    let durable = fresh_topic("durable");
    ensure_topic(&config, &durable, TopicSpec::DURABLE)
        .await
        .expect("topic");
    let report = audit(&config, &durable).await.expect("audit");
    assert!(report.is_durable(), "{:#?}", report.findings);

    let weak = fresh_topic("weak");
    ensure_topic(&config, &weak, TopicSpec::SINGLE_NODE)
        .await
        .expect("topic");
    let report = audit(&config, &weak).await.expect("audit");
    let subjects: Vec<_> = report.findings.iter().map(|f| f.subject.as_str()).collect();
    assert!(
        subjects.iter().any(|s| s.ends_with("replication factor")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.ends_with("min.insync.replicas")),
        "{subjects:?}"
    );
    assert!(report.findings.iter().all(|f| !f.fix.is_empty()));
    assert_eq!(
        report.findings.len(),
        2,
        "the brokers' defaults are durable: {:#?}",
        report.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_relay_loses_nothing_and_applies_nothing_twice() {
    // CI-sized (the leader dies after 8,000 confirmed); the long runs are `zerolost-lab chaos`.
    const N: usize = 40_000;
    let Some((config, _one_at_a_time)) = exclusive_cluster().await else {
        return;
    };
    let config = config.delivery_timeout(Duration::from_secs(20));
    let topic = common::topic_with_dlq(&config, "kill", TopicSpec::DURABLE).await;
    let outbox = Arc::new(MemoryOutbox::new());
    let envelopes: Vec<Envelope> = (0..N)
        .map(|i| Envelope::new(&topic, format!("{{\"n\":{i}}}")))
        .collect();
    outbox.enqueue_batch(&envelopes).expect("enqueue");
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let relay = Relay::new(outbox.clone(), publisher.clone())
        .with_config(RelayConfig {
            batch_size: 1000,
            max_attempts: 1000,
            ..RelayConfig::default()
        })
        .expect("relay");
    let running = common::spawn_relay(relay);
    eventually_every(
        Duration::from_secs(120),
        Duration::from_millis(20),
        "a fifth of the rows relayed",
        async || outbox.counts().1 >= N / 5,
    )
    .await;
    let victim = leader_of(&publisher, &topic, 0);
    eprintln!(
        "killing node {victim} (leader of partition 0) at {:?}",
        outbox.counts()
    );
    kafka_sh(&["kill", &victim.to_string()]);
    eventually_every(
        Duration::from_secs(300),
        Duration::from_millis(50),
        "every row relayed after the leader's death",
        async || outbox.counts().0 == 0,
    )
    .await;
    let totals = running.stop().await;
    kafka_sh(&["restart-node", &victim.to_string()]);
    let (pending, published, parked) = outbox.counts();
    assert_eq!(
        (pending, published, parked),
        (0, N, 0),
        "every row confirmed, none parked"
    );
    eprintln!("relay totals: {totals:?}");

    let (effects, suppressed) = effects_of(&config, &topic, N).await;
    let lost: Vec<_> = envelopes
        .iter()
        .filter(|e| !effects.contains_key(&e.id.to_string()))
        .collect();
    let doubled = effects.values().filter(|n| **n > 1).count();
    eprintln!(
        "verdict: lost {}, duplicate effects {doubled}, redeliveries suppressed {suppressed}",
        lost.len()
    );
    assert!(lost.is_empty(), "lost {} messages", lost.len());
    assert_eq!(doubled, 0, "duplicate effects");
    assert_eq!(effects.len(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_down_keeps_rows_in_the_outbox_until_they_return() {
    let Some((config, _one_at_a_time)) = exclusive_cluster().await else {
        return;
    };
    let config = config.delivery_timeout(Duration::from_secs(4));
    let topic = fresh_topic("outage");
    ensure_topic(&config, &topic, TopicSpec::DURABLE)
        .await
        .expect("topic");
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    publisher
        .publish(&Envelope::new(&topic, "warm-up"))
        .await
        .expect("healthy cluster");

    kafka_sh(&["kill", "2"]);
    kafka_sh(&["kill", "3"]);
    let (outbox, envelopes, relay) = patient_relay(&publisher, &topic, 200);
    let round = relay.run_once().await.expect("round");
    assert_eq!(
        round.published, 0,
        "one of three in-sync replicas cannot confirm"
    );
    assert_eq!(round.parked, 0, "retryable: nothing parked");
    assert_eq!(round.rescheduled, 200);
    let direct = publisher
        .publish(&Envelope::new(&topic, "probe"))
        .await
        .expect_err("no quorum of replicas");
    assert!(direct.is_retryable(), "{direct}");
    eprintln!("with 2 of 3 nodes down a publish fails retryably: {direct}");
    assert_eq!(outbox.counts(), (200, 0, 0), "the outbox holds every row");

    kafka_sh(&["restart-node", "2"]);
    kafka_sh(&["restart-node", "3"]);
    drain(relay, &outbox, Duration::from_secs(120)).await;
    assert_eq!(
        outbox.counts(),
        (0, 200, 0),
        "drained by itself, nothing parked"
    );
    let ids: HashSet<_> = common::read_topic(&config, &topic)
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(
        envelopes.iter().all(|e| ids.contains(&e.id)),
        "every row is on the topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_in_sync_replicas_is_retryable_not_enough_replicas() {
    let Some((config, _one_at_a_time)) = exclusive_cluster().await else {
        return;
    };
    let config = config.delivery_timeout(Duration::from_secs(4));
    let topic = fresh_topic("isr");
    // Every replica must be in sync: losing one follower leaves too few.
    let all_three = TopicSpec {
        partitions: 1,
        replication: 3,
        min_insync: 3,
    };
    ensure_topic(&config, &topic, all_three)
        .await
        .expect("topic");
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    publisher
        .publish(&Envelope::new(&topic, "warm-up"))
        .await
        .expect("healthy cluster");
    let (leader, replicas, _) = partition_state(&publisher, &topic, 0);
    let follower = *replicas.iter().find(|r| **r != leader).expect("a follower");
    kafka_sh(&["kill", &follower.to_string()]);
    wait_for_isr(&publisher, &topic, 2).await;

    let (outbox, _envelopes, relay) = patient_relay(&publisher, &topic, 50);
    let round = relay.run_once().await.expect("round");
    assert_eq!(
        (round.published, round.parked, round.rescheduled),
        (0, 0, 50),
        "{round:?}"
    );
    let err = publisher
        .publish(&Envelope::new(&topic, "probe"))
        .await
        .expect_err("too few in sync");
    // The broker answers NOT_ENOUGH_REPLICAS; the idempotent producer retries that inside
    // librdkafka until the delivery timeout, so the caller sees a retryable timeout. The
    // broker's own log shows the answer it gave.
    assert!(err.is_retryable(), "{err}");
    let state = std::env::var("ZEROLOST_STATE_DIR").unwrap_or_else(|_| "/var/tmp/zerolost".into());
    let log = std::fs::read_to_string(format!("{state}/kafka/cluster/node{leader}/server.log"))
        .unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("NotEnoughReplicasException") && l.contains(&topic)),
        "the leader (node {leader}) refused appends with NOT_ENOUGH_REPLICAS"
    );

    kafka_sh(&["restart-node", &follower.to_string()]);
    wait_for_isr(&publisher, &topic, 3).await;
    drain(relay, &outbox, Duration::from_secs(60)).await;
    assert_eq!(outbox.counts(), (0, 50, 0));
}

/// `n` rows for `topic` in a fresh outbox, and a relay that keeps retrying them (a broker
/// outage must not park anything).
fn patient_relay(
    publisher: &KafkaPublisher,
    topic: &str,
    n: usize,
) -> (Arc<MemoryOutbox>, Vec<Envelope>, Relay) {
    let outbox = Arc::new(MemoryOutbox::new());
    let envelopes: Vec<Envelope> = (0..n)
        .map(|i| Envelope::new(topic, format!("{i}")))
        .collect();
    outbox.enqueue_batch(&envelopes).expect("enqueue");
    let relay = Relay::new(outbox.clone(), publisher.clone())
        .with_config(RelayConfig {
            batch_size: n,
            max_attempts: 1000,
            backoff: zerolost_core::Backoff::exponential(
                Duration::from_millis(100),
                Duration::from_millis(500),
            ),
            ..RelayConfig::default()
        })
        .expect("relay");
    (outbox, envelopes, relay)
}

/// Runs `relay` until every row of `outbox` is published (within `patience`).
async fn drain(relay: Relay, outbox: &MemoryOutbox, patience: Duration) {
    let rows = outbox.counts();
    let total = rows.0 + rows.1 + rows.2;
    let running = common::spawn_relay(relay);
    eventually_every(
        patience,
        Duration::from_millis(100),
        "the outbox drained by itself",
        async || outbox.counts().1 == total,
    )
    .await;
    running.stop().await;
}

/// Java's `String.hashCode`; Kafka puts a group's coordinator on the leader of
/// `__consumer_offsets` partition `(hash & 0x7fffffff) % partitions` (6 on the test cluster).
fn java_hash(text: &str) -> i32 {
    text.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_coordinator_killed_mid_consumption_loses_and_doubles_nothing() {
    const N: usize = 20_000;
    let Some((config, _one_at_a_time)) = exclusive_cluster().await else {
        return;
    };
    let config = config.set("session.timeout.ms", "6000");
    let topic = common::topic_with_dlq(&config, "coordinator", TopicSpec::DURABLE).await;
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let envelopes: Vec<Envelope> = (0..N)
        .map(|i| Envelope::new(&topic, format!("{i}")))
        .collect();
    for chunk in envelopes.chunks(1000) {
        for result in publisher.publish_batch(chunk).await {
            result.expect("confirmed");
        }
    }
    let group = format!("{topic}-verdict");

    let effects = Arc::new(CountEffects::default());
    let dedupe = Arc::new(MemoryDedupe::new());
    let consumer = Consumer::new(
        dedupe.clone(),
        effects.clone(),
        DeadLetterPublisher::new(publisher.clone()),
    )
    .with_config(zerolost_core::ConsumerConfig {
        concurrency: 16,
        ..test_consumer_config()
    })
    .expect("consumer");
    let subscriber = KafkaSubscriber::new(&config, &group, &[&topic]).expect("subscriber");
    let running = common::spawn_consumer(&consumer, subscriber);
    let started = Instant::now();
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(20),
        "a quarter consumed",
        async || common::finished(&*dedupe).await >= N / 4,
    )
    .await;
    // On a fresh cluster `__consumer_offsets` exists only once a group has coordinated.
    let offsets_partition = (java_hash(&group) & 0x7fff_ffff) % 6;
    let coordinator = partition_state(&publisher, "__consumer_offsets", offsets_partition).0;
    eprintln!(
        "killing node {coordinator} (coordinator of {group}) at {} done",
        common::finished(&*dedupe).await
    );
    kafka_sh(&["kill", &coordinator.to_string()]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    kafka_sh(&["restart-node", &coordinator.to_string()]);
    eventually_every(
        Duration::from_secs(180).saturating_sub(started.elapsed()),
        Duration::from_millis(100),
        "every message consumed after the coordinator's restart",
        async || common::finished(&*dedupe).await >= N,
    )
    .await;
    running.stop().await;
    let calls = effects.0.lock().expect("lock").clone();
    let doubled = calls.values().filter(|n| **n > 1).count();
    eprintln!(
        "verdict: {} applied, duplicate effects {doubled}, suppressed {}",
        calls.len(),
        consumer.totals().duplicates
    );
    assert_eq!(calls.len(), N, "every message applied");
    assert_eq!(doubled, 0, "none twice");
}
