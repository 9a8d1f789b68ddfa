//! The testkit conformance suite on librdkafka's mock cluster (3 brokers, topics with 3
//! replicas): fast, no server.

mod common;

zerolost_testkit::conformance_suite!(
    async { common::KafkaBackend::mock().expect("mock cluster") },
    async { zerolost_testkit::MemoryStores::new() }
);
