//! The testkit conformance suite on the Redis dedupe store over TLS (`rediss://`, the test
//! CA, an ACL user): every contract holds on the encrypted link too.

mod common;

zerolost_testkit::conformance_suite!(stores: common::tls_stores());
