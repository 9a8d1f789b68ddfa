//! The operator binary over encrypted, authenticated links: the relay ships a PostgreSQL
//! outbox (`sslmode=verify-full`, password from a file) to RabbitMQ over amqps (password from
//! the environment) and every id arrives once; `doctor --json` reports each link encrypted,
//! authenticated, with its certificate's days left; a plaintext link to another machine is
//! refused (relay) and unsafe (doctor) unless allowed; no output shows a secret.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use zerolost_core::{Envelope, MessageId, OutboxStore};
use zerolost_rabbitmq::{QueueSpec, RabbitConfig, declare_destination, queue_contents};
use zerolost_sqlx::{PgStore, Tables};
use zerolost_testkit::{require_service, tls};

mod common;
use common::{run, terminate, wait_exit, workdir, zerolost};

const PG_PASSWORD: &str = "zerolost";
const MQ_PASSWORD: &str = "zerolost";

fn ca() -> String {
    tls::file("ca.crt").expect("test CA").display().to_string()
}

fn pg_tls_url(with_password: bool) -> String {
    let user = if with_password {
        format!("zerolost:{PG_PASSWORD}")
    } else {
        "zerolost".into()
    };
    format!(
        "postgres://{user}@127.0.0.1:55432/zerolost?sslmode=verify-full&sslrootcert={}",
        ca()
    )
}

