//! Link security: the TLS files of a link, secrets read from files, whether a link stays on
//! this machine, what `doctor` reports per link, and failed handshakes and logins named by
//! their cause.

mod cause;
mod report;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

pub use cause::{LinkFailure, explain_link_error};
pub use report::LinkSecurity;

/// The PEM files of one TLS link: the CA that signed the server's certificate (without it
/// the system's roots are used) and, for mutual TLS, the client's certificate and key.
/// The server's name is always checked against its certificate.
///
/// ```
/// use zerolost_core::TlsFiles;
/// let tls = TlsFiles::default().ca("/etc/zerolost/ca.pem");
/// assert!(tls.check().is_err()); // the file does not exist here
/// let half = TlsFiles::default().client_cert("/etc/zerolost/client.pem", None::<&str>);
/// assert!(half.check().unwrap_err().to_string().contains("together"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA certificate(s) to trust, PEM.
    pub ca_file: Option<PathBuf>,
    /// The client certificate (chain), PEM, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Trusts the CA in `path`.
    pub fn ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents the client certificate `cert` with its `key` (mutual TLS).
    pub fn client_cert(
        mut self,
        cert: impl Into<PathBuf>,
        key: Option<impl Into<PathBuf>>,
    ) -> Self {
        self.cert_file = Some(cert.into());
        self.key_file = key.map(Into::into);
        self
    }

    /// Whether any file is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Checks that the certificate and key come together and that every file can be read.
    pub fn check(&self) -> Result<(), Error> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Error::Config(
                "tls: cert_file and key_file go together (mutual TLS needs both)".into(),
            ));
        }
        for (key, path) in self.paths() {
            std::fs::metadata(path).map_err(|e| file_error(key, path, &e))?;
        }
        Ok(())
    }

    /// The CA file's bytes, if one is set.
    pub fn read_ca(&self) -> Result<Option<Vec<u8>>, Error> {
        self.ca_file
            .as_deref()
            .map(|path| read("tls.ca_file", path))
            .transpose()
    }

    /// The client certificate's and key's bytes, if both are set.
    pub fn read_identity(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>, Error> {
        self.check()?;
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((
                read("tls.cert_file", cert)?,
                read("tls.key_file", key)?,
            ))),
            _ => Ok(None),
        }
    }

    fn paths(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("tls.ca_file", &self.ca_file),
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
        ]
        .into_iter()
        .filter_map(|(key, path)| path.as_deref().map(|p| (key, p)))
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| file_error(key, path, &e))
}

fn file_error(key: &str, path: &Path, error: &std::io::Error) -> Error {
    Error::Config(format!("{key}: cannot read {}: {error}", path.display()))
}

/// Reads a secret (a password, a SASL secret, an access key) from a file, as `*_file` keys
/// do: the whole file, less one trailing line break. The error names the file, never what
/// it holds.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("zl-secret-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("password");
/// std::fs::write(&path, "s3cret\n").unwrap();
/// assert_eq!(zerolost_core::read_secret_file("outbox.password_file", &path).unwrap(), "s3cret");
/// assert!(zerolost_core::read_secret_file("outbox.password_file", &dir.join("none")).is_err());
/// ```
pub fn read_secret_file(key: &str, path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(key, path, &e))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(Error::Config(format!("{key}: {} is empty", path.display())));
    }
    Ok(text.to_owned())
}

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
