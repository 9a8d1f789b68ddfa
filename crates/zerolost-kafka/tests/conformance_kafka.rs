//! The testkit conformance suite on a real Apache Kafka broker
//! (`scripts/services/kafka.sh start single`), with the in-memory stores.

mod common;

zerolost_testkit::conformance_suite!(
    backend: common::KafkaBackend::single_node(),
    async { zerolost_testkit::MemoryStores::new() }
);
