//! The DLQ topic `<topic>.dlq` as an operator sees it (list, and redrive markers).

use std::sync::Arc;

use async_trait::async_trait;
use zerolost_core::redrive::{LogDeadLetters, LogReader};
use zerolost_core::{Error, Incoming, default_dlq_name};

use crate::{KafkaConfig, KafkaPublisher, topic_contents};

struct KafkaLog(KafkaConfig);

#[async_trait]
impl LogReader for KafkaLog {
    async fn read_all(&self, topic: &str) -> Result<Vec<Incoming>, Error> {
        topic_contents(&self.0, topic).await
    }
}

/// The dead-letter topics (`<topic>.dlq`) of a Kafka cluster as a
/// [`DeadLetterQueue`](zerolost_core::redrive::DeadLetterQueue): records cannot be deleted
/// from a topic, so a redrive appends a marker record that hides the redriven copies (see
/// [`LogDeadLetters`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::redrive::DeadLetterQueue;
/// use zerolost_kafka::{KafkaConfig, dead_letters};
/// let dlq = dead_letters(&KafkaConfig::new("127.0.0.1:9092"))?;
/// println!("{} dead letters", dlq.list("orders").await?.len());
/// # Ok(()) }
/// ```
pub fn dead_letters(config: &KafkaConfig) -> Result<LogDeadLetters, Error> {
    Ok(LogDeadLetters::new(
        KafkaLog(config.clone()),
        Arc::new(KafkaPublisher::new(config)?),
        default_dlq_name,
    ))
}
