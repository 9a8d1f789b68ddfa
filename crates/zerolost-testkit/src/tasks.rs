//! Pipeline parts running in tasks, for tests that start a relay or a consumer, inject a
//! fault, and stop them to read their totals.

use zerolost_core::{
    CancellationToken, Consumer, ConsumerLedger, ConsumerTotals, Error, Relay, RelayTotals,
    Subscriber,
};

/// A pipeline part running in a task until [`Running::stop`].
pub struct Running<T> {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<T, Error>>,
}

impl<T> Running<T> {
    /// Asks it to stop, waits, and returns its totals (panics on an error).
    pub async fn stop(self) -> T {
        self.stop.cancel();
        self.task.await.expect("task").expect("run")
    }
}

/// Runs `consumer` on `subscriber` in a task.
pub fn spawn_consumer<S: Subscriber + 'static>(
    consumer: &Consumer,
    subscriber: S,
) -> Running<ConsumerTotals> {
    let stop = CancellationToken::new();
    let (consumer, token) = (consumer.clone(), stop.clone());
    let task = tokio::spawn(async move { consumer.run(subscriber, token).await });
    Running { stop, task }
}

/// Runs `relay` in a task.
pub fn spawn_relay(relay: Relay) -> Running<RelayTotals> {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { relay.run(token).await });
    Running { stop, task }
}

/// Messages `ledger` lists as finished (0 while it cannot be read).
pub async fn finished(ledger: &dyn ConsumerLedger) -> usize {
    ledger
        .finished(None)
        .await
        .map(|s| s.entries.len())
        .unwrap_or(0)
}
