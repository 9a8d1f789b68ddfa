//! The testkit conformance suite on the real RabbitMQ over amqps (the test CA), with the
//! in-memory stores: every contract holds on the encrypted link.

zerolost_testkit::conformance_suite!(
    backend: zerolost_rabbitmq::testkit::RabbitBackend::local_tls(),
    async { zerolost_testkit::MemoryStores::new() }
);
