//! The operator commands as an operator runs them: `relay` (daemon, SIGTERM), `doctor`,
//! `outbox stats | park list | unpark`, and the config file's errors and redaction.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use zerolost_core::{Envelope, MessageId, OutboxStore};
use zerolost_rabbitmq::testkit::{RabbitBackend, test_url};
use zerolost_rabbitmq::{QueueSpec, declare_destination, queue_contents};
use zerolost_sqlx::SqliteStore;
use zerolost_testkit::Backend;

mod common;
use common::{
    free_port, http_get, metric, rabbit_config_text, run, sqlite, terminate, wait_exit, wait_for,
    workdir, zerolost,
};

/// A fresh quorum queue `cli-<tag>`, and a SQLite outbox in a fresh working directory holding
/// `n` pending orders for it: `(dir, queue, store, the orders' ids)`.
async fn pending_orders(
    backend: &RabbitBackend,
    tag: &str,
    n: usize,
) -> (PathBuf, String, SqliteStore, HashSet<MessageId>) {
    let dir = workdir(tag);
    let queue = RabbitBackend::fresh_name(&format!("cli-{tag}"));
    declare_destination(&backend.config, &queue, QueueSpec::default())
        .await
        .expect("declare");
    let store = sqlite(&dir).await;
    let envelopes: Vec<Envelope> = (0..n)
        .map(|i| Envelope::new(&queue, format!("order {i}")))
        .collect();
    for chunk in envelopes.chunks(5_000) {
        store.outbox().enqueue_now(chunk).await.expect("enqueue");
    }
    let ids = envelopes.iter().map(|e| e.id).collect();
    (dir, queue, store, ids)
}

