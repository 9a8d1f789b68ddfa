//! The subscriber's state apart from I/O: which messages are out, which wait behind their
//! key or partition (lanes), which are ready to go out again, and the group's events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use zerolost_core::Incoming;

use super::tracker::{Partition, Tracker};

/// Which messages of one partition may be handled at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Messages with the same key are handled one after another, in offset order; other
    /// keys (and keyless messages) run concurrently. The default.
    #[default]
    PerKey,
    /// One message of a partition at a time, in offset order.
    PerPartition,
    /// Any message may run at any time (the handler must not care about order).
    Unordered,
}

/// Messages of one lane run one at a time (see [`Ordering`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Lane {
    pub(super) partition: Partition,
    pub(super) generation: u64,
    pub(super) key: Option<Vec<u8>>,
}

/// A message handed out or waiting to be.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) incoming: Incoming,
    pub(super) partition: Partition,
    pub(super) offset: i64,
    pub(super) generation: u64,
    pub(super) lane: Option<Lane>,
    pub(super) deliveries: u32,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) tracker: Tracker,
    /// Messages to hand out before reading more: redeliveries and messages released from
    /// their lane.
    pub(super) ready: VecDeque<Pending>,
    /// Held lanes: a message of the lane is out; the queue holds the ones waiting.
    pub(super) lanes: HashMap<Lane, VecDeque<Pending>>,
}

impl Lane {
    /// The lane of a message under `ordering` (`None`: it runs whenever).
    pub(super) fn of(
        ordering: Ordering,
        partition: &Partition,
        generation: u64,
        key: Option<&[u8]>,
    ) -> Option<Self> {
        let key = match ordering {
            Ordering::Unordered => return None,
            Ordering::PerPartition => None,
            Ordering::PerKey => Some(key?.to_vec()),
        };
        Some(Self {
            partition: partition.clone(),
            generation,
            key,
        })
    }
}

impl State {
    /// Takes a message in; returns it if it may go out now (its lane is free), else it
    /// waits in its lane.
    pub(super) fn admit(&mut self, pending: Pending) -> Option<Pending> {
        let Some(lane) = pending.lane.clone() else {
            return Some(pending);
        };
        match self.lanes.get_mut(&lane) {
            Some(waiting) => {
                waiting.push_back(pending);
                None
            }
            None => {
                self.lanes.insert(lane, VecDeque::new());
                Some(pending)
            }
        }
    }

    /// The next message ready to go out again, skipping those of revoked partitions.
    pub(super) fn take_ready(&mut self) -> Option<Pending> {
        while let Some(pending) = self.ready.pop_front() {
            if self.current(&pending) {
                return Some(pending);
            }
        }
        None
    }

    /// Forgets everything of a revoked partition except its commit point (returned).
    pub(super) fn revoke(&mut self, partition: &Partition) -> Option<i64> {
        self.ready.retain(|p| &p.partition != partition);
        self.lanes.retain(|lane, _| &lane.partition != partition);
        self.tracker.revoke(partition)
    }

    pub(super) fn current(&self, pending: &Pending) -> bool {
        self.tracker.generation(&pending.partition) == Some(pending.generation)
    }
}

/// What happened to this member's partitions, in order (see [`KafkaSubscriber::events`](super::KafkaSubscriber::events)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// The group gave this member the partition.
    Assigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// The group took the partition away; `committed` is what was committed for it then.
    Revoked {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The done offset committed on revoke, if it moved.
        committed: Option<i64>,
    },
    /// This member committed `offset` (the next offset to read) for the partition.
    Committed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The committed offset.
        offset: i64,
    },
}

/// How many events a subscriber remembers (the oldest are dropped).
const MAX_EVENTS: usize = 10_000;

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) wake: Notify,
    pub(super) events: Mutex<VecDeque<GroupEvent>>,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The events recorded so far, oldest first.
    pub(super) fn events(&self) -> Vec<GroupEvent> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().cloned().collect()
    }

    pub(super) fn record(&self, event: GroupEvent) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The message is done: its offset may be committed, its lane's next message goes out.
    pub(super) fn done(&self, pending: &Pending) {
        let mut state = self.state();
        if !state
            .tracker
            .done(&pending.partition, pending.offset, pending.generation)
        {
            return; // revoked meanwhile: nothing of it is ours any more
        }
        let Some(lane) = &pending.lane else {
            return;
        };
        match state.lanes.get_mut(lane).and_then(VecDeque::pop_front) {
            Some(next) => {
                state.ready.push_back(next);
                drop(state);
                self.wake.notify_one(); // the lane's next message is ready to go out
            }
            None => {
                state.lanes.remove(lane);
            }
        }
    }

    /// The message goes out again (its lane stays held, so order is kept).
    pub(super) fn redeliver(&self, mut pending: Pending) {
        let mut state = self.state();
        if !state.current(&pending) {
            return;
        }
        pending.deliveries += 1;
        state.ready.push_back(pending);
        drop(state);
        self.wake.notify_one();
    }
}
