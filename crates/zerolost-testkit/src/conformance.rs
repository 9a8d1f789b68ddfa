//! The conformance suite: plain async functions every backend's tests call with its own
//! [`Backend`] and [`Stores`]. Each asserts real outcomes by message id and panics with
//! the evidence when a promise is broken. [`conformance_suite!`](crate::conformance_suite)
//! turns them into one `#[tokio::test]` each.

mod consumer;
mod dead_letters;
mod delivery;
mod leases;
mod parking;
mod relay;
mod replays;
mod stores;
mod support;

pub use consumer::{
    fails_closed_when_dedupe_store_is_down, missing_id_is_dead_lettered,
    racing_consumers_apply_once, redelivery_is_deduplicated,
};
pub use dead_letters::{
    dead_letters_redrive_once, permanent_failure_dead_lettered_at_once,
    poison_dead_lettered_after_max_attempts,
};
pub use delivery::{
    closed_clients_refuse_and_hand_back, confirmed_round_trip, nack_requeue_redelivers,
    unacked_delivery_is_redelivered,
};
pub use leases::{
    Run, TimedHandler, dedupe_claims_are_renewed_and_fenced,
    failures_count_only_under_a_held_claim, lost_renewal_cancels_the_handler,
    slow_handler_keeps_its_claim,
};
pub use parking::refused_dead_letter_is_parked_and_redriven;
pub use relay::{
    reconciler_finds_and_repairs_missing, relay_retries_then_parks,
    unsendable_is_parked_with_reason,
};
pub use replays::{reconcile_respects_the_ledger_window, redrive_refuses_what_it_cannot_vouch_for};
pub use stores::{dedupe_claims_are_leased_and_tokened, outbox_leases_are_exclusive_and_tokened};
pub use support::{
    assert_applied_exactly_once, drain_on_healthy_broker, eventually, eventually_every,
    parked_reason, patient_relay_config, test_consumer_config, test_relay_config,
};

use crate::{Backend, Stores};

/// Every conformance function, one after another.
pub async fn run_all(backend: &dyn Backend, stores: &dyn Stores) {
    crate::conformance_cases!(run_all backend, stores);
}

/// One `#[tokio::test]` per conformance function. `$backend` and `$stores` are async
/// expressions evaluated in each test (a fresh backend and stores per test).
///
/// ```text
/// zerolost_testkit::conformance_suite!(async { MyBackend::connect().await }, async { MyStores::new() });
/// ```
///
/// For stores alone (an outbox and dedupe store over the in-memory broker), `$stores`
/// yields an `Option` (`None` = service unreachable, test skipped; see
/// [`require_service`](crate::require_service)):
///
/// ```text
/// zerolost_testkit::conformance_suite!(stores: async { PgStores::connect().await });
/// ```
///
/// For a backend on a server that may be missing, `$backend` yields an `Option` the same
/// way:
///
/// ```text
/// zerolost_testkit::conformance_suite!(backend: async { KafkaBackend::connect().await }, async { MemoryStores::new() });
/// ```
#[macro_export]
macro_rules! conformance_suite {
    (backend: $backend:expr, $stores:expr) => {
        $crate::conformance_cases!(backend_opt $backend, $stores);
    };
    (stores: $stores:expr) => {
        $crate::conformance_cases!(stores_opt $stores);
    };
    ($backend:expr, $stores:expr) => {
        $crate::conformance_cases!(backend $backend, $stores);
    };
}

