//! The DLQ `<destination>.dlq` as an operator sees it: depth, list, and remove after a
//! redrive, none of which can drop a dead letter.
//!
//! A quorum queue counts every return of a message (a `basic.get` not acknowledged, a
//! channel closed with messages unsettled) as one more delivery, and a delivery limit (a
//! policy, or RabbitMQ 4's default of 20) drops a message past it; a DLQ has no
//! dead-letter exchange of its own, so the message is gone (rabbitmq-server discussion
//! #18226). So nothing here returns a message: depth comes from a passive `queue.declare`,
//! and reading walks the queue once, publishing a copy of each message it keeps back to the
//! DLQ's exchange (persistent, same routing key and properties, confirmed) before it acks
//! the original. A crash between the two (or an ack the broker never applied) leaves two
//! copies of one dead letter, never none; the next walk keeps only one of copies that are
//! the same in every byte (body, key, headers, failure times), since they are one dead
//! letter stored twice. Two failures of one id differ in their failure metadata and are
//! both kept.

use std::collections::HashSet;

use async_trait::async_trait;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use zerolost_core::redrive::{DeadLetterMessage, DeadLetterQueue};
use zerolost_core::{Error, Incoming, MESSAGE_ID_HEADER, MessageId, default_dlq_name};

use crate::link::with_channel;
use crate::message::incoming;
use crate::{RabbitConfig, RabbitError};

/// The header in which a quorum queue counts a message's deliveries.
const DELIVERY_COUNT: &str = "x-delivery-count";

/// Messages taken per round of a walk before their copies are confirmed and they are acked.
const ROUND: usize = 100;

/// The dead-letter queues of a RabbitMQ broker (the quorum queues `<destination>.dlq`
/// that [`declare_destination`](crate::declare_destination) makes).
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::redrive::DeadLetterQueue;
/// use zerolost_rabbitmq::{RabbitConfig, RabbitDeadLetters};
/// let dlq = RabbitDeadLetters::new(RabbitConfig::new("amqp://app:secret@127.0.0.1:5672/%2f"));
/// println!("{} dead letters", dlq.depth("orders").await?);
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

    /// The messages in `destination`'s DLQ as stored (failure headers included), read
    /// without dropping any (see the module docs).
    pub async fn messages(&self, destination: &str) -> Result<Vec<Incoming>, Error> {
        Ok(walk(&self.config, &default_dlq_name(destination), |_| true).await?)
    }
}

#[async_trait]
impl DeadLetterQueue for RabbitDeadLetters {
    /// Walks the DLQ once, copying every message back before acking it (see the module docs).
    async fn list(&self, destination: &str) -> Result<Vec<DeadLetterMessage>, Error> {
        Ok(self
            .messages(destination)
            .await?
            .into_iter()
            .map(|m| DeadLetterMessage::from_incoming(destination, m))
            .collect())
    }

    /// Walks the DLQ once, acking one copy of each id asked for and copying the rest back.
    async fn remove(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        let mut wanted: HashSet<MessageId> = ids.iter().copied().collect();
        let asked = wanted.len();
        walk(&self.config, &default_dlq_name(destination), |message| {
            let id = message
                .headers
                .get(MESSAGE_ID_HEADER)
                .and_then(|v| v.parse::<MessageId>().ok());
            !id.is_some_and(|id| wanted.remove(&id))
        })
        .await?;
        Ok(asked - wanted.len())
    }

    /// The ready messages, from a passive `queue.declare`: nothing is read.
    async fn depth(&self, destination: &str) -> Result<usize, Error> {
        let queue = default_dlq_name(destination);
        let depth =
            with_channel(&self.config, async |channel| ready(channel, &queue).await).await?;
        Ok(depth as usize)
    }
}

fn queue_name(queue: &str) -> Result<ShortString, RabbitError> {
    ShortString::try_new(queue).map_err(|e| RabbitError::Invalid(format!("queue name: {e}")))
}

