//! `zerolost.toml`: one file for the relay daemon and the operator commands, with
//! `ZEROLOST_<SECTION>__<KEY>` environment overrides (figment). Unknown keys and unsafe
//! values are errors naming the key; URLs with passwords never print unredacted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use zerolost_core::{Backoff, Error, RelayConfig, TlsFiles, redact_url};

use crate::secrets::{Secret, secret, with_password};

/// The top-level sections an environment override may name (`ZEROLOST_OUTBOX__URL`);
/// other `ZEROLOST_*` variables (`ZEROLOST_LOG`, the test suite's) are not config.
const SECTIONS: [&str; 11] = [
    "broker",
    "consumer",
    "destinations",
    "outbox",
    "inbox",
    "relay",
    "http",
    "kafka",
    "rabbitmq",
    "rocketmq",
    "redis",
];

/// A URL that may hold a password: `Debug` and `Display` show it redacted.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL itself, for connecting (never for printing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// The broker the relay publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// The `[kafka]` section.
    Kafka,
    /// The `[rabbitmq]` section.
    Rabbitmq,
    /// The `[rocketmq]` section.
    Rocketmq,
}

impl BrokerKind {
    /// The config section's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Rabbitmq => "rabbitmq",
            Self::Rocketmq => "rocketmq",
        }
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which broker section the relay publishes to (required by `relay`).
    pub broker: Option<BrokerKind>,
    /// Topics / exchanges the application uses: `doctor` audits them, `dlq` reads their DLQs.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// The outbox database.
    pub outbox: Option<OutboxSection>,
    /// The consumers' SQL inbox (their ledger for `reconcile`); without it `[redis]` is.
    pub inbox: Option<InboxSection>,
    /// How the relay works.
    #[serde(default)]
    pub relay: RelaySection,
    /// The daemon's `/metrics` and `/healthz`.
    #[serde(default)]
    pub http: HttpSection,
    /// Kafka.
    pub kafka: Option<KafkaSection>,
    /// RabbitMQ.
    pub rabbitmq: Option<RabbitSection>,
    /// RocketMQ.
    pub rocketmq: Option<RocketSection>,
    /// Redis dedupe store (checked by `doctor`).
    pub redis: Option<RedisSection>,
    /// What the consumers are configured with, as far as the operator commands must know.
    #[serde(default)]
    pub consumer: ConsumerSection,
}

/// `[consumer]`: the consumers' settings the operator commands depend on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSection {
    /// How long the consumers keep processed marks (their `ConsumerConfig::keep_for`,
    /// default 24h): `reconcile`, `outbox unpark` and `dlq redrive` vouch only for messages
    /// first published inside it.
    #[serde(with = "humantime_serde")]
    pub keep_for: Duration,
}

impl Default for ConsumerSection {
    fn default() -> Self {
        Self {
            keep_for: zerolost_core::ConsumerConfig::default().keep_for,
        }
    }
}

/// `[outbox]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// `sqlite://path`, `postgres://…` or `mysql://…` (MariaDB too).
    pub url: SecretUrl,
    /// Table name prefix (default `zerolost_`).
    pub table_prefix: Option<String>,
    /// PostgreSQL schema of the tables (default: the search path).
    pub schema: Option<String>,
    /// Create or upgrade the tables when the relay starts (default true).
    #[serde(default = "yes")]
    pub migrate: bool,
    /// The password, when the URL leaves it out (`ZEROLOST_OUTBOX__PASSWORD`).
    pub password: Option<Secret>,
    /// A file holding the password (a mounted secret).
    pub password_file: Option<PathBuf>,
    /// Allows a plaintext link to another machine (default false: the relay refuses it).
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl OutboxSection {
    /// The URL to connect with: the password put in when it is given apart.
    pub fn connect_url(&self) -> Result<SecretUrl, Error> {
        let password = secret(
            "outbox.password",
            self.password.as_ref(),
            self.password_file.as_ref(),
        )?;
        with_password("outbox", self.url.expose(), password).map(SecretUrl)
    }
}

