//! Deliveries with manual acknowledgement.

use std::fmt;

use async_trait::async_trait;

use crate::{Error, Incoming};

/// Settles one delivery with the broker. Implemented by each backend.
///
/// Dropping an acknowledger without calling either method must lead to redelivery.
#[async_trait]
pub trait Acknowledger: Send {
    /// The message is done: the broker may forget it (commit the offset, `basic.ack`, CONSUME_SUCCESS).
    async fn ack(self: Box<Self>) -> Result<(), Error>;
    /// The message is not done: redeliver it (`requeue = true`) or drop it (`false`; use the DLQ instead).
    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), Error>;
}

/// One message handed over by a [`Subscriber`]. Nothing is acknowledged implicitly: call
/// [`ack`](Delivery::ack) or [`nack`](Delivery::nack); a dropped delivery is redelivered.
pub struct Delivery {
    /// The message as received.
    pub message: Incoming,
    /// The broker says it delivered this message before.
    pub redelivered: bool,
    /// How many times the broker delivered it, where the broker counts (RabbitMQ
    /// quorum queues' `x-delivery-count`, RocketMQ's reconsume times).
    pub delivery_count: Option<u32>,
    acker: Box<dyn Acknowledger>,
}

impl Delivery {
    /// A delivery settled through `acker`.
    pub fn new(
        message: Incoming,
        redelivered: bool,
        delivery_count: Option<u32>,
        acker: Box<dyn Acknowledger>,
    ) -> Self {
        Self {
            message,
            redelivered,
            delivery_count,
            acker,
        }
    }

    /// Acknowledges: the message is done.
    pub async fn ack(self) -> Result<(), Error> {
        self.acker.ack().await
    }

    /// Negative acknowledgement: redeliver (`requeue = true`) or drop.
    pub async fn nack(self, requeue: bool) -> Result<(), Error> {
        self.acker.nack(requeue).await
    }

    /// The same message, settled through the acknowledger `wrap` makes of this delivery:
    /// how a subscriber middleware intercepts acks and nacks (and settles the original
    /// delivery itself, or not).
    ///
    /// ```
    /// use async_trait::async_trait;
    /// use zerolost_core::{Acknowledger, Delivery, Error};
    ///
    /// /// Counts the acks that pass through.
    /// struct Counted(Delivery);
    ///
    /// #[async_trait]
    /// impl Acknowledger for Counted {
    ///     async fn ack(self: Box<Self>) -> Result<(), Error> {
    ///         println!("ack");
    ///         self.0.ack().await
    ///     }
    ///     async fn nack(self: Box<Self>, requeue: bool) -> Result<(), Error> {
    ///         self.0.nack(requeue).await
    ///     }
    /// }
    ///
    /// fn counted(delivery: Delivery) -> Delivery {
    ///     delivery.wrap(Counted)
    /// }
    /// # let _ = counted;
    /// ```
    pub fn wrap<A: Acknowledger + 'static>(self, wrap: impl FnOnce(Delivery) -> A) -> Delivery {
        let (message, redelivered, delivery_count) =
            (self.message.clone(), self.redelivered, self.delivery_count);
        Delivery::new(message, redelivered, delivery_count, Box::new(wrap(self)))
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

/// A stream of deliveries from one destination (queue, topic + group, consumer group).
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use zerolost_core::{Envelope, Publisher, Subscriber, memory::MemoryBroker};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let broker = MemoryBroker::new();
/// broker.declare("orders");
/// broker.publisher().publish(&Envelope::new("orders", "hi")).await.unwrap();
/// let mut sub = broker.subscribe("orders").unwrap();
/// let delivery = sub.next().await.unwrap();
/// delivery.ack().await.unwrap();
/// # });
/// # }
/// ```
#[async_trait]
pub trait Subscriber: Send {
    /// Waits for the next delivery. [`Error::Closed`] when the subscription ended.
    async fn next(&mut self) -> Result<Delivery, Error>;

    /// Stops receiving and leaves the subscription: what was acknowledged is settled with
    /// the broker (Kafka commits the done offsets), what was not comes again to another
    /// consumer. Every subscriber closes this way; `next` after `close` is
    /// [`Error::Closed`]. [`Consumer::run`](crate::Consumer::run) calls it when it ends.
    async fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

#[async_trait]
impl<T: Subscriber + ?Sized> Subscriber for Box<T> {
    async fn next(&mut self) -> Result<Delivery, Error> {
        (**self).next().await
    }

    async fn close(&mut self) -> Result<(), Error> {
        (**self).close().await
    }
}

/// A borrowed subscriber: `consumer.run(&mut subscriber, …)` hands it back when the run
/// ends. The run does not close a borrowed subscriber; its owner does.
#[async_trait]
impl<T: Subscriber + ?Sized> Subscriber for &mut T {
    async fn next(&mut self) -> Result<Delivery, Error> {
        (**self).next().await
    }
}
