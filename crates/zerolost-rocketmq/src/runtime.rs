//! The RocketMQ client's runtime: the client runs its tasks on a runtime it is given.

use std::sync::{Arc, OnceLock};

use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig};
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use crate::RocketError;

/// The client runtime producers and consumers share. An application that already owns a
/// RocketMQ `ClientRuntime` passes it with [`from_client`](Self::from_client); otherwise
/// [`shared`](Self::shared) starts one process-wide runtime of the client's own, kept for
/// the life of the process (its futures can be awaited from any tokio runtime).
///
/// ```no_run
/// let runtime = zerolost_rocketmq::RocketRuntime::shared().unwrap();
/// # let _ = runtime;
/// ```
#[derive(Clone)]
pub struct RocketRuntime {
    client: Arc<ClientRuntime>,
}

impl std::fmt::Debug for RocketRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocketRuntime").finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Result<RocketRuntime, String>> = OnceLock::new();
static OWNER: OnceLock<RuntimeOwner> = OnceLock::new();
static TELEMETRY: OnceLock<TelemetryRuntimeGuard> = OnceLock::new();

/// How many consume listeners may wait on the pipeline at once, and how long one may wait:
/// the push consumer runs each listener call on the runtime's metadata-I/O blocking lane,
/// sized by default for short file writes (2 per core, 30 s), too small for listeners that
/// wait for a handler.
pub(crate) const LISTENER_LANE: usize = 256;
pub(crate) const LISTENER_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn runtime_config() -> Result<RuntimeConfig, String> {
    let mut config = RuntimeConfig::default()
        .with_max_blocking_threads(LISTENER_LANE + 64)
        .map_err(|e| e.to_string())?;
    let lane = &mut config.blocking_lane_policies.metadata_io;
    lane.max_concurrency = LISTENER_LANE;
    lane.max_queue_depth = LISTENER_LANE * 4;
    lane.queue_timeout = LISTENER_WAIT;
    lane.task_timeout = LISTENER_WAIT;
    Ok(config)
}

impl RocketRuntime {
    /// Uses the application's client runtime. Its metadata-I/O blocking lane runs the push
    /// consumer's listeners, each waiting for the pipeline to settle its message: give it
    /// room for the consumer's `consume_threads` and a task timeout above the handler's
    /// longest run (the shared runtime allows 256 and 15 minutes).
    pub fn from_client(client: Arc<ClientRuntime>) -> Self {
        Self { client }
    }

    /// The process-wide client runtime, started on first use.
    pub fn shared() -> Result<Self, RocketError> {
        SHARED
            .get_or_init(|| {
                let owner = match OWNER.get() {
                    Some(owner) => owner,
                    None => {
                        let owner = RuntimeOwner::plan(runtime_config()?)
                            .map_err(|e| e.to_string())?
                            .build()
                            .map_err(|e| e.to_string())?;
                        OWNER.get_or_init(|| owner)
                    }
                };
                let telemetry = TELEMETRY.get_or_init(TelemetryRuntimeGuard::noop);
                let client = ClientRuntime::try_new(
                    owner.root_context().component("zerolost"),
                    ClientRuntimeConfig::default(),
                    telemetry.handle(),
                )
                .map_err(|e| e.to_string())?;
                Ok(Self { client })
            })
            .clone()
            .map_err(RocketError::Runtime)
    }

    /// The client runtime, for the application's own RocketMQ producers and consumers
    /// (the same lanes and threads as zerolost's).
    pub fn client_runtime(&self) -> Arc<ClientRuntime> {
        self.client.clone()
    }
}
