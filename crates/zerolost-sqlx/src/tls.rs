//! Whether a database URL insists on TLS. PostgreSQL's and MySQL's default modes
//! (`prefer`, `PREFERRED`) fall back to plaintext without a word; only the modes that
//! refuse a plaintext server count as encrypted.

/// Whether `url` makes the client refuse a plaintext server: PostgreSQL
/// `sslmode=require|verify-ca|verify-full`, MySQL `ssl-mode=REQUIRED|VERIFY_CA|VERIFY_IDENTITY`.
/// The `verify-*` modes also check the server's certificate (and `verify-full` /
/// `VERIFY_IDENTITY` its name) against `sslrootcert` / `ssl-ca`; they need the `tls` feature.
///
/// ```
/// use zerolost_sqlx::url_requires_tls;
/// assert!(url_requires_tls("postgres://app@db/app?sslmode=verify-full&sslrootcert=/ca.pem"));
/// assert!(url_requires_tls("mysql://app@db/app?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem"));
/// assert!(!url_requires_tls("postgres://app@db/app?sslmode=prefer"));
/// assert!(!url_requires_tls("postgres://app@db/app"));
/// ```
pub fn url_requires_tls(url: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = key.to_ascii_lowercase().replace('_', "-");
        let value = value.to_ascii_lowercase().replace('_', "-");
        matches!(key.as_str(), "sslmode" | "ssl-mode")
            && matches!(
                value.as_str(),
                "require" | "required" | "verify-ca" | "verify-full" | "verify-identity"
            )
    })
}