/// `[inbox]`: where the consumers record what they finished.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxSection {
    /// `sqlite://…`, `postgres://…` or `mysql://…` (often the outbox's database).
    pub url: SecretUrl,
    /// Table name prefix (default `zerolost_`).
    pub table_prefix: Option<String>,
    /// PostgreSQL schema of the tables.
    pub schema: Option<String>,
    /// The password, when the URL leaves it out (`ZEROLOST_INBOX__PASSWORD`).
    pub password: Option<Secret>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// Allows a plaintext link to another machine.
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl InboxSection {
    /// The URL to connect with: the password put in when it is given apart.
    pub fn connect_url(&self) -> Result<SecretUrl, Error> {
        let password = secret(
            "inbox.password",
            self.password.as_ref(),
            self.password_file.as_ref(),
        )?;
        with_password("inbox", self.url.expose(), password).map(SecretUrl)
    }
}

/// `[relay]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// Rows leased and published per round.
    pub batch_size: usize,
    /// How long a lease holds before another relay may take the rows.
    #[serde(with = "humantime_serde")]
    pub lease_for: Duration,
    /// Publish attempts before a row is parked.
    pub max_attempts: u32,
    /// First retry delay (exponential, full jitter).
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// Wait between rounds when nothing is due.
    #[serde(with = "humantime_serde")]
    pub idle_poll: Duration,
    /// How often the outbox gauges (pending, parked, oldest pending age) are refreshed.
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// How often the DLQ depth of each of `destinations` is read (`0s`: never).
    #[serde(with = "humantime_serde")]
    pub dlq_interval: Duration,
    /// How long the daemon waits at start for an outbox or broker that is unreachable
    /// (restarting) before it gives up and exits 2 (`0s`: at once).
    #[serde(with = "humantime_serde")]
    pub startup_patience: Duration,
}

impl Default for RelaySection {
    fn default() -> Self {
        let relay = RelayConfig::default();
        Self {
            batch_size: relay.batch_size,
            lease_for: relay.lease_for,
            max_attempts: relay.max_attempts,
            backoff_base: relay.backoff.base,
            backoff_cap: relay.backoff.cap,
            idle_poll: relay.idle_poll,
            stats_interval: Duration::from_secs(5),
            dlq_interval: Duration::from_secs(60),
            startup_patience: Duration::from_secs(60),
        }
    }
}

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Where `/metrics` and `/healthz` listen; `""` turns them off.
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// `[kafka]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Extra librdkafka properties (`[kafka.client]`); unsafe ones are refused.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// librdkafka properties allowed to take an unsafe value (each logged as a warning).
    #[serde(default)]
    pub allow_unsafe: Vec<String>,
    /// How long a publish waits for its delivery report.
    #[serde(default, with = "humantime_serde::option")]
    pub delivery_timeout: Option<Duration>,
    /// The SASL password (`sasl.password`; `ZEROLOST_KAFKA__SASL_PASSWORD`).
    pub sasl_password: Option<Secret>,
    /// A file holding the SASL password.
    pub sasl_password_file: Option<PathBuf>,
    /// CA, client certificate and key files (`ssl.ca.location`, `ssl.certificate.location`,
    /// `ssl.key.location`).
    #[serde(default)]
    pub tls: TlsFiles,
    /// Allows a plaintext link to another machine.
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl KafkaSection {
    /// The librdkafka settings of the section: `client`, with the TLS files and the SASL
    /// password added.
    pub fn client_settings(&self) -> Result<BTreeMap<String, String>, Error> {
        let mut settings = self.client.clone();
        let password = secret(
            "kafka.sasl_password",
            self.sasl_password.as_ref(),
            self.sasl_password_file.as_ref(),
        )?;
        if let Some(password) = password {
            if settings.contains_key("sasl.password") {
                return Err(Error::Config(
                    "kafka: sasl.password is set twice, in [kafka.client] and as                      kafka.sasl_password(_file): keep one"
                        .into(),
                ));
            }
            settings.insert("sasl.password".into(), password);
        }
        self.tls.check()?;
        let files = [
            ("ssl.ca.location", &self.tls.ca_file),
            ("ssl.certificate.location", &self.tls.cert_file),
            ("ssl.key.location", &self.tls.key_file),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                settings.insert(key.into(), path.display().to_string());
            }
        }
        Ok(settings)
    }

    /// Whether `security.protocol` is SSL or SASL_SSL.
    pub fn is_encrypted(&self) -> bool {
        self.client
            .get("security.protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("ssl") || p.eq_ignore_ascii_case("sasl_ssl"))
    }

    /// Whether the client proves who it is: SASL, or a client certificate.
    pub fn is_authenticated(&self) -> bool {
        let sasl = self
            .client
            .get("security.protocol")
            .is_some_and(|p| p.to_ascii_lowercase().starts_with("sasl_"));
        sasl || self.tls.cert_file.is_some() || self.client.contains_key("ssl.certificate.location")
    }
}

