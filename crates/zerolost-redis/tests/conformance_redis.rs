//! The testkit conformance suite on the Redis dedupe store (over the in-memory broker).

mod common;

zerolost_testkit::conformance_suite!(stores: common::stores());
