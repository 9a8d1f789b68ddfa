//! Whether a port speaks TLS: a plaintext client of a TLS port sees only a reset, a parse
//! error or a timeout; a TLS hello sent to the port tells which it is.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A TLS 1.2 ClientHello with two cipher suites and no extensions: any TLS server answers it
/// with a ServerHello or an alert, both TLS records.
const CLIENT_HELLO: [u8; 54] = [
    0x16, 0x03, 0x01, 0x00, 0x31, // record: handshake, 49 bytes
    0x01, 0x00, 0x00, 0x2d, // ClientHello, 45 bytes
    0x03, 0x03, // TLS 1.2
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // random
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    //
    0x00, // no session id
    0x00, 0x04, 0xc0, 0x2f, 0x00, 0x2f, // ECDHE-RSA-AES128-GCM-SHA256, RSA-AES128-SHA
    0x01, 0x00, // no compression
    0x00, 0x00, // no extensions
];

/// Whether the server at `address` (`host:port`) answers a TLS hello with a TLS record
/// (a handshake or an alert), within `timeout` for each step. Blocking.
///
/// ```no_run
/// assert!(zerolost_core::speaks_tls("127.0.0.1:5671", std::time::Duration::from_secs(2)));
/// ```
pub fn speaks_tls(address: &str, timeout: Duration) -> bool {
    let Some(address) = address.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    if stream.set_read_timeout(Some(timeout)).is_err() || stream.write_all(&CLIENT_HELLO).is_err() {
        return false;
    }
    let mut head = [0u8; 2];
    match stream.read_exact(&mut head) {
        Ok(()) => matches!(head, [0x15 | 0x16, 0x03]),
        Err(_) => false,
    }
}

/// The hint for a failed plaintext connection whose port speaks TLS ([`speaks_tls`], run off
/// the async runtime's threads), or `None` when the port does not answer TLS.
pub async fn tls_port_hint(address: &str, timeout: Duration) -> Option<String> {
    let probe = address.to_owned();
    let tls = tokio::task::spawn_blocking(move || speaks_tls(&probe, timeout)).await;
    tls.unwrap_or(false).then(|| plaintext_to_tls_hint(address))
}

/// The hint a failed plaintext connection gets when its port speaks TLS (named by
/// [`LinkFailure::classify`](super::LinkFailure::classify) as a plaintext/TLS mismatch).
pub fn plaintext_to_tls_hint(address: &str) -> String {
    format!("the server at {address} speaks TLS (connecting to a SSL listener?)")
}
