//! The test CA of `scripts/services/certs.sh` and a real TLS server with a bad certificate,
//! for the TLS tests of every backend.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zerolost_core::TlsFiles;

/// The directory certs.sh writes: `$ZEROLOST_STATE_DIR/tls` (default `/var/tmp/zerolost/tls`).
pub fn dir() -> PathBuf {
    let state = std::env::var("ZEROLOST_STATE_DIR")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/var/tmp/zerolost".into());
    PathBuf::from(state).join("tls")
}

/// A file of the test CA's directory (`ca.crt`, `client.key`, …), or an error saying how to
/// make it.
pub fn file(name: &str) -> Result<PathBuf, String> {
    let path = dir().join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run scripts/services/certs.sh (up.sh does)",
            path.display()
        ))
    }
}

/// Trusts the test CA.
pub fn trusted() -> Result<TlsFiles, String> {
    Ok(TlsFiles::default().ca(file("ca.crt")?))
}

/// Trusts the test CA and presents the test client certificate (mutual TLS).
pub fn mutual() -> Result<TlsFiles, String> {
    Ok(trusted()?.client_cert(file("client.crt")?, Some(file("client.key")?)))
}

/// Trusts only a CA that signed none of the servers' certificates.
pub fn other_ca() -> Result<TlsFiles, String> {
    Ok(TlsFiles::default().ca(file("other-ca.crt")?))
}

/// A TLS server (`openssl s_server`) on a loopback port that presents a bad certificate
/// signed by the test CA: one for another name, or one that has expired. Killed on drop.
pub struct BadTlsServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl BadTlsServer {
    /// A server presenting `wrong-name.crt` (signed by the test CA for another host).
    pub fn wrong_name() -> Result<Self, String> {
        Self::start("wrong-name")
    }

    /// A server presenting `expired.crt` (signed by the test CA, expired in 2020).
    pub fn expired() -> Result<Self, String> {
        Self::start("expired")
    }

    fn start(pair: &str) -> Result<Self, String> {
        let (cert, key) = (file(&format!("{pair}.crt"))?, file(&format!("{pair}.key"))?);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-naccept", "1000", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("openssl s_server: {e}"))?;
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("openssl s_server did not listen on {port}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for BadTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
