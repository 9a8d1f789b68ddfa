//! Faults on a real RabbitMQ while the outbox relay and the consumer run: the broker
//! killed with SIGKILL and restarted, and the publisher's TCP connection cut (through
//! Toxiproxy) with confirms outstanding. Nothing is lost and nothing is applied twice;
//! publisher and consumer recover by themselves.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use zerolost_core::memory::{MemoryDedupe, MemoryOutbox};
use zerolost_core::{Consumer, ConsumerConfig, DeadLetterPublisher, Envelope, OutboxStore, Relay};
use zerolost_rabbitmq::{QueueSpec, RabbitConfig, RabbitPublisher, RabbitSubscriber};
use zerolost_testkit::RecordingHandler;
use zerolost_testkit::conformance::{
    assert_applied_exactly_once, eventually_every, patient_relay_config, test_consumer_config,
};

/// One chaos test at a time: they kill the shared broker.
static CHAOS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A relay that keeps retrying through an outage of tens of seconds.
fn patient_relay(outbox: Arc<MemoryOutbox>, publisher: RabbitPublisher) -> Relay {
    Relay::new(outbox, publisher)
        .with_config(patient_relay_config())
        .expect("relay")
}

/// The consumer with an in-memory dedupe store, recording effects.
fn counting_consumer(config: &RabbitConfig) -> (Consumer, RecordingHandler, Arc<MemoryDedupe>) {
    let handler = RecordingHandler::new();
    let dedupe = Arc::new(MemoryDedupe::new());
    let consumer = Consumer::new(
        dedupe.clone(),
        handler.clone(),
        DeadLetterPublisher::new(RabbitPublisher::new(config).expect("dlq publisher")),
    )
    .with_config(ConsumerConfig {
        concurrency: 32,
        ..test_consumer_config()
    })
    .expect("consumer");
    (consumer, handler, dedupe)
}

fn rabbitmq_sh(args: &[&str]) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/services/rabbitmq.sh"
    );
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .expect("run rabbitmq.sh");
    assert!(status.success(), "rabbitmq.sh {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_run_loses_nothing_and_applies_nothing_twice() {
    const N: usize = 100_000;
    let Some(config) = common::broker().await else {
        return;
    };
    let _one_at_a_time = CHAOS.lock().await;
    let config = config.confirm_timeout(Duration::from_secs(5));
    let dest = common::destination(&config, "kill", QueueSpec::default()).await;
    let outbox = Arc::new(MemoryOutbox::new());
    let envelopes: Vec<Envelope> = (0..N)
        .map(|i| Envelope::new(&dest, format!("{{\"order\":{i}}}")))
        .collect();
    outbox.enqueue_batch(&envelopes).expect("enqueue");

    let relay = common::spawn_relay(patient_relay(
        outbox.clone(),
        RabbitPublisher::new(&config).expect("publisher"),
    ));
    let (consumer, effects, dedupe) = counting_consumer(&config);
    let subscriber = RabbitSubscriber::new(&config, &dest)
        .expect("subscriber")
        .with_topology(QueueSpec::default());
    let consuming = common::spawn_consumer(&consumer, subscriber);
    let started = Instant::now();
    common::fault_at_a_quarter(&*dedupe, N, Duration::from_secs(300), || {
        rabbitmq_sh(&["kill"]); // SIGKILL, then start again on the same data
    })
    .await;
    let relayed = relay.stop().await;
    let totals = consuming.stop().await;
    eprintln!(
        "done in {:?}; relay {relayed:?}; consumer {totals:?}",
        started.elapsed()
    );
    let counts = outbox.counts().await.expect("counts");
    assert_eq!(counts.parked, 0, "nothing parked: {counts:?}");
    assert!(
        relayed.rescheduled > 0,
        "the outage was felt by the relay (rows rescheduled): {relayed:?}"
    );
    assert_applied_exactly_once(&effects, &envelopes);
    assert!(
        common::ids_in(&config, &zerolost_core::default_dlq_name(&dest))
            .await
            .is_empty(),
        "nothing dead-lettered"
    );
}

/// Toxiproxy's HTTP API (`scripts/services/toxiproxy.sh`).
struct Toxiproxy {
    api: String,
    proxy: String,
}