/// `[rabbitmq]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitSection {
    /// AMQP URL (`amqp://user:password@host:5672/vhost`).
    pub url: SecretUrl,
    /// Management API base URL, for `doctor` and `dlq` (`http://user:password@host:15672`).
    pub management_url: Option<SecretUrl>,
    /// Virtual host of the management API calls (default `/`).
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// How long a batch waits for its publisher confirms.
    #[serde(default, with = "humantime_serde::option")]
    pub confirm_timeout: Option<Duration>,
    /// Largest payload in bytes, as the broker's `max_message_size`: a larger message is
    /// refused before sending (the relay parks it) instead of closing the channel.
    pub max_message_size: Option<usize>,
    /// The password of `url` and `management_url`, when they leave it out
    /// (`ZEROLOST_RABBITMQ__PASSWORD`).
    pub password: Option<Secret>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// CA, client certificate and key of `amqps://` and `https://`.
    #[serde(default)]
    pub tls: TlsFiles,
    /// Allows a plaintext link to another machine.
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl RabbitSection {
    /// The AMQP URL to connect with, the password put in when it is given apart.
    pub fn connect_url(&self) -> Result<SecretUrl, Error> {
        let password = secret(
            "rabbitmq.password",
            self.password.as_ref(),
            self.password_file.as_ref(),
        )?;
        with_password("rabbitmq", self.url.expose(), password).map(SecretUrl)
    }

    /// The management API's URL, the password put in when it is given apart.
    pub fn management_connect_url(&self) -> Result<Option<SecretUrl>, Error> {
        let Some(url) = &self.management_url else {
            return Ok(None);
        };
        let password = secret(
            "rabbitmq.password",
            self.password.as_ref(),
            self.password_file.as_ref(),
        )?;
        with_password("rabbitmq", url.expose(), password).map(|u| Some(SecretUrl(u)))
    }
}

/// `[rocketmq]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RocketSection {
    /// Name server address, `host:port[;host:port…]`.
    pub name_server: String,
    /// Producer group (default `zerolost_producer`).
    pub producer_group: Option<String>,
    /// Synchronous sends in flight per batch (keep under ~190 per process).
    pub sends_in_flight: Option<usize>,
    /// How long one synchronous send waits for SEND_OK.
    #[serde(default, with = "humantime_serde::option")]
    pub send_timeout: Option<Duration>,
    /// Largest message body in bytes, as the broker's `maxMessageSize` (default 4 MiB): a
    /// larger message is refused before sending (the relay parks it).
    pub max_message_size: Option<usize>,
    /// The ACL access key (a broker with authentication: RocketMQ 5's user name).
    pub access_key: Option<String>,
    /// Its secret key (`ZEROLOST_ROCKETMQ__SECRET_KEY`).
    pub secret_key: Option<Secret>,
    /// A file holding the secret key.
    pub secret_key_file: Option<PathBuf>,
    /// Talks TLS to the name servers and brokers (all of them must accept it).
    #[serde(default)]
    pub use_tls: bool,
    /// CA, client certificate and key of the TLS link (`use_tls = true`).
    #[serde(default)]
    pub tls: TlsFiles,
    /// Allows a plaintext link to another machine.
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl RocketSection {
    /// The TLS files when `use_tls` is on; files without it are a mistake, refused.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>, Error> {
        match (self.use_tls, self.tls.is_set()) {
            (true, _) => Ok(Some(self.tls.clone())),
            (false, false) => Ok(None),
            (false, true) => Err(Error::Config(
                "[rocketmq.tls] names files but rocketmq.use_tls is not true: set \
                 use_tls = true (every name server and broker must then accept TLS)"
                    .into(),
            )),
        }
    }

    /// The access key and its secret, when an access key is set (the secret is then
    /// required).
    pub fn acl_keys(&self) -> Result<Option<(String, String)>, Error> {
        let secret = secret(
            "rocketmq.secret_key",
            self.secret_key.as_ref(),
            self.secret_key_file.as_ref(),
        )?;
        match (&self.access_key, secret) {
            (Some(access), Some(secret)) => Ok(Some((access.clone(), secret))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::Config(
                "rocketmq.access_key is set without rocketmq.secret_key(_file)".into(),
            )),
            (None, Some(_)) => Err(Error::Config(
                "rocketmq.secret_key is set without rocketmq.access_key".into(),
            )),
        }
    }
}

