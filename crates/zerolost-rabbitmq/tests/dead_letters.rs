//! The DLQ as an operator reads it: a dead letter stored twice (a walk whose acks the broker
//! never applied) is listed once and healed to one copy; a second failure of the same id is
//! another dead letter and stays.

mod common;

use chrono::{TimeZone, Utc};
use zerolost_core::redrive::DeadLetterQueue;
use zerolost_core::{DeadLetterPublisher, DeadLetterReason, DeadLetterSink, Envelope, Failure};
use zerolost_rabbitmq::{QueueSpec, RabbitDeadLetters, RabbitPublisher};

fn failure(destination: &str, minute: u32) -> Failure {
    let at = Utc
        .with_ymd_and_hms(2026, 12, 7, 8, minute, 0)
        .single()
        .expect("time");
    Failure {
        reason: DeadLetterReason::Permanent,
        error: "bad address".into(),
        attempts: 1,
        original_destination: destination.into(),
        first_failure_at: at,
        last_failure_at: at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_stored_twice_is_listed_once_and_healed_to_one_copy() {
    let Some(config) = common::broker().await else {
        return;
    };
    let queue = common::destination(&config, "dlq-twice", QueueSpec::default()).await;
    let sink = DeadLetterPublisher::new(RabbitPublisher::new(&config).expect("publisher"));
    let twice = Envelope::new(&queue, "order 1");
    let again = Envelope::new(&queue, "order 2");
    for (envelope, minute) in [(&twice, 0), (&twice, 0), (&again, 0), (&again, 5)] {
        sink.dead_letter(envelope, &failure(&queue, minute))
            .await
            .expect("dead letter");
    }
    let dead_letters = RabbitDeadLetters::new(config.clone());
    assert_eq!(dead_letters.depth(&queue).await.expect("depth"), 4);

    for round in 0..3 {
        let mut listed: Vec<(String, String)> = dead_letters
            .list(&queue)
            .await
            .expect("list")
            .into_iter()
            .map(|m| {
                let failure = m.failure.expect("failure metadata");
                (
                    m.id.expect("id").to_string(),
                    failure.last_failure_at.to_rfc3339(),
                )
            })
            .collect();
        listed.sort();
        let mut expected = vec![
            (
                twice.id.to_string(),
                failure(&queue, 0).last_failure_at.to_rfc3339(),
            ),
            (
                again.id.to_string(),
                failure(&queue, 0).last_failure_at.to_rfc3339(),
            ),
            (
                again.id.to_string(),
                failure(&queue, 5).last_failure_at.to_rfc3339(),
            ),
        ];
        expected.sort();
        assert_eq!(listed, expected, "list {round}");
        assert_eq!(
            dead_letters.depth(&queue).await.expect("depth"),
            3,
            "after list {round}"
        );
    }
}
