//! Replays long after the fact, as an operator runs them: `reconcile`, `outbox unpark` and
//! `dlq redrive` vouch only for the consumers' dedupe window (`[consumer] keep_for`) and
//! read the consumers' own keys (`[redis] prefix`); what they cannot vouch for they refuse,
//! say why, and change nothing unless told to.

use std::path::Path;
use std::time::Duration;

use zerolost_core::{
    Claim, DedupeStore, Envelope, HandlerError, MessageId, OutboxStore, Outcome, handler_fn,
};
use zerolost_rabbitmq::testkit::{RabbitBackend, test_url};
use zerolost_rabbitmq::{QueueSpec, declare_destination};
use zerolost_redis::RedisDedupe;
use zerolost_sqlx::SqliteStore;
use zerolost_testkit::{Backend, require_service, service_url};

mod common;
use common::{run, sqlite, workdir};

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("zerolost.toml"), text).expect("config");
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("outbox.sqlite").display())
}

/// Enqueues `published + parked` rows; publishes the first ones and parks the rest.
async fn rows(
    store: &SqliteStore,
    published: usize,
    parked: usize,
) -> (Vec<MessageId>, Vec<MessageId>) {
    let outbox = store.outbox();
    let envelopes: Vec<Envelope> = (0..published + parked)
        .map(|i| Envelope::new("orders", format!("order {i}")))
        .collect();
    outbox.enqueue_now(&envelopes).await.expect("enqueue");
    let leased = outbox
        .lease(published + parked, Duration::from_secs(30))
        .await
        .expect("lease");
    let (to_publish, to_park) = leased.split_at(published);
    let leases: Vec<_> = to_publish.iter().map(|r| r.lease.clone()).collect();
    outbox.mark_published(&leases).await.expect("mark");
    for record in to_park {
        outbox
            .park(&record.lease, 1, "unroutable")
            .await
            .expect("park");
    }
    (
        to_publish.iter().map(|r| r.envelope.id).collect(),
        to_park.iter().map(|r| r.envelope.id).collect(),
    )
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_and_unpark_leave_what_is_beyond_the_window_on_sqlite() {
    let dir = workdir("window-sqlite");
    let store = sqlite(&dir).await;
    let (published, parked) = rows(&store, 3, 2).await;
    let url = sqlite_url(&dir);
    write_config(
        &dir,
        &format!(
            "[outbox]\nurl = \"{url}\"\n[inbox]\nurl = \"{url}\"\n[consumer]\nkeep_for = \"1s\"\n"
        ),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The default span is the window: the old rows are not looked at at all.
    let (code, stdout, stderr) = run(&dir, &["reconcile", "--grace", "0s", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(json(&stdout)["report"]["produced"], 0, "{stdout}");

    // Asked for a longer span: the unfinished ones are beyond the window, not lost.
    let (code, stdout, _) = run(
        &dir,
        &["reconcile", "--since", "1h", "--grace", "0s", "--json"],
    );
    assert_eq!(code, 0, "{stdout}");
    let out = json(&stdout);
    assert_eq!(
        (out["lost"].as_u64(), out["beyond_window"].as_u64()),
        (Some(0), Some(3)),
        "{out}"
    );
    let (code, stdout, _) = run(&dir, &["reconcile", "--since", "1h", "--grace", "0s"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("beyond the ledger window") && stdout.contains("--beyond-window"),
        "{stdout}"
    );

    // --repair leaves them; --repair --beyond-window re-sends them.
    let (code, stdout, _) = run(
        &dir,
        &[
            "reconcile",
            "--since",
            "1h",
            "--grace",
            "0s",
            "--repair",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(json(&stdout)["repaired_beyond_window"], 0);
    assert_eq!(store.outbox().counts().await.expect("counts").pending, 0);
    let (code, stdout, _) = run(
        &dir,
        &[
            "reconcile",
            "--since",
            "1h",
            "--grace",
            "0s",
            "--repair",
            "--beyond-window",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(json(&stdout)["repaired_beyond_window"], published.len());
    assert_eq!(store.outbox().counts().await.expect("counts").pending, 3);

    // Unpark refuses parked rows older than the window, names them, changes nothing.
    let (code, stdout, _) = run(&dir, &["outbox", "unpark", "--all"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("refused 2 row(s)") && stdout.contains("--beyond-window"),
        "{stdout}"
    );
    for id in &parked {
        assert!(stdout.contains(&id.to_string()), "{stdout}");
    }
    assert_eq!(store.outbox().counts().await.expect("counts").parked, 2);
    let first = parked[0].to_string();
    let (code, stdout, _) = run(
        &dir,
        &["outbox", "unpark", "--id", &first, "--beyond-window"],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("unparked 1 row(s)"), "{stdout}");
    assert_eq!(store.outbox().counts().await.expect("counts").parked, 1);
}

/// The consumers' Redis keys carry a prefix: `reconcile` finds their marks only with
/// `[redis] prefix`; without it every processed message would read as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reads_the_consumers_redis_prefix() {
    let redis_url = service_url("ZEROLOST_REDIS_URL", "redis://127.0.0.1:56379");
    let Some(redis) = require_service("redis", RedisDedupe::connect(&redis_url).await) else {
        return;
    };
    let prefix = format!("zl-window-{}:", std::process::id());
    let consumers = redis.with_prefix(&prefix).expect("prefix");
    let dir = workdir("window-redis");
    let store = sqlite(&dir).await;
    let (published, _) = rows(&store, 3, 0).await;
    for id in &published {
        let Claim::Claimed(token) = consumers
            .claim(*id, Duration::from_secs(30))
            .await
            .expect("claim")
        else {
            panic!("fresh id")
        };
        consumers
            .complete(&token, Outcome::Processed, Duration::from_secs(3600))
            .await
            .expect("complete");
    }
    let config = |prefix: &str| {
        format!(
            "[outbox]\nurl = \"{}\"\n[redis]\nurl = \"{redis_url}\"\nprefix = \"{prefix}\"\n",
            sqlite_url(&dir)
        )
    };
    write_config(&dir, &config(""));
    let (code, stdout, _) = run(&dir, &["reconcile", "--grace", "0s", "--json"]);
    assert_eq!(
        code, 1,
        "another prefix: nothing processed, all lost: {stdout}"
    );
    assert_eq!(json(&stdout)["lost"], 3);
    write_config(&dir, &config(&prefix));
    let (code, stdout, _) = run(&dir, &["reconcile", "--grace", "0s", "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let out = json(&stdout);
    assert_eq!(
        (out["lost"].as_u64(), out["report"]["processed"].as_u64()),
        (Some(0), Some(3))
    );
    write_config(&dir, &config("bad prefix"));
    let (code, _, stderr) = run(&dir, &["reconcile"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("redis.prefix"), "{stderr}");
}

/// A dead letter of consumers whose Redis keys carry a prefix: a redrive through a config
/// without `[redis] prefix` finds no dead-letter mark, so it publishes nothing, keeps the
/// message in the DLQ and exits 1 saying why (before, the copy was published, removed from
/// the DLQ and acked by the consumers as already finished: gone). With the prefix it is
/// redriven and processed; beyond the window it is refused unless `--beyond-window`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_finds_the_mark_under_the_consumers_redis_prefix() {
    let Some(backend) = RabbitBackend::local().await else {
        return;
    };
    let redis_url = service_url("ZEROLOST_REDIS_URL", "redis://127.0.0.1:56379");
    let Some(redis) = require_service("redis", RedisDedupe::connect(&redis_url).await) else {
        return;
    };
    let prefix = format!("zl-redrive-{}:", std::process::id());
    let consumers = redis.with_prefix(&prefix).expect("prefix");
    let dir = workdir("window-redrive");
    let queue = RabbitBackend::fresh_name("cli-window");
    declare_destination(&backend.config, &queue, QueueSpec::default())
        .await
        .expect("declare");
    let _store = sqlite(&dir).await;
    let config = |prefix: &str, keep_for: &str| {
        format!(
            "broker = \"rabbitmq\"\ndestinations = [\"{queue}\"]\n[outbox]\nurl = \"{}\"\n\
             [rabbitmq]\nurl = \"{}\"\nvhost = \"zerolost\"\n\
             [redis]\nurl = \"{redis_url}\"\nprefix = \"{prefix}\"\n[consumer]\nkeep_for = \"{keep_for}\"\n",
            sqlite_url(&dir),
            test_url()
        )
    };
    let poison = Envelope::new(&queue, "bad address");
    backend
        .publisher()
        .await
        .expect("publisher")
        .publish(&poison)
        .await
        .expect("publish");
    let totals = consume(&backend, &queue, consumers.clone(), false, |t| {
        t.dead_lettered == 1
    })
    .await;
    assert_eq!(totals.dead_lettered, 1);
    let id = poison.id.to_string();

    write_config(&dir, &config("", "24h"));
    let (code, stdout, stderr) = run(&dir, &["dlq", "-d", &queue, "redrive", "--id", &id]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("REFUSED") && stdout.contains("no dead-letter mark"),
        "{stdout}"
    );
    assert_eq!(dlq_ids(&dir, &queue), vec![id.clone()], "still in the DLQ");

    write_config(&dir, &config(&prefix, "1ms"));
    let (code, stdout, _) = run(&dir, &["dlq", "-d", &queue, "redrive", "--id", &id]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("beyond the consumers' dedupe window"),
        "{stdout}"
    );
    assert_eq!(dlq_ids(&dir, &queue), vec![id.clone()]);

    write_config(&dir, &config(&prefix, "24h"));
    let (code, stdout, stderr) = run(&dir, &["dlq", "-d", &queue, "redrive", "--id", &id]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(dlq_ids(&dir, &queue).is_empty());
    let totals = consume(&backend, &queue, consumers, true, |t| t.processed == 1).await;
    assert_eq!(
        (totals.processed, totals.duplicates),
        (1, 0),
        "the copy was processed, not swallowed"
    );
}

fn dlq_ids(dir: &Path, queue: &str) -> Vec<String> {
    let (code, stdout, stderr) = run(dir, &["dlq", "-d", queue, "list", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    json(&stdout)
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Consumes `queue` with `dedupe` (a handler that fails permanently, or succeeds when
/// `fixed`) until `done`.
async fn consume(
    backend: &RabbitBackend,
    queue: &str,
    dedupe: RedisDedupe,
    fixed: bool,
    done: impl Fn(&zerolost_core::ConsumerTotals) -> bool,
) -> zerolost_core::ConsumerTotals {
    use zerolost_core::{CancellationToken, Consumer};
    let handler = handler_fn(move |_: Envelope| async move {
        if fixed {
            Ok(())
        } else {
            Err(HandlerError::permanent("bad address"))
        }
    });
    let consumer = Consumer::new(
        dedupe,
        handler,
        backend.dead_letter_sink().await.expect("sink"),
    );
    let stop = CancellationToken::new();
    let subscriber = backend.subscriber(queue).await.expect("subscriber");
    let task = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(subscriber, stop).await }
    });
    let start = std::time::Instant::now();
    while !done(&consumer.totals()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            consumer.totals()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.expect("join").expect("consumer")
}
