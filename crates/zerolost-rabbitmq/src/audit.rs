//! The durability audit through the management HTTP API: is a queue durable, a quorum
//! queue, dead-lettered, and free of settings that drop messages?

use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use zerolost_core::{Error, Finding, Severity, TlsFiles, redact_url};

use crate::RabbitError;

/// The audit of one queue: no [`Severity::Unsafe`] finding means durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// The queue.
    pub queue: String,
    /// Everything that falls short.
    pub findings: Vec<Finding>,
}

impl Audit {
    /// True when no finding can lose a message.
    pub fn is_durable(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Unsafe)
    }
}

/// The management plugin's HTTP API (`http://user:pass@host:15672`). The URL's password
/// never appears in errors or `Debug`.
///
/// ```
/// use zerolost_rabbitmq::ManagementApi;
/// let api = ManagementApi::new("http://admin:s3cret@127.0.0.1:15672", "/").unwrap();
/// assert!(!format!("{api:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct ManagementApi {
    base: String,
    authorization: Option<String>,
    vhost: String,
    shown: String,
    tls: TlsFiles,
}

impl std::fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementApi")
            .field("url", &self.shown)
            .field("vhost", &self.vhost)
            .finish()
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ManagementApi {
    /// The API at `url` (`http://user:pass@host:port`), for queues of `vhost`.
    pub fn new(url: &str, vhost: &str) -> Result<Self, RabbitError> {
        let shown = redact_url(url);
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(RabbitError::Invalid(format!(
                "management URL `{shown}` needs a scheme: http://user:pass@host:15672"
            )));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => (Some(credentials), host),
            None => (None, authority),
        };
        let authorization = credentials.map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        });
        let path = path.trim_end_matches('/');
        let base = if path.is_empty() {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}/{path}")
        };
        #[cfg(not(feature = "tls"))]
        if scheme.eq_ignore_ascii_case("https") {
            return Err(crate::tls::unsupported(&shown));
        }
        Ok(Self {
            base,
            authorization,
            vhost: vhost.to_owned(),
            shown,
            tls: TlsFiles::default(),
        })
    }

    /// The CA and client certificate of an `https://` API (without a CA file Mozilla's
    /// roots are trusted); the server's name is checked against its certificate.
    pub fn with_tls(mut self, files: TlsFiles) -> Result<Self, RabbitError> {
        files
            .check()
            .map_err(|e| RabbitError::Invalid(format!("management {e}")))?;
        if files.is_set() && !self.is_encrypted() {
            return Err(RabbitError::Invalid(format!(
                "management TLS files are set but `{}` is not https://",
                self.shown
            )));
        }
        self.tls = files;
        Ok(self)
    }

    /// Whether the API is reached over https.
    pub fn is_encrypted(&self) -> bool {
        self.base.to_ascii_lowercase().starts_with("https://")
    }

    /// Whether the calls carry credentials.
    pub fn is_authenticated(&self) -> bool {
        self.authorization.is_some()
    }

    /// The API's address without credentials.
    pub fn redacted_url(&self) -> &str {
        &self.shown
    }

    /// The HTTP client of one call: TLS settings for https.
    fn agent(&self) -> Result<ureq::Agent, RabbitError> {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false);
        #[cfg(feature = "tls")]
        let config = if self.is_encrypted() {
            config.tls_config(crate::tls::http_tls(&self.tls)?)
        } else {
            config
        };
        Ok(config.build().new_agent())
    }

    /// `GET /api/{path}`; `Ok(None)` on 404.
    async fn get(&self, path: String) -> Result<Option<Value>, Error> {
        self.request("GET", path).await
    }

    /// One API call; `Ok(None)` on 404 (and for answers without a body).
    async fn request(&self, method: &'static str, path: String) -> Result<Option<Value>, Error> {
        self.send(method, path, None).await
    }

    /// One API call with an optional JSON body (PUT); `Ok(None)` on 404 and for answers
    /// without a body.
    async fn send(
        &self,
        method: &'static str,
        path: String,
        body: Option<Value>,
    ) -> Result<Option<Value>, Error> {
        let url = format!("{}/api/{path}", self.base);
        let authorization = self.authorization.clone();
        let shown = self.shown.clone();
        let agent = self.agent()?;
        let answer = tokio::task::spawn_blocking(move || {
            let mut response = if let Some(body) = body {
                let mut request = agent.put(&url);
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                request.send_json(body)
            } else if method == "DELETE" {
                let mut request = agent.delete(&url).header("X-Reason", "zerolost");
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                request.call()
            } else {
                let mut request = agent.get(&url);
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                request.call()
            }
            .map_err(|e| {
                let text = zerolost_core::explain_link_error(&format!("{method} {path}: {e}"));
                (text, true)
            })?;
            match response.status().as_u16() {
                404 | 204 | 201 => Ok(None),
                200 => response
                    .body_mut()
                    .read_json::<Value>()
                    .map(Some)
                    .map_err(|e| (format!("{method} {path}: {e}"), true)),
                status @ (401 | 403) => Err((
                    format!("{method} {path}: HTTP {status}: the credentials are refused"),
                    false,
                )),
                status => Err((format!("{method} {path}: HTTP {status}"), true)),
            }
        })
        .await
        .map_err(|e| Error::backend("rabbitmq management", true, e.to_string()))?;
        answer.map_err(|(reason, retryable)| {
            RabbitError::Management {
                reason: format!("{shown}: {}", redact_url(&reason)),
                retryable,
            }
            .into()
        })
    }

    /// Sets the policy `name` of this vhost: `definition` (e.g. `{"delivery-limit": 2}`)
    /// on the queues whose names match `pattern` (`rabbitmqctl set_policy … --apply-to queues`).
    pub async fn set_policy(
        &self,
        name: &str,
        pattern: &str,
        definition: Value,
    ) -> Result<(), Error> {
        let body = serde_json::json!({
            "pattern": pattern,
            "definition": definition,
            "apply-to": "queues",
            "priority": 10,
        });
        let path = format!("policies/{}/{}", encode(&self.vhost), encode(name));
        self.send("PUT", path, Some(body)).await.map(|_| ())
    }

    /// Removes the policy `name` of this vhost (absent: nothing to do).
    pub async fn clear_policy(&self, name: &str) -> Result<(), Error> {
        let path = format!("policies/{}/{}", encode(&self.vhost), encode(name));
        self.request("DELETE", path).await.map(|_| ())
    }

    /// Names of the open client connections of this vhost whose `connection_name` is
    /// `client` (zerolost's own are named `zerolost`).
    pub async fn connections(&self, client: &str) -> Result<Vec<String>, Error> {
        let listed = self
            .list(format!("vhosts/{}/connections", encode(&self.vhost)))
            .await?;
        Ok(listed
            .iter()
            .filter(|c| {
                c.get("client_properties")
                    .and_then(|p| p.get("connection_name"))
                    .and_then(Value::as_str)
                    == Some(client)
            })
            .filter_map(name_of)
            .collect())
    }

    /// `GET /api/{path}` of a listing: its items (none on 404).
    async fn list(&self, path: String) -> Result<Vec<Value>, Error> {
        Ok(match self.get(path).await? {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        })
    }

    /// Names of this vhost's queues (`what = "queues"`) or exchanges (`"exchanges"`).
    pub async fn names(&self, what: &str) -> Result<Vec<String>, Error> {
        let listed = self
            .list(format!("{what}/{}?columns=name", encode(&self.vhost)))
            .await?;
        Ok(listed.iter().filter_map(name_of).collect())
    }

    /// Deletes one of this vhost's queues (`what = "queues"`) or exchanges (`"exchanges"`).
    pub async fn delete(&self, what: &str, name: &str) -> Result<(), Error> {
        self.request(
            "DELETE",
            format!("{what}/{}/{}", encode(&self.vhost), encode(name)),
        )
        .await
        .map(drop)
    }

    /// Closes a client connection from the broker's side (as an operator or a network
    /// fault would); its client sees the connection drop.
    pub async fn close_connection(&self, name: &str) -> Result<(), Error> {
        self.request("DELETE", format!("connections/{}", encode(name)))
            .await
            .map(drop)
    }

    async fn queue(&self, queue: &str) -> Result<Option<Value>, Error> {
        self.get(format!("queues/{}/{}", encode(&self.vhost), encode(queue)))
            .await
    }

    async fn exchange_exists(&self, exchange: &str) -> Result<bool, Error> {
        Ok(self
            .get(format!(
                "exchanges/{}/{}",
                encode(&self.vhost),
                encode(exchange)
            ))
            .await?
            .is_some())
    }
}