impl Toxiproxy {
    /// A proxy in front of the test broker, or `None` (skip, loudly) without Toxiproxy.
    async fn in_front_of_rabbitmq() -> Option<(Self, u16)> {
        let api = zerolost_testkit::service_url("ZEROLOST_TOXIPROXY_URL", "http://127.0.0.1:58474");
        let proxy = format!("zlt-amqp-{}", std::process::id());
        let this = Self { api, proxy };
        let created = this.call(
            "POST",
            "/proxies",
            Some(serde_json::json!({
                "name": this.proxy,
                "listen": "127.0.0.1:0",
                "upstream": "127.0.0.1:55672",
                "enabled": true,
            })),
        );
        let created = zerolost_testkit::require_service("toxiproxy", created)?;
        let port = created["listen"]
            .as_str()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("listen port");
        Some((this, port))
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.api);
        let response = match (method, body) {
            ("POST", Some(body)) => ureq::post(&url).send_json(body),
            ("DELETE", _) => ureq::delete(&url).call(),
            (_, _) => ureq::get(&url).call(),
        };
        let mut response = response.map_err(|e| format!("{method} {path}: {e}"))?;
        if response.status().as_u16() == 204 {
            return Ok(serde_json::Value::Null);
        }
        response
            .body_mut()
            .read_json()
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    /// Every byte in both directions stops; connections stay open, silent.
    fn blackhole(&self) {
        for stream in ["upstream", "downstream"] {
            self.call(
                "POST",
                &format!("/proxies/{}/toxics", self.proxy),
                Some(serde_json::json!({
                    "name": format!("blackhole-{stream}"),
                    "type": "timeout",
                    "stream": stream,
                    "attributes": {"timeout": 0},
                })),
            )
            .expect("add the toxic");
        }
    }

    /// Closes every connection through the proxy and lets new ones in, without toxics.
    fn cut_and_heal(&self) {
        let path = format!("/proxies/{}", self.proxy);
        self.call("POST", &path, Some(serde_json::json!({"enabled": false})))
            .expect("disable");
        for stream in ["upstream", "downstream"] {
            let _ = self.call(
                "DELETE",
                &format!("/proxies/{}/toxics/blackhole-{stream}", self.proxy),
                None,
            );
        }
        self.call("POST", &path, Some(serde_json::json!({"enabled": true})))
            .expect("enable");
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.call("DELETE", &format!("/proxies/{}", self.proxy), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_connection_cut_with_confirms_outstanding_loses_nothing() {
    const N: usize = 20_000;
    let Some(config) = common::broker().await else {
        return;
    };
    let Some((toxiproxy, port)) = tokio::task::spawn_blocking(|| {
        tokio::runtime::Handle::current().block_on(Toxiproxy::in_front_of_rabbitmq())
    })
    .await
    .expect("task") else {
        return;
    };
    let _one_at_a_time = CHAOS.lock().await;
    let dest = common::destination(&config, "cut", QueueSpec::default()).await;
    let outbox = Arc::new(MemoryOutbox::new());
    let envelopes: Vec<Envelope> = (0..N)
        .map(|i| Envelope::new(&dest, format!("{{\"order\":{i}}}")))
        .collect();
    outbox.enqueue_batch(&envelopes).expect("enqueue");

    // The relay publishes through the proxy; the consumer reads the broker directly.
    let proxied = RabbitConfig::new(format!(
        "amqp://zerolost:zerolost@127.0.0.1:{port}/zerolost"
    ))
    .confirm_timeout(Duration::from_secs(2))
    .connect_timeout(Duration::from_secs(2));
    let relay = common::spawn_relay(patient_relay(
        outbox.clone(),
        RabbitPublisher::new(&proxied).expect("publisher"),
    ));
    let (consumer, effects, dedupe) = counting_consumer(&config);
    let consuming = common::spawn_consumer(
        &consumer,
        RabbitSubscriber::new(&config, &dest).expect("subscriber"),
    );
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(5),
        "some published",
        async || outbox.counts().await.is_ok_and(|c| c.published >= N / 5),
    )
    .await;
    // Confirms outstanding on a connection that went silent; after the confirm timeout,
    // every connection through the proxy is cut.
    let toxiproxy = tokio::task::spawn_blocking(move || {
        toxiproxy.blackhole();
        std::thread::sleep(Duration::from_secs(4));
        toxiproxy.cut_and_heal();
        toxiproxy
    })
    .await
    .expect("faults");
    eventually_every(
        Duration::from_secs(120),
        Duration::from_millis(50),
        "every message consumed after the cut",
        async || common::finished(&*dedupe).await >= N,
    )
    .await;
    let relayed = relay.stop().await;
    consuming.stop().await;
    drop(tokio::task::spawn_blocking(move || drop(toxiproxy)).await);
    eprintln!("relay {relayed:?}");
    assert!(
        relayed.rescheduled > 0,
        "publishes with outstanding confirms were reported retryable and sent again: {relayed:?}"
    );
    assert_eq!(outbox.counts().await.expect("counts").parked, 0);
    assert_applied_exactly_once(&effects, &envelopes);
}
