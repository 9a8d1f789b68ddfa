//! The Redis client of a URL: `rediss://` with the CA and client certificate of
//! [`TlsFiles`] (the `tls` feature), `redis://` as it is.

use zerolost_core::{Error, TlsFiles, redact_url};

/// A client for `url`; a `rediss://` URL uses `tls` (a CA file replaces the system's
/// roots). TLS files with a `redis://` URL, or a `rediss://` URL without the `tls`
/// feature, are refused.
///
/// ```
/// use zerolost_core::TlsFiles;
/// let plain = zerolost_redis::client("redis://127.0.0.1:6379", &TlsFiles::default());
/// assert!(plain.is_ok());
/// let mixed = zerolost_redis::client("redis://127.0.0.1:6379", &TlsFiles::default().ca("ca.pem"));
/// assert!(mixed.unwrap_err().to_string().contains("rediss://"));
/// ```
pub fn client(url: &str, tls: &TlsFiles) -> Result<redis::Client, Error> {
    let shown = redact_url(url);
    let invalid = |e: &dyn std::fmt::Display| Error::Config(format!("redis url {shown}: {e}"));
    let encrypted = url
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("rediss://");
    if tls.is_set() && !encrypted {
        return Err(Error::Config(format!(
            "redis: TLS files are set but `{shown}` is not TLS: use rediss://"
        )));
    }
    if !encrypted {
        return redis::Client::open(url).map_err(|e| invalid(&e));
    }
    tls_client(url, tls).map_err(|e| match e {
        Error::Config(_) => e,
        other => invalid(&other),
    })
}

#[cfg(feature = "tls")]
fn tls_client(url: &str, tls: &TlsFiles) -> Result<redis::Client, Error> {
    // The redis client builds its rustls config with the process's default provider: one is
    // chosen here unless the application chose already (a tree with two providers has none).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client_tls = tls.read_identity()?.map(|id| redis::ClientTlsConfig {
        client_cert: id.cert_pem,
        client_key: id.key_pem,
    });
    let certificates = redis::TlsCertificates {
        client_tls,
        root_cert: tls.read_ca()?,
    };
    redis::Client::build_with_tls(url, certificates)
        .map_err(|e| Error::Config(format!("redis url {}: {e}", redact_url(url))))
}

#[cfg(not(feature = "tls"))]
fn tls_client(url: &str, _tls: &TlsFiles) -> Result<redis::Client, Error> {
    Err(Error::Config(format!(
        "`{}` is a TLS URL, but zerolost-redis was built without its `tls` feature \
         (zerolost's `tls`): turn it on to use rediss://",
        redact_url(url)
    )))
}

/// A failed connection's text, its cause named: a plaintext Redis never answers a TLS hello
/// (it waits for a line), and a plaintext client of a TLS port only sees the connection
/// reset; each says so.
pub(crate) async fn failure_text(
    client: &redis::Client,
    url: &str,
    error: &redis::RedisError,
) -> String {
    let text = zerolost_core::explain_link_error(&redact_url(&error.to_string()));
    let encrypted = url.trim_start().starts_with("rediss://");
    if error.is_timeout() && encrypted {
        return format!(
            "{text} (no TLS answer: if this port speaks plaintext, use the server's tls-port, \
             or redis:// for a plaintext port)"
        );
    }
    if encrypted || zerolost_core::LinkFailure::classify(&text).is_some() {
        return text;
    }
    let address = match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        _ => return text,
    };
    let probe = zerolost_core::tls_port_hint(&address, std::time::Duration::from_secs(2));
    if let Some(hint) = probe.await {
        return zerolost_core::explain_link_error(&format!("{text}; {hint}"));
    }
    text
}