/// `[redis]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: SecretUrl,
    /// The key prefix the consumers' `RedisDedupe::with_prefix` uses (default none).
    #[serde(default)]
    pub prefix: String,
    /// The password of the URL's user, when the URL leaves it out
    /// (`ZEROLOST_REDIS__PASSWORD`).
    pub password: Option<Secret>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// CA, client certificate and key of a `rediss://` URL.
    #[serde(default)]
    pub tls: TlsFiles,
    /// Allows a plaintext link to another machine.
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl RedisSection {
    /// The URL to connect with, the password put in when it is given apart.
    pub fn connect_url(&self) -> Result<SecretUrl, Error> {
        let password = secret(
            "redis.password",
            self.password.as_ref(),
            self.password_file.as_ref(),
        )?;
        with_password("redis", self.url.expose(), password).map(SecretUrl)
    }
}

fn yes() -> bool {
    true
}

fn default_vhost() -> String {
    "/".into()
}

impl Config {
    /// Reads `path` (when given), then the `ZEROLOST_<SECTION>__<KEY>` environment, and
    /// checks the values. A missing file named on the command line is an error.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("ZEROLOST_").split("__").filter(|key| {
            // `RELAY.BATCH_SIZE` (upper case until figment lowers it); `KAFKA_BROKERS` and
            // `LOG` are other tools' variables, not config.
            let first = key.as_str().split('.').next().unwrap_or_default();
            SECTIONS.iter().any(|s| first.eq_ignore_ascii_case(s))
        });
        let config: Config = figment.merge(env).extract().map_err(config_error)?;
        config.check()?;
        Ok(config)
    }

    /// Parses a TOML text (no environment), as [`Config::load`] would.
    #[cfg(test)]
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let config: Config = Figment::from(Toml::string(text))
            .extract()
            .map_err(config_error)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), Error> {
        let relay = &self.relay;
        let refuse = |key: &str, why: &str| Err(Error::Config(format!("relay.{key}: {why}")));
        if relay.batch_size == 0 {
            return refuse("batch_size", "must be at least 1");
        }
        if relay.max_attempts == 0 {
            return refuse("max_attempts", "must be at least 1");
        }
        if relay.lease_for < Duration::from_secs(1) {
            return refuse(
                "lease_for",
                "must be at least 1s: a shorter lease expires while the broker is still confirming, and a second relay publishes the rows again",
            );
        }
        if relay.backoff_base.is_zero() || relay.backoff_cap < relay.backoff_base {
            return refuse(
                "backoff_base",
                "must be above zero and not above relay.backoff_cap",
            );
        }
        if relay.stats_interval.is_zero() {
            return refuse("stats_interval", "must be above zero");
        }
        if self.consumer.keep_for.is_zero() {
            return Err(Error::Config(
                "consumer.keep_for: must be above zero (the consumers' ConsumerConfig::keep_for)"
                    .into(),
            ));
        }
        if let Some(broker) = self.broker {
            let present = match broker {
                BrokerKind::Kafka => self.kafka.is_some(),
                BrokerKind::Rabbitmq => self.rabbitmq.is_some(),
                BrokerKind::Rocketmq => self.rocketmq.is_some(),
            };
            if !present {
                return Err(Error::Config(format!(
                    "broker = \"{0}\" but there is no [{0}] section",
                    broker.name()
                )));
            }
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(Error::Config(format!(
                "http.listen: {:?} is not an address like 127.0.0.1:9464",
                self.http.listen
            )));
        }
        Ok(())
    }

    /// The `[outbox]` section, or an error saying it is needed.
    pub fn outbox(&self) -> Result<&OutboxSection, Error> {
        self.outbox
            .as_ref()
            .ok_or_else(|| Error::Config("this command needs an [outbox] section with url".into()))
    }

    /// The relay's settings.
    pub fn relay_config(&self) -> RelayConfig {
        let r = &self.relay;
        RelayConfig {
            batch_size: r.batch_size,
            lease_for: r.lease_for,
            max_attempts: r.max_attempts,
            backoff: Backoff::exponential(r.backoff_base, r.backoff_cap),
            idle_poll: r.idle_poll,
            ..RelayConfig::default()
        }
    }
}

