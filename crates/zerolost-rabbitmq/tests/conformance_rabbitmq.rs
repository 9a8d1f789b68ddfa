//! The testkit conformance suite on a real RabbitMQ (`scripts/services/rabbitmq.sh`),
//! with the in-memory stores.

zerolost_testkit::conformance_suite!(
    backend: zerolost_rabbitmq::testkit::RabbitBackend::local(),
    async { zerolost_testkit::MemoryStores::new() }
);
