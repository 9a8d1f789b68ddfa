//! TLS for the AMQP link (`amqps://`) and the management API (`https://`): rustls with the
//! CA and client certificate of [`TlsFiles`], built only with the `tls` feature.

#[cfg(feature = "tls")]
use zerolost_core::TlsFiles;

use crate::RabbitError;

/// The AMQP link's TLS settings: the CA (added to the system's roots) and the client
/// identity for mutual TLS.
#[cfg(feature = "tls")]
pub(crate) fn amqp_tls(files: &TlsFiles) -> Result<lapin::tcp::OwnedTLSConfig, RabbitError> {
    // A process-level provider, unless the application chose one (a tree with two has none).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert_chain = files
        .read_ca()
        .map_err(invalid)?
        .map(|pem| String::from_utf8_lossy(&pem).into_owned());
    let identity =
        files
            .read_identity()
            .map_err(invalid)?
            .map(|id| lapin::tcp::OwnedIdentity::PKCS8 {
                pem: id.cert_pem,
                key: id.key_pem,
            });
    Ok(lapin::tcp::OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// The management API's TLS settings: the CA alone as roots when one is set (Mozilla's
/// roots otherwise), the client identity for mutual TLS.
#[cfg(feature = "tls")]
pub(crate) fn http_tls(files: &TlsFiles) -> Result<ureq::tls::TlsConfig, RabbitError> {
    use std::sync::Arc;
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

    let pem_error = |what: &str, e: ureq::Error| {
        RabbitError::Invalid(format!("management tls: {what} is not PEM: {e}"))
    };
    let mut builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        );
    if let Some(pem) = files.read_ca().map_err(invalid)? {
        let roots = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<Certificate<'static>>, _>>()
            .map_err(|e| pem_error("tls.ca_file", e))?;
        builder = builder.root_certs(RootCerts::new_with_certs(&roots));
    }
    if let Some(id) = files.read_identity().map_err(invalid)? {
        let chain =
            vec![Certificate::from_pem(&id.cert_pem).map_err(|e| pem_error("tls.cert_file", e))?];
        let key = PrivateKey::from_pem(&id.key_pem).map_err(|e| pem_error("tls.key_file", e))?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

/// Without the `tls` feature, a TLS URL is refused with the feature to turn on.
#[cfg(not(feature = "tls"))]
pub(crate) fn unsupported(url: &str) -> RabbitError {
    RabbitError::Invalid(format!(
        "`{url}` is a TLS URL, but zerolost-rabbitmq was built without its `tls` feature \
         (zerolost's `tls`): turn it on to use amqps:// and https://"
    ))
}

#[cfg(feature = "tls")]
fn invalid(error: zerolost_core::Error) -> RabbitError {
    RabbitError::Invalid(error.to_string())
}
