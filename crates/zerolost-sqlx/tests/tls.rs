//! PostgreSQL and MySQL/MariaDB over TLS (scripts/services/: TLS on the same ports): the
//! stores connect with the server's certificate and name verified, the session reports an
//! encrypted connection (and PostgreSQL the client certificate's name), the outbox works over
//! it; each failure names its cause, and no error shows the password.

mod common;

use common::{MYSQL_URL, PG_URL, fresh_prefix};
use zerolost_core::{Envelope, OutboxStore};
use zerolost_sqlx::{Dialect, MySqlStore, PgStore, SqlOutbox, Tables, url_requires_tls};
use zerolost_testkit::{require_service, tls};

fn path(name: &str) -> String {
    tls::file(name).expect("the test CA").display().to_string()
}

fn pg(query: &str) -> String {
    format!(
        "{}?{query}",
        zerolost_testkit::service_url(PG_URL.0, PG_URL.1)
    )
}

fn mysql(query: &str) -> String {
    format!(
        "{}?{query}",
        zerolost_testkit::service_url(MYSQL_URL.0, MYSQL_URL.1)
    )
}

/// One row through the outbox: enqueued, then leased.
async fn outbox_works<DB: Dialect>(outbox: &SqlOutbox<DB>, destination: &str) {
    let envelope = Envelope::new(destination, "{}");
    outbox
        .enqueue_now(std::slice::from_ref(&envelope))
        .await
        .expect("enqueue over TLS");
    let leased = outbox
        .lease(10, std::time::Duration::from_secs(30))
        .await
        .expect("lease over TLS");
    assert!(leased.iter().any(|r| r.envelope.id == envelope.id));
}

#[tokio::test]
async fn postgres_verify_full_with_and_without_a_client_certificate() {
    let url = pg(&format!(
        "sslmode=verify-full&sslrootcert={}",
        path("ca.crt")
    ));
    assert!(url_requires_tls(&url));
    let tables = Tables::default()
        .with_prefix(&fresh_prefix("pgtls"))
        .unwrap();
    let Some(store) = require_service("postgres (TLS)", PgStore::connect(&url, tables).await)
    else {
        return;
    };
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(ssl, "the session is encrypted");
    store.migrate().await.unwrap();
    outbox_works(&store.outbox(), "orders").await;

    let mutual = format!(
        "{url}&sslcert={}&sslkey={}",
        path("client.crt"),
        path("client.key")
    );
    let tables = Tables::default()
        .with_prefix(&fresh_prefix("pgtls"))
        .unwrap();
    let store = PgStore::connect(&mutual, tables).await.expect("mutual TLS");
    let dn: Option<String> =
        sqlx::query_scalar("SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(dn.as_deref(), Some("/CN=zerolost"));
}

#[tokio::test]
async fn mysql_verify_identity() {
    let url = mysql(&format!(
        "ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
        path("ca.crt")
    ));
    assert!(url_requires_tls(&url));
    let tables = Tables::default()
        .with_prefix(&fresh_prefix("mytls"))
        .unwrap();
    let Some(store) = require_service("mysql (TLS)", MySqlStore::connect(&url, tables).await)
    else {
        return;
    };
    let (_, cipher): (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!cipher.is_empty(), "the session is encrypted");
    store.migrate().await.unwrap();
    outbox_works(&store.outbox(), "orders").await;
}

#[tokio::test]
async fn each_failure_names_its_cause_without_the_password() {
    let up = PgStore::connect(&pg(""), Tables::default()).await;
    if require_service("postgres", up).is_none() {
        return;
    }
    let ca = path("ca.crt");
    let other = path("other-ca.crt");
    let wrong = |url: String| url.replace("zerolost:zerolost@", "zerolost:hunter2@");
    // 127.0.0.2 is this machine too, but not a name the server's certificate lists (the
    // service scripts listen there as well).
    let other_name = |url: String| url.replace("@127.0.0.1:", "@127.0.0.2:");
    let pg_cases = [
        (
            other_name(pg(&format!("sslmode=verify-full&sslrootcert={ca}"))),
            "name mismatch",
        ),
        (
            pg(&format!("sslmode=verify-full&sslrootcert={other}")),
            "unknown CA",
        ),
        (
            wrong(pg(&format!("sslmode=verify-full&sslrootcert={ca}"))),
            "bad credentials",
        ),
    ];
    for (url, cause) in pg_cases {
        let text = PgStore::connect(&url, Tables::default())
            .await
            .expect_err("must fail")
            .to_string();
        assert!(text.contains(cause), "expected `{cause}` in: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    let my_cases = [
        (
            other_name(mysql(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"))),
            "name mismatch",
        ),
        (
            mysql(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={other}")),
            "unknown CA",
        ),
        (
            wrong(mysql(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"))),
            "bad credentials",
        ),
    ];
    for (url, cause) in my_cases {
        let text = MySqlStore::connect(&url, Tables::default())
            .await
            .expect_err("must fail")
            .to_string();
        assert!(text.contains(cause), "expected `{cause}` in: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
