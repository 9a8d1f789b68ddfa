//! The testkit conformance suite on the real Kafka broker over its `SASL_SSL` listener
//! (SCRAM-SHA-512, the test CA), with the in-memory stores: every contract holds on the
//! encrypted, authenticated link.

zerolost_testkit::conformance_suite!(
    backend: zerolost_kafka::testkit::KafkaBackend::single_node_sasl_ssl(),
    async { zerolost_testkit::MemoryStores::new() }
);
