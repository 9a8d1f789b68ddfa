//! Which offsets of each assigned partition are done, and where it is safe to commit:
//! the lowest offset still in flight, or one past the highest received when none is.
//! Offsets of one partition arrive in order, so everything below the lowest in-flight
//! offset that was received is done.

use std::collections::{BTreeSet, HashMap};

/// A partition: topic and partition number.
pub(crate) type Partition = (String, i32);

#[derive(Debug, Default)]
struct Track {
    generation: u64,
    in_flight: BTreeSet<i64>,
    received_max: Option<i64>,
    committed: Option<i64>,
}

impl Track {
    fn commit_point(&self) -> Option<i64> {
        self.in_flight
            .first()
            .copied()
            .or(self.received_max.map(|max| max + 1))
    }
}

/// The offsets in flight per assigned partition. Each assignment of a partition gets a new
/// generation; settling an offset of an older generation (the partition was revoked while
/// the message was in flight) changes nothing, so nothing is committed past it.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    tracks: HashMap<Partition, Track>,
    next_generation: u64,
}

impl Tracker {
    /// The partition was assigned: a fresh track. Returns its generation.
    pub(crate) fn assign(&mut self, partition: Partition) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.tracks.insert(
            partition,
            Track {
                generation,
                ..Track::default()
            },
        );
        generation
    }

    /// The partition was revoked: its track is dropped; returns the offset to commit for
    /// it (done offsets only), if it moved.
    pub(crate) fn revoke(&mut self, partition: &Partition) -> Option<i64> {
        let track = self.tracks.remove(partition)?;
        track
            .commit_point()
            .filter(|point| track.committed.is_none_or(|done| *point > done))
    }

    /// The generation of an assigned partition.
    pub(crate) fn generation(&self, partition: &Partition) -> Option<u64> {
        self.tracks.get(partition).map(|t| t.generation)
    }

    /// A message at `offset` was handed out. Returns its generation (assigning the
    /// partition if the assignment callback has not been seen, as with a manual assign).
    pub(crate) fn received(&mut self, partition: &Partition, offset: i64) -> u64 {
        if !self.tracks.contains_key(partition) {
            self.assign(partition.clone());
        }
        let track = self.tracks.get_mut(partition).expect("assigned above");
        track.in_flight.insert(offset);
        track.received_max = Some(track.received_max.map_or(offset, |max| max.max(offset)));
        track.generation
    }

    /// The message at `offset` is done. Ignored when the partition was revoked since.
    pub(crate) fn done(&mut self, partition: &Partition, offset: i64, generation: u64) -> bool {
        match self.tracks.get_mut(partition) {
            Some(track) if track.generation == generation => track.in_flight.remove(&offset),
            _ => false,
        }
    }

    /// Offsets to commit now: for each partition whose commit point moved.
    pub(crate) fn to_commit(&self) -> Vec<(Partition, i64)> {
        self.tracks
            .iter()
            .filter_map(|(partition, track)| {
                let point = track.commit_point()?;
                track
                    .committed
                    .is_none_or(|done| point > done)
                    .then(|| (partition.clone(), point))
            })
            .collect()
    }

    /// Records that `offset` was committed for `partition` (if still the same generation).
    pub(crate) fn committed(&mut self, partition: &Partition, offset: i64) {
        if let Some(track) = self.tracks.get_mut(partition) {
            track.committed = Some(track.committed.map_or(offset, |c| c.max(offset)));
        }
    }

    /// Messages handed out and not yet done, over all partitions.
    pub(crate) fn in_flight(&self) -> usize {
        self.tracks.values().map(|t| t.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("orders".to_owned(), n)
    }

    #[test]
    fn commits_only_below_the_lowest_offset_in_flight() {
        let mut t = Tracker::default();
        let g = t.received(&p(0), 10);
        for offset in 11..=14 {
            t.received(&p(0), offset);
        }
        assert!(t.done(&p(0), 12, g));
        assert!(t.done(&p(0), 13, g));
        assert_eq!(t.to_commit(), vec![(p(0), 10)], "10 is still in flight");
        t.committed(&p(0), 10);
        assert!(t.to_commit().is_empty(), "nothing moved");
        assert!(t.done(&p(0), 10, g));
        assert_eq!(t.to_commit(), vec![(p(0), 11)]);
        assert!(t.done(&p(0), 11, g));
        assert!(t.done(&p(0), 14, g));
        assert_eq!(
            t.to_commit(),
            vec![(p(0), 15)],
            "all done: one past the highest"
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_revoked_partition_commits_its_done_prefix_and_ignores_late_acks() {
        let mut t = Tracker::default();
        let old = t.received(&p(1), 5);
        t.received(&p(1), 6);
        t.received(&p(1), 7);
        assert!(t.done(&p(1), 5, old));
        assert!(t.done(&p(1), 7, old));
        assert_eq!(
            t.revoke(&p(1)),
            Some(6),
            "6 is in flight: commit up to it, not past"
        );
        assert!(
            !t.done(&p(1), 6, old),
            "the late ack of a revoked partition is dropped"
        );
        let new = t.assign(p(1));
        assert_ne!(new, old);
        assert!(
            t.to_commit().is_empty(),
            "the new assignment starts from the group's offset"
        );
        t.received(&p(1), 6);
        assert!(
            !t.done(&p(1), 6, old),
            "an ack from the old generation changes nothing"
        );
        assert!(t.done(&p(1), 6, new));
        assert_eq!(t.to_commit(), vec![(p(1), 7)]);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = Tracker::default();
        let a = t.received(&p(0), 0);
        let _b = t.received(&p(1), 0);
        assert!(t.done(&p(0), 0, a));
        let commits = t.to_commit();
        assert!(commits.contains(&(p(0), 1)));
        assert!(commits.contains(&(p(1), 0)));
    }
}
