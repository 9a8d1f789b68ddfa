//! Redis restarts (`scripts/services/redis.sh restart`) in the middle of consumption: the
//! consumer holds while Redis is down (fails closed), resumes by itself, and every message
//! has exactly one effect, each applied under a live claim.
//!
//! Its own test binary: restarting Redis would disturb other Redis tests running at once.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;
use zerolost_core::memory::MemoryBroker;
use zerolost_core::{
    CancellationToken, Consumer, ConsumerLedger, DeadLetterPublisher, DedupeStore, Envelope,
    Handler, HandlerContext, HandlerError, MessageId, Publisher, default_dlq_name,
};
use zerolost_testkit::conformance::test_consumer_config;
use zerolost_testkit::{EffectLog, require_service, service_url};

const MESSAGES: usize = 3_000;

/// Applies an effect after checking, when Redis answers, that the claim's token holds the
/// lock key.
#[derive(Clone)]
struct ClaimCheckingHandler {
    effects: EffectLog,
    checker: redis::aio::ConnectionManager,
    lock_prefix: String,
    unverified: Arc<Mutex<u64>>,
    foreign: Arc<Mutex<HashMap<MessageId, String>>>,
}

#[async_trait]
impl Handler for ClaimCheckingHandler {
    async fn handle(&self, _: &Envelope) -> Result<(), HandlerError> {
        Err(HandlerError::permanent("called without a claim"))
    }

    async fn handle_claimed(
        &self,
        envelope: &Envelope,
        context: &HandlerContext,
    ) -> Result<(), HandlerError> {
        let claim = context.claim();
        let key = format!("{}LOCK:{{{}}}", self.lock_prefix, envelope.id);
        let mut checker = self.checker.clone();
        match tokio::time::timeout(
            Duration::from_millis(500),
            checker.get::<_, Option<String>>(&key),
        )
        .await
        {
            Ok(Ok(Some(holder))) if holder == claim.token.to_string() => {}
            Ok(Ok(other)) => {
                self.foreign
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(envelope.id, format!("{other:?}"));
            }
            _ => *self.unverified.lock().unwrap_or_else(|p| p.into_inner()) += 1,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.effects.apply(envelope.id);
        Ok(())
    }
}

/// The server's `run_id`, new at every start.
async fn server_run_id(url: &str) -> String {
    let mut conn = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Runs `scripts/services/redis.sh <command>`.
async fn redis_sh(command: &'static str) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/redis.sh");
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg(command)
            .status()
    })
    .await
    .expect("script task")
    .expect("run redis.sh");
    assert!(status.success(), "redis.sh {command} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumption_survives_a_redis_restart() {
    let url = service_url(common::REDIS_URL.0, common::REDIS_URL.1);
    if url != common::REDIS_URL.1 {
        let why = "ZEROLOST_REDIS_URL points at a server scripts/services/redis.sh does not manage";
        require_service::<(), _>("the project's Redis", Err(why));
        return;
    }
    let Some(dedupe) = require_service("redis", common::store().await) else {
        return;
    };
    let prefix = format!("zlt:restart:{}:", std::process::id());
    let dedupe = dedupe.with_prefix(&prefix).expect("prefix");
    let checker = redis::Client::open(url.as_str())
        .expect("url")
        .get_connection_manager()
        .await
        .expect("checker connection");
    let handler = ClaimCheckingHandler {
        effects: EffectLog::new(),
        checker,
        lock_prefix: prefix,
        unverified: Arc::default(),
        foreign: Arc::default(),
    };
    let broker = MemoryBroker::new();
    broker.declare("orders");
    broker.declare(&default_dlq_name("orders"));
    let consumer = Consumer::new(
        dedupe.clone(),
        handler.clone(),
        DeadLetterPublisher::new(broker.publisher()),
    )
    .with_config(test_consumer_config())
    .expect("consumer config");
    let stop = CancellationToken::new();
    let subscriber = broker.subscribe("orders").expect("subscribe");
    let task = tokio::spawn({
        let (consumer, stop) = (consumer.clone(), stop.clone());
        async move { consumer.run(subscriber, stop).await }
    });
    let messages: Vec<Envelope> = (0..MESSAGES)
        .map(|i| Envelope::new("orders", format!("order {i}")))
        .collect();
    let publisher = broker.publisher();
    for envelope in &messages {
        publisher.publish(envelope).await.expect("publish");
    }

    let started = Instant::now();
    while handler.effects.distinct() < (MESSAGES / 4) as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "consumption did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = handler.effects.distinct();
    let run_id_before = server_run_id(&url).await;
    redis_sh("restart").await;
    assert_ne!(
        server_run_id(&url).await,
        run_id_before,
        "Redis really restarted"
    );

    while handler.effects.distinct() < MESSAGES as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "consumption did not resume: {} of {MESSAGES}",
            handler.effects.distinct()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let in-flight completes land, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let totals = task.await.expect("consumer task").expect("consumer run");

    let effects = handler.effects.snapshot();
    eprintln!(
        "restart after {before} effects; totals {totals:?} (store errors the client did not hide: {}); unverified claim checks {}",
        totals.store_errors,
        handler.unverified.lock().expect("lock")
    );
    assert!(before < MESSAGES as u64, "the restart came mid-consumption");
    assert_eq!(effects.len(), MESSAGES, "every message processed");
    assert!(
        messages.iter().all(|m| effects.get(&m.id) == Some(&1)),
        "duplicate effects: {:?}",
        effects.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(
        handler.foreign.lock().expect("lock").is_empty(),
        "effects applied without holding the claim: {:?}",
        handler.foreign.lock().expect("lock")
    );
    let ledger = dedupe.finished(None).await.expect("ledger");
    assert_eq!(
        ledger.entries.len(),
        MESSAGES,
        "every message marked processed"
    );
    assert!(broker.messages(&default_dlq_name("orders")).is_empty());

    // A longer outage: calls fail fast with a retryable error (the consumer fails closed on
    // it), and the store reconnects by itself once Redis is back.
    redis_sh("stop").await;
    let asked = Instant::now();
    let down = dedupe.claim(MessageId::new(), Duration::from_secs(5)).await;
    let result = match &down {
        Err(e) => Some(e.is_retryable()),
        Ok(_) => None,
    };
    redis_sh("start").await;
    assert_eq!(
        result,
        Some(true),
        "a stopped Redis gives a retryable error: {down:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the error came fast"
    );
    let back = Instant::now();
    loop {
        match dedupe.claim(MessageId::new(), Duration::from_secs(5)).await {
            Ok(claim) => {
                assert!(matches!(claim, zerolost_core::Claim::Claimed(_)));
                break;
            }
            Err(e) => assert!(
                back.elapsed() < Duration::from_secs(15),
                "no reconnect: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
