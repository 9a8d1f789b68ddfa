//! Commits: each partition's contiguous done offset, every interval, on close and on
//! demand.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::debug;
use zerolost_core::Error;

use super::rebalance::Context;
use super::state::{GroupEvent, Shared};
use crate::KafkaError;

pub(super) async fn commit_loop(
    consumer: Arc<StreamConsumer<Context>>,
    shared: Arc<Shared>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = commit_done(&consumer, &shared).await {
            debug!(error = %e, "periodic commit failed; the next one retries");
        }
    }
}

/// Commits, synchronously on a blocking thread, each partition's contiguous done offset.
pub(super) async fn commit_done(
    consumer: &Arc<StreamConsumer<Context>>,
    shared: &Arc<Shared>,
) -> Result<(), Error> {
    let commits = shared.state().tracker.to_commit();
    if commits.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &commits {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|source| KafkaError::Client {
                operation: "commit",
                source,
            })?;
    }
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
        .await
        .map_err(|e| Error::backend("kafka commit task", true, e.to_string()))?
        .map_err(|source| KafkaError::Client {
            operation: "commit",
            source,
        })?;
    let mut state = shared.state();
    for ((topic, partition), offset) in commits {
        state.tracker.committed(&(topic.clone(), partition), offset);
        shared.record(GroupEvent::Committed {
            topic,
            partition,
            offset,
        });
    }
    Ok(())
}
