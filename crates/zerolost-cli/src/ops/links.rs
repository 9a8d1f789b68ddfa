//! `doctor`'s link report: per configured link, whether it is encrypted and authenticated,
//! and (with the `tls` feature) how many days the server's certificate has left.

use zerolost_core::{LinkSecurity, TlsFiles, link_hosts, redact_url};

use crate::config::Config;
use crate::links::sql_encrypted;

/// A link to report: its section, address, what the config says, and where to probe.
struct Link {
    section: &'static str,
    address: String,
    encrypted: bool,
    authenticated: bool,
    allowed: bool,
    tls: TlsFiles,
    probe: Option<Probe>,
}

/// Where and how the certificate is read.
#[derive(Clone, Copy)]
enum Probe {
    Direct,
    Postgres,
}

/// The links of `config`, each checked.
pub async fn report(config: &Config) -> Vec<LinkSecurity> {
    let mut out = Vec::new();
    for link in links(config) {
        out.push(check(link).await);
    }
    out
}

fn links(config: &Config) -> Vec<Link> {
    let mut links = Vec::new();
    if let Some(o) = &config.outbox {
        let url = o.url.expose();
        links.push(sql_link(
            "outbox",
            url,
            o.password.is_some() || o.password_file.is_some(),
            o.allow_plaintext,
        ));
    }
    if let Some(i) = &config.inbox {
        let url = i.url.expose();
        links.push(sql_link(
            "inbox",
            url,
            i.password.is_some() || i.password_file.is_some(),
            i.allow_plaintext,
        ));
    }
    if let Some(k) = &config.kafka {
        links.push(Link {
            section: "kafka",
            address: k.brokers.clone(),
            encrypted: k.is_encrypted(),
            authenticated: k.is_authenticated(),
            allowed: k.allow_plaintext,
            tls: kafka_tls(k),
            probe: k.is_encrypted().then_some(Probe::Direct),
        });
    }
    if let Some(r) = &config.rabbitmq {
        let secret = r.password.is_some() || r.password_file.is_some();
        let url = r.url.expose();
        links.push(url_link(
            "rabbitmq",
            url,
            "amqps://",
            secret,
            r.allow_plaintext,
            &r.tls,
        ));
        if let Some(m) = &r.management_url {
            let url = m.expose();
            links.push(url_link(
                "rabbitmq.management",
                url,
                "https://",
                secret,
                r.allow_plaintext,
                &r.tls,
            ));
        }
    }
    if let Some(r) = &config.redis {
        let secret = r.password.is_some() || r.password_file.is_some();
        links.push(url_link(
            "redis",
            r.url.expose(),
            "rediss://",
            secret,
            r.allow_plaintext,
            &r.tls,
        ));
    }
    if let Some(r) = &config.rocketmq {
        links.push(Link {
            section: "rocketmq",
            address: r.name_server.clone(),
            encrypted: r.use_tls,
            authenticated: r.access_key.is_some() || r.tls.cert_file.is_some(),
            allowed: r.allow_plaintext,
            tls: r.tls.clone(),
            probe: r.use_tls.then_some(Probe::Direct),
        });
    }
    links
}

/// The TLS files of `[kafka]`: `[kafka.tls]`, else the CA of `[kafka.client]`.
fn kafka_tls(k: &crate::config::KafkaSection) -> TlsFiles {
    let mut tls = k.tls.clone();
    if tls.ca_file.is_none() {
        tls.ca_file = k.client.get("ssl.ca.location").map(Into::into);
    }
    tls
}

fn sql_link(section: &'static str, url: &str, secret: bool, allowed: bool) -> Link {
    let encrypted = sql_encrypted(url);
    let root = query_value(url, &["sslrootcert", "ssl-ca", "ssl_ca"]);
    let postgres = url.starts_with("postgres");
    Link {
        section,
        address: url.to_owned(),
        encrypted,
        authenticated: secret
            || has_password(url)
            || query_value(url, &["sslcert", "ssl-cert"]).is_some(),
        allowed,
        tls: TlsFiles {
            ca_file: root.map(Into::into),
            ..TlsFiles::default()
        },
        // MySQL starts TLS inside its own handshake; its certificate is not read here.
        probe: (encrypted && postgres).then_some(Probe::Postgres),
    }
}

