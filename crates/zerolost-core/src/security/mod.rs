//! Link security: the TLS files of a link, secrets read from files, whether a link stays on
//! this machine, what `doctor` reports per link, and failed handshakes and logins named by
//! their cause.

mod cause;
mod hosts;
mod report;
mod sniff;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

pub use cause::{LinkFailure, explain_link_error};
pub use hosts::{is_loopback_host, link_hosts, refuse_remote_plaintext};
pub use report::LinkSecurity;
pub use sniff::{plaintext_to_tls_hint, speaks_tls, tls_port_hint};

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

    /// The client certificate and key, if both are set.
    pub fn read_identity(&self) -> Result<Option<ClientIdentity>, Error> {
        self.check()?;
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some(ClientIdentity {
                cert_pem: read("tls.cert_file", cert)?,
                key_pem: read("tls.key_file", key)?,
            })),
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

/// A client certificate chain and its private key, PEM, for mutual TLS; `Debug` leaves the
/// key out.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"***")
            .finish()
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
