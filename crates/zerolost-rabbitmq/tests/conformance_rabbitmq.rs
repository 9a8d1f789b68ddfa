//! The testkit conformance suite on a real RabbitMQ (`scripts/services/rabbitmq.sh`),
//! with the in-memory stores.

zerolost_testkit::conformance_suite!(
    backend: zerolost_rabbitmq::testkit::RabbitBackend::local(),
    async { zerolost_testkit::MemoryStores::new() }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_redrive_once() {
    let Some(backend) = zerolost_rabbitmq::testkit::RabbitBackend::local().await else {
        return;
    };
    let dlq = zerolost_rabbitmq::RabbitDeadLetters::new(backend.config.clone());
    zerolost_testkit::conformance::dead_letters_redrive_once(
        &backend,
        &zerolost_testkit::MemoryStores::new(),
        &dlq,
    )
    .await;
}
