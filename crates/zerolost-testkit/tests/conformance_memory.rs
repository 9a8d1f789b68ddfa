//! The conformance suite on the in-memory backend and stores.

use zerolost_testkit::{MemoryBackend, MemoryStores};

zerolost_testkit::conformance_suite!(async { MemoryBackend::new() }, async {
    MemoryStores::new()
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_redrive_once() {
    let backend = MemoryBackend::new();
    let dlq = backend.broker().clone();
    zerolost_testkit::conformance::dead_letters_redrive_once(&backend, &MemoryStores::new(), &dlq)
        .await;
}
