//! The in-memory broker's seeded pipeline faults, for any backend: a publisher wrapper
//! that fails publishes, loses confirms, times them out and "crashes" its relay mid-batch,
//! and a subscriber wrapper whose consumer "crashes" between its handler and the ack. Both
//! draw from one [`FaultInjector`], so a run's schedule is replayable by its seed.
//!
//! ```
//! use std::sync::Arc;
//! use zerolost_core::memory::{FaultConfig, FaultInjector, MemoryBroker};
//! use zerolost_core::{Envelope, Publisher};
//! use zerolost_testkit::FaultyPublisher;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let broker = MemoryBroker::new();
//! broker.declare("orders");
//! let always_lost = FaultConfig { lost_confirm: 1.0, ..FaultConfig::none() };
//! let publisher = FaultyPublisher::new(broker.publisher(), Arc::new(FaultInjector::new(always_lost)));
//! // The broker stored the message, but the relay never hears so: it will publish again.
//! assert!(publisher.publish(&Envelope::new("orders", "hi")).await.is_err());
//! assert_eq!(broker.depth("orders").0, 1);
//! # });
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use zerolost_core::memory::{FaultInjector, FaultKind};
use zerolost_core::{Acknowledger, Delivery, Envelope, Error, Publisher, Receipt, Subscriber};

/// Wraps any publisher with the seeded faults of a [`FaultInjector`]:
/// [`FaultKind::PublishFailed`] (refused before the broker sees it),
/// [`FaultKind::LostConfirm`] and [`FaultKind::ConfirmTimeout`] (stored by the broker, but
/// the caller hears an error), and, with a crash hook, [`FaultKind::RelayCrash`].
pub struct FaultyPublisher<P> {
    inner: P,
    faults: Arc<FaultInjector>,
    crash_hook: Option<mpsc::UnboundedSender<()>>,
}

impl<P: Publisher> FaultyPublisher<P> {
    /// Wraps `inner`; no relay crashes.
    pub fn new(inner: P, faults: Arc<FaultInjector>) -> Self {
        Self {
            inner,
            faults,
            crash_hook: None,
        }
    }

    /// Also "crashes" mid-batch: publishes part of a batch, sends on `hook` and never
    /// returns, so the owner aborts the relay task and starts another (the crashed relay's
    /// leases expire and its rows are published again).
    pub fn crashing(mut self, hook: mpsc::UnboundedSender<()>) -> Self {
        self.crash_hook = Some(hook);
        self
    }

    /// The error the caller sees for a message the broker did store.
    async fn lose_confirm(&self, stored: Result<Receipt, Error>) -> Result<Receipt, Error> {
        let receipt = stored?;
        if self.faults.strike(FaultKind::LostConfirm) {
            return Err(Error::NotConfirmed {
                reason: "the confirm was lost after the broker stored the message (injected)"
                    .into(),
            });
        }
        if self.faults.strike(FaultKind::ConfirmTimeout) {
            let after = self.faults.config().confirm_timeout_after;
            tokio::time::sleep(after).await;
            return Err(Error::Timeout {
                operation: "waiting for the broker's confirm (injected)".into(),
                after,
            });
        }
        Ok(receipt)
    }

    fn refused() -> Error {
        Error::unavailable(
            "broker",
            "connection reset before the message was stored (injected)",
        )
    }
}

#[async_trait]
impl<P: Publisher> Publisher for FaultyPublisher<P> {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        if self.faults.strike(FaultKind::PublishFailed) {
            return Err(Self::refused());
        }
        let stored = self.inner.publish(envelope).await;
        self.lose_confirm(stored).await
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        if let Some(hook) = &self.crash_hook
            && self.faults.strike(FaultKind::RelayCrash)
        {
            let survivors = self.faults.pick(envelopes.len() + 1);
            let _ = self.inner.publish_batch(&envelopes[..survivors]).await;
            let _ = hook.send(());
            // The relay "died" here: it never learns the outcome and never marks its rows.
            std::future::pending::<()>().await;
        }
        let refused: Vec<bool> = envelopes
            .iter()
            .map(|_| self.faults.strike(FaultKind::PublishFailed))
            .collect();
        // Most batches lose nothing here: send them as they are.
        let sent: Cow<'_, [Envelope]> = if refused.contains(&true) {
            envelopes
                .iter()
                .zip(&refused)
                .filter(|(_, refused)| !**refused)
                .map(|(e, _)| e.clone())
                .collect()
        } else {
            Cow::Borrowed(envelopes)
        };
        let mut stored = self.inner.publish_batch(&sent).await.into_iter();
        // In order: each message not refused takes the next stored result; the confirms
        // are then lost (or time out) concurrently, as the in-memory broker's are.
        let answers = refused.into_iter().map(|refused| {
            let stored = (!refused).then(|| stored.next());
            async move {
                match stored {
                    None => Err(Self::refused()),
                    Some(Some(result)) => self.lose_confirm(result).await,
                    Some(None) => Err(Error::NotConfirmed {
                        reason: "the publisher returned fewer results than messages".into(),
                    }),
                }
            }
        });
        futures::future::join_all(answers).await
    }
}

