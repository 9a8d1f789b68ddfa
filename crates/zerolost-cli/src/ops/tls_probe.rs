//! `doctor`'s certificate check: a TLS handshake of its own with a link's server, verified
//! as the link verifies it (its CA file, else the system's roots; the host's name), that
//! reads how many days the server's certificate has left.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zerolost_core::TlsFiles;

/// What comes before the TLS handshake on the link's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    /// TLS from the first byte (amqps, https, rediss, Kafka SSL).
    None,
    /// PostgreSQL's SSLRequest, answered `S`.
    Postgres,
}

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// Days the certificate of the server at `host:port` has left (negative: expired), after a
/// handshake verified as the link verifies it; the error names the cause.
pub async fn days_left(
    host: &str,
    port: u16,
    files: &TlsFiles,
    preamble: Preamble,
) -> Result<i64, String> {
    let work = async {
        let mut tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        if preamble == Preamble::Postgres {
            tcp.write_all(&SSL_REQUEST)
                .await
                .map_err(|e| e.to_string())?;
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer)
                .await
                .map_err(|e| e.to_string())?;
            if answer[0] != b'S' {
                return Err("the server does not support TLS".into());
            }
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(files)?));
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(|e| format!("server name {host}: {e}"))?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| zerolost_core::explain_link_error(&e.to_string()))?;
        let (_, session) = stream.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or("the server sent no certificate")?;
        expiry_days(leaf)
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .unwrap_or_else(|_| Err(format!("no TLS answer from {host}:{port} within 5s")))
}

fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match files.read_ca().map_err(|e| e.to_string())? {
        Some(pem) => {
            for cert in rustls_pemfile_certs(&pem)? {
                roots.add(cert).map_err(|e| format!("tls.ca_file: {e}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    Ok(builder.with_no_client_auth())
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.ca_file is not PEM: {e}"))
}

/// Days from now to the certificate's `notAfter`.
fn expiry_days(cert: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("the server's certificate does not parse: {e}"))?;
    let not_after = parsed.validity().not_after.timestamp();
    let now = chrono::Utc::now().timestamp();
    Ok((not_after - now).div_euclid(86_400))
}
