//! What `doctor` reports about one link.

use serde::Serialize;

use crate::{Finding, Severity};

/// How one link (the outbox database, a broker, the dedupe store, the management API) is
/// secured, as `zerolost doctor --json` reports it under `links`.
///
/// ```
/// use zerolost_core::{LinkSecurity, Severity};
/// let link = LinkSecurity::new("rabbitmq", "amqp://***@mq.internal:5672/%2f");
/// let finding = link.finding().unwrap();
/// assert_eq!(finding.severity, Severity::Unsafe);
/// let link = LinkSecurity { encrypted: true, authenticated: true, cert_days_left: Some(200),
///     ..LinkSecurity::new("rabbitmq", "amqps://***@mq.internal:5671/%2f") };
/// assert!(link.finding().is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkSecurity {
    /// The config section of the link (`outbox`, `kafka`, `rabbitmq.management`, …).
    pub link: String,
    /// Where it goes, without credentials.
    pub endpoint: String,
    /// Whether the link is TLS.
    pub encrypted: bool,
    /// Whether the client proves who it is (password, SASL, client certificate, ACL key).
    pub authenticated: bool,
    /// Days until the server's certificate expires (negative: expired), when it was read.
    pub cert_days_left: Option<i64>,
    /// Whether every host of the link is this machine (loopback).
    pub loopback: bool,
    /// The config allows plaintext to another machine (`allow_plaintext = true`).
    pub plaintext_allowed: bool,
    /// What could not be checked, or why the handshake failed.
    pub note: Option<String>,
}

/// A certificate this close to its end is reported (as advice).
const RENEW_WITHIN_DAYS: i64 = 30;

impl LinkSecurity {
    /// A plaintext, unauthenticated link to `endpoint` (fill in what was found).
    pub fn new(link: impl Into<String>, endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        let loopback = super::hosts::link_hosts(&endpoint)
            .iter()
            .all(|h| super::hosts::is_loopback_host(h));
        Self {
            link: link.into(),
            endpoint,
            encrypted: false,
            authenticated: false,
            cert_days_left: None,
            loopback,
            plaintext_allowed: false,
            note: None,
        }
    }

    /// The finding this link makes, if any: plaintext to another machine is `unsafe` (unless
    /// allowed, then advice); an expired server certificate is `unsafe`; one that expires
    /// within 30 days is advice.
    pub fn finding(&self) -> Option<Finding> {
        if !self.encrypted && !self.loopback {
            return Some(Finding {
                subject: format!("link {} ({}): encryption", self.link, self.endpoint),
                found: "plaintext to another machine".into(),
                required: "TLS".into(),
                severity: if self.plaintext_allowed {
                    Severity::Advice
                } else {
                    Severity::Unsafe
                },
                fix: format!(
                    "turn TLS on for [{}] (docs/configuration.md, \"TLS and secrets\"); \
                     `allow_plaintext = true` only on a private network",
                    self.link
                ),
            });
        }
        let days = self.cert_days_left?;
        (days < RENEW_WITHIN_DAYS).then(|| Finding {
            subject: format!("link {} ({}): server certificate", self.link, self.endpoint),
            found: format!("{days} days left"),
            required: format!("at least {RENEW_WITHIN_DAYS} days"),
            severity: if days < 0 {
                Severity::Unsafe
            } else {
                Severity::Advice
            },
            fix: "renew the server's certificate".into(),
        })
    }
}
