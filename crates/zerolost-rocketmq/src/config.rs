//! Client settings, with the loss-relevant ones pinned.

use std::time::Duration;

use zerolost_core::TlsFiles;

use crate::{AclKeys, RocketError};

/// How zerolost talks to RocketMQ.
///
/// Every publish is a synchronous send that waits for the broker's answer, and only
/// `SEND_OK` counts. Fire-and-forget sending (one-way or asynchronous without looking at
/// the result) is refused by [`validate`](RocketConfig::validate) unless
/// [`allow_unsafe`](RocketConfig::allow_unsafe) says why.
///
/// ```
/// use std::time::Duration;
/// use zerolost_rocketmq::RocketConfig;
/// let config = RocketConfig::new("127.0.0.1:9876").send_timeout(Duration::from_secs(5));
/// assert!(config.validate().is_ok());
/// assert!(RocketConfig::new("127.0.0.1:9876").fire_and_forget().validate().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct RocketConfig {
    name_server: String,
    producer_group: String,
    send_timeout: Duration,
    sends_in_flight: usize,
    fire_and_forget: bool,
    consume_threads: u32,
    consume_batch: u32,
    max_reconsume_times: i32,
    max_message_size: usize,
    unsafe_allowed: Option<String>,
    acl: Option<AclKeys>,
    tls: Option<TlsFiles>,
}

impl RocketConfig {
    /// Settings for the name server(s) at `name_server` (`host:port`, `;`-separated).
    pub fn new(name_server: impl Into<String>) -> Self {
        Self {
            name_server: name_server.into(),
            producer_group: "zerolost_producer".into(),
            send_timeout: Duration::from_secs(3),
            sends_in_flight: 64,
            fire_and_forget: false,
            consume_threads: 64,
            consume_batch: 1,
            max_reconsume_times: 16,
            max_message_size: 4 * 1024 * 1024,
            unsafe_allowed: None,
            acl: None,
            tls: None,
        }
    }

    /// Signs every request with these keys, for a broker with authentication (ACL); the
    /// secret key signs (HMAC) and is never sent. Pair it with [`tls`](Self::tls) on a
    /// network.
    ///
    /// ```
    /// use zerolost_rocketmq::{AclKeys, RocketConfig};
    /// let config = RocketConfig::new("127.0.0.1:9876").acl(AclKeys::new("relay", "s3cret"));
    /// assert!(!format!("{config:?}").contains("s3cret"));
    /// assert_eq!(config.acl_keys().map(|k| k.access_key()), Some("relay"));
    /// ```
    pub fn acl(mut self, keys: AclKeys) -> Self {
        self.acl = Some(keys);
        self
    }

    /// The ACL keys, if set.
    pub fn acl_keys(&self) -> Option<&AclKeys> {
        self.acl.as_ref()
    }

    /// Talks TLS to the name servers and brokers (needs the `tls` feature): the server's
    /// certificate checked against the CA file (the system's roots without one) and its name
    /// against the address, a client certificate sent when the files name one. Every name
    /// server and broker the client reaches must accept TLS.
    ///
    /// ```
    /// use zerolost_core::TlsFiles;
    /// use zerolost_rocketmq::RocketConfig;
    /// let config = RocketConfig::new("ns.internal:9876")
    ///     .tls(TlsFiles::default().ca("/etc/zerolost/ca.pem"));
    /// assert!(config.tls_files().is_some());
    /// ```
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The producer group (default `zerolost_producer`).
    pub fn producer_group(mut self, group: impl Into<String>) -> Self {
        self.producer_group = group.into();
        self
    }

    /// How long one synchronous send waits for the broker's answer (default 3 s); after it
    /// the message may or may not be stored, and the relay sends it again.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// How many synchronous sends `publish_batch` keeps in flight at once (default 64). The
    /// client's transport refuses requests beyond about 200 in flight per client
    /// ("admission queue saturated", retryable): keep the sum over relays sharing one
    /// publisher below that.
    pub fn sends_in_flight(mut self, sends: usize) -> Self {
        self.sends_in_flight = sends;
        self
    }

    /// How many messages a subscriber hands to the pipeline at once (default 64): each
    /// waits on a listener thread of the client runtime (the shared runtime has 256).
    pub fn consume_threads(mut self, threads: u32) -> Self {
        self.consume_threads = threads;
        self
    }

    /// How many messages one listener call hands to the pipeline (default 1). Above 1 the
    /// call's answer covers them all: one message given back (a failure, a nack) makes the
    /// client send back the whole batch, whose finished messages then come again and are
    /// suppressed as duplicates. Fewer thread hand-offs per message, more redeliveries.
    pub fn consume_batch(mut self, messages: u32) -> Self {
        self.consume_batch = messages;
        self
    }

