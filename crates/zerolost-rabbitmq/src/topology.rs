//! The durable layout: a topic exchange per destination, a quorum queue bound to it, and
//! a dead-letter exchange and quorum queue beside it.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};
use zerolost_core::default_dlq_name;

use crate::link::with_channel;
use crate::{RabbitConfig, RabbitError};

/// How [`declare_destination`] makes a destination's queue.
///
/// ```
/// use zerolost_rabbitmq::QueueSpec;
/// let spec = QueueSpec { delivery_limit: Some(50), ..QueueSpec::default() };
/// assert!(spec.dead_letter);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    /// `x-delivery-limit`: after this many deliveries the broker itself dead-letters the
    /// message (a backstop behind the consumer's own `max_attempts`; default 20).
    pub delivery_limit: Option<u32>,
    /// Declare `<name>.dlq` (exchange and quorum queue) and make it the queue's
    /// dead-letter exchange (default true).
    pub dead_letter: bool,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            delivery_limit: Some(20),
            dead_letter: true,
        }
    }
}

fn name(value: &str) -> Result<ShortString, RabbitError> {
    if value.is_empty() {
        return Err(RabbitError::Invalid("a destination needs a name".into()));
    }
    ShortString::try_new(value)
        .map_err(|e| RabbitError::Invalid(format!("names are at most 255 bytes: {e}")))
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// Declares `name` durably: a durable topic exchange `name`, a durable **quorum** queue
/// `name` bound to it with `#` (every routing key), and with `spec.dead_letter` the
/// exchange and quorum queue `name.dlq` (where the consumer dead-letters) set as the
/// queue's dead-letter exchange (`at-least-once` strategy, which needs
/// `x-overflow=reject-publish`: a full queue nacks publishes instead of dropping old
/// messages). Idempotent; a queue that exists with other arguments is an error
/// (`PRECONDITION_FAILED`) naming it.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_rabbitmq::RabbitError> {
/// use zerolost_rabbitmq::{QueueSpec, RabbitConfig, declare_destination};
/// let config = RabbitConfig::new("amqp://app:secret@127.0.0.1:5672/%2f");
/// declare_destination(&config, "orders", QueueSpec::default()).await?; // orders, orders.dlq
/// # Ok(()) }
/// ```
pub async fn declare_destination(
    config: &RabbitConfig,
    destination: &str,
    spec: QueueSpec,
) -> Result<(), RabbitError> {
    with_channel(config, async |channel| {
        declare_on(channel, destination, spec).await
    })
    .await
}

/// Declares only a durable topic exchange `name`, with no queue bound: publishes to it are
/// unroutable until a queue is bound.
pub async fn declare_exchange(config: &RabbitConfig, exchange: &str) -> Result<(), RabbitError> {
    with_channel(config, async |channel| exchange_on(channel, exchange).await).await
}

/// Deletes what [`declare_destination`] made: queues and exchanges `name` and `name.dlq`,
/// with any messages still in them.
pub async fn delete_destination(
    config: &RabbitConfig,
    destination: &str,
) -> Result<(), RabbitError> {
    let dlq = default_dlq_name(destination);
    with_channel(config, async |channel| {
        // Deleting what does not exist succeeds: nothing to skip.
        for name_ in [destination, dlq.as_str()] {
            channel
                .queue_delete(name(name_)?, QueueDeleteOptions::default())
                .await
                .map_err(RabbitError::amqp("queue.delete"))?;
            channel
                .exchange_delete(name(name_)?, ExchangeDeleteOptions::default())
                .await
                .map_err(RabbitError::amqp("exchange.delete"))?;
        }
        Ok(())
    })
    .await
}

async fn exchange_on(channel: &Channel, exchange: &str) -> Result<(), RabbitError> {
    channel
        .exchange_declare(
            name(exchange)?,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(RabbitError::amqp("exchange.declare"))
}

async fn quorum_queue_on(
    channel: &Channel,
    queue: &str,
    mut arguments: FieldTable,
) -> Result<(), RabbitError> {
    arguments.insert("x-queue-type".into(), text("quorum"));
    channel
        .queue_declare(
            name(queue)?,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .map_err(RabbitError::amqp("queue.declare"))?;
    channel
        .queue_bind(
            name(queue)?,
            name(queue)?,
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(RabbitError::amqp("queue.bind"))
}

/// [`declare_destination`] on an open channel (the subscriber redeclares after reconnecting).
pub(crate) async fn declare_on(
    channel: &Channel,
    destination: &str,
    spec: QueueSpec,
) -> Result<(), RabbitError> {
    let mut arguments = FieldTable::default();
    if spec.dead_letter {
        let dlq = default_dlq_name(destination);
        exchange_on(channel, &dlq).await?;
        quorum_queue_on(channel, &dlq, FieldTable::default()).await?;
        arguments.insert("x-dead-letter-exchange".into(), text(&dlq));
        arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        arguments.insert("x-overflow".into(), text("reject-publish"));
    }
    if let Some(limit) = spec.delivery_limit {
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(limit)),
        );
    }
    exchange_on(channel, destination).await?;
    quorum_queue_on(channel, destination, arguments).await
}
