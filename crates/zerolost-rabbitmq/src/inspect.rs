//! Reading a queue back without consuming it (tests, DLQ tools).

use lapin::options::BasicGetOptions;
use lapin::types::ShortString;
use zerolost_core::{Error, Incoming};

use crate::link::with_channel;
use crate::message::incoming;
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
    let messages = with_channel(config, async |channel| {
        let mut messages = Vec::new();
        while let Some(mut message) = channel
            .basic_get(name.clone(), BasicGetOptions { no_ack: false })
            .await
            .map_err(RabbitError::amqp("basic.get"))?
        {
            messages.push(incoming(queue, &mut message.delivery));
        }
        Ok(messages)
    })
    .await?;
    Ok(messages)
}
