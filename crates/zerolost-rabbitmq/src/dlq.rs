//! The DLQ `<destination>.dlq` as an operator sees it: list, and remove after a redrive.

use async_trait::async_trait;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::ShortString;
use zerolost_core::redrive::{DeadLetterMessage, DeadLetterQueue};
use zerolost_core::{Error, MESSAGE_ID_HEADER, MessageId, default_dlq_name};

use crate::link::with_channel;
use crate::message::incoming;
use crate::{RabbitConfig, RabbitError, queue_contents};

/// The dead-letter queues of a RabbitMQ broker (the quorum queues `<destination>.dlq`
/// that [`declare_destination`](crate::declare_destination) makes).
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::redrive::DeadLetterQueue;
/// use zerolost_rabbitmq::{RabbitConfig, RabbitDeadLetters};
/// let dlq = RabbitDeadLetters::new(RabbitConfig::new("amqp://app:secret@127.0.0.1:5672/%2f"));
/// for message in dlq.list("orders").await? {
///     println!("{:?}: {:?}", message.id, message.failure.map(|f| f.error));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RabbitDeadLetters {
    config: RabbitConfig,
}

impl RabbitDeadLetters {
    /// The DLQs on the broker at `config`.
    pub fn new(config: RabbitConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl DeadLetterQueue for RabbitDeadLetters {
    /// Reads every ready message back and returns it to the queue (see [`queue_contents`]).
    async fn list(&self, destination: &str) -> Result<Vec<DeadLetterMessage>, Error> {
        Ok(queue_contents(&self.config, &default_dlq_name(destination))
            .await?
            .into_iter()
            .map(|m| DeadLetterMessage::from_incoming(destination, m))
            .collect())
    }

    /// Takes every ready message with `basic.get`, acks one copy of each id asked for, and
    /// closes the channel, which returns the rest to the queue.
    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        let queue = default_dlq_name(destination);
        let name = ShortString::try_new(queue.as_str())
            .map_err(|e| RabbitError::Invalid(format!("queue name: {e}")))?;
        let mut wanted: std::collections::HashSet<MessageId> = ids.iter().copied().collect();
        let removed = with_channel(&self.config, async |channel| {
            let mut removed = 0;
            while !wanted.is_empty() {
                let Some(mut message) = channel
                    .basic_get(name.clone(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(RabbitError::amqp("basic.get"))?
                else {
                    break;
                };
                let id = incoming(&queue, &mut message.delivery)
                    .headers
                    .get(MESSAGE_ID_HEADER)
                    .and_then(|v| v.parse::<MessageId>().ok());
                if id.is_some_and(|id| wanted.remove(&id)) {
                    message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(RabbitError::amqp("basic.ack"))?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await?;
        Ok(removed)
    }
}
