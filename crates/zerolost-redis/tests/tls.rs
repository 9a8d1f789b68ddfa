//! Redis over TLS (scripts/services/redis.sh's TLS port): a claim and its processed mark over
//! `rediss://` with the test CA, with a client certificate too; each failure names its cause
//! (a real TLS server with a bad certificate stands in for a misconfigured server), and no
//! error shows the password.

mod common;

use std::time::Duration;

use zerolost_core::{Claim, DedupeStore, MessageId, Outcome, TlsFiles};
use zerolost_redis::RedisDedupe;
use zerolost_testkit::require_service;
use zerolost_testkit::tls::{self, BadTlsServer};

fn tls_url() -> String {
    zerolost_testkit::service_url(common::REDIS_TLS_URL.0, common::REDIS_TLS_URL.1)
}

/// Claims, completes and claims again over `tls`: the second claim sees the mark.
async fn claim_twice(tls: &TlsFiles) -> Option<()> {
    let store = require_service(
        "redis (TLS)",
        RedisDedupe::connect_with_tls(&tls_url(), tls).await,
    )?;
    let store = store
        .with_prefix(&format!("zlt:tls:{}:", std::process::id()))
        .unwrap();
    let id = MessageId::new();
    let Claim::Claimed(token) = store.claim(id, Duration::from_secs(30)).await.unwrap() else {
        panic!("a fresh id is claimed");
    };
    store
        .complete(&token, Outcome::Processed, Duration::from_secs(60))
        .await
        .unwrap();
    let again = store.claim(id, Duration::from_secs(30)).await.unwrap();
    assert!(matches!(again, Claim::AlreadyProcessed(_)), "{again:?}");
    Some(())
}

#[tokio::test]
async fn rediss_with_the_ca_and_with_a_client_certificate() {
    let Some(()) = claim_twice(&tls::trusted().expect("CA")).await else {
        return;
    };
    claim_twice(&tls::mutual().expect("client cert")).await;
}

#[tokio::test]
async fn each_failure_names_its_cause_without_the_password() {
    let trusted = tls::trusted().expect("CA");
    if require_service(
        "redis (TLS)",
        RedisDedupe::connect_with_tls(&tls_url(), &trusted).await,
    )
    .is_none()
    {
        return;
    }
    let wrong_name = BadTlsServer::wrong_name().expect("openssl s_server");
    let expired = BadTlsServer::expired().expect("openssl s_server");
    let at = |port: u16| format!("rediss://zerolost:hunter2@127.0.0.1:{port}");
    let plaintext = zerolost_testkit::service_url(common::REDIS_URL.0, common::REDIS_URL.1)
        .replace("redis://", "rediss://zerolost:hunter2@");
    let cases = [
        (tls_url(), tls::other_ca().expect("other CA"), "unknown CA"),
        (at(wrong_name.port), trusted.clone(), "name mismatch"),
        (at(expired.port), trusted.clone(), "expired certificate"),
        (
            tls_url().replace("zerolost-secret", "hunter2"),
            trusted.clone(),
            "bad credentials",
        ),
        // A plaintext Redis waits for a line that a TLS hello never sends: a timeout, with
        // the likely cause named.
        (plaintext, trusted.clone(), "if this port speaks plaintext"),
        // A plaintext client against the TLS-only port.
        (
            tls_url().replace("rediss://", "redis://"),
            TlsFiles::default(),
            "TLS expected but the server speaks plaintext",
        ),
    ];
    for (url, files, cause) in cases {
        let error = RedisDedupe::connect_with_tls(&url, &files)
            .await
            .expect_err("must fail");
        let text = error.to_string();
        assert!(text.contains(cause), "expected `{cause}` in: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
