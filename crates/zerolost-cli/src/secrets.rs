//! Secrets of the config: passwords given inline, by the environment or in a `*_file`, put
//! into the section's URL; `Debug` never shows them.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use zerolost_core::{Error, read_secret_file, redact_url};

/// A password or key: `Debug` shows `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the client (never for printing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The secret of `key`: given inline (or by `ZEROLOST_<SECTION>__<KEY>`), or read from
/// `<key>_file`; both is an error.
pub fn secret(
    key: &str,
    inline: Option<&Secret>,
    file: Option<&PathBuf>,
) -> Result<Option<String>, Error> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(Error::Config(format!(
            "{key} and {key}_file are both set: keep one"
        ))),
        (Some(secret), None) => Ok(Some(secret.expose().to_owned())),
        (None, Some(path)) => read_secret_file(&format!("{key}_file"), path).map(Some),
        (None, None) => Ok(None),
    }
}

/// `url` with `password` put in its user info (`scheme://user:password@host…`,
/// percent-encoded). The URL must name the user and hold no password of its own.
pub fn with_password(key: &str, url: &str, password: Option<String>) -> Result<String, Error> {
    let Some(password) = password else {
        return Ok(url.to_owned());
    };
    let shown = redact_url(url);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Config(format!("{key}.url: {shown} is not a URL")))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((user, host)) = authority.rsplit_once('@') else {
        return Err(Error::Config(format!(
            "{key}: a password is set but {key}.url names no user (scheme://user@host)"
        )));
    };
    if user.contains(':') {
        return Err(Error::Config(format!(
            "{key}: the password is set twice, in {key}.url and as {key}.password(_file): keep one"
        )));
    }
    Ok(format!(
        "{scheme}://{user}:{}@{host}{tail}",
        encode(&password)
    ))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_goes_into_the_url_encoded_and_never_twice() {
        let url = with_password(
            "outbox",
            "postgres://app@db:5432/app?sslmode=verify-full",
            Some("p@ss:w/rd".into()),
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://app:p%40ss%3Aw%2Frd@db:5432/app?sslmode=verify-full"
        );
        let twice =
            with_password("outbox", "postgres://app:x@db/app", Some("y".into())).unwrap_err();
        assert!(twice.to_string().contains("set twice"), "{twice}");
        assert!(!twice.to_string().contains('x') || !twice.to_string().contains(":x@"));
        let anonymous =
            with_password("redis", "rediss://cache:6380", Some("y".into())).unwrap_err();
        assert!(
            anonymous.to_string().contains("names no user"),
            "{anonymous}"
        );
        assert_eq!(
            with_password("redis", "redis://h:1", None).unwrap(),
            "redis://h:1"
        );
    }

    #[test]
    fn a_secret_comes_from_one_place_and_prints_as_stars() {
        let dir = std::env::temp_dir().join(format!("zl-links-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let inline = Secret("inline".into());
        assert_eq!(
            secret("k", None, Some(&file)).unwrap().as_deref(),
            Some("from-file")
        );
        assert_eq!(
            secret("k", Some(&inline), None).unwrap().as_deref(),
            Some("inline")
        );
        let both = secret("k", Some(&inline), Some(&file)).unwrap_err();
        assert!(both.to_string().contains("k_file"), "{both}");
        assert_eq!(format!("{inline:?}"), "\"***\"");
        let missing = secret("k", None, Some(&dir.join("none"))).unwrap_err();
        assert!(missing.to_string().contains("k_file"), "{missing}");
    }
}
