//! Client settings, with the loss-relevant ones pinned.

use std::time::Duration;

use crate::RocketError;

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
    unsafe_allowed: Option<String>,
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
            unsafe_allowed: None,
        }
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

    /// How many synchronous sends `publish_batch` keeps in flight at once (default 64).
    pub fn sends_in_flight(mut self, sends: usize) -> Self {
        self.sends_in_flight = sends;
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