    /// After how many `RECONSUME_LATER`s RocketMQ itself moves a message to the group's
    /// `%DLQ%` topic (default 16). A backstop: keep it above the consumer's `max_attempts`,
    /// so zerolost's own DLQ (with the failure metadata) is where poison messages go.
    pub fn max_reconsume_times(mut self, times: i32) -> Self {
        self.max_reconsume_times = times;
        self
    }

    /// The largest body sent (default 4 MiB, the broker's default `maxMessageSize`): a bigger
    /// message is refused before sending, permanently (the relay parks it with the reason).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Counts a send as done without the broker's `SEND_OK`. **Unsafe**: a message the broker
    /// never stored, or stored without flushing, counts as sent.
    pub fn fire_and_forget(mut self) -> Self {
        self.fire_and_forget = true;
        self
    }

    /// Accepts the unsafe settings above; `reason` is logged when a publisher starts.
    pub fn allow_unsafe(mut self, reason: impl Into<String>) -> Self {
        self.unsafe_allowed = Some(reason.into());
        self
    }

    /// The name server address(es).
    pub fn name_server(&self) -> &str {
        &self.name_server
    }

    pub(crate) fn group(&self) -> &str {
        &self.producer_group
    }

    pub(crate) fn send_timeout_value(&self) -> Duration {
        self.send_timeout
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.sends_in_flight
    }

    pub(crate) fn consume_threads_value(&self) -> u32 {
        self.consume_threads
    }

    pub(crate) fn consume_batch_value(&self) -> u32 {
        self.consume_batch
    }

    pub(crate) fn max_reconsume_times_value(&self) -> i32 {
        self.max_reconsume_times
    }

    pub(crate) fn max_message_size_value(&self) -> usize {
        self.max_message_size
    }

    pub(crate) fn forgets(&self) -> bool {
        self.fire_and_forget
    }

    /// The reason given to [`allow_unsafe`](Self::allow_unsafe), if any.
    pub fn unsafe_reason(&self) -> Option<&str> {
        self.unsafe_allowed.as_deref()
    }

    /// Checks the settings: the numbers can work, and nothing unsafe is set unless
    /// [`allow_unsafe`](Self::allow_unsafe) was called.
    pub fn validate(&self) -> Result<(), RocketError> {
        if self.name_server.trim().is_empty() {
            return Err(RocketError::Invalid(
                "name the name server: host:port".into(),
            ));
        }
        if self.producer_group.is_empty() {
            return Err(RocketError::Invalid(
                "the producer group needs a name".into(),
            ));
        }
        if self.sends_in_flight == 0 || self.send_timeout.is_zero() {
            return Err(RocketError::Invalid(
                "sends_in_flight and send_timeout must be above zero".into(),
            ));
        }
        if self.consume_threads == 0
            || self.consume_threads as usize > crate::runtime::LISTENER_LANE
        {
            return Err(RocketError::Invalid(format!(
                "consume_threads must be between 1 and {}",
                crate::runtime::LISTENER_LANE
            )));
        }
        if !(1..=1024).contains(&self.consume_batch) {
            return Err(RocketError::Invalid(
                "consume_batch must be between 1 and 1024".into(),
            ));
        }
        if self.max_reconsume_times < 1 {
            return Err(RocketError::Invalid(
                "max_reconsume_times must be at least 1 (it is a backstop above the consumer's \
                 max_attempts)"
                    .into(),
            ));
        }
        if self.fire_and_forget && self.unsafe_allowed.is_none() {
            return Err(RocketError::Unsafe {
                setting: "fire_and_forget".into(),
                fix: "keep synchronous sends that wait for SEND_OK (remove `fire_and_forget()`): \
                      a one-way or unchecked asynchronous send counts messages the broker never \
                      stored; or call `allow_unsafe(\"why\")`"
                    .into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_and_unworkable_settings_are_refused() {
        let error = RocketConfig::new("127.0.0.1:9876")
            .fire_and_forget()
            .validate()
            .unwrap_err();
        assert!(
            matches!(error, RocketError::Unsafe { ref setting, .. } if setting == "fire_and_forget")
        );
        assert!(!error.is_retryable());
        assert!(
            RocketConfig::new("127.0.0.1:9876")
                .fire_and_forget()
                .allow_unsafe("metrics nobody reconciles")
                .validate()
                .is_ok()
        );
        assert!(RocketConfig::new("").validate().is_err());
        assert!(
            RocketConfig::new("x:1")
                .sends_in_flight(0)
                .validate()
                .is_err()
        );
    }
}