/// The `name` field of a listed item.
fn name_of(item: &Value) -> Option<String> {
    item.get("name").and_then(Value::as_str).map(str::to_owned)
}

/// A queue setting from its arguments (`x-…`) or, failing that, its effective policy.
fn setting<'a>(queue: &'a Value, argument: &str, policy_key: &str) -> Option<&'a Value> {
    queue
        .get("arguments")
        .and_then(|a| a.get(argument))
        .or_else(|| {
            queue
                .get("effective_policy_definition")
                .and_then(|p| p.get(policy_key))
        })
}

fn shown(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "none".to_owned(),
    }
}

/// Checks `queue` through the management API: durable, `x-queue-type=quorum`, a
/// dead-letter exchange that exists, no length limit that drops messages (`overflow`
/// other than `reject-publish`), no TTL without dead-lettering, a delivery limit. Each
/// finding names its fix. A queue that does not exist is `Error::Unroutable`.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_rabbitmq::{ManagementApi, audit};
/// let api = ManagementApi::new("http://admin:secret@127.0.0.1:15672", "/")?;
/// let report = audit(&api, "orders").await?;
/// for f in &report.findings {
///     println!("{:?} {}: {} (need {}): {}", f.severity, f.subject, f.found, f.required, f.fix);
/// }
/// # Ok(()) }
/// ```
pub async fn audit(api: &ManagementApi, queue: &str) -> Result<Audit, Error> {
    let Some(info) = api.queue(queue).await? else {
        return Err(Error::Unroutable {
            destination: queue.to_owned(),
        });
    };
    let mut findings = Vec::new();
    let subject = |what: &str| format!("queue {queue}: {what}");
    if info.get("durable") != Some(&Value::Bool(true)) {
        findings.push(Finding {
            subject: subject("durable"),
            found: shown(info.get("durable")),
            required: "true".into(),
            severity: Severity::Unsafe,
            fix: "a non-durable queue and its messages are gone after a broker restart: declare \
                  a durable quorum queue (zerolost_rabbitmq::declare_destination), move the \
                  consumers to it, delete this one"
                .into(),
        });
    }
    let kind = info
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("classic");
    if kind != "quorum" {
        findings.push(Finding {
            subject: subject("type"),
            found: kind.to_owned(),
            required: "quorum".into(),
            severity: Severity::Unsafe,
            fix: "a classic queue keeps its messages on one node and may not fsync before \
                  confirming: declare it with x-queue-type=quorum (declare_destination does); \
                  an existing queue cannot change type: create the quorum queue, bind it, \
                  move consumers, delete the old one"
                .into(),
        });
    }
    let dead_letter = setting(&info, "x-dead-letter-exchange", "dead-letter-exchange")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let dlq = zerolost_core::default_dlq_name(queue);
    match &dead_letter {
        None => findings.push(Finding {
            subject: subject("dead-letter exchange"),
            found: "none".into(),
            required: "a dead-letter exchange".into(),
            severity: Severity::Advice,
            fix: format!(
                "messages the broker gives up on (delivery limit, TTL, rejected) are dropped: \
                 declare with x-dead-letter-exchange={dlq}, or `rabbitmqctl set_policy DLX \
                 '^{queue}$' '{{\"dead-letter-exchange\":\"{dlq}\"}}' --apply-to queues`"
            ),
        }),
        Some(exchange) if !api.exchange_exists(exchange).await? => findings.push(Finding {
            subject: subject("dead-letter exchange"),
            found: format!("{exchange} (does not exist)"),
            required: "an existing exchange with a queue bound".into(),
            severity: Severity::Unsafe,
            fix: format!(
                "dead-lettered messages are dropped: declare exchange `{exchange}` and bind a \
                 durable quorum queue to it (declare_destination does for `{dlq}`)"
            ),
        }),
        Some(_) => {}
    }
    let limited = setting(&info, "x-max-length", "max-length").is_some()
        || setting(&info, "x-max-length-bytes", "max-length-bytes").is_some();
    let overflow = setting(&info, "x-overflow", "overflow")
        .and_then(Value::as_str)
        .unwrap_or("drop-head");
    if limited && overflow != "reject-publish" {
        findings.push(Finding {
            subject: subject("overflow"),
            found: overflow.to_owned(),
            required: "reject-publish".into(),
            severity: if dead_letter.is_some() && overflow == "drop-head" {
                Severity::Advice
            } else {
                Severity::Unsafe
            },
            fix: "a full queue drops its oldest messages: set x-overflow=reject-publish (the \
                  publisher then gets a nack and retries), or remove the length limit"
                .into(),
        });
    }
    if setting(&info, "x-message-ttl", "message-ttl").is_some() && dead_letter.is_none() {
        findings.push(Finding {
            subject: subject("message TTL"),
            found: shown(setting(&info, "x-message-ttl", "message-ttl")),
            required: "no TTL, or a dead-letter exchange".into(),
            severity: Severity::Unsafe,
            fix: "expired messages are discarded: remove the TTL or set a dead-letter exchange"
                .into(),
        });
    }
    if kind == "quorum" && setting(&info, "x-delivery-limit", "delivery-limit").is_none() {
        findings.push(Finding {
            subject: subject("delivery limit"),
            found: "none".into(),
            required: "x-delivery-limit (e.g. 20)".into(),
            severity: Severity::Advice,
            fix: "a message that crashes every consumer is redelivered forever: declare with \
                  x-delivery-limit=20, or `rabbitmqctl set_policy limit '^…$' \
                  '{\"delivery-limit\":20}' --apply-to queues`"
                .into(),
        });
    }
    Ok(Audit {
        queue: queue.to_owned(),
        findings,
    })
}

