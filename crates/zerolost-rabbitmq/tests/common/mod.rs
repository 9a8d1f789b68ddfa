//! Test glue: the test broker, fresh destinations, reading a queue back by id, and running
//! consumers and relays in tasks.
#![allow(dead_code)]

use std::collections::HashMap;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use zerolost_core::MessageId;
use zerolost_rabbitmq::testkit::RabbitBackend;
use zerolost_rabbitmq::{QueueSpec, RabbitConfig, declare_destination, queue_contents};

/// The test broker's settings, or `None` (skip, loudly) when it is unreachable and
/// services are not required.
pub async fn broker() -> Option<RabbitConfig> {
    RabbitBackend::local().await.map(|backend| backend.config)
}

/// A fresh destination (exchange, quorum queue, `.dlq`) tagged `tag`.
pub async fn destination(config: &RabbitConfig, tag: &str, spec: QueueSpec) -> String {
    let name = RabbitBackend::fresh_name(tag);
    declare_destination(config, &name, spec)
        .await
        .expect("declare the destination");
    name
}

/// How many copies of each id `queue` holds now.
pub async fn ids_in(config: &RabbitConfig, queue: &str) -> HashMap<MessageId, usize> {
    zerolost_testkit::ids_of(queue_contents(config, queue).await.expect("read the queue"))
}

#[allow(unused_imports)] // each test file uses some of them
pub use zerolost_testkit::tasks::{
    Running, fault_at_a_quarter, finished, spawn_consumer, spawn_relay,
};

/// A raw lapin connection and channel to the test broker, as an application without
/// zerolost has.
pub async fn raw_channel() -> (lapin::Connection, lapin::Channel) {
    let connection = lapin::Connection::connect(
        &zerolost_rabbitmq::testkit::test_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("raw connection");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

/// Declares queue `name` with a raw client and `arguments`; with `bind`, binds it with `#`
/// to the exchange of the same name.
pub async fn raw_queue(name: &str, durable: bool, arguments: &[(&str, AMQPValue)], bind: bool) {
    let (connection, channel) = raw_channel().await;
    let mut table = FieldTable::default();
    for (key, value) in arguments {
        table.insert((*key).into(), value.clone());
    }
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable,
                ..Default::default()
            },
            table,
        )
        .await
        .expect("declare");
    if bind {
        channel
            .queue_bind(
                name.into(),
                name.into(),
                "#".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }
    let _ = connection.close(200, "done".into()).await;
}
