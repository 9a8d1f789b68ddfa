//! Consuming with manual acknowledgement, `basic.qos` prefetch and reconnection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer};
use zerolost_core::{Acknowledger, Delivery, Error, Subscriber};

use crate::link::{Link, close_quietly};
use crate::message::incoming;
use crate::topology::declare_on;
use crate::{QueueSpec, RabbitConfig, RabbitError};

/// Consumes one queue with manual acks only: a delivery is settled by the pipeline's
/// `ack`/`nack`, and one dropped unsettled is nacked with requeue. `redelivered` and the
/// quorum queue's `x-delivery-count` are carried into [`Delivery`].
///
/// When the connection or channel breaks, `next` returns a retryable error once and the
/// following call connects again (redeclaring the queue when made
/// [`with_topology`](Self::with_topology)); deliveries not acked before the break are
/// redelivered by the broker and deduplicated by the consumer.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::Subscriber;
/// use zerolost_rabbitmq::{QueueSpec, RabbitConfig, RabbitSubscriber};
///
/// let config = RabbitConfig::new("amqp://app:secret@127.0.0.1:5672/%2f").prefetch(50);
/// let mut orders = RabbitSubscriber::new(&config, "orders")?.with_topology(QueueSpec::default());
/// let delivery = orders.next().await?;
/// delivery.ack().await?;
/// # Ok(()) }
/// ```
pub struct RabbitSubscriber {
    link: Arc<Link>,
    queue: String,
    topology: Option<QueueSpec>,
    consuming: Option<(Channel, Consumer)>,
    closed: bool,
}

impl std::fmt::Debug for RabbitSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSubscriber")
            .field("queue", &self.queue)
            .field("config", self.link.config())
            .finish_non_exhaustive()
    }
}

impl RabbitSubscriber {
    /// A consumer of `queue`; connects on the first `next`.
    pub fn new(config: &RabbitConfig, queue: impl Into<String>) -> Result<Self, RabbitError> {
        config.validate()?;
        let queue = queue.into();
        if queue.is_empty() || queue.len() > 255 {
            return Err(RabbitError::Invalid(format!(
                "queue name must be 1..=255 bytes, got {} bytes",
                queue.len()
            )));
        }
        Ok(Self {
            link: Arc::new(Link::new(config.clone())),
            queue,
            topology: None,
            consuming: None,
            closed: false,
        })
    }

    /// Declares the queue's layout ([`declare_destination`](crate::declare_destination))
    /// on every (re)connection.
    pub fn with_topology(mut self, spec: QueueSpec) -> Self {
        self.topology = Some(spec);
        self
    }

    async fn start(&self) -> Result<(Channel, Consumer), RabbitError> {
        let channel = self.link.channel(false).await?;
        if let Some(spec) = self.topology {
            declare_on(&channel, &self.queue, spec).await?;
        }
        channel
            .basic_qos(
                self.link.config().prefetch_count(),
                BasicQosOptions::default(),
            )
            .await
            .map_err(RabbitError::amqp("basic.qos"))?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: false,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(RabbitError::amqp("basic.consume"))?;
        Ok((channel, consumer))
    }

    fn to_delivery(&self, mut delivery: lapin::message::Delivery) -> Delivery {
        let message = incoming(&self.queue, &mut delivery);
        // A quorum queue's count of earlier deliveries given back.
        let delivery_count = message
            .headers
            .get("x-delivery-count")
            .and_then(|n| n.parse::<u32>().ok())
            .map(|returned| returned.saturating_add(1));
        Delivery::new(
            message,
            delivery.redelivered,
            delivery_count,
            Box::new(RabbitAck {
                acker: Some(delivery.acker),
                within: self.link.config().connect_timeout_value(),
            }),
        )
    }
}

