//! `zerolost demo` as a user runs it: exit status and the `--json` contract.

use std::process::Command;

/// Runs `zerolost demo` with its SQLite file in a fresh temp path.
fn demo(args: &[&str]) -> (i32, String, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let db = std::env::temp_dir().join(format!(
        "zerolost-demo-test-{}-{}/demo.sqlite",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_zerolost"))
        .arg("demo")
        .args(args)
        .arg("--db")
        .arg(&db)
        .output()
        .expect("run zerolost");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn json_output_keeps_its_contract_and_reports_a_clean_run() {
    let (code, stdout, stderr) = demo(&[
        "--messages",
        "3000",
        "--seed",
        "11",
        "--faults",
        "heavy",
        "--json",
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    for field in [
        "backend",
        "store",
        "dedupe",
        "messages",
        "published",
        "processed",
        "dead_lettered",
        "parked",
        "lost",
        "duplicate_effects",
        "faults_injected",
        "elapsed_s",
    ] {
        assert!(
            report.get(field).is_some(),
            "missing field {field}: {report}"
        );
    }
    assert_eq!(report["backend"], "memory");
    assert_eq!(report["messages"], 3000);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["duplicate_effects"], 0);
    assert!(
        report["faults_injected"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert_eq!(report["seed"], 11);
    // Designated: poison at 500, 1500, 2500 (every 1000th), unsendable at 2500 (every 5000th), which wins.
    let processed = report["processed"].as_u64().unwrap_or(0);
    let dead = report["dead_lettered"].as_u64().unwrap_or(0);
    let parked = report["parked"].as_u64().unwrap_or(0);
    assert_eq!(processed + dead + parked, 3000, "{report}");
    assert_eq!(parked, 1);
    assert_eq!(
        dead, 2,
        "poison at 500 and 1500; the one at 2500 is the unsendable one"
    );
}

#[test]
fn the_table_names_the_seed_and_the_verdict() {
    let (code, stdout, _) = demo(&["--messages", "500", "--seed", "5"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("seed 5"), "{stdout}");
    assert!(stdout.contains(
        "replay with: zerolost demo --backend memory --messages 500 --faults default --seed 5"
    ));
    assert!(stdout.contains("verdict: OK"), "{stdout}");
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let (code, _, stderr) = demo(&["--backend", "carrier-pigeon"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("possible values: memory"), "{stderr}");
}

#[test]
fn the_default_runs_on_sqlite_and_the_memory_stores_still_work() {
    let (code, stdout, stderr) = demo(&["--messages", "400", "--seed", "3", "--json"]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["store"], "sqlite");
    assert_eq!(report["dedupe"], "sqlite");
    assert_eq!(report["lost"], 0);
    assert_eq!(report["duplicate_effects"], 0);
    let (code, stdout, _) = demo(&[
        "--messages",
        "400",
        "--seed",
        "3",
        "--store",
        "memory",
        "--dedupe",
        "memory",
        "--json",
    ]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(
        (report["store"].as_str(), report["lost"].as_u64()),
        (Some("memory"), Some(0))
    );
}
