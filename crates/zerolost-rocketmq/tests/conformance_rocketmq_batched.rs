//! The testkit conformance suite on a real RocketMQ with a consume batch of 16: a listener
//! call answers for up to 16 messages, so one given back sends its batch-mates back too;
//! they must come again and be suppressed, not applied twice.

zerolost_testkit::conformance_suite!(
    backend: async {
        zerolost_rocketmq::testkit::RocketBackend::local()
            .await
            .map(|backend| zerolost_rocketmq::testkit::RocketBackend {
                config: backend.config.clone().consume_batch(16),
                ..backend
            })
    },
    async { zerolost_testkit::MemoryStores::new() }
);
