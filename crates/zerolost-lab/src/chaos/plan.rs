//! The seeded fault schedule of a chaos run: which faults, in what order, at what point of
//! the production. The same seed and setup give the same plan.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One kind of fault the chaos run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// kill -9 of a relay process while it has rows leased; restarted after a pause.
    RelayKill,
    /// kill -9 of a consumer process right after a handler's work committed, before its
    /// ack; restarted after a pause.
    ConsumerKill,
    /// kill -9 of the broker and a restart on the same data (Kafka: the node leading
    /// partition 0 of the topic).
    BrokerKill,
    /// Kafka: two of the three nodes down for a while (no quorum, no in-sync majority).
    BrokersDown,
    /// A proxied TCP link (database, Redis, RabbitMQ) refused for a while: open
    /// connections are cut, new ones refused.
    NetworkCut,
    /// Latency added to a proxied TCP link for a while.
    NetworkLatency,
    /// The Redis dedupe store restarted.
    RedisRestart,
    /// The SQL database (outbox and inbox) restarted.
    DatabaseRestart,
    /// A consumer frozen (SIGSTOP) longer than its claim lease while it holds claims, then
    /// resumed (SIGCONT): another consumer takes its messages over meanwhile.
    ConsumerPause,
    /// One consumer's own link to its dedupe store (Redis, or the database of its inbox)
    /// refused longer than its claim lease; the other consumer's link and the relays' stay.
    StoreCut,
    /// kill -9 of Redis and a restart on its append-only file; the messages handled just
    /// before are delivered again.
    RedisKill,
}

impl FaultKind {
    /// The name in the JSON and the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::RelayKill => "relay_kill",
            Self::ConsumerKill => "consumer_kill",
            Self::BrokerKill => "broker_kill",
            Self::BrokersDown => "brokers_down",
            Self::NetworkCut => "network_cut",
            Self::NetworkLatency => "network_latency",
            Self::RedisRestart => "redis_restart",
            Self::DatabaseRestart => "database_restart",
            Self::ConsumerPause => "consumer_pause",
            Self::StoreCut => "store_cut",
            Self::RedisKill => "redis_kill",
        }
    }
}

/// A fault of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    /// Injected once this fraction of the messages has been produced.
    pub at: f64,
    /// What.
    pub kind: FaultKind,
    /// Which one of several targets (relay, consumer, proxied link, Kafka node), as an
    /// index the injector reduces modulo the number of targets.
    pub target: usize,
}

/// `count` faults drawn from `kinds`: every kind once (in a seeded order) while the count
/// allows, then seeded picks; spread over 5–90 % of the production. The first `required`
/// kinds are always among them while the count allows (a run of few faults still tests
/// them).
pub fn plan(seed: u64, count: usize, kinds: &[FaultKind], required: usize) -> Vec<Planned> {
    if kinds.is_empty() || count == 0 {
        return Vec::new();
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut order: Vec<FaultKind> = kinds.to_vec();
    order.shuffle(&mut rng);
    let mut chosen: Vec<FaultKind> = order
        .iter()
        .copied()
        .cycle()
        .take(count.min(kinds.len()))
        .collect();
    while chosen.len() < count {
        chosen.push(kinds[rng.random_range(0..kinds.len())]);
    }
    let required = &kinds[..required.min(kinds.len()).min(count)];
    for kind in required {
        if chosen.contains(kind) {
            continue;
        }
        let free: Vec<usize> = (0..chosen.len())
            .filter(|&i| !required.contains(&chosen[i]))
            .collect();
        chosen[free[rng.random_range(0..free.len())]] = *kind;
    }
    let step = 0.85 / count as f64;
    chosen
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Planned {
            at: 0.05 + step * (i as f64 + rng.random_range(0.0..0.8)),
            kind,
            target: rng.random_range(0..1_000),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FaultKind; 4] = [
        FaultKind::RelayKill,
        FaultKind::ConsumerKill,
        FaultKind::BrokerKill,
        FaultKind::NetworkCut,
    ];

    #[test]
    fn a_seed_gives_one_plan_with_every_kind_and_rising_points() {
        let a = plan(7, 10, &ALL, 1);
        assert_eq!(a, plan(7, 10, &ALL, 1), "same seed, same plan");
        assert_ne!(a, plan(8, 10, &ALL, 1), "another seed, another plan");
        assert_eq!(a.len(), 10);
        for kind in ALL {
            assert!(a.iter().any(|p| p.kind == kind), "{kind:?} planned");
        }
        assert!(a.windows(2).all(|w| w[0].at < w[1].at), "{a:?}");
        assert!(a.iter().all(|p| (0.05..0.9).contains(&p.at)), "{a:?}");
    }

    #[test]
    fn the_required_kinds_are_always_planned() {
        for seed in 0..50 {
            let planned = plan(seed, 2, &ALL, 2);
            for kind in &ALL[..2] {
                assert!(planned.iter().any(|p| p.kind == *kind), "seed {seed}");
            }
            let one = plan(seed, 1, &ALL, 2);
            assert_eq!(one.len(), 1);
            assert_eq!(
                one[0].kind, ALL[0],
                "seed {seed}: the first when only one fits"
            );
        }
    }

    #[test]
    fn fewer_faults_than_kinds_are_all_different() {
        let a = plan(1, 3, &ALL, 1);
        let mut kinds: Vec<_> = a.iter().map(|p| p.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), 3);
        assert!(plan(1, 5, &[], 1).is_empty());
    }
}
