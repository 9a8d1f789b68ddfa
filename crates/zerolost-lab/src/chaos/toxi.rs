//! Toxiproxy's HTTP API (`scripts/services/toxiproxy.sh`): TCP proxies the run's child
//! processes connect through, cut and slowed on the fault schedule.

use serde_json::json;
use zerolost_core::Error;

/// The API at `ZEROLOST_TOXIPROXY_URL`, else the service script's port.
pub fn api() -> String {
    zerolost_testkit::service_url("ZEROLOST_TOXIPROXY_URL", "http://127.0.0.1:58474")
}

const LATENCY: &str = "chaos_latency";

fn error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable("toxiproxy", format!("{what}: {e}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error("the API call did not finish", e))?
}

/// Creates the proxy `name` from `listen` to `upstream`, replacing one of that name.
pub async fn create(name: &str, listen: &str, upstream: &str) -> Result<(), Error> {
    let (api, name) = (api(), name.to_owned());
    let body = json!({"name": name, "listen": listen, "upstream": upstream, "enabled": true});
    blocking(move || {
        let _ = ureq::delete(&format!("{api}/proxies/{name}")).call();
        ureq::post(&format!("{api}/proxies"))
            .send_json(&body)
            .map_err(|e| error(&format!("create proxy {name} (is toxiproxy running? scripts/services/toxiproxy.sh start)"), e))?;
        Ok(())
    })
    .await
}

/// Opens (`true`) or cuts (`false`) the proxy: cutting closes its connections and refuses
/// new ones.
pub async fn set_enabled(name: &str, enabled: bool) -> Result<(), Error> {
    let (api, name) = (api(), name.to_owned());
    blocking(move || {
        ureq::post(&format!("{api}/proxies/{name}"))
            .send_json(json!({"enabled": enabled}))
            .map_err(|e| error(&format!("switch proxy {name}"), e))?;
        Ok(())
    })
    .await
}

/// Adds `ms` ± `jitter` of latency to the proxy's answers.
pub async fn add_latency(name: &str, ms: u64, jitter: u64) -> Result<(), Error> {
    let (api, name) = (api(), name.to_owned());
    let body = json!({"name": LATENCY, "type": "latency", "stream": "downstream",
        "attributes": {"latency": ms, "jitter": jitter}});
    blocking(move || {
        ureq::post(&format!("{api}/proxies/{name}/toxics"))
            .send_json(&body)
            .map_err(|e| error(&format!("add latency to {name}"), e))?;
        Ok(())
    })
    .await
}

/// Removes the latency of [`add_latency`].
pub async fn remove_latency(name: &str) -> Result<(), Error> {
    let (api, name) = (api(), name.to_owned());
    blocking(move || {
        ureq::delete(&format!("{api}/proxies/{name}/toxics/{LATENCY}"))
            .call()
            .map_err(|e| error(&format!("remove the latency of {name}"), e))?;
        Ok(())
    })
    .await
}

/// Deletes the proxy (best effort).
pub async fn delete(name: &str) {
    let (api, name) = (api(), name.to_owned());
    let _ = blocking(move || {
        let _ = ureq::delete(&format!("{api}/proxies/{name}")).call();
        Ok(())
    })
    .await;
}
