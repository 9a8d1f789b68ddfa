//! The testkit conformance suite on the real RocketMQ broker with authentication and TLS
//! only (`scripts/services/rocketmq.sh start acl`: a client certificate of the test CA and
//! the test access keys), with the in-memory stores: every contract holds on the encrypted,
//! authenticated link.

zerolost_testkit::conformance_suite!(
    backend: zerolost_rocketmq::testkit::RocketBackend::local_secure(),
    async { zerolost_testkit::MemoryStores::new() }
);
