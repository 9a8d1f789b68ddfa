//! The testkit conformance suite on the postgres outbox and inbox (over the in-memory broker).

mod common;

zerolost_testkit::conformance_suite!(stores: common::pg::stores());
