//! Where a link goes: the hosts of a URL or address list, whether they are this machine, and
//! the refusal of plaintext to another machine.

use crate::Error;

/// Whether `host` is this machine (`localhost`, `127.0.0.0/8`, `::1`, a Unix socket path),
/// where a plaintext link is fine.
///
/// ```
/// use zerolost_core::is_loopback_host;
/// assert!(is_loopback_host("127.0.0.1") && is_loopback_host("localhost") && is_loopback_host("[::1]"));
/// assert!(!is_loopback_host("db.internal") && !is_loopback_host("10.0.0.5"));
/// ```
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.starts_with('/') || host.is_empty() {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// The hosts a URL (`scheme://user:pass@host:port/…`) or an address list
/// (`host:port,host:port` or `;`-separated) points at.
///
/// ```
/// use zerolost_core::link_hosts;
/// assert_eq!(link_hosts("postgres://app:pw@db.internal:5432/app"), ["db.internal"]);
/// assert_eq!(link_hosts("k1:9092,127.0.0.1:9093"), ["k1", "127.0.0.1"]);
/// assert_eq!(link_hosts("amqps://[::1]:5671/%2f"), ["[::1]"]);
/// assert_eq!(link_hosts("sqlite://orders.db"), Vec::<String>::new());
/// ```
pub fn link_hosts(address: &str) -> Vec<String> {
    let rest = match address.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("sqlite") => return Vec::new(),
        Some((_, rest)) => rest,
        None => address,
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    authority
        .split([',', ';'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(host_of)
        .collect()
}

fn host_of(address: &str) -> String {
    if let Some(end) = address.find(']') {
        return address[..=end].to_owned();
    }
    address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .to_owned()
}

/// Refuses a plaintext link to another machine unless its section allows it: on a
/// network, a plaintext link shows the messages and the credentials to anyone on the path.
///
/// ```
/// use zerolost_core::refuse_remote_plaintext;
/// assert!(refuse_remote_plaintext("outbox", "postgres://db.internal/app", false, false).is_err());
/// assert!(refuse_remote_plaintext("outbox", "postgres://db.internal/app", false, true).is_ok());
/// assert!(refuse_remote_plaintext("outbox", "postgres://127.0.0.1/app", false, false).is_ok());
/// assert!(refuse_remote_plaintext("outbox", "postgres://db.internal/app", true, false).is_ok());
/// ```
pub fn refuse_remote_plaintext(
    link: &str,
    address: &str,
    encrypted: bool,
    allow_plaintext: bool,
) -> Result<(), Error> {
    if encrypted || allow_plaintext {
        return Ok(());
    }
    match link_hosts(address)
        .into_iter()
        .find(|h| !is_loopback_host(h))
    {
        None => Ok(()),
        Some(host) => Err(Error::Config(format!(
            "{link}: the link to {host} is not encrypted; turn TLS on for it (see \
             docs/configuration.md, \"TLS and secrets\"), or set `allow_plaintext = true` in \
             [{link}] if the network is private"
        ))),
    }
}
