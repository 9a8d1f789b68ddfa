//! The RocketMQ half of `zerolost-lab bench --backend rocketmq`: the client's synchronous send
//! (only SEND_OK counts) and its push consumer, raw, against the outbox relay and the
//! zerolost consumer, each on its own topic of the same layout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_builder::MessageBuilder;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::result::SendStatus;
use zerolost_core::{DeadLetterPublisher, Envelope, Error, MESSAGE_ID_HEADER};
use zerolost_rocketmq::{
    RocketConfig, RocketPublisher, RocketRuntime, RocketSubscriber, TopicSpec, declare_destination,
    dlq_topic,
};

use super::harness::{
    BrokerBench, Measured, RELAY_ROUNDS_IN_FLIGHT, batch_for, first_to_nth, zerolost_consume,
    zerolost_relay,
};

/// Sends in flight: the relay's rounds in flight times each batch's sends in flight.
const SENDS_IN_FLIGHT: usize = 16;
/// Listener threads of each push consumer, on both sides.
const CONSUME_THREADS: u32 = 64;
const SEND_TIMEOUT_MS: u64 = 3_000;

fn client(operation: &'static str) -> impl Fn(rocketmq_client_rust::ClientError) -> Error {
    move |e| Error::backend(operation, true, e)
}

/// The raw producer: synchronous sends, `RELAY_ROUNDS_IN_FLIGHT × SENDS_IN_FLIGHT` at once,
/// the id as key and property, as the relay sends them; only SEND_OK counts.
async fn raw_publish(
    runtime: &RocketRuntime,
    name_server: &str,
    batch: &[Envelope],
) -> Result<Duration, Error> {
    let mut producer = DefaultMQProducer::builder(runtime.client_runtime())
        .producer_group(format!("zlbench_raw_{}", std::process::id()))
        .name_server_addr(name_server.to_owned())
        .send_msg_timeout(SEND_TIMEOUT_MS as u32)
        .retry_times_when_send_failed(0)
        .build();
    Box::pin(producer.start())
        .await
        .map_err(client("producer start"))?;
    let started = Instant::now();
    let producer = &producer;
    let sends = futures::stream::iter(batch.iter().map(|envelope| async move {
        let id = envelope.id.to_string();
        let message = MessageBuilder::new()
            .topic(envelope.destination.as_str())
            .body_slice(&envelope.payload)
            .key(id.as_str())
            .wait_store_msg_ok(true)
            .raw_property(MESSAGE_ID_HEADER, id.as_str())
            .and_then(|b| b.build())
            .map_err(|e| Error::backend("message", false, e.to_string()))?;
        let sent = Box::pin(producer.send_with_timeout(message, SEND_TIMEOUT_MS))
            .await
            .map_err(client("send"))?;
        match sent.map(|r| r.send_status) {
            Some(SendStatus::SendOk) => Ok(()),
            other => Err(Error::NotConfirmed {
                reason: format!("raw send: {other:?}"),
            }),
        }
    }))
    .buffer_unordered(RELAY_ROUNDS_IN_FLIGHT * SENDS_IN_FLIGHT)
    .collect::<Vec<Result<(), Error>>>()
    .await;
    let elapsed = started.elapsed();
    let mut producer = producer.clone();
    Box::pin(producer.shutdown()).await;
    sends.into_iter().collect::<Result<Vec<()>, Error>>()?;
    Ok(elapsed)
}

/// Raw consume: a push consumer with the same threads and batch, whose listener returns
/// CONSUME_SUCCESS at once; timed from the first message to the `n`th.
async fn raw_consume(
    runtime: &RocketRuntime,
    name_server: &str,
    topic: &str,
    n: usize,
    batch: u32,
) -> Result<Duration, Error> {
    let consumed = Arc::new(AtomicUsize::new(0));
    let mut consumer = DefaultMQPushConsumer::builder(runtime.client_runtime())
        .consumer_group(format!("{topic}-raw-consumers"))
        .name_server_addr(name_server.to_owned())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_thread_min(CONSUME_THREADS)
        .consume_thread_max(CONSUME_THREADS)
        .consume_message_batch_max_size(batch)
        .build();
    Box::pin(consumer.subscribe(topic.to_owned(), "*"))
        .await
        .map_err(client("subscribe"))?;
    let counter = consumed.clone();
    consumer.register_message_listener_concurrently(
        move |messages: &[&MessageExt],
              _: &ConsumeConcurrentlyContext|
              -> ClientResult<ConsumeConcurrentlyStatus> {
            counter.fetch_add(messages.len(), Ordering::Relaxed);
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    Box::pin(consumer.start())
        .await
        .map_err(client("consumer start"))?;
    let started = first_to_nth(&consumed, n, "raw consume").await?;
    let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    Box::pin(consumer.shutdown()).await;
    Ok(elapsed)
}

/// Both measurements on RocketMQ, each side on its own topic (with its `-dlq`) of the test
/// cluster (`ZerolostCluster`).
pub async fn measure(bench: &BrokerBench) -> Result<Measured, Error> {
    let name_server = bench
        .brokers
        .clone()
        .unwrap_or_else(zerolost_rocketmq::testkit::test_name_server);
    let runtime = RocketRuntime::shared()?;
    let batch = bench.consume_batch;
    let config = RocketConfig::new(&name_server)
        .sends_in_flight(SENDS_IN_FLIGHT)
        .consume_threads(CONSUME_THREADS)
        .consume_batch(batch);
    let spec = TopicSpec::new(zerolost_rocketmq::testkit::TEST_CLUSTER);
    let run_id = format!("zlbench-{}", std::process::id());
    let (raw_topic, zl_topic) = (format!("{run_id}-raw"), format!("{run_id}-zerolost"));
    for topic in [&raw_topic, &zl_topic] {
        declare_destination(&runtime, &config, &spec, topic).await?;
    }
    let n = bench.messages;
    let (raw_batch, zl_batch) = (batch_for(&raw_topic, n), batch_for(&zl_topic, n));
    eprintln!("relay: raw synchronous sends (SEND_OK), {n} messages ...");
    let raw_relay = raw_publish(&runtime, &name_server, &raw_batch).await?;
    let zerolost_relay = zerolost_relay(
        bench,
        &zl_batch,
        RocketPublisher::start(&runtime, &config).await?,
    )
    .await?;
    eprintln!("consume: raw push consumer ...");
    let raw_consume = raw_consume(&runtime, &name_server, &raw_topic, n, batch).await?;
    let dead_letters = DeadLetterPublisher::new(RocketPublisher::start(&runtime, &config).await?)
        .with_naming(dlq_topic);
    let subscriber = RocketSubscriber::start(
        &runtime,
        &config,
        &zl_topic,
        &format!("{zl_topic}-consumers"),
    )
    .await?;
    let (zerolost_consume, dedupe_store) = zerolost_consume(
        bench,
        &zl_topic,
        subscriber,
        Arc::new(dead_letters),
        n,
        async |_: &mut _| Ok(()),
    )
    .await?;
    Ok(Measured {
        raw_relay,
        zerolost_relay,
        raw_consume,
        zerolost_consume,
        dedupe_store,
    })
}
