//! The push consumer: a message counts as consumed only after the pipeline acked it.

use std::sync::Arc;

use async_trait::async_trait;
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer,
    MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use tokio::sync::{mpsc, oneshot};
use zerolost_core::{Acknowledger, Delivery, Error, Incoming, Subscriber};

use crate::error::client;
use crate::{RocketConfig, RocketError, RocketRuntime};

/// What the pipeline decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// `CONSUME_SUCCESS`: the group's offset may move past it.
    Consumed,
    /// `RECONSUME_LATER`: the client sends it back; it returns through the group's
    /// `%RETRY%` topic with its reconsume times raised.
    Later,
}

/// A message on its way from the listener to the pipeline, with the way back.
struct Handed {
    message: Incoming,
    reconsume_times: u32,
    verdict: oneshot::Sender<Verdict>,
}

/// The client calls this on a blocking thread for each message (batches of one): it hands
/// the message to [`RocketSubscriber::next`] and waits for the pipeline's verdict. A
/// delivery dropped unsettled, or a subscriber gone, means `RECONSUME_LATER`.
struct Listener {
    deliveries: mpsc::Sender<Handed>,
}

impl MessageListenerConcurrently for Listener {
    fn consume_message(
        &self,
        messages: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut verdicts = Vec::with_capacity(messages.len());
        for message in messages {
            let (verdict, answer) = oneshot::channel();
            let handed = Handed {
                message: crate::message::incoming(message),
                reconsume_times: u32::try_from(message.reconsume_times()).unwrap_or(0),
                verdict,
            };
            if self.deliveries.blocking_send(handed).is_err() {
                return Ok(ConsumeConcurrentlyStatus::ReconsumeLater);
            }
            verdicts.push(answer);
        }
        // A batch counts as consumed only when every message in it was; every verdict is
        // awaited (no early return), so the batch is settled before the client acts on it.
        let mut consumed = true;
        for answer in verdicts {
            consumed &= answer.blocking_recv() == Ok(Verdict::Consumed);
        }
        Ok(if consumed {
            ConsumeConcurrentlyStatus::ConsumeSuccess
        } else {
            ConsumeConcurrentlyStatus::ReconsumeLater
        })
    }
}

/// Settles one delivery by answering its listener (the topic is shared, not copied, per
/// delivery).
struct RocketAcker {
    verdict: oneshot::Sender<Verdict>,
    topic: Arc<str>,
}

impl RocketAcker {
    fn answer(self, verdict: Verdict) -> Result<(), Error> {
        self.verdict.send(verdict).map_err(|_| {
            Error::from(RocketError::GivenBack {
                topic: self.topic.to_string(),
            })
        })
    }
}

#[async_trait]
impl Acknowledger for RocketAcker {
    async fn ack(self: Box<Self>) -> Result<(), Error> {
        self.answer(Verdict::Consumed)
    }

    /// `requeue = true` → `RECONSUME_LATER`; `false` → consumed (dropped: the pipeline has
    /// dead-lettered it itself).
    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), Error> {
        self.answer(if requeue {
            Verdict::Later
        } else {
            Verdict::Consumed
        })
    }
}

/// A clustering push consumer of one topic in one consumer group, with manual settlement:
/// each message is consumed (`CONSUME_SUCCESS`) only when its [`Delivery`] is acked; a nack
/// or a delivery dropped unsettled is `RECONSUME_LATER` (the client sends it back and it
/// returns through the group's `%RETRY%` topic, `delivery_count` raised). A new group
/// starts at each queue's first offset, so nothing published before the group existed is
/// skipped. Offsets move past a message only when it and every earlier one of its queue
/// were consumed; after a crash the rest comes again (the consumer's dedupe store
/// suppresses the second effect).
///
/// Dead-lettering is the pipeline's: after its `max_attempts` it publishes (confirmed) to
/// [`crate::dlq_topic`]. RocketMQ's own `%DLQ%<group>` receives a message only after
/// [`RocketConfig::max_reconsume_times`] (default 16), a backstop.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::Subscriber;
/// use zerolost_rocketmq::{RocketConfig, RocketRuntime, RocketSubscriber};
/// let config = RocketConfig::new("127.0.0.1:9876");
/// let mut sub = RocketSubscriber::start(&RocketRuntime::shared()?, &config, "orders", "billing").await?;
/// let delivery = sub.next().await?;
/// delivery.ack().await?;
/// # Ok(()) }
/// ```
pub struct RocketSubscriber {
    consumer: Option<DefaultMQPushConsumer>,
    deliveries: mpsc::Receiver<Handed>,
    topic: Arc<str>,
}

impl std::fmt::Debug for RocketSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocketSubscriber")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl RocketSubscriber {
    /// Starts consuming `topic` as a member of `group`. A topic without a route is refused
    /// ([`RocketError::NoRoute`]).
    pub async fn start(
        runtime: &RocketRuntime,
        config: &RocketConfig,
        topic: &str,
        group: &str,
    ) -> Result<Self, RocketError> {
        config.validate()?;
        crate::topology::check_route(runtime, config, topic).await?;
        let threads = config.consume_threads_value();
        let mut consumer = DefaultMQPushConsumer::builder(runtime.client_runtime())
            .client_config(crate::tls::client_config(config)?)
            .consumer_group(group.to_owned())
            .name_server_addr(config.name_server().to_owned())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_thread_min(threads)
            .consume_thread_max(threads)
            .consume_message_batch_max_size(config.consume_batch_value())
            .max_reconsume_times(config.max_reconsume_times_value())
            .rpc_hook(
                config
                    .acl_keys()
                    .map(|keys| std::sync::Arc::new(keys.hook()) as _),
            )
            .build();
        // The client's futures are deep types: boxed, so callers' futures stay small.
        Box::pin(consumer.subscribe(topic.to_owned(), "*"))
            .await
            .map_err(client("subscribe"))?;
        let (deliveries, receiver) = mpsc::channel(config.consume_batch_value() as usize);
        consumer.register_message_listener_concurrently(Listener { deliveries });
        Box::pin(consumer.start())
            .await
            .map_err(client("consumer start"))?;
        Ok(Self {
            consumer: Some(consumer),
            deliveries: receiver,
            topic: topic.into(),
        })
    }
}

impl Drop for RocketSubscriber {
    fn drop(&mut self) {
        if let Some(mut consumer) = self.consumer.take() {
            self.deliveries.close();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { Box::pin(consumer.shutdown()).await });
            }
        }
    }
}

#[async_trait]
impl Subscriber for RocketSubscriber {
    async fn next(&mut self) -> Result<Delivery, Error> {
        let handed =
            self.deliveries.recv().await.ok_or_else(|| {
                Error::Closed(format!("the consumer of `{}` stopped", self.topic))
            })?;
        Ok(Delivery::new(
            handed.message,
            handed.reconsume_times > 0,
            Some(handed.reconsume_times.saturating_add(1)),
            Box::new(RocketAcker {
                verdict: handed.verdict,
                topic: self.topic.clone(),
            }),
        ))
    }

    /// Leaves the group: the consumer stops, its offsets are stored, and its queues go to
    /// the other members. Messages handed out and not settled come again.
    async fn close(&mut self) -> Result<(), Error> {
        if let Some(mut consumer) = self.consumer.take() {
            self.deliveries.close();
            Box::pin(consumer.shutdown()).await;
        }
        Ok(())
    }
}
