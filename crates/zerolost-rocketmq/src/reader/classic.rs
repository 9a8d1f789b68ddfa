//! The classic pull consumer: explicit offsets, nothing committed. Deprecated for consuming
//! (lite pull is preferred); for reading from explicit offsets it is the right tool.

use std::sync::Arc;

#[allow(deprecated)]
use rocketmq_client_rust::DefaultMQPullConsumer;
use rocketmq_client_rust::PullStatus;
use zerolost_core::Incoming;

use crate::error::{client, routed};
use crate::{RocketConfig, RocketError, RocketRuntime};

#[allow(deprecated)]
pub(super) type Reader = Arc<DefaultMQPullConsumer>;

/// A started pull consumer for a plaintext link.
#[allow(deprecated)]
pub(super) async fn start(
    runtime: &RocketRuntime,
    config: &RocketConfig,
) -> Result<Reader, RocketError> {
    let mut builder = DefaultMQPullConsumer::builder(runtime.client_runtime())
        .consumer_group(format!("zerolost_reader_{}", std::process::id()))
        .name_server_addr(config.name_server().to_owned());
    if let Some(keys) = config.acl_keys() {
        builder = builder.rpc_hook(Arc::new(keys.hook()));
    }
    let reader = builder.build().map_err(client("pull consumer"))?;
    Box::pin(reader.start())
        .await
        .map_err(client("pull consumer start"))?;
    Ok(Arc::new(reader))
}

#[allow(deprecated)]
pub(super) async fn read_topic(
    reader: &DefaultMQPullConsumer,
    topic: &str,
) -> Result<Vec<Incoming>, RocketError> {
    let queues = Box::pin(reader.fetch_subscribe_message_queues(topic))
        .await
        .map_err(routed("read a topic's queues", topic))?;
    let mut messages = Vec::new();
    for queue in &queues {
        let end = Box::pin(reader.max_offset(queue))
            .await
            .map_err(client("read a queue's max offset"))?;
        let mut offset = Box::pin(reader.min_offset(queue))
            .await
            .map_err(client("read a queue's min offset"))?;
        while offset < end {
            let pulled = Box::pin(reader.pull(queue, "*", offset, 256))
                .await
                .map_err(client("pull"))?;
            if !matches!(pulled.pull_status(), PullStatus::Found) {
                break;
            }
            messages.extend(
                pulled
                    .msg_found_list()
                    .unwrap_or_default()
                    .iter()
                    .map(crate::message::incoming),
            );
            let next = i64::try_from(pulled.next_begin_offset()).unwrap_or(i64::MAX);
            if next <= offset {
                break;
            }
            offset = next;
        }
    }
    Ok(messages)
}