/// The queue holds each of `sent` exactly once, and nothing else.
async fn assert_each_id_once(backend: &RabbitBackend, queue: &str, sent: &HashSet<MessageId>) {
    let stored = zerolost_testkit::ids_of(
        queue_contents(&backend.config, queue)
            .await
            .expect("queue contents"),
    );
    assert_eq!(stored.len(), sent.len(), "every id stored");
    assert!(stored.values().all(|n| *n == 1), "no id stored twice");
    assert!(stored.keys().all(|id| sent.contains(id)), "only sent ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_daemon_serves_metrics_and_sigterm_leaves_no_lease() {
    let Some(backend) = RabbitBackend::local().await else {
        return;
    };
    const N: usize = 20_000;
    let (dir, destination, store, sent) = pending_orders(&backend, "relay", N).await;
    let port = free_port();
    std::fs::write(
        dir.join("zerolost.toml"),
        rabbit_config_text(&dir, &destination, port),
    )
    .expect("config");

    let mut relay = zerolost(&dir)
        .args(["relay", "--config", "zerolost.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the relay");
    // Running: /healthz answers 200 and /metrics counts published rows.
    wait_for("/healthz 200", Duration::from_secs(30), || {
        http_get(port, "/healthz").filter(|(code, _)| *code == 200)
    });
    let published = wait_for("published > 0", Duration::from_secs(60), || {
        let (_, page) = http_get(port, "/metrics")?;
        metric(&page, "zerolost_relay_published_total").filter(|n| *n >= 200.0)
    });
    let depth = format!("zerolost_dlq_depth{{destination=\"{destination}\"}}");
    wait_for("the DLQ depth gauge", Duration::from_secs(30), || {
        let (_, page) = http_get(port, "/metrics")?;
        metric(&page, &depth).filter(|n| *n == 0.0)
    });
    // The outbox gauges are refreshed every stats_interval by their own task.
    let page = wait_for("the outbox gauges", Duration::from_secs(30), || {
        let (_, page) = http_get(port, "/metrics")?;
        metric(&page, "zerolost_outbox_oldest_pending_seconds").map(|_| page)
    });
    for name in [
        "zerolost_publish_confirm_seconds_bucket",
        "zerolost_outbox_rows{status=\"pending\"}",
        "zerolost_outbox_oldest_pending_seconds",
    ] {
        assert!(page.contains(name), "{name} missing from /metrics:\n{page}");
    }
    terminate(&relay);
    assert_eq!(
        wait_exit(&mut relay, Duration::from_secs(30)),
        0,
        "exit 0 on SIGTERM"
    );
    let mut log = String::new();
    relay
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("log");
    assert!(log.contains("SIGTERM"), "{log}");

    let counts = store.outbox().counts().await.expect("counts");
    assert_eq!(counts.leased, 0, "no row is left leased: {counts:?}");
    assert_eq!(counts.parked, 0, "{counts:?}");
    assert_eq!(counts.pending + counts.published, N);
    assert!(counts.published as f64 >= published, "{counts:?}");
    assert!(counts.pending > 0, "stopped before the end: {counts:?}");

    // A second run publishes the rest; every id is in the queue exactly once.
    let mut relay = zerolost(&dir)
        .args(["relay", "--config", "zerolost.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart the relay");
    let outbox = store.outbox();
    let start = Instant::now();
    while outbox.counts().await.expect("counts").published < N {
        assert!(start.elapsed() < Duration::from_secs(120), "relay too slow");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(&relay);
    assert_eq!(wait_exit(&mut relay, Duration::from_secs(30)), 0);
    assert_each_id_once(&backend, &destination, &sent).await;
}

/// The log without its terminal colour codes (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Two relay daemons on one outbox share the rows: both publish, together they publish every
/// row, and the queue holds each id exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_daemons_on_one_outbox_publish_each_row_once() {
    let Some(backend) = RabbitBackend::local().await else {
        return;
    };
    const N: usize = 10_000;
    let (dir, destination, store, sent) = pending_orders(&backend, "two-relays", N).await;
    let mut relays = Vec::new();
    for name in ["a", "b"] {
        let file = format!("relay-{name}.toml");
        std::fs::write(
            dir.join(&file),
            rabbit_config_text(&dir, &destination, free_port()),
        )
        .expect("config");
        relays.push(
            zerolost(&dir)
                .args(["relay", "--config", &file])
                .env("ZEROLOST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a relay"),
        );
    }
    let outbox = store.outbox();
    let start = Instant::now();
    while outbox.counts().await.expect("counts").published < N {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "relays too slow"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut shares = Vec::new();
    for relay in &mut relays {
        terminate(relay);
        assert_eq!(wait_exit(relay, Duration::from_secs(30)), 0);
        let mut log = String::new();
        relay
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut log)
            .expect("log");
        let log = strip_ansi(&log);
        let stopped = log
            .lines()
            .find(|l| l.contains("relay stopped"))
            .unwrap_or_else(|| panic!("no stop line: {log}"));
        let published: usize = stopped
            .split("published=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {stopped}"));
        shares.push(published);
    }
    assert!(
        shares.iter().all(|n| *n > 0),
        "both relays worked: {shares:?}"
    );
    assert_eq!(shares.iter().sum::<usize>(), N, "{shares:?}");
    assert_each_id_once(&backend, &destination, &sent).await;
}

/// Declares a classic, non-durable queue `name` (what doctor must flag).
async fn classic_queue(name: &str) {
    use lapin::options::QueueDeclareOptions;
    let connection =
        lapin::Connection::connect(&test_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("declare classic queue");
    connection.close(200, "done".into()).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_flags_a_classic_queue_and_a_one_replica_topic_with_fixes() {
    let Some(_rabbit) = RabbitBackend::local().await else {
        return;
    };
    let Some(kafka) = zerolost_kafka::testkit::KafkaBackend::single_node().await else {
        return;
    };
    let dir = workdir("doctor");
    let queue = RabbitBackend::fresh_name("cli-classic");
    classic_queue(&queue).await;
    let good = RabbitBackend::fresh_name("cli-quorum");
    declare_destination(
        &zerolost_rabbitmq::testkit::test_config(),
        &good,
        QueueSpec::default(),
    )
    .await
    .expect("declare");
    let topic = zerolost_kafka::testkit::KafkaBackend::fresh_topic("cli-doctor");
    kafka.create(&topic).await.expect("topic");
    let port = free_port();
    let mut text = rabbit_config_text(&dir, &queue, port);
    text = text.replace(
        &format!("destinations = [\"{queue}\"]"),
        &format!("destinations = [\"{queue}\", \"{good}\", \"{topic}\"]"),
    );
    // A consumer setting that skips messages a new group never saw.
    text.push_str(&format!(
        "[kafka]\nbrokers = \"{}\"\n[kafka.client]\n\"auto.offset.reset\" = \"latest\"\n",
        zerolost_kafka::testkit::single_node_config().brokers()
    ));
    std::fs::write(dir.join("zerolost.toml"), text).expect("config");
    let _ = sqlite(&dir).await;

    let (code, stdout, stderr) = run(&dir, &["doctor", "--json"]);
    assert_eq!(code, 1, "unsafe findings exit 1\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    let checks = report["checks"].as_array().expect("checks");
    let unsafe_about = |target: &str, subject: &str| {
        checks.iter().find(|c| {
            c["status"] == "unsafe"
                && c["target"].as_str().unwrap_or("").starts_with(target)
                && c["check"].as_str().unwrap_or("").contains(subject)
        })
    };
    let classic = unsafe_about("rabbitmq", &format!("queue {queue}: type"))
        .unwrap_or_else(|| panic!("classic queue flagged: {stdout}"));
    assert!(
        classic["fix"].as_str().unwrap_or("").contains("quorum"),
        "{classic}"
    );
    let replicas =
        unsafe_about("kafka", &topic).unwrap_or_else(|| panic!("topic flagged: {stdout}"));
    assert!(!replicas["fix"].as_str().unwrap_or("").is_empty());
    let consumer = unsafe_about("kafka", "consumer settings")
        .unwrap_or_else(|| panic!("consumer setting flagged: {stdout}"));
    assert!(
        consumer["detail"]
            .as_str()
            .unwrap_or("")
            .contains("auto.offset.reset=latest"),
        "{consumer}"
    );
    assert!(
        checks.iter().any(|c| c["status"] == "ok"
            && c["target"].as_str().unwrap_or("").starts_with("kafka")
            && c["check"] == "client settings"),
        "the producer's settings are safe: {stdout}"
    );
    // The declared quorum queue passes; the outbox is reachable and migrated.
    assert!(
        checks
            .iter()
            .any(|c| c["status"] == "ok" && c["check"] == format!("{good}: durability"))
    );
    assert!(
        checks
            .iter()
            .any(|c| c["status"] == "ok" && c["check"] == "migrations")
    );
    assert!(!stdout.contains(":zerolost@"), "no password in the report");

    // The table names the fix too.
    let (code, table, _) = run(&dir, &["doctor"]);
    assert_eq!(code, 1);
    assert!(
        table.contains("UNSAFE") && table.contains("fix: "),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_commands_list_parked_rows_and_unpark_them() {
    let dir = workdir("outbox");
    let store = sqlite(&dir).await;
    let outbox = store.outbox();
    let rows: Vec<Envelope> = (0..3)
        .map(|i| Envelope::new("orders", format!("{i}")))
        .collect();
    outbox.enqueue_now(&rows).await.expect("enqueue");
    let leased = outbox
        .lease(2, Duration::from_secs(30))
        .await
        .expect("lease");
    for record in &leased {
        assert!(
            outbox
                .park(&record.lease, 1, "unroutable: no queue bound")
                .await
                .expect("park")
        );
    }
    let parked: Vec<MessageId> = leased.iter().map(|r| r.envelope.id).collect();
    std::fs::write(
        dir.join("zerolost.toml"),
        format!(
            "[outbox]\nurl = \"sqlite://{}\"\n",
            dir.join("outbox.sqlite").display()
        ),
    )
    .expect("config");

    let (code, stdout, _) = run(&dir, &["outbox", "stats", "--json"]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        (stats["pending"].as_u64(), stats["parked"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(stats["oldest_pending_age_s"].as_f64().is_some(), "{stats}");

    let (code, stdout, _) = run(&dir, &["outbox", "park", "list", "--json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let listed: Vec<String> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|row| {
            assert_eq!(row["last_error"], "unroutable: no queue bound");
            row["id"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    let mut expected: Vec<String> = parked.iter().map(ToString::to_string).collect();
    expected.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, expected);

    let first = parked[0].to_string();
    let (code, stdout, _) = run(&dir, &["outbox", "unpark", "--id", &first, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(&first), "{stdout}");
    assert_eq!(
        outbox.counts().await.expect("counts").parked,
        2,
        "dry run changes nothing"
    );

    let unknown = MessageId::new().to_string();
    let (code, _, stderr) = run(&dir, &["outbox", "unpark", "--id", &unknown]);
    assert_eq!(code, 2);
    assert!(stderr.contains(&unknown), "{stderr}");

    let (code, stdout, _) = run(&dir, &["outbox", "unpark", "--id", &first]);
    assert_eq!(code, 0, "{stdout}");
    let counts = outbox.counts().await.expect("counts");
    assert_eq!((counts.pending, counts.parked), (2, 1));
    let (code, _, _) = run(&dir, &["outbox", "unpark", "--all"]);
    assert_eq!(code, 0);
    let counts = outbox.counts().await.expect("counts");
    assert_eq!((counts.pending, counts.parked), (3, 0));
}

#[test]
fn config_errors_name_the_key_and_never_print_a_password() {
    let dir = workdir("config");
    std::fs::write(
        dir.join("zerolost.toml"),
        "[outbox]\nurl = \"postgres://app:hunter2@127.0.0.1:1/app\"\nbatch = 5\n",
    )
    .expect("config");
    let (code, stdout, stderr) = run(&dir, &["outbox", "stats"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("outbox.batch") || stderr.contains("batch"),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains("hunter2"));

    // An unreachable database and broker, logged at the most verbose level: the
    // password appears nowhere.
    std::fs::write(
        dir.join("zerolost.toml"),
        "broker = \"rabbitmq\"\ndestinations = [\"orders\"]\n\
         [outbox]\nurl = \"postgres://app:hunter2@127.0.0.1:1/app\"\n\
         [rabbitmq]\nurl = \"amqp://app:hunter2@127.0.0.1:1/%2f\"\n\
         management_url = \"http://app:hunter2@127.0.0.1:1\"\n\
         [redis]\nurl = \"redis://:hunter2@127.0.0.1:1\"\n",
    )
    .expect("config");
    let output = zerolost(&dir)
        .args(["doctor"])
        .env("ZEROLOST_LOG", "trace")
        .output()
        .expect("doctor");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("ERROR"), "{all}");
    assert!(!all.contains("hunter2"), "a password leaked:\n{all}");
    // No waiting for the unreachable outbox (the daemon's default is a minute).
    let output = zerolost(&dir)
        .args(["relay"])
        .env("ZEROLOST_LOG", "trace")
        .env("ZEROLOST_HTTP__LISTEN", "")
        .env("ZEROLOST_RELAY__STARTUP_PATIENCE", "0s")
        .output()
        .expect("relay");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(!all.contains("hunter2"), "a password leaked:\n{all}");

    // Environment overrides take precedence and are checked like the file.
    let output = zerolost(&dir)
        .args(["doctor"])
        .env("ZEROLOST_RELAY__BATCH_SIZE", "0")
        .output()
        .expect("doctor");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("relay.batch_size"));
}

/// Takes `n` messages off `queue` and acks them: messages lost on the broker side.
async fn delete_from_broker(queue: &str, n: usize) -> Vec<MessageId> {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let connection =
        lapin::Connection::connect(&test_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut deleted = Vec::new();
    while deleted.len() < n {
        let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        else {
            panic!("the queue ran dry after {} messages", deleted.len());
        };
        let id = message
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| id.as_str().parse().ok())
            .expect("message id");
        message
            .acker
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        deleted.push(id);
    }
    connection.close(200, "done".into()).await.expect("close");
    deleted
}

/// Relays every pending row of `store` to RabbitMQ and consumes `expect` messages into
/// the store's inbox.
async fn relay_and_consume(store: &SqliteStore, queue: &str, expect: u64) {
    use zerolost_core::{Relay, handler_fn};
    let config = zerolost_rabbitmq::testkit::test_config();
    let relay = Relay::new(
        store.outbox(),
        zerolost_rabbitmq::RabbitPublisher::new(&config).expect("publisher"),
    );
    while store.outbox().counts().await.expect("counts").pending > 0 {
        relay.run_once().await.expect("relay round");
    }
    let backend = RabbitBackend::new(config);
    consume_until(
        store,
        &backend,
        queue,
        handler_fn(|_envelope: Envelope| async { Ok(()) }),
        |t| t.processed >= expect,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_messages_deleted_on_the_broker_and_repair_delivers_them() {
    let Some(backend) = RabbitBackend::local().await else {
        return;
    };
    const N: usize = 300;
    const DELETED: usize = 40;
    let (dir, queue, store, _) = pending_orders(&backend, "reconcile", N).await;
    std::fs::write(
        dir.join("zerolost.toml"),
        format!(
            "[outbox]\nurl = \"sqlite://{0}\"\n[inbox]\nurl = \"sqlite://{0}\"\n",
            dir.join("outbox.sqlite").display()
        ),
    )
    .expect("config");

    // Everything published; 40 messages vanish on the broker; the consumer gets the rest.
    let config = zerolost_rabbitmq::testkit::test_config();
    let relay = zerolost_core::Relay::new(
        store.outbox(),
        zerolost_rabbitmq::RabbitPublisher::new(&config).expect("publisher"),
    );
    while store.outbox().counts().await.expect("counts").pending > 0 {
        relay.run_once().await.expect("relay round");
    }
    let mut deleted = delete_from_broker(&queue, DELETED).await;
    relay_and_consume(&store, &queue, (N - DELETED) as u64).await;

    // Within the grace period nothing is called lost.
    let (code, stdout, _) = run(&dir, &["reconcile", "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout, stderr) = run(&dir, &["reconcile", "--grace", "0s", "--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let output: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(output["lost"], DELETED);
    assert_eq!(output["report"]["processed"], N - DELETED);
    assert_eq!(
        output["report"]["counts"]["broker_to_consumer_gap"],
        DELETED
    );
    let mut missing: Vec<String> = output["report"]["missing"]
        .as_array()
        .expect("missing")
        .iter()
        .map(|id| id.as_str().unwrap_or_default().to_owned())
        .collect();
    missing.sort();
    deleted.sort();
    let deleted: Vec<String> = deleted.iter().map(ToString::to_string).collect();
    assert_eq!(missing, deleted, "exactly the deleted ids are missing");

    // A repair limit below the loss refuses (exit 3) and changes nothing.
    let (code, stdout, _) = run(
        &dir,
        &[
            "reconcile",
            "--grace",
            "0s",
            "--repair",
            "--max-repair",
            "10",
        ],
    );
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("REPAIR REFUSED"), "{stdout}");
    assert_eq!(store.outbox().counts().await.expect("counts").pending, 0);

    let (code, stdout, _) = run(&dir, &["reconcile", "--grace", "0s", "--repair"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains(&format!("repaired: {DELETED}")), "{stdout}");
    assert_eq!(
        store.outbox().counts().await.expect("counts").pending,
        DELETED
    );
    relay_and_consume(&store, &queue, DELETED as u64).await;
    let (code, stdout, _) = run(&dir, &["reconcile", "--grace", "0s", "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let output: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(output["lost"], 0);
    assert_eq!(output["report"]["processed"], N);
    let (code, stdout, _) = run(&dir, &["reconcile", "--grace", "0s"]);
    assert_eq!(code, 0, "{stdout}");
    // The count view sits beside the id view.
    assert!(stdout.contains("by count (the article)"), "{stdout}");
    assert!(stdout.contains("LOST (missing after grace)"), "{stdout}");
}

/// Runs a consumer on `queue` with the store's inbox until `done(totals)`.
async fn consume_until(
    store: &SqliteStore,
    backend: &dyn Backend,
    destination: &str,
    handler: impl zerolost_core::Handler + 'static,
    done: impl Fn(&zerolost_core::ConsumerTotals) -> bool,
) {
    use zerolost_core::{CancellationToken, Consumer};
    let consumer = Consumer::new(
        store.inbox(),
        handler,
        backend.dead_letter_sink().await.expect("dead-letter sink"),
    );
    let stop = CancellationToken::new();
    let subscriber = backend.subscriber(destination).await.expect("subscriber");
    let running = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(subscriber, stop).await }
    });
    let start = Instant::now();
    while !done(&consumer.totals()) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{:?}",
            consumer.totals()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    running.await.expect("join").expect("consumer");
}

fn dlq_ids(dir: &Path, queue: &str) -> Vec<String> {
    let (code, stdout, stderr) = run(dir, &["dlq", "-d", queue, "list", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let mut ids: Vec<String> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_show_and_redrive_round_trip_on_rabbitmq() {
    let Some(backend) = RabbitBackend::local().await else {
        return;
    };
    let dir = workdir("dlq-rabbitmq");
    let queue = RabbitBackend::fresh_name("cli-dlq");
    declare_destination(&backend.config, &queue, QueueSpec::default())
        .await
        .expect("declare");
    let text = rabbit_config_text(&dir, &queue, free_port());
    dlq_round_trip(&backend, &dir, &queue, text).await;
}

/// A config for `broker` with one destination, the SQLite outbox in `dir`, and the broker's
/// own `section`.
fn broker_config_text(dir: &Path, broker: &str, destination: &str, section: &str) -> String {
    format!(
        "broker = \"{broker}\"\ndestinations = [\"{destination}\"]\n\
         [outbox]\nurl = \"sqlite://{}\"\n{section}",
        dir.join("outbox.sqlite").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_show_and_redrive_round_trip_on_kafka() {
    let Some(backend) = zerolost_kafka::testkit::KafkaBackend::single_node().await else {
        return;
    };
    let dir = workdir("dlq-kafka");
    let topic = backend.destination().await.expect("topic");
    let section = format!("[kafka]\nbrokers = \"{}\"\n", backend.config.brokers());
    let text = broker_config_text(&dir, "kafka", &topic, &section);
    dlq_round_trip(&backend, &dir, &topic, text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_show_and_redrive_round_trip_on_rocketmq() {
    let Some(backend) = zerolost_rocketmq::testkit::RocketBackend::local().await else {
        return;
    };
    let dir = workdir("dlq-rocketmq");
    let topic = backend.destination().await.expect("topic");
    let section = format!(
        "[rocketmq]\nname_server = \"{}\"\n",
        zerolost_rocketmq::testkit::test_name_server()
    );
    let text = broker_config_text(&dir, "rocketmq", &topic, &section);
    dlq_round_trip(&backend, &dir, &topic, text).await;
}

/// `zerolost dlq` on one broker, with `config` for it: two permanent failures are listed
/// (table and JSON) and shown; a dry run changes nothing; one id is redriven and processed
/// (once) by the fixed handler; `--all --json` redrives the other; both end `Processed` in
/// the inbox; an id not in the DLQ exits 1, named.
async fn dlq_round_trip(backend: &dyn Backend, dir: &Path, queue: &str, mut config: String) {
    use zerolost_core::{HandlerError, handler_fn};
    let queue = queue.to_owned();
    let store = sqlite(dir).await;
    config.push_str(&format!(
        "[inbox]\nurl = \"sqlite://{}\"\n",
        dir.join("outbox.sqlite").display()
    ));
    std::fs::write(dir.join("zerolost.toml"), config).expect("config");

    let first = Envelope::new(&queue, "order 1: bad address");
    let second = Envelope::new(&queue, "order 2: bad address");
    let publisher = backend.publisher().await.expect("publisher");
    for result in publisher
        .publish_batch(&[first.clone(), second.clone()])
        .await
    {
        result.expect("publish");
    }
    consume_until(
        &store,
        backend,
        &queue,
        handler_fn(|_: Envelope| async { Err(HandlerError::permanent("bad address")) }),
        |t| t.dead_lettered == 2,
    )
    .await;

    let mut both = vec![first.id.to_string(), second.id.to_string()];
    both.sort();
    assert_eq!(dlq_ids(dir, &queue), both);
    let (code, table, _) = run(dir, &["dlq", "-d", &queue, "list"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("permanent") && table.contains("bad address"),
        "{table}"
    );
    let (code, shown, _) = run(dir, &["dlq", "-d", &queue, "show", &first.id.to_string()]);
    assert_eq!(code, 0, "{shown}");
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["payload"], "order 1: bad address");
    assert_eq!(shown["failure"]["reason"], "permanent");
    assert_eq!(shown["destination"], queue.as_str());

    let id = first.id.to_string();
    let (code, stdout, _) = run(
        dir,
        &["dlq", "-d", &queue, "redrive", "--id", &id, "--dry-run"],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(&id));
    assert_eq!(dlq_ids(dir, &queue).len(), 2, "a dry run changes nothing");

    let (code, stdout, stderr) = run(dir, &["dlq", "-d", &queue, "redrive", "--id", &id]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("redriven 1 message(s)"), "{stdout}");
    assert_eq!(dlq_ids(dir, &queue), vec![second.id.to_string()]);
    // The handler is fixed: the redriven message is processed (once), not suppressed.
    consume_until(
        &store,
        backend,
        &queue,
        handler_fn(|_: Envelope| async { Ok(()) }),
        |t| t.processed == 1,
    )
    .await;

    let (code, stdout, _) = run(dir, &["dlq", "-d", &queue, "redrive", "--all", "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        report["redriven"],
        serde_json::json!([second.id.to_string()])
    );
    assert_eq!(report["removed"], 1);
    assert!(dlq_ids(dir, &queue).is_empty());
    consume_until(
        &store,
        backend,
        &queue,
        handler_fn(|_: Envelope| async { Ok(()) }),
        |t| t.processed == 1,
    )
    .await;
    let finished = zerolost_core::ConsumerLedger::finished(&store.inbox(), None)
        .await
        .expect("ledger");
    let processed: HashSet<MessageId> = finished
        .entries
        .iter()
        .filter(|e| e.outcome == zerolost_core::Outcome::Processed)
        .map(|e| e.id)
        .collect();
    assert_eq!(processed, [first.id, second.id].into_iter().collect());

    // An id not in the DLQ: exit 1, named.
    let unknown = MessageId::new().to_string();
    let (code, _, stderr) = run(dir, &["dlq", "-d", &queue, "redrive", "--id", &unknown]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&unknown), "{stderr}");
}
