//! # zerolost-testkit
//!
//! One behaviour suite for every zerolost backend, in the style of object_store's and
//! opendal's: a backend's tests implement [`Backend`] (and [`Stores`]) and call the
//! same [`conformance`] functions, which assert real outcomes by message id.
//!
//! ```
//! use zerolost_testkit::{MemoryBackend, MemoryStores, conformance};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! conformance::confirmed_round_trip(&MemoryBackend::new()).await;
//! conformance::redelivery_is_deduplicated(&MemoryBackend::new(), &MemoryStores::new()).await;
//! # });
//! ```
#![warn(missing_docs)]

mod backend;
pub mod conformance;
mod faults;
mod handler;
mod publishers;
pub mod scenario;
pub mod tasks;
pub mod timeline;
pub mod tls;
mod verdict;
mod withhold;

pub use backend::{
    Backend, DeadLetter, DedupeHandle, Enqueue, MemoryBackend, MemoryStores, OutboxHandle, Stores,
};
pub use faults::{FaultyPublisher, FaultySubscriber};
pub use handler::{EffectLog, RecordingHandler};
pub use publishers::{FlakyPublisher, LossyPublisher, RecordingPublisher, SwitchableDedupe};
pub use verdict::Verdict;
pub use withhold::{WithholdingSubscriber, withheld};

/// Whether tests must fail (not skip) when a server they need is missing:
/// `ZEROLOST_REQUIRE_SERVICES=1`, as CI sets it.
pub fn services_required() -> bool {
    std::env::var("ZEROLOST_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// The address of a service from `var`, else `default` (a loopback address the project's
/// `scripts/services/` use).
pub fn service_url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// What a test does when a server it needs cannot be reached: with
/// [`services_required`] it fails; otherwise it prints a loud SKIP and gets `None`.
///
/// ```
/// let connected: Result<u32, String> = Err("connection refused".into());
/// # if zerolost_testkit::services_required() { return; }
/// assert!(zerolost_testkit::require_service("postgres", connected).is_none());
/// ```
pub fn require_service<T, E: std::fmt::Display>(service: &str, result: Result<T, E>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) if services_required() => {
            panic!("{service} is required (ZEROLOST_REQUIRE_SERVICES=1) but unreachable: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n*** SKIPPED: {service} is unreachable ({e}).\n*** Start it with scripts/services/up.sh, \
                 or set ZEROLOST_REQUIRE_SERVICES=1 to make this a failure.\n"
            );
            None
        }
    }
}

static NEXT_NAME: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A broker object name no other test of this run uses: `zlt-<tag>-<pid>-<n>` (the pid lets
/// a later run find and remove what a dead test process left, see [`process_gone`]).
///
/// ```
/// let a = zerolost_testkit::fresh_name("orders");
/// assert!(a.starts_with("zlt-orders-"));
/// assert_ne!(a, zerolost_testkit::fresh_name("orders"));
/// ```
pub fn fresh_name(tag: &str) -> String {
    format!(
        "zlt-{tag}-{}-{}",
        std::process::id(),
        NEXT_NAME.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// How many copies of each id `messages` hold (read from the `zerolost-id` header, which
/// every message zerolost publishes carries; panics on one without it).
pub fn ids_of(
    messages: impl IntoIterator<Item = zerolost_core::Incoming>,
) -> std::collections::HashMap<zerolost_core::MessageId, usize> {
    let mut ids = std::collections::HashMap::new();
    for message in messages {
        let id: zerolost_core::MessageId = message
            .headers
            .get(zerolost_core::MESSAGE_ID_HEADER)
            .and_then(|v| v.parse().ok())
            .expect("every message carries its id header");
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// Runs the test `name` of the current test binary again, in a child process with `env_key`
/// set to `spec`: a crash test's victim (the child sees `env_key` and plays its part).
pub fn run_child_test(name: &str, env_key: &str, spec: &str) -> std::process::ExitStatus {
    let binary = std::env::current_exe().expect("the test binary");
    std::process::Command::new(binary)
        .args(["--exact", name, "--nocapture"])
        .env(env_key, spec)
        .status()
        .expect("run the child test")
}

/// Whether the process `pid` has ended (its test objects can be removed). `false` for this
/// process and where it cannot be told (no `/proc`).
pub fn process_gone(pid: u32) -> bool {
    std::path::Path::new("/proc/self").exists()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
