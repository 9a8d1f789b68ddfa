//! The consumer context: what a rebalance does to the subscriber's state.

use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use super::state::{GroupEvent, Shared};

/// The consumer context: on revoke, commit what is done and forget the partition's
/// in-flight work; on assign, start a new generation.
pub(super) struct Context {
    pub(super) shared: Arc<Shared>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut commit = TopicPartitionList::new();
        let mut revoked_now = Vec::new();
        {
            let mut state = self.shared.state();
            for element in revoked.elements() {
                let partition = (element.topic().to_owned(), element.partition());
                let offset = state.revoke(&partition);
                if let Some(offset) = offset {
                    let _ = commit.add_partition_offset(
                        &partition.0,
                        partition.1,
                        Offset::Offset(offset),
                    );
                }
                revoked_now.push((partition, offset));
            }
        }
        let committed = commit.count() == 0
            || {
                let result = consumer.commit(&commit, CommitMode::Sync);
                if let Err(e) = &result {
                    warn!(error = %e, "commit of revoked partitions failed; their done messages come back and are deduplicated");
                }
                result.is_ok()
            };
        for ((topic, partition), offset) in revoked_now {
            self.shared.record(GroupEvent::Revoked {
                topic,
                partition,
                committed: offset.filter(|_| committed),
            });
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let mut state = self.shared.state();
            for element in assigned.elements() {
                state
                    .tracker
                    .assign((element.topic().to_owned(), element.partition()));
                self.shared.record(GroupEvent::Assigned {
                    topic: element.topic().to_owned(),
                    partition: element.partition(),
                });
            }
        }
    }
}
