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

/// Waits (up to `patience`) until `ledger` lists `n` messages finished, then stops
/// `running` and returns its totals. Panics when they do not finish.
pub async fn stop_when_finished(
    running: Running<ConsumerTotals>,
    ledger: &dyn ConsumerLedger,
    n: usize,
    patience: std::time::Duration,
) -> ConsumerTotals {
    crate::conformance::eventually_every(
        patience,
        std::time::Duration::from_millis(50),
        "the consumer finished every message",
        async || finished(ledger).await >= n,
    )
    .await;
    running.stop().await
}

/// Messages `ledger` lists as finished (0 while it cannot be read).
pub async fn finished(ledger: &dyn ConsumerLedger) -> usize {
    ledger
        .finished(None)
        .await
        .map(|s| s.entries.len())
        .unwrap_or(0)
}

/// Waits until `ledger` lists a quarter of `n` finished, runs `fault` (e.g. kill -9 and
/// restart of the broker), then waits (up to `patience`) until all `n` are finished; prints
/// when each happened. Panics when the run does not finish.
pub async fn fault_at_a_quarter(
    ledger: &dyn ConsumerLedger,
    n: usize,
    patience: std::time::Duration,
    fault: impl FnOnce(),
) {
    use std::time::{Duration, Instant};
    let started = Instant::now();
    crate::conformance::eventually_every(
        patience,
        Duration::from_millis(20),
        "a quarter consumed",
        async || finished(ledger).await >= n / 4,
    )
    .await;
    eprintln!(
        "fault at {} consumed, {:?} in",
        finished(ledger).await,
        started.elapsed()
    );
    fault();
    eprintln!("fault over after {:?}", started.elapsed());
    crate::conformance::eventually_every(
        patience,
        Duration::from_millis(100),
        "every message consumed after the fault",
        async || finished(ledger).await >= n,
    )
    .await;
    eprintln!("all {n} consumed after {:?}", started.elapsed());
}
