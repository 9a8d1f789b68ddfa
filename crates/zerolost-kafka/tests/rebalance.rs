//! A second consumer joins the group mid-stream: nothing lost, no duplicate effect, and
//! no member commits for a partition after it was revoked from it (until it gets it back).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use zerolost_core::CancellationToken;
use zerolost_core::memory::MemoryDedupe;
use zerolost_core::{
    Consumer, ConsumerConfig, DeadLetterPublisher, Envelope, Handler, HandlerError, Publisher,
};
use zerolost_kafka::{GroupEvent, KafkaPublisher, KafkaSubscriber, SubscriberOptions, TopicSpec};
use zerolost_testkit::conformance::{eventually_every, test_consumer_config};

const N: usize = 3_000;

/// Counts calls per id, slowly enough that the stream is still flowing when B joins.
#[derive(Default)]
struct SlowEffects(std::sync::Mutex<HashMap<String, usize>>);

#[async_trait]
impl Handler for SlowEffects {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        *self
            .0
            .lock()
            .expect("lock")
            .entry(envelope.id.to_string())
            .or_default() += 1;
        Ok(())
    }
}

/// After a `Revoked` of a partition, no `Committed` of it until an `Assigned` of it.
fn assert_no_commit_after_revoke(member: &str, events: &[GroupEvent]) -> usize {
    let mut revoked: HashMap<(String, i32), bool> = HashMap::new();
    let mut revocations = 0;
    for event in events {
        match event {
            GroupEvent::Assigned { topic, partition } => {
                revoked.insert((topic.clone(), *partition), false);
            }
            GroupEvent::Revoked {
                topic, partition, ..
            } => {
                revoked.insert((topic.clone(), *partition), true);
                revocations += 1;
            }
            GroupEvent::Committed {
                topic,
                partition,
                offset,
            } => {
                assert!(
                    !revoked
                        .get(&(topic.clone(), *partition))
                        .copied()
                        .unwrap_or(false),
                    "{member} committed {offset} for revoked partition {topic}/{partition}: {events:#?}"
                );
            }
        }
    }
    revocations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_stream_loses_and_doubles_nothing() {
    let Some(config) = common::single_node().await else {
        return;
    };
    let config = config.set("session.timeout.ms", "6000");
    let topic = common::topic_with_dlq(&config, "rebalance", TopicSpec::SINGLE_NODE).await;
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    let envelopes: Vec<Envelope> = (0..N)
        .map(|i| Envelope::new(&topic, format!("{i}")).with_key(format!("account-{}", i % 50)))
        .collect();
    for chunk in envelopes.chunks(500) {
        for result in publisher.publish_batch(chunk).await {
            result.expect("confirmed");
        }
    }
    let group = format!("{topic}-group");
    let effects = Arc::new(SlowEffects::default());
    let dedupe = Arc::new(MemoryDedupe::new());
    let options = SubscriberOptions {
        commit_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let start_member = |name: &'static str| {
        let subscriber =
            KafkaSubscriber::with_options(&config, &group, &[&topic], options.clone()).expect(name);
        let consumer = Consumer::new(
            dedupe.clone(),
            effects.clone(),
            DeadLetterPublisher::new(publisher.clone()),
        )
        .with_config(ConsumerConfig {
            concurrency: 4,
            ..test_consumer_config()
        })
        .expect("consumer");
        // The member runs on a borrowed subscriber, handed back open for its events.
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut subscriber = subscriber;
            let ran = consumer.run(&mut subscriber, token).await;
            (ran, subscriber)
        });
        (stop, task)
    };

    let (stop_a, running_a) = start_member("A");
    let started = Instant::now();
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(20),
        "A consuming",
        async || common::finished(&*dedupe).await >= N / 6,
    )
    .await;
    let at_join = common::finished(&*dedupe).await;
    let (stop_b, running_b) = start_member("B");
    eventually_every(
        Duration::from_secs(120).saturating_sub(started.elapsed()),
        Duration::from_millis(50),
        "every message finished",
        async || common::finished(&*dedupe).await >= N,
    )
    .await;
    let mut members = Vec::new();
    for (stop, running) in [(stop_a, running_a), (stop_b, running_b)] {
        stop.cancel();
        let (ran, subscriber) = running.await.expect("member task");
        ran.expect("member run");
        subscriber.commit().await.expect("final commit");
        members.push(subscriber);
    }
    let (member_b, member_a) = (members.pop().expect("B"), members.pop().expect("A"));
    assert!(at_join < N, "B joined mid-stream ({at_join} of {N} done)");

    let calls = effects.0.lock().expect("lock").clone();
    for envelope in &envelopes {
        assert_eq!(
            calls.get(&envelope.id.to_string()),
            Some(&1),
            "one effect for {}",
            envelope.id
        );
    }
    let revoked_from_a = assert_no_commit_after_revoke("A", &member_a.events());
    assert_no_commit_after_revoke("B", &member_b.events());
    assert!(
        revoked_from_a > 0,
        "B's arrival revoked partitions from A: {:#?}",
        member_a.events()
    );
    let b_got = member_b
        .events()
        .iter()
        .filter(|e| matches!(e, GroupEvent::Assigned { .. }))
        .count();
    assert!(b_got > 0, "B was given partitions");

    committed_offsets_are_the_ends(&config, &group, &topic);
}

/// Every partition's committed offset is its end: all done, nothing committed short.
fn committed_offsets_are_the_ends(config: &zerolost_kafka::KafkaConfig, group: &str, topic: &str) {
    let reader: BaseConsumer = config
        .consumer_config(group)
        .expect("config")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..TopicSpec::SINGLE_NODE.partitions {
        list.add_partition(topic, partition);
    }
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    for element in committed.elements() {
        let (_, high) = reader
            .fetch_watermarks(topic, element.partition(), Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!(
            element.offset(),
            Offset::Offset(high),
            "partition {} committed to its end",
            element.partition()
        );
    }
}