/// Wraps any subscriber: with [`FaultKind::CrashBeforeAck`], a delivery's ack never reaches
/// the broker (the consumer "crashed" after its handler ran): the message is handed out
/// again, as the broker does for an unacknowledged delivery, and the ack reports an error.
pub struct FaultySubscriber<S> {
    inner: S,
    faults: Arc<FaultInjector>,
}

impl<S: Subscriber> FaultySubscriber<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, faults: Arc<FaultInjector>) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl<S: Subscriber> Subscriber for FaultySubscriber<S> {
    async fn next(&mut self) -> Result<Delivery, Error> {
        let faults = self.faults.clone();
        Ok(self
            .inner
            .next()
            .await?
            .wrap(|delivery| CrashingAck { delivery, faults }))
    }
}

/// Settles the wrapped delivery, unless the consumer "crashes" first.
struct CrashingAck {
    delivery: Delivery,
    faults: Arc<FaultInjector>,
}

#[async_trait]
impl Acknowledger for CrashingAck {
    async fn ack(self: Box<Self>) -> Result<(), Error> {
        if self.faults.strike(FaultKind::CrashBeforeAck) {
            // The broker never hears the ack: it hands the message out again.
            self.delivery.nack(true).await?;
            return Err(Error::unavailable(
                "broker",
                "the consumer crashed before its ack reached the broker (injected)",
            ));
        }
        self.delivery.ack().await
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), Error> {
        self.delivery.nack(requeue).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerolost_core::memory::{FaultConfig, MemoryBroker};

    fn injector(config: FaultConfig) -> Arc<FaultInjector> {
        Arc::new(FaultInjector::new(config))
    }

    #[tokio::test]
    async fn a_refused_publish_never_reaches_the_broker_and_a_lost_confirm_does() {
        let broker = MemoryBroker::new();
        broker.declare("orders");
        let refuse = FaultConfig {
            publish_failed: 1.0,
            ..FaultConfig::none()
        };
        let publisher = FaultyPublisher::new(broker.publisher(), injector(refuse));
        let batch = [Envelope::new("orders", "a"), Envelope::new("orders", "b")];
        let results = publisher.publish_batch(&batch).await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(Error::is_retryable))
        );
        assert_eq!(broker.depth("orders").0, 0);

        let lose = FaultConfig {
            lost_confirm: 1.0,
            ..FaultConfig::none()
        };
        let faults = injector(lose);
        let publisher = FaultyPublisher::new(broker.publisher(), faults.clone());
        let results = publisher.publish_batch(&batch).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(Error::NotConfirmed { .. })))
        );
        assert_eq!(
            broker.depth("orders").0,
            2,
            "stored despite the lost confirms"
        );
        assert_eq!(faults.counts().lost_confirm, 2);
    }

    /// Each result belongs to its own message when some of a batch are refused.
    #[tokio::test]
    async fn results_stay_with_their_messages_when_part_of_a_batch_is_refused() {
        let broker = MemoryBroker::new();
        broker.declare("orders");
        let half = FaultConfig {
            publish_failed: 0.5,
            seed: 7,
            ..FaultConfig::none()
        };
        let faults = injector(half);
        let publisher = FaultyPublisher::new(broker.publisher(), faults.clone());
        let batch: Vec<Envelope> = (0..200)
            .map(|i| Envelope::new("orders", format!("{i}")))
            .collect();
        let results = publisher.publish_batch(&batch).await;
        assert_eq!(results.len(), batch.len());
        let mut confirmed = 0;
        for (envelope, result) in batch.iter().zip(&results) {
            if let Ok(receipt) = result {
                assert_eq!(receipt.id, envelope.id, "a receipt for another message");
                confirmed += 1;
            }
        }
        let refused = faults.counts().publish_failed as usize;
        assert!(refused > 50 && refused < 150, "{refused}");
        assert_eq!(confirmed + refused, batch.len());
        assert_eq!(broker.depth("orders").0, confirmed);
    }

    #[tokio::test]
    async fn a_crash_before_the_ack_hands_the_message_out_again() {
        let broker = MemoryBroker::new();
        broker.declare("orders");
        let envelope = Envelope::new("orders", "a");
        broker
            .publisher()
            .publish(&envelope)
            .await
            .expect("publish");
        let crash = FaultConfig {
            crash_before_ack: 1.0,
            ..FaultConfig::none()
        };
        let subscriber = broker.subscribe("orders").expect("subscribe");
        let mut subscriber = FaultySubscriber::new(subscriber, injector(crash));
        let first = subscriber.next().await.expect("first");
        assert!(first.ack().await.is_err(), "the ack was lost");
        let again = subscriber.next().await.expect("redelivered");
        assert!(again.redelivered);
        assert_eq!(
            again.message.headers.get(zerolost_core::MESSAGE_ID_HEADER),
            Some(&envelope.id.to_string())
        );
    }
}
