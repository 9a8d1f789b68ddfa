//! The RocketMQ client's runtime: the client runs its tasks on a runtime it is given.

use std::sync::{Arc, OnceLock};

use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig};
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::RuntimeOwner;

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

impl RocketRuntime {
    /// Uses the application's client runtime.
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
                        let owner = RuntimeOwner::new().map_err(|e| e.to_string())?;
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

    pub(crate) fn client(&self) -> Arc<ClientRuntime> {
        self.client.clone()
    }
}
