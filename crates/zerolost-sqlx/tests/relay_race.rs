//! Four relays (separate tasks, separate pools) drain one outbox of 50,000 rows: every id
//! is published, and none twice unless its lease expired (counted by the relays as lost
//! leases: rows whose `mark_published` was refused).

mod common;

use std::time::{Duration, Instant};

use zerolost_core::{CancellationToken, Envelope, OutboxStatus, OutboxStore, Relay, RelayConfig};
use zerolost_testkit::{RecordingPublisher, require_service, service_url};

const MESSAGES: usize = 50_000;
const RELAYS: usize = 4;

fn race_config() -> RelayConfig {
    RelayConfig {
        batch_size: 500,
        lease_for: Duration::from_secs(30),
        idle_poll: Duration::from_millis(20),
        ..RelayConfig::default()
    }
}

macro_rules! relay_race {
    ($test:ident, $module:ident, $store:ty, $url:expr, $service:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let Some(first) = require_service($service, common::$module::store().await) else {
                return;
            };
            let envelopes: Vec<Envelope> = (0..MESSAGES)
                .map(|i| Envelope::new("race", format!("message {i}")))
                .collect();
            for chunk in envelopes.chunks(5_000) {
                first.outbox().enqueue_now(chunk).await.expect("enqueue");
            }
            let publisher = RecordingPublisher::new();
            let stop = CancellationToken::new();
            let started = Instant::now();
            let mut relays = Vec::new();
            for _ in 0..RELAYS {
                let url = service_url($url.0, $url.1);
                let store = <$store>::connect(&url, first.tables().clone())
                    .await
                    .expect("a pool per relay");
                let relay = Relay::new(store.outbox(), publisher.clone())
                    .with_config(race_config())
                    .expect("relay config");
                let stop = stop.clone();
                relays.push(tokio::spawn(async move { relay.run(stop).await }));
            }
            while publisher.distinct() < MESSAGES {
                assert!(
                    started.elapsed() < Duration::from_secs(300),
                    "only {} of {MESSAGES} published after 300 s",
                    publisher.distinct()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop.cancel();
            let mut lost_leases = 0;
            let mut active = 0;
            for relay in relays {
                let totals = relay.await.expect("relay task").expect("relay run");
                lost_leases += totals.lost_leases;
                active += usize::from(totals.published > 0);
            }
            let counts = publisher.counts();
            let duplicates: u64 = counts.values().map(|n| u64::from(n - 1)).sum();
            eprintln!(
                "{}: {MESSAGES} rows, {RELAYS} relays in {:?}: {duplicates} duplicates, {lost_leases} lost leases, {active} relays active",
                $service,
                started.elapsed()
            );
            assert_eq!(counts.len(), MESSAGES, "every id published");
            assert!(
                envelopes.iter().all(|e| counts.contains_key(&e.id)),
                "the published ids are the enqueued ids"
            );
            assert!(
                duplicates <= lost_leases,
                "{duplicates} duplicate publishes but only {lost_leases} expired leases"
            );
            assert!(active >= 2, "the relays shared the work ({active} active)");
            let snapshot = first.outbox().snapshot(None).await.expect("snapshot");
            assert_eq!(snapshot.entries.len(), MESSAGES);
            assert!(
                snapshot
                    .entries
                    .iter()
                    .all(|e| e.status == OutboxStatus::Published && !e.leased),
                "every row marked published, no lease left"
            );
        }
    };
}

relay_race!(
    four_relays_on_postgres,
    pg,
    zerolost_sqlx::PgStore,
    common::PG_URL,
    "postgres"
);
relay_race!(
    four_relays_on_mariadb,
    mysql,
    zerolost_sqlx::MySqlStore,
    common::MYSQL_URL,
    "mariadb"
);
