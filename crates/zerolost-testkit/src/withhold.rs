//! A subscriber whose acknowledgements never reach the broker, for crash tests: as if the
//! process died right after each handler committed.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use zerolost_core::{Acknowledger, Delivery, Error, Subscriber};

/// Deliveries whose ack was withheld, kept unsettled until the process ends.
static WITHHELD: Mutex<Vec<Delivery>> = Mutex::new(Vec::new());

/// How many acks this process has withheld.
pub fn withheld() -> usize {
    WITHHELD
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len()
}

struct WithholdAck(Delivery);

#[async_trait]
impl Acknowledger for WithholdAck {
    async fn ack(self: Box<Self>) -> Result<(), Error> {
        WITHHELD
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.0);
        Ok(())
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), Error> {
        self.0.nack(requeue).await
    }
}

/// Wraps a subscriber: every ack is kept back (the delivery stays unsettled until the
/// process dies); nacks pass through.
///
/// ```
/// use zerolost_testkit::WithholdingSubscriber;
/// let broker = zerolost_core::memory::MemoryBroker::new();
/// broker.declare("orders");
/// let sub = WithholdingSubscriber(broker.subscribe("orders").unwrap());
/// # let _ = sub;
/// ```
pub struct WithholdingSubscriber<S>(pub S);

#[async_trait]
impl<S: Subscriber> Subscriber for WithholdingSubscriber<S> {
    async fn next(&mut self) -> Result<Delivery, Error> {
        Ok(self.0.next().await?.wrap(WithholdAck))
    }
}
