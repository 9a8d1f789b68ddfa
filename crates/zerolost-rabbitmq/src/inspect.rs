//! Reading a queue back without consuming it (tests, DLQ tools).

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use zerolost_core::{Error, Incoming};

use crate::link::connect;
use crate::subscriber::header_strings;
use crate::{RabbitConfig, RabbitError};

/// Every message ready in `queue` now, left in the queue: each is fetched with
/// `basic.get` and not acknowledged, and closing the connection puts them all back.
/// (A quorum queue counts that as one more delivery of each message.)
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_rabbitmq::{RabbitConfig, queue_contents};
/// let config = RabbitConfig::new("amqp://app:secret@127.0.0.1:5672/%2f");
/// for message in queue_contents(&config, "orders.dlq").await? {
///     println!("{:?}: {:?}", message.native_id, message.headers.get("zerolost-dlq-error"));
/// }
/// # Ok(()) }
/// ```
pub async fn queue_contents(config: &RabbitConfig, queue: &str) -> Result<Vec<Incoming>, Error> {
    let name = ShortString::try_new(queue)
        .map_err(|e| RabbitError::Invalid(format!("queue name: {e}")))?;
    let connection = connect(config).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(RabbitError::amqp("channel.open"))?;
    let mut messages = Vec::new();
    let read = async {
        while let Some(message) = channel
            .basic_get(name.clone(), BasicGetOptions { no_ack: false })
            .await
            .map_err(RabbitError::amqp("basic.get"))?
        {
            let delivery = message.delivery;
            messages.push(Incoming {
                destination: queue.to_owned(),
                key: Some(delivery.routing_key.as_str().to_owned()).filter(|k| !k.is_empty()),
                headers: delivery
                    .properties
                    .headers()
                    .as_ref()
                    .map(header_strings)
                    .unwrap_or_default(),
                native_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned()),
                payload: delivery.data.into(),
            });
        }
        Ok::<_, RabbitError>(())
    }
    .await;
    let _ = connection.close(200, "read".into()).await;
    read?;
    Ok(messages)
}

/// How many messages of `queue` are ready (not counting those delivered and not yet acked).
pub async fn queue_depth(config: &RabbitConfig, queue: &str) -> Result<u32, Error> {
    let name = ShortString::try_new(queue)
        .map_err(|e| RabbitError::Invalid(format!("queue name: {e}")))?;
    let connection = connect(config).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(RabbitError::amqp("channel.open"))?;
    let declared = channel
        .queue_declare(
            name,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(RabbitError::amqp("queue.declare (passive)"));
    let _ = connection.close(200, "read".into()).await;
    Ok(declared?.message_count())
}
