//! zerolost's DLQ topic `<topic>-dlq` as an operator sees it (list, and redrive markers).

use std::sync::Arc;

use async_trait::async_trait;
use zerolost_core::redrive::{LogDeadLetters, LogReader};
use zerolost_core::{Error, Incoming};

use crate::{RocketConfig, RocketPublisher, RocketRuntime, dlq_topic, topic_contents};

struct RocketLog {
    runtime: RocketRuntime,
    config: RocketConfig,
}

#[async_trait]
impl LogReader for RocketLog {
    async fn read_all(&self, topic: &str) -> Result<Vec<Incoming>, Error> {
        Ok(topic_contents(&self.runtime, &self.config, topic).await?)
    }
}

/// zerolost's dead-letter topics (`<topic>-dlq`) on RocketMQ as a
/// [`DeadLetterQueue`](zerolost_core::redrive::DeadLetterQueue): a redrive appends a
/// marker message that hides the redriven copies (see [`LogDeadLetters`]). RocketMQ's own
/// `%DLQ%<group>` topics are not read.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::redrive::DeadLetterQueue;
/// use zerolost_rocketmq::{RocketConfig, RocketRuntime, dead_letters};
/// let runtime = RocketRuntime::shared()?;
/// let dlq = dead_letters(&runtime, &RocketConfig::new("127.0.0.1:9876")).await?;
/// println!("{} dead letters", dlq.list("orders").await?.len());
/// # Ok(()) }
/// ```
pub async fn dead_letters(
    runtime: &RocketRuntime,
    config: &RocketConfig,
) -> Result<LogDeadLetters, Error> {
    let publisher = RocketPublisher::start(runtime, config).await?;
    Ok(LogDeadLetters::new(
        RocketLog {
            runtime: runtime.clone(),
            config: config.clone(),
        },
        Arc::new(publisher),
        dlq_topic,
    ))
}
