//! The RabbitMQ half of `zerolost-lab bench --backend rabbitmq`: lapin with publisher confirms
//! and manual acks, raw, against the outbox relay and the zerolost consumer, on quorum
//! queues of the same layout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use zerolost_core::{DeadLetterPublisher, Envelope, Error, MESSAGE_ID_HEADER};
use zerolost_rabbitmq::{
    QueueSpec, RabbitConfig, RabbitPublisher, RabbitSubscriber, declare_destination,
};

use super::harness::{
    BrokerBench, Measured, RELAY_BATCH, RELAY_ROUNDS_IN_FLIGHT, batch_for, next_within_a_minute,
    zerolost_consume, zerolost_relay,
};

/// Deliveries each consumer holds unacknowledged, on both sides.
const PREFETCH: u16 = 500;

fn amqp(operation: &'static str) -> impl Fn(lapin::Error) -> Error {
    move |e| Error::backend(operation, true, e)
}

async fn connect(url: &str) -> Result<Connection, Error> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| Error::unavailable(url, e))
}

/// The raw publisher: the relay's pipelining (chunks of `RELAY_BATCH` published back to
/// back, then their confirms awaited together, on `RELAY_ROUNDS_IN_FLIGHT` confirm-mode
/// channels at once), persistent and mandatory, with the same id property and header.
async fn raw_publish(url: &str, exchange: &str, batch: &[Envelope]) -> Result<Duration, Error> {
    let connection = connect(url).await?;
    let chunks = Mutex::new(batch.chunks(RELAY_BATCH));
    let started = Instant::now();
    let workers = (0..RELAY_ROUNDS_IN_FLIGHT).map(|_| async {
        let channel = connection
            .create_channel()
            .await
            .map_err(amqp("channel.open"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp("confirm.select"))?;
        loop {
            let Some(chunk) = chunks.lock().await.next() else {
                return Ok::<(), Error>(());
            };
            let mut confirms = Vec::with_capacity(chunk.len());
            for envelope in chunk {
                let id = envelope.id.to_string();
                let mut headers = FieldTable::default();
                headers.insert(
                    MESSAGE_ID_HEADER.into(),
                    AMQPValue::LongString(id.clone().into()),
                );
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(id.into())
                    .with_headers(headers);
                confirms.push(
                    channel
                        .basic_publish(
                            exchange.into(),
                            "".into(),
                            BasicPublishOptions {
                                mandatory: true,
                                immediate: false,
                            },
                            &envelope.payload,
                            properties,
                        )
                        .await
                        .map_err(amqp("basic.publish"))?,
                );
            }
            for confirmation in futures::future::join_all(confirms).await {
                let confirmation = confirmation.map_err(amqp("confirm"))?;
                if !confirmation.is_ack() || confirmation.take_message().is_some() {
                    return Err(Error::NotConfirmed {
                        reason: "raw publish: nacked or returned".into(),
                    });
                }
            }
        }
    });
    for result in futures::future::join_all(workers).await {
        result?;
    }
    let elapsed = started.elapsed();
    let _ = connection.close(200, "done".into()).await;
    Ok(elapsed)
}

/// Raw consume + ack: `n` deliveries with the same prefetch, acked 100 at a time.
async fn raw_consume(url: &str, queue: &str, n: usize) -> Result<Duration, Error> {
    let connection = connect(url).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(amqp("channel.open"))?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(amqp("basic.qos"))?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp("basic.consume"))?;
    let mut started = None;
    for i in 0..n {
        let delivery = next_within_a_minute(consumer.next())
            .await?
            .ok_or_else(|| Error::Closed("raw consumer".into()))?
            .map_err(amqp("consume"))?;
        started.get_or_insert_with(Instant::now);
        // One ack per 100 deliveries (`multiple`), and the last one: the cheapest manual ack.
        if (i + 1) % 100 == 0 || i + 1 == n {
            delivery
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(amqp("basic.ack"))?;
        }
    }
    let elapsed = started.map(|s: Instant| s.elapsed()).unwrap_or_default();
    let _ = connection.close(200, "done".into()).await;
    Ok(elapsed)
}

/// Both measurements on RabbitMQ, each side on its own quorum queue (with its `.dlq`).
pub async fn measure(bench: &BrokerBench) -> Result<Measured, Error> {
    let url = bench
        .brokers
        .clone()
        .unwrap_or_else(zerolost_rabbitmq::testkit::test_url);
    let config = RabbitConfig::new(&url).prefetch(PREFETCH);
    let run_id = format!("zlbench-{}", std::process::id());
    let (raw_queue, zl_queue) = (format!("{run_id}-raw"), format!("{run_id}-zerolost"));
    for queue in [&raw_queue, &zl_queue] {
        declare_destination(&config, queue, QueueSpec::default()).await?;
    }
    let n = bench.messages;
    let (raw_batch, zl_batch) = (batch_for(&raw_queue, n), batch_for(&zl_queue, n));
    eprintln!("relay: raw lapin publish with confirms, {n} messages ...");
    let raw_relay = raw_publish(&url, &raw_queue, &raw_batch).await?;
    let zerolost_relay = zerolost_relay(bench, &zl_batch, RabbitPublisher::new(&config)?).await?;
    eprintln!("consume: raw consume + ack ...");
    let raw_consume = raw_consume(&url, &raw_queue, n).await?;
    let (zerolost_consume, dedupe_store) = zerolost_consume(
        bench,
        &zl_queue,
        RabbitSubscriber::new(&config, &zl_queue)?,
        Arc::new(DeadLetterPublisher::new(RabbitPublisher::new(&config)?)),
        n,
        async |_: &mut _| Ok(()),
    )
    .await?;
    for queue in [&raw_queue, &zl_queue] {
        zerolost_rabbitmq::delete_destination(&config, queue).await?;
    }
    Ok(Measured {
        raw_relay,
        zerolost_relay,
        raw_consume,
        zerolost_consume,
        dedupe_store,
    })
}
