//! The testkit conformance suite on the mysql outbox and inbox (over the in-memory broker).

mod common;

zerolost_testkit::conformance_suite!(stores: common::mysql::stores());
