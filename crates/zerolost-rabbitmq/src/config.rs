//! Client settings, with the loss-relevant ones pinned.

use std::fmt;
use std::time::Duration;

use lapin::uri::AMQPUri;
use zerolost_core::{TlsFiles, redact_url};

use crate::RabbitError;

/// How zerolost talks to a RabbitMQ broker.
///
/// Publisher confirms and persistent messages are on; turning either off is refused by
/// [`validate`](RabbitConfig::validate) (and so by every publisher) unless
/// [`allow_unsafe`](RabbitConfig::allow_unsafe) says why. `Debug` and every error show the
/// URL without its password.
///
/// ```
/// use std::time::Duration;
/// use zerolost_rabbitmq::RabbitConfig;
///
/// let config = RabbitConfig::new("amqp://app:s3cret@127.0.0.1:5672/%2f")
///     .prefetch(200)
///     .confirm_timeout(Duration::from_secs(10));
/// assert!(config.validate().is_ok());
/// assert!(!format!("{config:?}").contains("s3cret"));
/// assert!(RabbitConfig::new("amqp://localhost").without_confirms().validate().is_err());
/// ```
#[derive(Clone)]
pub struct RabbitConfig {
    url: String,
    prefetch: u16,
    confirm_timeout: Duration,
    connect_timeout: Duration,
    publisher_channels: usize,
    max_message_size: usize,
    confirms: bool,
    persistent: bool,
    unsafe_allowed: Option<String>,
    tls: TlsFiles,
}

