//! TLS to the name servers and brokers: the client's own rustls mode (built with the `tls`
//! feature), given the CA and client certificate of [`TlsFiles`], server names verified.
//!
//! The Rust client reads no `tls.*` system properties; what it does read is
//! `/etc/rocketmq/tls.properties` when that file exists (as the Java client does), over the
//! settings made here.

use rocketmq_client_rust::ClientConfig;
#[cfg(feature = "tls")]
use zerolost_core::TlsFiles;

use crate::{RocketConfig, RocketError};

/// The client settings of `config`: its name server, and TLS when the config asks for it.
pub(crate) fn client_config(config: &RocketConfig) -> Result<ClientConfig, RocketError> {
    let mut client = ClientConfig::default();
    client.set_namesrv_addr(config.name_server().into());
    apply(config, &mut client)?;
    Ok(client)
}

/// Turns TLS on in `client` when `config` asks for it.
pub(crate) fn apply(config: &RocketConfig, client: &mut ClientConfig) -> Result<(), RocketError> {
    match config.tls_files() {
        None => Ok(()),
        #[cfg(feature = "tls")]
        Some(files) => apply_files(files, client),
        #[cfg(not(feature = "tls"))]
        Some(_) => {
            let _ = client;
            Err(RocketError::Invalid(
                "TLS to RocketMQ needs the `tls` feature of zerolost-rocketmq (the zerolost \
                 binary has it)"
                    .into(),
            ))
        }
    }
}

#[cfg(feature = "tls")]
fn apply_files(files: &TlsFiles, client: &mut ClientConfig) -> Result<(), RocketError> {
    files
        .check()
        .map_err(|e| RocketError::Invalid(format!("rocketmq tls: {e}")))?;
    // A process-level provider, unless the application chose one (a tree with two has none).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    client.set_use_tls(true);
    client.set_tls_test_mode_enable(false);
    client.set_tls_client_auth_server(true);
    if let Some(ca) = &files.ca_file {
        client.set_tls_client_trust_cert_path(ca.to_string_lossy());
    }
    if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
        client.set_tls_client_cert_path(cert.to_string_lossy());
        client.set_tls_client_key_path(key.to_string_lossy());
    }
    Ok(())
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    #[test]
    fn tls_files_become_the_clients_settings() {
        let config = RocketConfig::new("ns:9876").tls(
            TlsFiles::default()
                .ca("/nonexistent/ca.pem")
                .client_cert("/c.pem", Some("/k.pem")),
        );
        // A CA file that does not exist is refused before any connection.
        assert!(client_config(&config).is_err());

        let config = RocketConfig::new("ns:9876").tls(TlsFiles::default());
        let client = client_config(&config).unwrap();
        assert!(client.is_use_tls());
        assert!(client.tls_config().client.auth_server);
        assert!(!client.tls_config().test_mode_enable);

        let plain = client_config(&RocketConfig::new("ns:9876")).unwrap();
        assert!(!plain.is_use_tls());
    }
}
