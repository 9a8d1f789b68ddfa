//! How a delivery is settled: done (its offset may be committed) or handed out again.

use std::sync::Arc;

use async_trait::async_trait;
use zerolost_core::{Acknowledger, Error};

use super::state::{Pending, Shared};

/// Settles one delivery; dropped unsettled, it hands the message out again.
pub(super) struct KafkaAck {
    pub(super) shared: Arc<Shared>,
    pub(super) pending: Option<Pending>,
}

#[async_trait]
impl Acknowledger for KafkaAck {
    async fn ack(mut self: Box<Self>) -> Result<(), Error> {
        if let Some(pending) = self.pending.take() {
            self.shared.done(&pending);
        }
        Ok(())
    }

    /// `requeue = true`: handed out again (retry in place, the partition's later offsets
    /// are not committed past it). `false`: the message is given up and its offset may
    /// be committed (the consumer dead-letters before it acknowledges, so this is only
    /// reached by callers that chose to drop it).
    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), Error> {
        if let Some(pending) = self.pending.take() {
            if requeue {
                self.shared.redeliver(pending);
            } else {
                self.shared.done(&pending);
            }
        }
        Ok(())
    }
}

impl Drop for KafkaAck {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.shared.redeliver(pending);
        }
    }
}
