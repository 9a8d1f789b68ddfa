//! A lite pull consumer as a reader, for TLS links: the topic's queues assigned, each sought
//! to its first offset, polled until every queue reached the end it had when the read began.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{ClientOptions, DefaultLitePullConsumer};
use rocketmq_model::common::message::message_queue::MessageQueue;
use zerolost_core::Incoming;

use crate::error::{client, routed};
use crate::{RocketConfig, RocketError, RocketRuntime};

/// How long one read may go without a new message before it gives up.
const STALL: Duration = Duration::from_secs(30);

/// A started lite pull consumer; one read at a time (assignments are the consumer's state).
pub(super) struct LiteReader {
    consumer: DefaultLitePullConsumer,
    one_read: tokio::sync::Mutex<()>,
}

impl LiteReader {
    /// Starts a lite pull consumer over the config's link (TLS, keys), committing nothing.
    pub(super) async fn start(
        runtime: &RocketRuntime,
        config: &RocketConfig,
    ) -> Result<Self, RocketError> {
        let settings = crate::tls::client_config(config)?;
        let use_tls = settings.is_use_tls();
        let mut builder = DefaultLitePullConsumer::builder(runtime.client_runtime())
            .client_options(ClientOptions::legacy(settings))
            .use_tls(use_tls)
            .consumer_group(format!("zerolost_reader_tls_{}", std::process::id()))
            .auto_commit(false);
        if let Some(keys) = config.acl_keys() {
            builder = builder.rpc_hook(Arc::new(keys.hook()));
        }
        let consumer = builder.build().map_err(client("lite pull consumer"))?;
        Box::pin(consumer.start())
            .await
            .map_err(client("lite pull consumer start"))?;
        Ok(Self {
            consumer,
            one_read: tokio::sync::Mutex::new(()),
        })
    }

    /// Every message of `topic` up to each queue's end at the start.
    pub(super) async fn read_topic(&self, topic: &str) -> Result<Vec<Incoming>, RocketError> {
        let _one = self.one_read.lock().await;
        let mut left = self.bounds(topic).await?;
        let queues: Vec<MessageQueue> = left.keys().cloned().collect();
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        Box::pin(self.consumer.assign(queues.clone()))
            .await
            .map_err(client("assign a topic's queues"))?;
        for (queue, (first, _)) in &left {
            Box::pin(self.consumer.seek(queue, *first))
                .await
                .map_err(client("seek a queue"))?;
        }
        let mut messages = Vec::new();
        let mut last_progress = Instant::now();
        while !left.is_empty() {
            if last_progress.elapsed() > STALL {
                return Err(RocketError::Runtime(format!(
                    "reading `{topic}` stalled: no message for {STALL:?} with {} queue(s) unread",
                    left.len()
                )));
            }
            for message in Box::pin(self.consumer.poll_with_timeout(1_000)).await {
                let queue =
                    MessageQueue::from_parts(topic, message.broker_name(), message.queue_id());
                let Some((next, end)) = left.get_mut(&queue) else {
                    continue;
                };
                if message.queue_offset() < *end && message.queue_offset() >= *next {
                    messages.push(crate::message::incoming(&message));
                    *next = message.queue_offset() + 1;
                    last_progress = Instant::now();
                }
                if *next >= *end {
                    left.remove(&queue);
                }
            }
        }
        Ok(messages)
    }

    /// The topic's queues that hold messages, each with its first offset and its end.
    async fn bounds(&self, topic: &str) -> Result<HashMap<MessageQueue, (i64, i64)>, RocketError> {
        let queues = Box::pin(self.consumer.fetch_message_queues(topic))
            .await
            .map_err(routed("read a topic's queues", topic))?;
        let mut bounds = HashMap::new();
        for queue in queues {
            let end = Box::pin(self.consumer.max_offset(&queue))
                .await
                .map_err(client("read a queue's max offset"))?;
            let first = Box::pin(self.consumer.min_offset(&queue))
                .await
                .map_err(client("read a queue's min offset"))?;
            if end > first {
                bounds.insert(queue, (first, end));
            }
        }
        Ok(bounds)
    }
}