/// The one list of conformance cases, by what each needs (the stores, a broker, or both):
/// hands every name to [`conformance_case!`](crate::conformance_case) with `mode`.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_cases {
    (@each $mode:tt stores: [$($s:ident),*] broker: [$($b:ident),*] both: [$($x:ident),*]) => {
        $($crate::conformance_case!(stores $mode $s);)*
        $($crate::conformance_case!(broker $mode $b);)*
        $($crate::conformance_case!(both $mode $x);)*
    };
    ($($mode:tt)*) => {
        $crate::conformance_cases!(@each [$($mode)*]
            stores: [
                dedupe_claims_are_leased_and_tokened,
                outbox_leases_are_exclusive_and_tokened,
                dedupe_claims_are_renewed_and_fenced
            ]
            broker: [
                confirmed_round_trip,
                unacked_delivery_is_redelivered,
                nack_requeue_redelivers,
                closed_clients_refuse_and_hand_back
            ]
            both: [
                poison_dead_lettered_after_max_attempts,
                permanent_failure_dead_lettered_at_once,
                redelivery_is_deduplicated,
                racing_consumers_apply_once,
                relay_retries_then_parks,
                unsendable_is_parked_with_reason,
                reconciler_finds_and_repairs_missing,
                missing_id_is_dead_lettered,
                fails_closed_when_dedupe_store_is_down,
                dead_letters_redrive_once,
                slow_handler_keeps_its_claim,
                lost_renewal_cancels_the_handler,
                failures_count_only_under_a_held_claim,
                reconcile_respects_the_ledger_window,
                redrive_refuses_what_it_cannot_vouch_for,
                refused_dead_letter_is_parked_and_redriven
            ]
        );
    };
}

/// One conformance case as `mode` runs it: a statement of [`run_all`], or a test.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_case {
    // In `run_all`: one call.
    (stores [run_all $backend:ident, $stores:ident] $name:ident) => {
        $crate::conformance::$name($stores).await
    };
    (broker [run_all $backend:ident, $stores:ident] $name:ident) => {
        $crate::conformance::$name($backend).await
    };
    (both [run_all $backend:ident, $stores:ident] $name:ident) => {
        $crate::conformance::$name($backend, $stores).await
    };
    // Tests on a backend and stores that are always there.
    (stores [backend $backend:expr, $stores:expr] $name:ident) => {
        $crate::conformance_case!(@test $name {
            let stores = $stores.await;
            $crate::conformance::$name(&stores).await;
        });
    };
    (broker [backend $backend:expr, $stores:expr] $name:ident) => {
        $crate::conformance_case!(@test $name {
            let backend = $backend.await;
            $crate::conformance::$name(&backend).await;
        });
    };
    (both [backend $backend:expr, $stores:expr] $name:ident) => {
        $crate::conformance_case!(@test $name {
            let backend = $backend.await;
            let stores = $stores.await;
            $crate::conformance::$name(&backend, &stores).await;
        });
    };
    // A backend on a server that may be missing (`None`: skipped).
    (stores [backend_opt $backend:expr, $stores:expr] $name:ident) => {
        $crate::conformance_case!(stores [backend $backend, $stores] $name);
    };
    (broker [backend_opt $backend:expr, $stores:expr] $name:ident) => {
        $crate::conformance_case!(@test $name {
            let Some(backend) = $backend.await else { return };
            $crate::conformance::$name(&backend).await;
        });
    };
    (both [backend_opt $backend:expr, $stores:expr] $name:ident) => {
        $crate::conformance_case!(@test $name {
            let Some(backend) = $backend.await else { return };
            let stores = $stores.await;
            $crate::conformance::$name(&backend, &stores).await;
        });
    };
    // Stores alone, over the in-memory broker; stores that may be missing (`None`: skipped).
    (stores [stores_opt $stores:expr] $name:ident) => {
        $crate::conformance_case!(@test $name {
            let Some(stores) = $stores.await else { return };
            $crate::conformance::$name(&stores).await;
        });
    };
    (broker [stores_opt $stores:expr] $name:ident) => {};
    (both [stores_opt $stores:expr] $name:ident) => {
        $crate::conformance_case!(@test $name {
            let Some(stores) = $stores.await else { return };
            let backend = $crate::MemoryBackend::new();
            $crate::conformance::$name(&backend, &stores).await;
        });
    };
    (@test $name:ident { $($body:tt)* }) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $($body)*
        }
    };
}
