//! An order web service (axum): `POST /orders` writes the order row and its outbox row in
//! **one PostgreSQL transaction**; a relay in the same process publishes the outbox to
//! RabbitMQ with publisher confirms; `GET /orders/{id}` shows the order and where its
//! message stands. Ctrl-C stops the server and lets the relay finish or return its leases.
//!
//! Needs PostgreSQL and RabbitMQ: `scripts/services/up.sh` (or `ZEROLOST_PG_URL`,
//! `ZEROLOST_AMQP_URL`). Run: `cargo run --example axum_orders --features postgres,rabbitmq`,
//! then `curl -XPOST localhost:3000/orders -d '{"sku":"A-42","qty":1}' -H 'content-type: application/json'`.
//! `-- --self-test` serves on a free port, posts three orders to itself, waits until the
//! relay has published them, and exits (what CI runs). Consume them with the
//! `inbox_consumer` example.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use zerolost::rabbitmq::{QueueSpec, RabbitConfig, RabbitPublisher, declare_destination};
use zerolost::sql::{PgOutbox, PgStore, Tables};
use zerolost::{CancellationToken, Envelope, MessageId, OutboxStatus, OutboxStore, Relay};

/// Where the orders go (the `inbox_consumer` example reads it).
const DESTINATION: &str = "zl-example-orders";

#[derive(Deserialize)]
struct NewOrder {
    sku: String,
    qty: u32,
}

#[derive(Serialize)]
struct OrderView {
    id: MessageId,
    sku: String,
    qty: i32,
    /// `pending`, `published` or `parked`: where the order's message stands.
    message: Option<OutboxStatus>,
}

#[derive(Clone)]
struct App {
    store: PgStore,
    outbox: PgOutbox,
}

/// The business row and the outbox row commit together, or neither does.
async fn create_order(
    State(app): State<App>,
    Json(order): Json<NewOrder>,
) -> Result<(StatusCode, Json<serde_json::Value>), (StatusCode, String)> {
    if order.qty == 0 {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "qty must be at least 1".into(),
        ));
    }
    let body = serde_json::json!({ "sku": order.sku, "qty": order.qty }).to_string();
    let message = Envelope::new(DESTINATION, body).with_key(order.sku.clone());
    let fail = |e: &dyn std::fmt::Display| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let mut tx = app.store.pool().begin().await.map_err(|e| fail(&e))?;
    sqlx::query("INSERT INTO example_orders (id, sku, qty) VALUES ($1, $2, $3)")
        .bind(message.id.as_uuid())
        .bind(&order.sku)
        .bind(i32::try_from(order.qty).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await
        .map_err(|e| fail(&e))?;
    app.outbox
        .enqueue(&mut tx, &message)
        .await
        .map_err(|e| fail(&e))?;
    tx.commit().await.map_err(|e| fail(&e))?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": message.id })),
    ))
}

async fn show_order(
    State(app): State<App>,
    Path(id): Path<MessageId>,
) -> Result<Json<OrderView>, StatusCode> {
    let row: Option<(String, i32)> =
        sqlx::query_as("SELECT sku, qty FROM example_orders WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(app.store.pool())
            .await
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let (sku, qty) = row.ok_or(StatusCode::NOT_FOUND)?;
    let message = app
        .outbox
        .snapshot(None)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
        .entries
        .into_iter()
        .find(|e| e.id == id)
        .map(|e| e.status);
    Ok(Json(OrderView {
        id,
        sku,
        qty,
        message,
    }))
}

/// Posts `body` to `path` on `port` with a bare HTTP/1.0 request: `(status, body)`.
async fn post_json(port: u16, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let self_test = std::env::args().any(|a| a == "--self-test");
    let store = PgStore::connect(
        &env(
            "ZEROLOST_PG_URL",
            "postgres://zerolost:zerolost@127.0.0.1:55432/zerolost",
        ),
        Tables::default().with_prefix("zl_example_")?,
    )
    .await?;
    store.migrate().await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS example_orders (id UUID PRIMARY KEY, sku TEXT NOT NULL, qty INT NOT NULL)",
    )
    .execute(store.pool())
    .await?;
    let rabbit = RabbitConfig::new(env(
        "ZEROLOST_AMQP_URL",
        "amqp://zerolost:zerolost@127.0.0.1:55672/zerolost",
    ));
    declare_destination(&rabbit, DESTINATION, QueueSpec::default()).await?;

    // The relay: usually `zerolost relay` in its own process; here a task.
    let stop = CancellationToken::new();
    let outbox = store.outbox();
    let relay = Arc::new(Relay::new(outbox.clone(), RabbitPublisher::new(&rabbit)?));
    let relaying = tokio::spawn({
        let (relay, stop) = (relay.clone(), stop.clone());
        async move { relay.run(stop).await }
    });

    let app = Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(show_order))
        .with_state(App {
            store: store.clone(),
            outbox: outbox.clone(),
        });
    let address = if self_test {
        "127.0.0.1:0".to_owned()
    } else {
        env("ZEROLOST_EXAMPLE_ADDR", "127.0.0.1:3000")
    };
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let port = listener.local_addr()?.port();
    println!("order service on http://127.0.0.1:{port}");
    let serving = tokio::spawn({
        let stop = stop.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        }
    });

    if self_test {
        let mut ids = Vec::new();
        for (sku, qty) in [("A-42", 1), ("B-7", 2), ("C-1", 3)] {
            let body = format!(r#"{{"sku":"{sku}","qty":{qty}}}"#);
            let (status, created) = post_json(port, "/orders", &body).await?;
            anyhow::ensure!(status == 201, "POST /orders answered {status}: {created}");
            let created: serde_json::Value = serde_json::from_str(&created)?;
            ids.push(
                created["id"]
                    .as_str()
                    .unwrap_or_default()
                    .parse::<MessageId>()?,
            );
        }
        let (status, _) = post_json(port, "/orders", r#"{"sku":"Z","qty":0}"#).await?;
        anyhow::ensure!(
            status == 422,
            "a bad order is refused, and nothing is enqueued"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let snapshot = outbox.snapshot(None).await?;
            let published = ids
                .iter()
                .filter(|id| {
                    snapshot
                        .entries
                        .iter()
                        .any(|e| e.id == **id && e.status == OutboxStatus::Published)
                })
                .count();
            if published == ids.len() {
                println!("3 orders created; their messages are confirmed by RabbitMQ");
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the relay did not publish the orders in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
    } else {
        tokio::signal::ctrl_c().await?;
        println!("stopping: the relay finishes or returns its leases");
        stop.cancel();
    }
    serving.await??;
    let totals = relaying.await??;
    println!("relay published {} message(s)", totals.published);
    Ok(())
}
