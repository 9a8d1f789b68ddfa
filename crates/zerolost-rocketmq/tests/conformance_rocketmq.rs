//! The testkit conformance suite on a real RocketMQ (`scripts/services/rocketmq.sh`), with
//! the in-memory stores.

zerolost_testkit::conformance_suite!(
    backend: zerolost_rocketmq::testkit::RocketBackend::local(),
    async { zerolost_testkit::MemoryStores::new() }
);
