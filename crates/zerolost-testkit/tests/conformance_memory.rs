//! The conformance suite on the in-memory backend and stores.

use zerolost_testkit::{MemoryBackend, MemoryStores};

zerolost_testkit::conformance_suite!(async { MemoryBackend::new() }, async {
    MemoryStores::new()
});
