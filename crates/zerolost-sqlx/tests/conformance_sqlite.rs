//! The testkit conformance suite on the sqlite outbox and inbox (over the in-memory broker).

mod common;

zerolost_testkit::conformance_suite!(stores: common::sqlite::stores());
