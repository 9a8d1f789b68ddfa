//! Test glue: fresh Redis dedupe stores (a key prefix per store) as testkit `Stores`, with
//! the in-memory outbox (Redis is only the dedupe store).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use zerolost_core::Error;
use zerolost_redis::RedisDedupe;
use zerolost_testkit::{DedupeHandle, MemoryStores, OutboxHandle, Stores};

/// The test server (scripts/services/redis.sh).
pub const REDIS_URL: (&str, &str) = ("ZEROLOST_REDIS_URL", "redis://127.0.0.1:56379");

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The test server's TLS port, as its ACL user (scripts/services/redis.sh).
pub const REDIS_TLS_URL: (&str, &str) = (
    "ZEROLOST_REDIS_TLS_URL",
    "rediss://zerolost:zerolost-secret@127.0.0.1:56380",
);

fn prefix() -> String {
    format!(
        "zlt:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store under a key prefix no other store in this run uses.
pub async fn store() -> Result<RedisDedupe, Error> {
    let url = zerolost_testkit::service_url(REDIS_URL.0, REDIS_URL.1);
    RedisDedupe::connect(&url).await?.with_prefix(&prefix())
}

/// The same over TLS (the test CA), logged in as the ACL user.
pub async fn tls_store() -> Result<RedisDedupe, Error> {
    let url = zerolost_testkit::service_url(REDIS_TLS_URL.0, REDIS_TLS_URL.1);
    let tls = zerolost_testkit::tls::trusted().map_err(Error::Config)?;
    RedisDedupe::connect_with_tls(&url, &tls)
        .await?
        .with_prefix(&prefix())
}

/// Redis dedupe stores plus in-memory outboxes; over TLS when `tls`.
#[derive(Clone)]
pub struct RedisStores {
    pub tls: bool,
}

#[async_trait]
impl Stores for RedisStores {
    fn name(&self) -> String {
        if self.tls { "redis (TLS)" } else { "redis" }.into()
    }

    async fn outbox(&self) -> Result<OutboxHandle, Error> {
        MemoryStores::new().outbox().await
    }

    async fn dedupe(&self) -> Result<DedupeHandle, Error> {
        let store = Arc::new(if self.tls {
            tls_store().await?
        } else {
            store().await?
        });
        Ok(DedupeHandle {
            store: store.clone(),
            ledger: store,
        })
    }
}

/// The stores, or `None` (skip) when Redis is unreachable.
pub async fn stores() -> Option<RedisStores> {
    zerolost_testkit::require_service("redis", store().await.map(|_| ()))?;
    Some(RedisStores { tls: false })
}

/// The stores over TLS, or `None` (skip) when Redis's TLS port is unreachable.
pub async fn tls_stores() -> Option<RedisStores> {
    zerolost_testkit::require_service("redis (TLS)", tls_store().await.map(|_| ()))?;
    Some(RedisStores { tls: true })
}