/// A figment error as one line naming the key, with any URL in it redacted.
fn config_error(error: figment::Error) -> Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let text = e.kind.to_string();
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{text}{source}")
            } else {
                format!("{key}: {text}{source}")
            }
        })
        .collect();
    Error::Config(redact_url(&lines.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_with_defaults_filled_in() {
        let config = Config::from_toml(
            r#"
            broker = "kafka"
            destinations = ["orders"]
            [outbox]
            url = "postgres://app:s3cret@db:5432/app"
            [relay]
            batch_size = 100
            lease_for = "45s"
            [kafka]
            brokers = "k1:9092,k2:9092"
            client = { "linger.ms" = "5" }
            "#,
        )
        .unwrap();
        assert_eq!(config.broker, Some(BrokerKind::Kafka));
        assert_eq!(config.relay.batch_size, 100);
        assert_eq!(config.relay.lease_for, Duration::from_secs(45));
        assert_eq!(
            config.relay.max_attempts,
            RelayConfig::default().max_attempts
        );
        assert_eq!(config.http.listen, "127.0.0.1:9464");
        assert!(config.outbox.as_ref().unwrap().migrate);
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("postgres://***@db:5432/app"), "{debug}");
    }

    #[test]
    fn unknown_keys_and_unsafe_values_name_the_key() {
        let err = Config::from_toml("[outbox]\nurl = \"sqlite://x\"\nurll = 1\n").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        let err = Config::from_toml("[relay]\nbatch_size = 0\n").unwrap_err();
        assert!(err.to_string().contains("relay.batch_size"), "{err}");
        let err = Config::from_toml("[relay]\nlease_for = \"100ms\"\n").unwrap_err();
        assert!(err.to_string().contains("relay.lease_for"), "{err}");
        let err = Config::from_toml("broker = \"kafka\"\n").unwrap_err();
        assert!(err.to_string().contains("[kafka]"), "{err}");
        let err = Config::from_toml("colour = \"blue\"\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = Config::from_toml("[relay]\nlease_for = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("relay.lease_for"), "{err}");
    }

    #[test]
    fn rocketmq_tls_files_need_use_tls() {
        let section = |extra: &str| {
            let text = format!("[rocketmq]\nname_server = \"ns:9876\"\n{extra}");
            Config::from_toml(&text).unwrap().rocketmq.unwrap()
        };
        assert_eq!(section("").tls_files().unwrap(), None);
        let on = section("use_tls = true\n[rocketmq.tls]\nca_file = \"/ca.pem\"\n");
        let files = on.tls_files().unwrap().unwrap();
        assert_eq!(
            files.ca_file.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        let err = section("[rocketmq.tls]\nca_file = \"/ca.pem\"\n")
            .tls_files()
            .unwrap_err();
        assert!(err.to_string().contains("use_tls"), "{err}");
    }

    /// Every `toml` block of the docs is a config the binary takes: its keys exist and its
    /// values parse.
    #[test]
    fn every_config_example_in_the_docs_parses() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let mut blocks = 0;
        for entry in std::fs::read_dir(&docs).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for block in text.split("```toml\n").skip(1) {
                let toml = block.split("```").next().unwrap();
                Config::from_toml(toml)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{toml}", path.display()));
                blocks += 1;
            }
        }
        assert!(blocks >= 5, "{blocks} toml blocks found in docs/");
    }
}