fn url_link(
    section: &'static str,
    url: &str,
    tls_scheme: &str,
    secret: bool,
    allowed: bool,
    tls: &TlsFiles,
) -> Link {
    let encrypted = url
        .trim_start()
        .to_ascii_lowercase()
        .starts_with(tls_scheme);
    Link {
        section,
        address: url.to_owned(),
        encrypted,
        authenticated: secret || has_password(url) || tls.cert_file.is_some(),
        allowed,
        tls: tls.clone(),
        probe: encrypted.then_some(Probe::Direct),
    }
}

/// Whether the URL's user info holds a password.
fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(user, _)| user.contains(':'))
}

/// The value of the first of `keys` in the URL's query.
fn query_value(url: &str, keys: &[&str]) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        keys.iter()
            .any(|k| key.eq_ignore_ascii_case(k))
            .then(|| value.to_owned())
    })
}

async fn check(link: Link) -> LinkSecurity {
    let mut report = LinkSecurity::new(link.section, redact_url(&link.address));
    report.encrypted = link.encrypted;
    report.authenticated = link.authenticated;
    report.plaintext_allowed = link.allowed;
    if let Some(probe) = link.probe {
        match read_days(&link.address, &link.tls, probe).await {
            Ok(days) => report.cert_days_left = Some(days),
            Err(note) => report.note = Some(note),
        }
    }
    report
}

/// Reads the first host's certificate.
#[cfg(feature = "tls")]
async fn read_days(address: &str, tls: &TlsFiles, probe: Probe) -> Result<i64, String> {
    use super::tls_probe::{Preamble, days_left};
    let (host, port) = first_host_port(address).ok_or("no host:port in the address")?;
    let preamble = match probe {
        Probe::Direct => Preamble::None,
        Probe::Postgres => Preamble::Postgres,
    };
    days_left(&host, port, tls, preamble).await
}

#[cfg(not(feature = "tls"))]
async fn read_days(_: &str, _: &TlsFiles, _: Probe) -> Result<i64, String> {
    Err("not read: this zerolost was built without the `tls` feature".into())
}

/// The first `host:port` of a URL or address list (default ports by scheme).
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
fn first_host_port(address: &str) -> Option<(String, u16)> {
    let host = link_hosts(address).into_iter().next()?;
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let first = authority.split([',', ';']).next()?;
    let port = first
        .strip_prefix(&host)
        .and_then(|p| p.strip_prefix(':'))
        .and_then(|p| p.parse().ok())
        .or_else(|| default_port(address))?;
    Some((host, port))
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
fn default_port(address: &str) -> Option<u16> {
    let scheme = address.split_once("://")?.0.to_ascii_lowercase();
    Some(match scheme.as_str() {
        "amqps" => 5671,
        "https" => 443,
        "rediss" => 6379,
        "postgres" | "postgresql" => 5432,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_give_their_first_host_and_port() {
        assert_eq!(
            first_host_port("amqps://u:p@mq.internal/%2f"),
            Some(("mq.internal".into(), 5671))
        );
        assert_eq!(
            first_host_port("k1:9093,k2:9093"),
            Some(("k1".into(), 9093))
        );
        assert_eq!(
            first_host_port("postgres://u@db:6543/x?sslmode=verify-full"),
            Some(("db".into(), 6543))
        );
        assert!(has_password("redis://u:p@h:1") && !has_password("redis://u@h:1"));
        assert_eq!(
            query_value(
                "postgres://h/x?sslmode=verify-full&sslrootcert=/ca.pem",
                &["sslrootcert"]
            ),
            Some("/ca.pem".into())
        );
    }
}