/// Checks `destination`'s dead-letter queue (`<destination>.dlq`) through the management
/// API: it exists, and nothing drops a dead letter from it. A DLQ has no dead-letter
/// exchange of its own, so a delivery limit (each return of a read message counts; RabbitMQ
/// 4 sets 20 by default), a length limit that drops, or a TTL lose dead letters for good.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_rabbitmq::{ManagementApi, audit_dead_letters};
/// let api = ManagementApi::new("http://admin:secret@127.0.0.1:15672", "/")?;
/// for f in audit_dead_letters(&api, "orders").await?.findings {
///     println!("{}: {}", f.subject, f.fix);
/// }
/// # Ok(()) }
/// ```
pub async fn audit_dead_letters(api: &ManagementApi, destination: &str) -> Result<Audit, Error> {
    let queue = zerolost_core::default_dlq_name(destination);
    let subject = |what: &str| format!("queue {queue}: {what}");
    let Some(info) = api.queue(&queue).await? else {
        return Ok(Audit {
            queue: queue.clone(),
            findings: vec![Finding {
                subject: subject("exists"),
                found: "no such queue".into(),
                required: "the dead-letter queue".into(),
                severity: Severity::Unsafe,
                fix: format!(
                    "dead letters of {destination} have nowhere to go: declare it with \
                     zerolost_rabbitmq::declare_destination (or run a consumer once)"
                ),
            }],
        });
    };
    let mut findings = Vec::new();
    let mut unsafe_setting = |what: &str, found: String, fix: &str| {
        findings.push(Finding {
            subject: subject(what),
            found,
            required: "none".into(),
            severity: Severity::Unsafe,
            fix: fix.to_owned(),
        })
    };
    if let Some(limit) = setting(&info, "x-delivery-limit", "delivery-limit") {
        unsafe_setting(
            "delivery limit",
            shown(Some(limit)),
            "each read of a dead letter that returns it counts as a delivery, and past the limit \
             it is dropped (a DLQ has no dead-letter exchange): exclude the DLQ from the policy \
             (e.g. a pattern that does not match `.dlq$`), or on RabbitMQ 4 set delivery-limit \
             to -1 (unlimited) for it",
        );
    }
    let limited = setting(&info, "x-max-length", "max-length")
        .or_else(|| setting(&info, "x-max-length-bytes", "max-length-bytes"));
    let overflow = setting(&info, "x-overflow", "overflow")
        .and_then(Value::as_str)
        .unwrap_or("drop-head");
    if limited.is_some() && overflow != "reject-publish" {
        unsafe_setting(
            "length limit",
            format!("{} with overflow {overflow}", shown(limited)),
            "a full DLQ drops its oldest dead letters: remove the limit or set overflow \
             reject-publish (the consumer then holds the message until there is room)",
        );
    }
    if let Some(ttl) = setting(&info, "x-message-ttl", "message-ttl") {
        unsafe_setting(
            "message TTL",
            shown(Some(ttl)),
            "expired dead letters are discarded: remove the TTL from the DLQ",
        );
    }
    Ok(Audit { queue, findings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_url_keeps_credentials_out_of_sight() {
        let api = ManagementApi::new("http://zl:hunter2@127.0.0.1:15672/", "/").unwrap();
        assert_eq!(api.base, "http://127.0.0.1:15672");
        assert!(
            api.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
        );
        assert!(!format!("{api:?}").contains("hunter2"));
        assert!(ManagementApi::new("127.0.0.1:15672", "/").is_err());
        assert_eq!(encode("/"), "%2F");
        assert_eq!(encode("orders.dlq"), "orders.dlq");
    }
}
