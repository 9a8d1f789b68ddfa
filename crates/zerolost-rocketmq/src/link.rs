//! Naming the cause when a broker does not answer. The client reports a TLS or plaintext
//! mismatch with a broker only as a response timeout (the broker drops the link), so a
//! failed call to a broker probes its address once: a plaintext client of a TLS-only
//! broker is told so after a TLS hello to the port answers; a TLS client makes a handshake
//! of its own with the same settings, which names an unknown CA, a name mismatch or an
//! expired certificate, and a refused client certificate (the alert that follows the
//! handshake, or the link closed right after it).

use std::time::Duration;

use rocketmq_client_rust::{ClientConfig, ClientError};

use crate::RocketError;

/// How long each step of the probe may take.
const STEP: Duration = Duration::from_secs(2);

/// The error of a failed call to the broker at `address`, with the link's fault named when
/// the probe finds one.
pub(crate) async fn broker_call_failed(
    client: &ClientConfig,
    operation: &'static str,
    address: &str,
    source: ClientError,
) -> RocketError {
    match diagnose(client, address).await {
        Some(cause) => RocketError::Link {
            operation,
            address: address.to_owned(),
            cause,
            source,
        },
        None => RocketError::Client { operation, source },
    }
}

/// What is wrong with the link to `address` under these settings, if the probe can tell.
async fn diagnose(client: &ClientConfig, address: &str) -> Option<String> {
    if !client.is_use_tls() {
        let hint = zerolost_core::tls_port_hint(address, STEP).await?;
        return Some(zerolost_core::explain_link_error(&format!(
            "{hint}; set use_tls (library: RocketConfig::tls)"
        )));
    }
    tls_fault(client, address).await
}

#[cfg(feature = "tls")]
async fn tls_fault(client: &ClientConfig, address: &str) -> Option<String> {
    use tokio::io::AsyncReadExt;
    use tokio::time::timeout;

    let tcp = timeout(STEP, tokio::net::TcpStream::connect(address))
        .await
        .ok()?
        .ok()?;
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).ok()?;
    let settings = rustls_settings(client).ok()?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(settings));
    let mut stream = match timeout(STEP, connector.connect(name, tcp)).await.ok()? {
        Ok(stream) => stream,
        Err(e) => return Some(zerolost_core::explain_link_error(&e.to_string())),
    };
    // A server that refuses the client's certificate says so after the handshake (TLS 1.3);
    // one that accepted it waits for a request, and the read times out.
    let mut byte = [0u8; 1];
    match timeout(Duration::from_millis(500), stream.read(&mut byte)).await {
        Ok(Err(e)) => Some(zerolost_core::explain_link_error(&e.to_string())),
        Ok(Ok(0)) => Some(
            "the broker closed the link right after the TLS handshake: it most likely \
             requires a client certificate (client certificate refused); set tls.cert_file \
             and tls.key_file"
                .to_owned(),
        ),
        _ => None,
    }
}

/// The client's TLS settings as a rustls config: its CA file (else the system's roots), its
/// client certificate.
#[cfg(feature = "tls")]
fn rustls_settings(client: &ClientConfig) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let tls = &client.tls_config().client;
    let mut roots = rustls::RootCertStore::empty();
    match &tls.trust_cert_path {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
                roots
                    .add(cert.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&tls.cert_path, &tls.key_path) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| e.to_string())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(not(feature = "tls"))]
async fn tls_fault(_: &ClientConfig, _: &str) -> Option<String> {
    None
}
