//! The verdict by id: lost, applied twice, dead-lettered, parked.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use zerolost_core::MessageId;

/// The end-to-end outcome of a run, by message id.
///
/// ```
/// use std::collections::{HashMap, HashSet};
/// use zerolost_core::MessageId;
/// use zerolost_testkit::Verdict;
/// let (a, b) = (MessageId::new(), MessageId::new());
/// let effects = HashMap::from([(a, 2)]);
/// let v = Verdict::compute(&[a, b], &effects, &HashSet::new(), &HashSet::new(), &HashSet::new(), &HashSet::new());
/// assert_eq!(v.lost, vec![b]);
/// assert_eq!(v.duplicate_effects, 1);
/// assert!(!v.is_clean());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Messages produced (outbox rows).
    pub produced: usize,
    /// Distinct messages whose effect was applied.
    pub processed: usize,
    /// Distinct messages in the DLQ.
    pub dead_lettered: usize,
    /// Messages parked in the outbox.
    pub parked: usize,
    /// Produced, yet neither applied, dead-lettered nor parked.
    pub lost: Vec<MessageId>,
    /// Extra applications of an effect beyond the first, summed over ids.
    pub duplicate_effects: u64,
    /// Dead-lettered though not designated poison.
    pub unexpected_dead_letters: Vec<MessageId>,
    /// Designated poison that did not reach the DLQ.
    pub poison_not_dead_lettered: Vec<MessageId>,
    /// Parked though not designated unsendable.
    pub unexpected_parked: Vec<MessageId>,
    /// Designated unsendable that was not parked.
    pub unsendable_not_parked: Vec<MessageId>,
}

impl Verdict {
    /// Computes the verdict from the produced ids, the effect counts, the DLQ's ids, the
    /// parked ids, and the designated poison and unsendable ids.
    pub fn compute(
        produced: &[MessageId],
        effects: &HashMap<MessageId, u32>,
        dead_lettered: &HashSet<MessageId>,
        parked: &HashSet<MessageId>,
        poison: &HashSet<MessageId>,
        unsendable: &HashSet<MessageId>,
    ) -> Self {
        let applied = |id: &MessageId| effects.get(id).copied().unwrap_or(0) > 0;
        let mut v = Verdict {
            produced: produced.len(),
            processed: produced.iter().filter(|id| applied(id)).count(),
            dead_lettered: dead_lettered.len(),
            parked: parked.len(),
            duplicate_effects: effects
                .values()
                .map(|n| u64::from(n.saturating_sub(1)))
                .sum(),
            ..Verdict::default()
        };
        v.lost = produced
            .iter()
            .filter(|id| !applied(id) && !dead_lettered.contains(id) && !parked.contains(id))
            .copied()
            .collect();
        v.unexpected_dead_letters = sorted(dead_lettered.difference(poison));
        v.poison_not_dead_lettered = sorted(poison.difference(dead_lettered));
        v.unexpected_parked = sorted(parked.difference(unsendable));
        v.unsendable_not_parked = sorted(unsendable.difference(parked));
        v
    }

    /// Nothing lost, nothing applied twice, and the DLQ and parked sets are exactly the
    /// designated ones.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicate_effects == 0
            && self.unexpected_dead_letters.is_empty()
            && self.poison_not_dead_lettered.is_empty()
            && self.unexpected_parked.is_empty()
            && self.unsendable_not_parked.is_empty()
    }

    /// Panics with the whole verdict unless [`is_clean`](Verdict::is_clean).
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(
            self.is_clean(),
            "the run lost or duplicated messages: {self:#?}"
        );
    }
}

fn sorted<'a>(ids: impl Iterator<Item = &'a MessageId>) -> Vec<MessageId> {
    let mut ids: Vec<_> = ids.copied().collect();
    ids.sort();
    ids
}