impl RabbitConfig {
    /// Settings for the broker at `url` (`amqp://user:pass@host:port/vhost`; a vhost of `/`
    /// is written `%2f`). A `heartbeat` of 10 s is added when the URL sets none, so a
    /// silently dead connection is noticed in seconds.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefetch: 100,
            confirm_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            publisher_channels: 4,
            max_message_size: 128 * 1024 * 1024,
            confirms: true,
            persistent: true,
            unsafe_allowed: None,
            tls: TlsFiles::default(),
        }
    }

    /// The CA and client certificate of an `amqps://` URL (needs the `tls` feature). The
    /// server's name is checked against its certificate; without a CA file the system's
    /// roots are trusted.
    ///
    /// ```
    /// use zerolost_core::TlsFiles;
    /// use zerolost_rabbitmq::RabbitConfig;
    /// let config = RabbitConfig::new("amqps://app:s3cret@mq.internal:5671/%2f")
    ///     .tls(TlsFiles::default().ca("/etc/zerolost/ca.pem"));
    /// assert!(config.is_encrypted());
    /// // TLS files with a plaintext URL are a mistake, not a silent downgrade:
    /// let plain = RabbitConfig::new("amqp://mq.internal").tls(TlsFiles::default().ca("ca.pem"));
    /// assert!(plain.validate().unwrap_err().to_string().contains("amqps://"));
    /// ```
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = files;
        self
    }

    /// The TLS files set by [`tls`](Self::tls).
    pub fn tls_files(&self) -> &TlsFiles {
        &self.tls
    }

    /// Whether the AMQP link is TLS (`amqps://`).
    pub fn is_encrypted(&self) -> bool {
        self.url
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("amqps://")
    }

    /// How many unacknowledged deliveries a consumer holds at once (`basic.qos`; default 100).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// How long a publish waits for the broker's confirm before it is reported retryable
    /// (default 30 s).
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// How long connecting may take (default 5 s). Also bounds an ack or nack: one not
    /// written within it is reported failed (the connection is dead; the broker redelivers
    /// the message and the consumer suppresses the duplicate).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many confirm-mode channels a publisher spreads concurrent batches over (default 4).
    pub fn publisher_channels(mut self, channels: usize) -> Self {
        self.publisher_channels = channels;
        self
    }

    /// The broker's `max_message_size` (default 128 MiB, RabbitMQ's default): a larger
    /// message is refused before it is sent (a permanent error: the relay parks it), instead
    /// of making the broker close the channel on every attempt.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Publishes without waiting for publisher confirms. **Unsafe**: a message lost on the
    /// way to the broker, or by a broker crash before it was written, goes unnoticed.
    pub fn without_confirms(mut self) -> Self {
        self.confirms = false;
        self
    }

    /// Publishes transient messages (`delivery_mode=1`). **Unsafe**: a broker restart loses
    /// them.
    pub fn transient(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Accepts the unsafe settings above; `reason` is logged when a publisher starts.
    pub fn allow_unsafe(mut self, reason: impl Into<String>) -> Self {
        self.unsafe_allowed = Some(reason.into());
        self
    }

    /// The broker's address without credentials.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The consumer prefetch.
    pub fn prefetch_count(&self) -> u16 {
        self.prefetch
    }

    /// The confirm timeout.
    pub fn confirm_timeout_value(&self) -> Duration {
        self.confirm_timeout
    }

    /// Whether publishes wait for confirms.
    pub fn confirms(&self) -> bool {
        self.confirms
    }

    /// Whether messages are persistent.
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    pub(crate) fn connect_timeout_value(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn max_message_bytes(&self) -> usize {
        self.max_message_size
    }

    pub(crate) fn publisher_channel_count(&self) -> usize {
        self.publisher_channels
    }

    /// Checks the settings: the URL parses, the numbers can work, and nothing unsafe is set
    /// unless [`allow_unsafe`](Self::allow_unsafe) was called.
    pub fn validate(&self) -> Result<(), RabbitError> {
        self.uri()?;
        if self.tls.is_set() && !self.is_encrypted() {
            return Err(RabbitError::Invalid(format!(
                "TLS files are set but `{}` is not TLS: use amqps:// (usually port 5671)",
                self.redacted_url()
            )));
        }
        #[cfg(not(feature = "tls"))]
        if self.is_encrypted() {
            return Err(crate::tls::unsupported(&self.redacted_url()));
        }
        self.tls
            .check()
            .map_err(|e| RabbitError::Invalid(e.to_string()))?;
        if self.prefetch == 0 {
            return Err(RabbitError::Invalid(
                "prefetch 0 means unlimited: one consumer would hold the whole queue; set 1..=65535"
                    .into(),
            ));
        }
        if self.max_message_size == 0 {
            return Err(RabbitError::Invalid(
                "max_message_size must be at least 1 byte".into(),
            ));
        }
        if self.publisher_channels == 0 {
            return Err(RabbitError::Invalid(
                "publisher_channels must be at least 1".into(),
            ));
        }
        if self.confirm_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(RabbitError::Invalid(
                "confirm_timeout and connect_timeout must be above zero".into(),
            ));
        }
        if self.unsafe_allowed.is_some() {
            return Ok(());
        }
        if !self.confirms {
            return Err(RabbitError::Unsafe {
                setting: "confirms".into(),
                fix: "keep publisher confirms on (remove `without_confirms()`): without them a \
                      message the broker never stored counts as sent; or call \
                      `allow_unsafe(\"why\")`"
                    .into(),
            });
        }
        if !self.persistent {
            return Err(RabbitError::Unsafe {
                setting: "delivery_mode".into(),
                fix: "keep messages persistent (remove `transient()`): transient messages are \
                      lost when the broker restarts; or call `allow_unsafe(\"why\")`"
                    .into(),
            });
        }
        Ok(())
    }

    /// The reason given to [`allow_unsafe`](Self::allow_unsafe), if any.
    pub fn unsafe_reason(&self) -> Option<&str> {
        self.unsafe_allowed.as_deref()
    }

    /// The parsed URL, with a 10 s heartbeat when it sets none.
    pub(crate) fn uri(&self) -> Result<AMQPUri, RabbitError> {
        let mut uri: AMQPUri = self.url.parse().map_err(|e: String| {
            RabbitError::Invalid(format!(
                "RabbitMQ URL `{}`: {}",
                self.redacted_url(),
                redact_url(&e)
            ))
        })?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(10);
        }
        Ok(uri)
    }
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &self.redacted_url())
            .field("prefetch", &self.prefetch)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("publisher_channels", &self.publisher_channels)
            .field("max_message_size", &self.max_message_size)
            .field("confirms", &self.confirms)
            .field("persistent", &self.persistent)
            .field("unsafe_allowed", &self.unsafe_allowed)
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_settings_are_refused_with_the_setting_named() {
        let url = "amqp://app:hunter2@localhost:5672/%2f";
        let err = RabbitConfig::new(url)
            .without_confirms()
            .validate()
            .unwrap_err();
        assert!(matches!(err, RabbitError::Unsafe { ref setting, .. } if setting == "confirms"));
        let err = RabbitConfig::new(url).transient().validate().unwrap_err();
        assert!(
            matches!(err, RabbitError::Unsafe { ref setting, .. } if setting == "delivery_mode")
        );
        assert!(!err.to_string().contains("hunter2"));
        assert!(
            RabbitConfig::new(url)
                .transient()
                .without_confirms()
                .allow_unsafe("load test of a throwaway queue")
                .validate()
                .is_ok()
        );
        assert!(RabbitConfig::new(url).prefetch(0).validate().is_err());
        assert!(
            RabbitConfig::new(url)
                .publisher_channels(0)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        let err = RabbitConfig::new("amqp://app:hunter2@localhost:notaport/x")
            .validate()
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!err.is_retryable());
    }

    #[test]
    fn heartbeat_defaults_to_ten_seconds() {
        let uri = RabbitConfig::new("amqp://localhost").uri().unwrap();
        assert_eq!(uri.query.heartbeat, Some(10));
        let uri = RabbitConfig::new("amqp://localhost/%2f?heartbeat=30")
            .uri()
            .unwrap();
        assert_eq!(uri.query.heartbeat, Some(30));
    }
}