/// The messages ready in `queue` (passive declare: an absent queue is an error).
async fn ready(channel: &Channel, queue: &str) -> Result<u32, RabbitError> {
    let declared = channel
        .queue_declare(
            queue_name(queue)?,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(RabbitError::amqp("queue.declare (passive)"))?;
    Ok(declared.message_count())
}

/// Walks the messages ready in `queue` now, once each, in rounds: takes them with
/// `basic.get`, publishes a confirmed copy of each that `keep` keeps to the queue's
/// exchange, then acks the round. Returns the kept messages as read.
async fn walk(
    config: &RabbitConfig,
    queue: &str,
    mut keep: impl FnMut(&Incoming) -> bool,
) -> Result<Vec<Incoming>, RabbitError> {
    with_channel(config, async |channel| {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(RabbitError::amqp("confirm.select"))?;
        let mut left = ready(channel, queue).await? as usize;
        let mut kept = Vec::new();
        let mut seen = Seen::default();
        while left > 0 {
            let taken = take(channel, queue, left.min(ROUND)).await?;
            if taken.is_empty() {
                break;
            }
            left -= taken.len();
            let mut last_tag = 0;
            let mut confirms = Vec::new();
            for (tag, message, copy) in taken {
                last_tag = tag;
                if seen.first_time(&message) && keep(&message) {
                    confirms.push(copy.publish(channel, queue).await?);
                    kept.push(message);
                }
            }
            for confirm in confirms {
                match confirm.await.map_err(RabbitError::amqp("confirm"))? {
                    Confirmation::Ack(None) | Confirmation::NotRequested => {}
                    _ => {
                        return Err(RabbitError::Invalid(format!(
                            "the broker did not take a copy back into {queue}; nothing was removed"
                        )));
                    }
                }
            }
            channel
                .basic_ack(last_tag, BasicAckOptions { multiple: true })
                .await
                .map_err(RabbitError::amqp("basic.ack"))?;
        }
        // A channel handles its frames in order: the answer to this synchronous method
        // proves the broker read the acks above before the connection is closed.
        ready(channel, queue).await?;
        Ok(kept)
    })
    .await
}

/// The messages a walk has taken, to tell a second copy of one of them.
#[derive(Default)]
struct Seen(HashSet<Fingerprint>);

/// Everything that makes a dead letter what it is, apart from the broker's delivery count.
#[derive(PartialEq, Eq, Hash)]
struct Fingerprint {
    key: Option<String>,
    headers: Vec<(String, String)>,
    native_id: Option<String>,
    payload: bytes::Bytes,
}

impl Seen {
    /// Whether no message the same as `message` in every byte was taken before.
    fn first_time(&mut self, message: &Incoming) -> bool {
        self.0.insert(Fingerprint {
            key: message.key.clone(),
            headers: message
                .headers
                .iter()
                .filter(|(name, _)| name.as_str() != DELIVERY_COUNT)
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            native_id: message.native_id.clone(),
            payload: message.payload.clone(),
        })
    }
}

/// A message as taken, to be published back unchanged.
struct Copy {
    routing_key: ShortString,
    properties: BasicProperties,
    data: Vec<u8>,
}

impl Copy {
    async fn publish(
        self,
        channel: &Channel,
        queue: &str,
    ) -> Result<lapin::PublisherConfirm, RabbitError> {
        channel
            .basic_publish(
                queue_name(queue)?,
                self.routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &self.data,
                self.properties,
            )
            .await
            .map_err(RabbitError::amqp("basic.publish"))
    }
}

/// Takes up to `n` messages, unacknowledged: `(delivery tag, message, its copy)`.
async fn take(
    channel: &Channel,
    queue: &str,
    n: usize,
) -> Result<Vec<(u64, Incoming, Copy)>, RabbitError> {
    let mut taken = Vec::with_capacity(n);
    while taken.len() < n {
        let Some(mut got) = channel
            .basic_get(queue_name(queue)?, BasicGetOptions { no_ack: false })
            .await
            .map_err(RabbitError::amqp("basic.get"))?
        else {
            break;
        };
        let delivery = &mut got.delivery;
        let mut properties = delivery.properties.clone();
        if let Some(headers) = properties.headers().as_ref() {
            // The broker's own count of this copy's deliveries starts again.
            let mut headers = headers.inner().clone();
            headers.remove(DELIVERY_COUNT);
            properties = properties.with_headers(FieldTable::from(headers));
        }
        let copy = Copy {
            routing_key: delivery.routing_key.clone(),
            properties: properties.with_delivery_mode(2),
            data: delivery.data.clone(),
        };
        let tag = delivery.delivery_tag;
        taken.push((tag, incoming(queue, delivery), copy));
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(last_failure_at: &str) -> Incoming {
        let mut message = Incoming {
            destination: "orders.dlq".into(),
            key: Some("orders".into()),
            headers: Default::default(),
            native_id: Some("7".into()),
            payload: bytes::Bytes::from_static(b"order 7"),
        };
        message.headers.insert(MESSAGE_ID_HEADER.into(), "7".into());
        message.headers.insert(
            "zerolost-dlq-last-failure-at".into(),
            last_failure_at.into(),
        );
        message
    }

    #[test]
    fn a_second_copy_of_one_dead_letter_is_told_apart_from_a_second_failure() {
        let mut seen = Seen::default();
        assert!(seen.first_time(&dead_letter("2026-12-07T08:00:00Z")));
        // The same dead letter read back with another delivery count: a copy.
        let mut copy = dead_letter("2026-12-07T08:00:00Z");
        copy.headers.insert(DELIVERY_COUNT.into(), "3".into());
        assert!(!seen.first_time(&copy));
        // The same id dead-lettered again later: another dead letter.
        assert!(seen.first_time(&dead_letter("2026-12-07T09:00:00Z")));
        let mut other_body = dead_letter("2026-12-07T08:00:00Z");
        other_body.payload = bytes::Bytes::from_static(b"order 7, fixed");
        assert!(seen.first_time(&other_body));
    }
}
