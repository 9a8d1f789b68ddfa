//! The client context of zerolost's Kafka clients: it keeps the last error librdkafka
//! reported about the link (a TLS handshake, a SASL login), which its own operation errors
//! leave out ("Timed out"), so an error can name its cause.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as ClientError;
use zerolost_core::{Error, LinkFailure};

use crate::{KafkaConfig, KafkaError};

/// Remembers the link's last error and logs it with its cause.
#[derive(Clone, Default)]
pub(crate) struct LinkContext {
    last: Arc<Mutex<Option<String>>>,
}

impl ClientContext for LinkContext {
    fn error(&self, error: ClientError, reason: &str) {
        // "All broker connections are down" follows the error that says why: kept only
        // when nothing better was reported.
        let text = format!("{error}: {reason}");
        if LinkFailure::classify(&text).is_some() || self.last().is_none() {
            self.remember(&text);
        }
    }

    /// librdkafka logs a failed handshake or login from its own threads (its error events
    /// wait for a poll that an admin client's caller never makes).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let serious = (level as i32) <= (RDKafkaLogLevel::Warning as i32);
        if serious && LinkFailure::classify(log_message).is_some() {
            self.remember(&format!("{fac}: {log_message}"));
        } else if serious {
            tracing::warn!(facility = fac, message = log_message, "librdkafka");
        } else {
            tracing::debug!(facility = fac, message = log_message, "librdkafka");
        }
    }
}

impl LinkContext {
    fn remember(&self, text: &str) {
        let text = zerolost_core::explain_link_error(&zerolost_core::redact_url(text));
        tracing::warn!(error = %text, "Kafka link");
        if let Ok(mut last) = self.last.lock() {
            *last = Some(text);
        }
    }

    /// `operation` failed with `source`, with the link's last error when there is one.
    pub(crate) fn failed(&self, operation: &'static str, source: ClientError) -> KafkaError {
        match self.last() {
            Some(link) => KafkaError::Link {
                operation,
                source,
                link,
            },
            None => KafkaError::Client { operation, source },
        }
    }

    /// The last link error, if one was reported.
    pub(crate) fn last(&self) -> Option<String> {
        self.last.lock().ok().and_then(|last| last.clone())
    }
}

/// Connects to the brokers of `config` the way a consumer does and reads the cluster's
/// metadata: `Ok` when the link works, else the error with its cause (an unknown CA, a
/// refused login, a plaintext port). Blocking (up to ~6 s).
fn probe(config: &KafkaConfig) -> Result<(), String> {
    let context = LinkContext::default();
    // The link's settings only: the safety rules of a consumer's own settings are not this
    // check's business (doctor reports them apart).
    let mut client = config.admin_config();
    client.set("group.id", "zerolost-link-check");
    let consumer: BaseConsumer<LinkContext> = client
        .create_with_context(context.clone())
        .map_err(|e| e.to_string())?;
    let fetched = consumer.fetch_metadata(None, Duration::from_secs(3));
    if fetched.is_ok() {
        return Ok(());
    }
    // Polling serves the client's events: its logs and errors reach the context.
    let deadline = Instant::now() + Duration::from_secs(3);
    while context.last().is_none() && Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let last = context.last();
    let named = last.as_deref().and_then(LinkFailure::classify).is_some();
    Err(match (last, fetched) {
        (_, _) if !named && plaintext_to_tls(config) => {
            zerolost_core::explain_link_error(&format!(
                "{}: no answer, and the broker speaks TLS: security.protocol is {} \
             (connecting to a SSL listener?)",
                config.brokers(),
                config.setting("security.protocol").unwrap_or("PLAINTEXT")
            ))
        }
        (Some(link), _) => with_certificate_check(config, link),
        (None, Err(e)) => e.to_string(),
        (None, Ok(_)) => "no answer".into(),
    })
}

/// A plaintext link whose broker answers a TLS handshake.
fn plaintext_to_tls(config: &KafkaConfig) -> bool {
    let protocol = config
        .setting("security.protocol")
        .unwrap_or("plaintext")
        .to_ascii_lowercase();
    if protocol.ends_with("ssl") {
        return false;
    }
    #[cfg(feature = "tls")]
    return crate::verify::speaks_tls(config);
    #[cfg(not(feature = "tls"))]
    false
}

/// librdkafka reports a failed certificate check without its reason ("certificate verify
/// failed: broker certificate could not be verified"): the same check by OpenSSL on the first
/// broker names it (unknown CA, name mismatch, expired).
fn with_certificate_check(config: &KafkaConfig, link: String) -> String {
    if !link.contains("certificate verify failed") {
        return link;
    }
    #[cfg(feature = "tls")]
    if let Some(reason) = crate::verify::certificate_problem(config) {
        return zerolost_core::explain_link_error(&format!(
            "{}; the certificate check says: {reason}",
            link.rsplit_once(" (")
                .map_or(link.as_str(), |(text, _)| text)
        ));
    }
    let _ = config;
    link
}

/// Checks that the brokers of `config` can be reached over its link (TLS, SASL): reads the
/// cluster's metadata. A failure names its cause (unknown CA, name mismatch, expired
/// certificate, bad credentials, plaintext port); retryable, since a broker may be down.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_kafka::{KafkaConfig, check_link};
/// let config = KafkaConfig::new("kafka.internal:9093")
///     .set("security.protocol", "SASL_SSL")
///     .set("sasl.mechanism", "SCRAM-SHA-512");
/// check_link(&config).await?;
/// # Ok(()) }
/// ```
pub async fn check_link(config: &KafkaConfig) -> Result<(), Error> {
    let config = config.clone();
    let shown = config.brokers().to_owned();
    tokio::task::spawn_blocking(move || probe(&config))
        .await
        .map_err(|e| Error::backend("kafka link check", true, e.to_string()))?
        .map_err(|reason| Error::unavailable(&format!("kafka {shown}"), reason))
}

/// `operation` failed with `source`: when the failure may be the link's (a timeout, a
/// transport or login failure), the link is probed and its cause added.
pub(crate) async fn explained(
    config: &KafkaConfig,
    operation: &'static str,
    source: ClientError,
) -> KafkaError {
    let config = config.clone();
    let link = tokio::task::spawn_blocking(move || probe(&config).err())
        .await
        .ok()
        .flatten();
    match link {
        Some(link) => KafkaError::Link {
            operation,
            source,
            link,
        },
        None => KafkaError::Client { operation, source },
    }
}

impl rdkafka::consumer::ConsumerContext for LinkContext {}
