//! `zerolost-lab chaos` as CI runs it: real processes (two relays, two consumers) on RabbitMQ
//! and PostgreSQL through Toxiproxy, every fault kind of that setup injected; the JSON
//! verdict is read back.

use std::path::PathBuf;
use std::process::Command;

use zerolost_rabbitmq::testkit::RabbitBackend;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_on_rabbitmq_and_postgres_survives_every_fault_kind_with_nothing_lost_or_doubled() {
    // The chaos command starts its services itself; without a RabbitMQ here the test skips
    // loudly (or fails under ZEROLOST_REQUIRE_SERVICES=1) instead of installing one.
    if RabbitBackend::local().await.is_none() {
        return;
    }
    let run_dir = std::env::temp_dir().join(format!("zerolost-chaos-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_zerolost-lab"))
        .current_dir(workspace())
        .args([
            "chaos",
            "--backend",
            "rabbitmq",
            "--store",
            "postgres",
            "--dedupe",
            "inbox",
            "--messages",
            "3000",
            "--faults",
            "8",
            // 100 s of production: the eight faults (a pause and a store cut of 15 s each
            // among them) all strike while messages flow.
            "--rate",
            "30",
            "--seed",
            "5",
            "--json",
            "--run-dir",
        ])
        .arg(&run_dir)
        .output()
        .expect("run zerolost-lab chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "chaos failed:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("seed 5"), "the seed is printed: {stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");

    // The verdict by id: 3 poison (every 1,000th) dead-lettered, 1 unsendable parked, the
    // other 2,996 applied exactly once.
    assert_eq!(r["produced"], 3000, "{r:#}");
    assert_eq!(r["lost"], 0, "{r:#}");
    assert_eq!(r["duplicate_effects"], 0, "{r:#}");
    assert_eq!(r["processed"], 2996, "{r:#}");
    assert_eq!(r["dead_lettered"], 3, "{r:#}");
    assert_eq!(r["parked"], 1, "{r:#}");
    assert_eq!(r["unexpected_dead_letters"], 0, "{r:#}");
    assert_eq!(r["unexpected_parked"], 0, "{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");

    // Every fault kind of this setup, each once (8 kinds, 8 faults).
    let log = r["fault_log"].as_array().expect("fault_log");
    let mut kinds: Vec<&str> = log.iter().filter_map(|f| f["kind"].as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "broker_kill",
            "consumer_kill",
            "consumer_pause",
            "database_restart",
            "network_cut",
            "network_latency",
            "relay_kill",
            "store_cut"
        ],
        "{r:#}"
    );
    assert_eq!(r["faults_injected"], 8);
    // Every handler run recorded; none beside another run of its message, except while the
    // earlier one's consumer was frozen past its lease; one slow handler (1.5 leases).
    assert_eq!(r["slow_handlers"], 1, "{r:#}");
    assert_eq!(r["runs"]["overlapping"], 0, "{r:#}");
    assert!(
        r["runs"]["runs"].as_u64().is_some_and(|n| n >= 2996),
        "{r:#}"
    );
    assert_eq!(r["pauses"].as_array().map(Vec::len), Some(1), "{r:#}");
    // One consumer cut off from its inbox past its lease: with the inbox nothing excuses a
    // re-run after a success.
    assert_eq!(r["cuts"].as_array().map(Vec::len), Some(1), "{r:#}");
    assert_eq!(r["runs"]["reruns_after_success"], 0, "{r:#}");
    let consumer_kill = log
        .iter()
        .find(|f| f["kind"] == "consumer_kill")
        .expect("a consumer kill");
    assert!(
        consumer_kill["detail"]
            .as_str()
            .is_some_and(|d| d.contains("between a handler's commit and its ack")),
        "the consumer died after its handler, before its ack: {consumer_kill:#}"
    );

    // SIGTERM at the end: every process exits 0 and no relay holds a lease.
    let shutdown = r["shutdown"].as_array().expect("shutdown");
    assert_eq!(shutdown.len(), 4, "two relays, two consumers: {r:#}");
    assert!(shutdown.iter().all(|s| s["exit_code"] == 0), "{r:#}");
    assert_eq!(r["leased_after_shutdown"], 0);
    assert_eq!(r["unexpected_exits"].as_array().map(Vec::len), Some(0));
    assert!(
        r["replay"]
            .as_str()
            .is_some_and(|c| c.contains("--seed 5") && c.contains("--backend rabbitmq")),
        "{r:#}"
    );
    let logs = PathBuf::from(r["run_dir"].as_str().expect("run_dir"));
    for child in ["relay-1", "relay-2", "consumer-1", "consumer-2"] {
        assert!(logs.join(format!("{child}.log")).exists(), "{child}'s log");
    }
    // A clean run deletes its queues: left behind, every one recovers whenever the broker
    // restarts.
    let destination = logs
        .file_name()
        .and_then(|name| name.to_str())
        .expect("the run directory is named after the destination");
    let backend = RabbitBackend::local().await.expect("RabbitMQ");
    let left = zerolost_rabbitmq::queue_contents(&backend.config, destination).await;
    assert!(
        left.as_ref()
            .is_err_and(|e| e.to_string().contains("NOT_FOUND")),
        "{destination} must be deleted after a clean run: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}
