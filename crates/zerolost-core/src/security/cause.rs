//! A failed TLS handshake or login, named by its cause from the client library's error text
//! (rustls, OpenSSL inside librdkafka, the PostgreSQL, MySQL, Redis and AMQP protocols).

use std::fmt;

/// Why a secured link could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFailure {
    /// The server's certificate is signed by a CA the client does not trust.
    UnknownCa,
    /// The server's certificate is for another name than the one connected to.
    NameMismatch,
    /// The server's certificate has expired (or is not valid yet).
    ExpiredCertificate,
    /// The server refused the user name, password or SASL credentials.
    BadCredentials,
    /// The server requires a client certificate it trusts (mutual TLS) and got none, or one
    /// it does not trust.
    ClientCertificate,
    /// TLS was expected, but the server answered in plaintext (or the other way round).
    PlaintextServer,
}

/// Error-text fragments of each cause, lower case, most specific first.
const PATTERNS: [(LinkFailure, &[&str]); 6] = [
    (
        LinkFailure::ClientCertificate,
        &[
            "alert bad certificate",
            "alert number 42",
            "alert certificate required",
            "alert number 116",
            "certificaterequired",
            "fatal alert: badcertificate",
            "fatal alert: unknownca",
        ],
    ),
    (
        LinkFailure::ExpiredCertificate,
        &[
            "expired",
            "certificate has expired",
            "notvalidyet",
            "not yet valid",
        ],
    ),
    (
        LinkFailure::NameMismatch,
        &[
            "notvalidforname",
            "not valid for name",
            "hostname mismatch",
            "ip address mismatch",
            "certificate is not valid for",
        ],
    ),
    (
        LinkFailure::UnknownCa,
        &[
            "unknownissuer",
            "unknown issuer",
            "unable to get local issuer certificate",
            "self-signed certificate",
            "self signed certificate",
            "unknown ca",
            "certificate verify failed",
        ],
    ),
    (
        LinkFailure::BadCredentials,
        &[
            "invalid credentials",
            "authentication failed",
            "wrongpass",
            "invalid username-password",
            "access_refused",
            "access refused",
            "access denied",
            "password authentication failed",
            "sasl authentication error",
            "noauth",
            "username cannot be null",
            "check signature failed",
            "signature is invalid",
            "user is not exist",
        ],
    ),
    (
        LinkFailure::PlaintextServer,
        &[
            "wrong version number",
            "packet length too long",
            "invalidcontenttype",
            "corrupt message",
            "corruptmessage",
            "received corrupt message",
            "does not support tls",
            "does not support ssl",
            "server does not support ssl",
            "ssl is not enabled",
            "not an ssl/tls record",
            "first record does not look like a tls handshake",
            "http request to an https server",
            "connecting to a plaintext broker listener",
            "connecting to a ssl listener",
            "incorrect security.protocol",
        ],
    ),
];

impl LinkFailure {
    /// The cause found in an error text, if any.
    ///
    /// ```
    /// use zerolost_core::LinkFailure;
    /// let text = "invalid peer certificate: UnknownIssuer";
    /// assert_eq!(LinkFailure::classify(text), Some(LinkFailure::UnknownCa));
    /// assert_eq!(LinkFailure::classify("connection refused"), None);
    /// ```
    pub fn classify(text: &str) -> Option<Self> {
        let lower = text.to_ascii_lowercase();
        PATTERNS
            .iter()
            .find(|(_, needles)| needles.iter().any(|n| lower.contains(n)))
            .map(|(cause, _)| *cause)
    }

    /// Whether trying again can help (no: each of these needs a change of config or
    /// certificate).
    pub fn is_retryable(self) -> bool {
        false
    }

    /// The cause and its fix, in a sentence.
    pub fn explain(self) -> &'static str {
        match self {
            Self::UnknownCa => {
                "unknown CA: the server's certificate is not signed by a CA this link trusts; \
                 set the link's tls.ca_file to the CA that signed it"
            }
            Self::NameMismatch => {
                "name mismatch: the server's certificate is for another name than the host \
                 connected to; connect by a name the certificate lists"
            }
            Self::ExpiredCertificate => {
                "expired certificate: the server's certificate is outside its validity dates; \
                 renew it on the server"
            }
            Self::ClientCertificate => {
                "client certificate refused: the server requires a client certificate it trusts \
                 (mutual TLS); set the link's tls.cert_file and tls.key_file to one signed by a \
                 CA the server trusts"
            }
            Self::BadCredentials => {
                "bad credentials: the server refused the user name or password (SASL, ACL); \
                 check the link's user and its password or password_file"
            }
            Self::PlaintextServer => {
                "TLS expected but the server speaks plaintext (or this link speaks plaintext \
                 to a TLS port); use the server's TLS port, or a plaintext URL for a \
                 plaintext port"
            }
        }
    }
}

impl fmt::Display for LinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.explain())
    }
}

/// An error text with its cause named, when one is recognised: `"<text> (<cause>)"`.
///
/// ```
/// use zerolost_core::explain_link_error;
/// let text = explain_link_error("SSL handshake failed: certificate verify failed");
/// assert!(text.contains("unknown CA"), "{text}");
/// assert_eq!(explain_link_error("connection refused"), "connection refused");
/// ```
pub fn explain_link_error(text: &str) -> String {
    match LinkFailure::classify(text) {
        Some(cause) => format!("{text} ({cause})"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_s_wording_names_its_cause() {
        let cases = [
            (
                "invalid peer certificate: UnknownIssuer",
                LinkFailure::UnknownCa,
            ),
            (
                "error:0A000086:SSL routines::certificate verify failed: unable to get local issuer certificate",
                LinkFailure::UnknownCa,
            ),
            (
                "invalid peer certificate: NotValidForName",
                LinkFailure::NameMismatch,
            ),
            (
                "certificate verify failed: Hostname mismatch",
                LinkFailure::NameMismatch,
            ),
            (
                "invalid peer certificate: Expired",
                LinkFailure::ExpiredCertificate,
            ),
            (
                "certificate verify failed: certificate has expired",
                LinkFailure::ExpiredCertificate,
            ),
            (
                "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
                LinkFailure::BadCredentials,
            ),
            (
                "WRONGPASS invalid username-password pair or user is disabled.",
                LinkFailure::BadCredentials,
            ),
            (
                "password authentication failed for user \"zerolost\"",
                LinkFailure::BadCredentials,
            ),
            (
                "ACCESS_REFUSED - Login was refused",
                LinkFailure::BadCredentials,
            ),
            (
                "error:0A00010B:SSL routines::wrong version number",
                LinkFailure::PlaintextServer,
            ),
            (
                "received corrupt message of type InvalidContentType",
                LinkFailure::PlaintextServer,
            ),
            ("server does not support TLS", LinkFailure::PlaintextServer),
            (
                "Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42",
                LinkFailure::ClientCertificate,
            ),
            (
                "received fatal alert: CertificateRequired",
                LinkFailure::ClientCertificate,
            ),
        ];
        for (text, cause) in cases {
            assert_eq!(LinkFailure::classify(text), Some(cause), "{text}");
        }
        assert_eq!(
            LinkFailure::classify("Connection refused (os error 111)"),
            None
        );
    }
}