fn config_text(dir: &Path, prefix: &str, destination: &str) -> String {
    std::fs::write(dir.join("pg-password"), format!("{PG_PASSWORD}\n")).expect("secret file");
    format!(
        r#"broker = "rabbitmq"
destinations = ["{destination}"]
[outbox]
url = "{outbox}"
password_file = "pg-password"
table_prefix = "{prefix}"
[relay]
idle_poll = "50ms"
startup_patience = "0s"
[http]
listen = ""
[rabbitmq]
url = "amqps://zerolost@127.0.0.1:55675/zerolost"
management_url = "https://zerolost@127.0.0.1:55676"
vhost = "zerolost"
[rabbitmq.tls]
ca_file = "{ca}"
"#,
        outbox = pg_tls_url(false),
        ca = ca(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_ships_over_tls_and_doctor_reports_each_link() {
    let rabbit = RabbitConfig::new(format!(
        "amqps://zerolost:{MQ_PASSWORD}@127.0.0.1:55675/zerolost"
    ))
    .tls(tls::trusted().expect("CA"));
    let destination = zerolost_testkit::fresh_name("cli-tls");
    let declared = declare_destination(&rabbit, &destination, QueueSpec::default()).await;
    if require_service("rabbitmq (amqps)", declared).is_none() {
        return;
    }
    let prefix = format!("zlt_clitls_{}_", std::process::id());
    let tables = Tables::default().with_prefix(&prefix).unwrap();
    let store = PgStore::connect(&pg_tls_url(true), tables)
        .await
        .expect("postgres over TLS");
    store.migrate().await.expect("migrate");
    let envelopes: Vec<Envelope> = (0..500)
        .map(|i| Envelope::new(&destination, format!("order {i}")))
        .collect();
    store
        .outbox()
        .enqueue_now(&envelopes)
        .await
        .expect("enqueue");
    let dir = workdir("tls");
    std::fs::write(
        dir.join("zerolost.toml"),
        config_text(&dir, &prefix, &destination),
    )
    .unwrap();

    let mut relay = zerolost(&dir)
        .args(["relay", "--config", "zerolost.toml"])
        .env("ZEROLOST_RABBITMQ__PASSWORD", MQ_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the relay");
    let outbox = store.outbox();
    let start = Instant::now();
    while outbox.counts().await.expect("counts").published < envelopes.len() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "relay too slow over TLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(&relay);
    assert_eq!(wait_exit(&mut relay, Duration::from_secs(30)), 0);
    let mut log = String::new();
    std::io::Read::read_to_string(&mut relay.stderr.take().unwrap(), &mut log).unwrap();
    let stored = zerolost_testkit::ids_of(queue_contents(&rabbit, &destination).await.unwrap());
    let sent: HashSet<MessageId> = envelopes.iter().map(|e| e.id).collect();
    assert_eq!(stored.keys().copied().collect::<HashSet<_>>(), sent);
    assert!(stored.values().all(|n| *n == 1), "no id twice");

    let (code, out, err) = {
        let output = zerolost(&dir)
            .args(["doctor", "--config", "zerolost.toml", "--json"])
            .env("ZEROLOST_RABBITMQ__PASSWORD", MQ_PASSWORD)
            .output()
            .expect("doctor");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let links = report["links"].as_array().expect("links");
    for name in ["outbox", "rabbitmq", "rabbitmq.management"] {
        let link = links
            .iter()
            .find(|l| l["link"] == name)
            .unwrap_or_else(|| panic!("{name}: {out}"));
        assert_eq!(link["encrypted"], true, "{link}");
        assert_eq!(link["authenticated"], true, "{link}");
        let days = link["cert_days_left"]
            .as_i64()
            .unwrap_or_else(|| panic!("{link}"));
        assert!(
            (700..=731).contains(&days),
            "the test certificate lasts 2 years: {link}"
        );
    }
    assert_eq!(code, 0, "healthy over TLS: {out}");
    for text in [&log, &out, &err] {
        assert!(!text.contains(&format!(":{PG_PASSWORD}@")), "{text}");
        assert!(!text.contains(&format!(":{MQ_PASSWORD}@")), "{text}");
    }
}

#[test]
fn plaintext_to_another_machine_is_refused_unless_allowed() {
    let dir = workdir("plaintext");
    let config = |allow: bool| {
        format!(
            "broker = \"rabbitmq\"\n[outbox]\nurl = \"postgres://app:s3cret-pw@db.example.invalid/app\"\nallow_plaintext = {allow}\n[relay]\nstartup_patience = \"0s\"\n[http]\nlisten = \"\"\n[rabbitmq]\nurl = \"amqp://app:s3cret-pw@mq.example.invalid/%2f\"\nallow_plaintext = {allow}\n"
        )
    };
    std::fs::write(dir.join("refuse.toml"), config(false)).unwrap();
    let (code, out, err) = run(&dir, &["relay", "--config", "refuse.toml"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("outbox: the link to db.example.invalid is not encrypted"),
        "{err}"
    );
    assert!(err.contains("allow_plaintext = true"), "{err}");
    assert!(
        !out.contains("s3cret-pw") && !err.contains("s3cret-pw"),
        "{err}"
    );
    // Allowed: the relay goes on to connect (and fails on the unknown host, not on TLS).
    std::fs::write(dir.join("allow.toml"), config(true)).unwrap();
    let (code, _, err) = run(&dir, &["relay", "--config", "allow.toml"]);
    assert_ne!(code, 0);
    assert!(!err.contains("not encrypted"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
    // doctor: the plaintext link is unsafe, or advice where allowed.
    std::fs::write(
        dir.join("doctor.toml"),
        "[redis]\nurl = \"redis://cache.example.invalid:6379\"\n",
    )
    .unwrap();
    let (code, out, _) = run(&dir, &["doctor", "--config", "doctor.toml", "--json"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("link redis (redis://cache.example.invalid:6379): encryption"),
        "{out}"
    );
    let report: Value = serde_json::from_str(&out).expect("json");
    let link = &report["links"][0];
    assert_eq!(link["link"], "redis");
    assert_eq!(link["encrypted"], false);
    assert_eq!(link["loopback"], false);
    let unsafe_link =
        report["checks"].as_array().unwrap().iter().any(|c| {
            c["status"] == "unsafe" && c["check"].as_str().unwrap().contains("encryption")
        });
    assert!(unsafe_link, "{out}");
    // Allowed: advice, not unsafe.
    std::fs::write(
        dir.join("doctor-allowed.toml"),
        "[redis]\nurl = \"redis://cache.example.invalid:6379\"\nallow_plaintext = true\n",
    )
    .unwrap();
    let (_, out, _) = run(
        &dir,
        &["doctor", "--config", "doctor-allowed.toml", "--json"],
    );
    let report: Value = serde_json::from_str(&out).expect("json");
    let advice =
        report["checks"].as_array().unwrap().iter().any(|c| {
            c["status"] == "advice" && c["check"].as_str().unwrap().contains("encryption")
        });
    assert!(advice, "{out}");
    assert_eq!(report["links"][0]["plaintext_allowed"], true);
}

/// The README's TLS example (examples/zerolost-tls.toml, passwords from the environment):
/// `doctor` finds every link encrypted, authenticated and healthy.
#[test]
fn the_tls_example_config_is_healthy() {
    if require_service("the test CA", tls::file("ca.crt")).is_none() {
        return;
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/zerolost-tls.toml");
    let output = zerolost(&workdir("tls-example"))
        .args(["doctor", "--json", "--config"])
        .arg(&example)
        .env("ZEROLOST_OUTBOX__PASSWORD", PG_PASSWORD)
        .env("ZEROLOST_RABBITMQ__PASSWORD", MQ_PASSWORD)
        .env("ZEROLOST_REDIS__PASSWORD", "zerolost-secret")
        .env("ZEROLOST_KAFKA__SASL_PASSWORD", "zerolost-secret")
        .output()
        .expect("doctor");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let links = report["links"].as_array().expect("links");
    assert_eq!(links.len(), 5, "{out}");
    for link in links {
        assert_eq!(link["encrypted"], true, "{link}");
        assert_eq!(link["authenticated"], true, "{link}");
    }
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
    assert!(!out.contains("zerolost-secret") && !err.contains("zerolost-secret"));
}

/// docs/kafka.md's SASL_SSL example, pointed at the test broker's SASL_SSL listener (only
/// the addresses, the user and the files change): `doctor` reaches Kafka over it.
#[test]
fn the_kafka_guide_s_sasl_ssl_example_works() {
    let Some(ca) = require_service("the test CA", tls::file("ca.crt")) else {
        return;
    };
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/kafka.md"))
            .expect("docs/kafka.md");
    let example = guide
        .split("```toml")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("SASL_SSL"))
        .expect("a SASL_SSL example in docs/kafka.md");
    let dir = workdir("kafka-guide");
    std::fs::write(dir.join("kafka-password"), "zerolost-secret\n").unwrap();
    let config = example
        .replace("k1:9092,k2:9092,k3:9092", "127.0.0.1:19096")
        .replace("\"relay\"", "\"zerolost\"")
        .replace("/run/secrets/kafka-password", "kafka-password")
        .replace("/etc/zerolost/ca.pem", &ca.display().to_string())
        .replace("destinations = [\"orders\"]", "destinations = []");
    std::fs::write(dir.join("zerolost.toml"), &config).unwrap();
    let (code, out, err) = run(&dir, &["doctor", "--json", "--config", "zerolost.toml"]);
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}\n{config}"));
    let reachable = report["checks"].as_array().unwrap().iter().any(|c| {
        c["check"] == "reachable"
            && c["status"] == "ok"
            && c["target"].as_str().unwrap().starts_with("kafka")
    });
    assert!(reachable, "{out}");
    assert_eq!(code, 0, "{out}");
}

/// `[rocketmq]` over TLS with a client certificate and ACL keys (the secret from a file)
/// against the secure broker: doctor reports the link encrypted and authenticated with the
/// certificate's days left and audits the topic; with a wrong secret every check of the
/// broker names bad credentials and no output shows the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_over_tls_with_acl_keys_from_a_file_and_a_wrong_secret_is_named() {
    use zerolost_rocketmq::{AclKeys, RocketConfig, RocketRuntime, TopicSpec};
    let name_server = zerolost_rocketmq::testkit::test_name_server();
    let keys = AclKeys::new("zerolost", "zerolost-secret");
    let files = zerolost_testkit::tls::mutual().expect("test CA");
    let config = RocketConfig::new(&name_server).acl(keys).tls(files.clone());
    let topic = zerolost_testkit::fresh_name("cli_acl").replace('-', "_");
    let runtime = RocketRuntime::shared().expect("runtime");
    let spec = TopicSpec::new("ZerolostAclCluster");
    let declared = zerolost_rocketmq::declare_destination(&runtime, &config, &spec, &topic).await;
    if require_service("rocketmq (acl broker)", declared).is_none() {
        return;
    }
    let dir = workdir("rocketmq-acl");
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().unwrap().display().to_string();
    for (file, secret) in [("good", "zerolost-secret"), ("bad", "hunter2-wrong")] {
        std::fs::write(dir.join(format!("{file}-secret")), format!("{secret}\n")).unwrap();
        std::fs::write(
            dir.join(format!("{file}.toml")),
            format!(
                "destinations = [\"{topic}\"]\n[rocketmq]\nname_server = \"{name_server}\"\n\
                 access_key = \"zerolost\"\nsecret_key_file = \"{file}-secret\"\nuse_tls = true\n\
                 [rocketmq.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                path(&files.ca_file),
                path(&files.cert_file),
                path(&files.key_file),
            ),
        )
        .unwrap();
    }
    let (_, out, err) = run(&dir, &["doctor", "--json", "--config", "good.toml"]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let link = &report["links"][0];
    assert_eq!(link["link"], "rocketmq");
    assert_eq!(link["encrypted"], true, "{link}");
    assert_eq!(link["authenticated"], true, "{link}");
    assert!(link["cert_days_left"].as_i64().unwrap_or(0) > 0, "{link}");
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["status"] != "error"), "{out}");
    let (code, out, err) = run(&dir, &["doctor", "--json", "--config", "bad.toml"]);
    assert_eq!(code, 1);
    assert!(out.contains("bad credentials"), "{out}");
    assert!(
        !out.contains("hunter2-wrong") && !err.contains("hunter2-wrong"),
        "{out}{err}"
    );
}
