//! The check librdkafka makes of a broker's certificate, made again with OpenSSL (which
//! librdkafka uses) to read the reason it leaves out of its report.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use openssl::ssl::{HandshakeError, SslConnector, SslMethod};

use crate::KafkaConfig;

/// Why the first broker's certificate fails the check with the config's CA
/// (`ssl.ca.location`) and name verification, as OpenSSL words it (`Hostname mismatch`,
/// `certificate has expired`, `unable to get local issuer certificate`); `None` when it
/// passes or cannot be checked.
pub(crate) fn certificate_problem(config: &KafkaConfig) -> Option<String> {
    let first = config.brokers().split(',').next()?.trim();
    let (host, _) = first.rsplit_once(':')?;
    let mut builder = SslConnector::builder(SslMethod::tls()).ok()?;
    if let Some(ca) = config.setting("ssl.ca.location") {
        builder.set_ca_file(ca).ok()?;
    }
    let address = first.to_socket_addrs().ok()?.next()?;
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(3)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    match builder
        .build()
        .connect(host.trim_matches(['[', ']']), stream)
    {
        Err(HandshakeError::Failure(mid)) => {
            let result = mid.ssl().verify_result();
            (result.as_raw() != 0).then(|| result.error_string().to_owned())
        }
        _ => None,
    }
}

/// Whether the first broker answers a TLS handshake (its certificate not checked): a
/// plaintext client of a TLS listener only sees its requests time out.
pub(crate) fn speaks_tls(config: &KafkaConfig) -> bool {
    let Some(first) = config.brokers().split(',').next().map(str::trim) else {
        return false;
    };
    let Some(address) = first.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_secs(3)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .is_err()
    {
        return false;
    }
    let Ok(mut builder) = SslConnector::builder(SslMethod::tls()) else {
        return false;
    };
    builder.set_verify(openssl::ssl::SslVerifyMode::NONE);
    let Ok(configured) = builder.build().configure() else {
        return false;
    };
    // A server that asks for a client certificate may end the handshake; its hello counts.
    match configured
        .verify_hostname(false)
        .use_server_name_indication(false)
        .connect("broker", stream)
    {
        Ok(_) => true,
        Err(HandshakeError::Failure(mid)) => mid.ssl().peer_certificate().is_some(),
        Err(_) => false,
    }
}
