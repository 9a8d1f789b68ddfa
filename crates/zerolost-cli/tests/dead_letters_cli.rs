//! Dead letters are never eaten: a RabbitMQ DLQ under a delivery-limit policy (each return
//! of a read message counts as a delivery, and a DLQ has nowhere to drop to) keeps every
//! dead letter through 50 `zerolost dlq list` runs and a relay daemon gauging it on fast
//! ticks; `doctor` flags the policy.

use std::process::Stdio;
use std::time::Duration;

use zerolost_core::redrive::DeadLetterQueue;
use zerolost_core::{CancellationToken, Consumer, Envelope, HandlerError, Publisher, handler_fn};
use zerolost_rabbitmq::testkit::{RabbitBackend, test_management_url};
use zerolost_rabbitmq::{
    ManagementApi, QueueSpec, RabbitDeadLetters, audit_dead_letters, declare_destination,
};
use zerolost_testkit::Backend;

mod common;
use common::{
    free_port, http_get, metric, rabbit_config_text, run, sqlite, terminate, wait_exit, wait_for,
    workdir, zerolost,
};

const DEAD: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_under_a_delivery_limit_keeps_every_dead_letter_through_lists_and_the_gauge() {
    let Some(backend) = RabbitBackend::local().await else {
        return;
    };
    let dir = workdir("dlq-limit");
    let queue = RabbitBackend::fresh_name("cli-limit");
    let dlq = zerolost_core::default_dlq_name(&queue);
    declare_destination(&backend.config, &queue, QueueSpec::default())
        .await
        .expect("declare");
    let api = ManagementApi::new(&test_management_url(), "zerolost").expect("management API");
    let policy = format!("zl-dlq-limit-{}", std::process::id());
    api.set_policy(
        &policy,
        &format!("^{}$", dlq.replace('.', "\\.")),
        serde_json::json!({"delivery-limit": 1}),
    )
    .await
    .expect("policy");
    wait_until_flagged(&api, &queue).await;

    // Five poison messages dead-lettered by a consumer.
    let store = sqlite(&dir).await;
    let poison: Vec<Envelope> = (0..DEAD)
        .map(|i| Envelope::new(&queue, format!("poison {i}")))
        .collect();
    for result in backend
        .publisher()
        .await
        .expect("publisher")
        .publish_batch(&poison)
        .await
    {
        result.expect("publish");
    }
    let consumer = Consumer::new(
        store.inbox(),
        handler_fn(|_: Envelope| async { Err(HandlerError::permanent("bad address")) }),
        backend.dead_letter_sink().await.expect("sink"),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (consumer, stop, sub) = (
            consumer.clone(),
            stop.clone(),
            backend.subscriber(&queue).await.expect("sub"),
        );
        async move { consumer.run(sub, stop).await }
    });
    wait_for("5 dead-lettered", Duration::from_secs(60), || {
        (consumer.totals().dead_lettered == DEAD as u64).then_some(())
    });
    stop.cancel();
    task.await.expect("join").expect("consumer");

    // The relay daemon gauges the DLQ every 20 ms for 3 s (150 ticks: 2.5 h at the default 60 s).
    let port = free_port();
    let config = rabbit_config_text(&dir, &queue, port)
        .replace("dlq_interval = \"200ms\"", "dlq_interval = \"20ms\"");
    std::fs::write(dir.join("zerolost.toml"), config).expect("config");
    let mut relay = zerolost(&dir)
        .arg("relay")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay");
    let gauge = format!("zerolost_dlq_depth{{destination=\"{queue}\"}}");
    let depth = wait_for("the DLQ gauge", Duration::from_secs(30), || {
        let (_, page) = http_get(port, "/metrics")?;
        metric(&page, &gauge)
    });
    assert_eq!(depth, DEAD as f64);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, page) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(
        metric(&page, &gauge),
        Some(DEAD as f64),
        "the gauge after 150 ticks"
    );
    terminate(&relay);
    assert_eq!(wait_exit(&mut relay, Duration::from_secs(30)), 0);

    // Fifty lists by an operator.
    let mut expected: Vec<String> = poison.iter().map(|e| e.id.to_string()).collect();
    expected.sort();
    for round in 0..50 {
        let (code, stdout, stderr) = run(&dir, &["dlq", "-d", &queue, "list", "--json"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let listed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        let mut ids: Vec<String> = listed
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        assert_eq!(ids, expected, "list {round}");
    }
    let dead_letters = RabbitDeadLetters::new(backend.config.clone());
    assert_eq!(dead_letters.depth(&queue).await.expect("depth"), DEAD);

    // doctor names the policy as unsafe for the DLQ.
    let (code, stdout, stderr) = run(&dir, &["doctor"]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&dlq) && stdout.contains("delivery limit"),
        "{stdout}"
    );
    api.clear_policy(&policy).await.expect("clear policy");
}

/// Waits until the broker applies the policy to the DLQ (the audit sees the limit).
async fn wait_until_flagged(api: &ManagementApi, queue: &str) {
    for _ in 0..100 {
        let audit = audit_dead_letters(api, queue).await.expect("audit");
        if audit
            .findings
            .iter()
            .any(|f| f.subject.contains("delivery limit"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the delivery-limit policy never applied to the DLQ of {queue}");
}