#[async_trait]
impl Subscriber for RabbitSubscriber {
    async fn next(&mut self) -> Result<Delivery, Error> {
        if self.closed {
            return Err(Error::Closed("the RabbitMQ subscriber was closed".into()));
        }
        if self.consuming.is_none() {
            self.consuming = Some(self.start().await.map_err(|e| {
                if e.is_retryable() {
                    Error::unavailable("rabbitmq", e)
                } else {
                    e.into()
                }
            })?);
        }
        let received = match self.consuming.as_mut() {
            Some((_, consumer)) => consumer.next().await,
            None => None,
        };
        match received {
            Some(Ok(delivery)) => Ok(self.to_delivery(delivery)),
            broken => {
                // The channel or connection closed: the next call starts over.
                if let Some((channel, _)) = self.consuming.take() {
                    close_quietly(channel);
                }
                let reason = match broken {
                    Some(Err(e)) => e.to_string(),
                    _ => "the consumer was cancelled".to_owned(),
                };
                Err(Error::unavailable(
                    "rabbitmq",
                    format!("consuming {}: {reason}", self.queue),
                ))
            }
        }
    }

    /// Stops consuming and closes the connection; unacknowledged deliveries go back to
    /// the queue.
    async fn close(&mut self) -> Result<(), Error> {
        self.closed = true;
        if let Some((channel, _)) = self.consuming.take() {
            let _ = channel.close(200, "closed".into()).await;
        }
        self.link.close().await;
        Ok(())
    }
}

/// Settles one delivery; dropped unsettled, it nacks with requeue.
struct RabbitAck {
    acker: Option<Acker>,
    /// How long an ack or nack may take to be written.
    within: Duration,
}

/// Waits up to `within` for an ack or nack to be written. lapin can leave one pending for
/// good when the connection dies as it is queued (measured in a chaos run: four acks
/// pending 47 s after a broker kill, each holding a handler slot); then the connection is
/// gone and the broker redelivers the message anyway.
async fn settled(
    settling: impl Future<Output = Result<bool, lapin::Error>>,
    within: Duration,
    what: &str,
) -> Result<(), Error> {
    let failed = |why: String| Err(Error::backend("rabbitmq", true, format!("{what}: {why}")));
    match tokio::time::timeout(within, settling).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => {
            failed("the channel closed first; the broker redelivers the message".into())
        }
        Ok(Err(e)) => failed(e.to_string()),
        Err(_) => failed(format!(
            "not written within {within:?} (the connection is gone); the broker redelivers the message"
        )),
    }
}

#[async_trait]
impl Acknowledger for RabbitAck {
    async fn ack(mut self: Box<Self>) -> Result<(), Error> {
        match self.acker.take() {
            Some(acker) => {
                settled(
                    acker.ack(BasicAckOptions::default()),
                    self.within,
                    "basic.ack",
                )
                .await
            }
            None => Ok(()),
        }
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), Error> {
        match self.acker.take() {
            Some(acker) => {
                let options = BasicNackOptions {
                    requeue,
                    multiple: false,
                };
                settled(acker.nack(options), self.within, "basic.nack").await
            }
            None => Ok(()),
        }
    }
}

impl Drop for RabbitAck {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let within = self.within;
            runtime.spawn(async move {
                let options = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                let _ = tokio::time::timeout(within, acker.nack(options)).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_ack_never_written_fails_retryably_after_the_bound() {
        let started = tokio::time::Instant::now();
        let never = std::future::pending::<Result<bool, lapin::Error>>();
        let err = settled(never, Duration::from_secs(5), "basic.ack")
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(err.is_retryable());
        assert!(
            err.to_string().contains("basic.ack: not written within 5s"),
            "{err}"
        );
        let closed = settled(async { Ok(false) }, Duration::from_secs(5), "basic.nack").await;
        assert!(
            closed
                .unwrap_err()
                .to_string()
                .contains("the channel closed first")
        );
        assert!(
            settled(async { Ok(true) }, Duration::from_secs(5), "basic.ack")
                .await
                .is_ok()
        );
    }
}
