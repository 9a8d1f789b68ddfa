//! Test glue: the test broker, fresh destinations, reading a queue back by id, and running
//! consumers and relays in tasks.
#![allow(dead_code)]

use std::collections::HashMap;

use zerolost_core::{MESSAGE_ID_HEADER, MessageId};
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
    let mut ids = HashMap::new();
    for message in queue_contents(config, queue).await.expect("read the queue") {
        let id: MessageId = message
            .headers
            .get(MESSAGE_ID_HEADER)
            .and_then(|v| v.parse().ok())
            .expect("every message carries its id header");
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// A pipeline part running in a task until [`Running::stop`].
pub struct Running<T> {
    stop: zerolost_core::CancellationToken,
    task: tokio::task::JoinHandle<Result<T, zerolost_core::Error>>,
}

impl<T> Running<T> {
    /// Asks it to stop, waits, and returns its totals (panics on an error).
    pub async fn stop(self) -> T {
        self.stop.cancel();
        self.task.await.expect("task").expect("run")
    }
}

/// Runs `consumer` on `subscriber` in a task.
pub fn spawn_consumer(
    consumer: &zerolost_core::Consumer,
    subscriber: zerolost_rabbitmq::RabbitSubscriber,
) -> Running<zerolost_core::ConsumerTotals> {
    let stop = zerolost_core::CancellationToken::new();
    let (consumer, token) = (consumer.clone(), stop.clone());
    let task = tokio::spawn(async move { consumer.run(subscriber, token).await });
    Running { stop, task }
}

/// Runs `relay` in a task.
pub fn spawn_relay(relay: zerolost_core::Relay) -> Running<zerolost_core::RelayTotals> {
    let stop = zerolost_core::CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { relay.run(token).await });
    Running { stop, task }
}

/// Messages `ledger` lists as finished (0 while it cannot be read).
pub async fn finished(ledger: &dyn zerolost_core::ConsumerLedger) -> usize {
    ledger
        .finished(None)
        .await
        .map(|s| s.entries.len())
        .unwrap_or(0)
}
