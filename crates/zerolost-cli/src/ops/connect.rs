//! Opens what a config names: the outbox database and the relay's publisher.

use std::sync::Arc;
use std::time::Duration;

use zerolost_core::{ConsumerLedger, Error, OutboxStore, Publisher};
#[cfg(feature = "mysql")]
use zerolost_sqlx::MySqlStore;
#[cfg(feature = "postgres")]
use zerolost_sqlx::PgStore;
#[cfg(feature = "sqlite")]
use zerolost_sqlx::SqliteStore;
use zerolost_sqlx::{Dialect, Migration, SqlError, SqlStore, Tables};

use super::not_built;
use crate::config::{BrokerKind, Config, InboxSection, OutboxSection, SecretUrl};

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("zerolost needs an outbox database: enable `sqlite`, `postgres` or `mysql`");

/// The validated table names of the `key` database.
fn tables(key: &str, prefix: Option<&str>, schema: Option<&str>) -> Result<Tables, Error> {
    let mut tables = Tables::default();
    if let Some(prefix) = prefix {
        tables = tables
            .with_prefix(prefix)
            .map_err(|e| Error::Config(format!("{key}.table_prefix: {e}")))?;
    }
    if let Some(schema) = schema {
        tables = tables
            .in_schema(schema)
            .map_err(|e| Error::Config(format!("{key}.schema: {e}")))?;
    }
    Ok(tables)
}

/// The SQL engines this build has.
#[derive(Debug, Clone, Copy)]
enum Engine {
    #[cfg(feature = "sqlite")]
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "mysql")]
    MySql,
}

impl Engine {
    /// The engine `url`'s scheme names; refused when unknown or not built.
    fn of(key: &str, url: &SecretUrl) -> Result<Self, Error> {
        let scheme = url.expose().split("://").next().unwrap_or_default();
        Ok(match scheme {
            #[cfg(feature = "sqlite")]
            "sqlite" => Self::Sqlite,
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Self::Postgres,
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => Self::MySql,
            #[cfg(not(feature = "sqlite"))]
            "sqlite" => return Err(not_built(&format!("{key}.url: SQLite"), "sqlite")),
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => {
                return Err(not_built(&format!("{key}.url: PostgreSQL"), "postgres"));
            }
            #[cfg(not(feature = "mysql"))]
            "mysql" | "mariadb" => return Err(not_built(&format!("{key}.url: MySQL"), "mysql")),
            _ => {
                return Err(Error::Config(format!(
                    "{key}.url: {url} is not a sqlite://, postgres:// or mysql:// URL"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite => "sqlite",
            #[cfg(feature = "postgres")]
            Self::Postgres => "postgres",
            #[cfg(feature = "mysql")]
            Self::MySql => "mysql",
        }
    }
}

/// A database's schema as `migrate --print` shows it.
pub struct Schema {
    /// `sqlite`, `postgres` or `mysql`.
    pub engine: &'static str,
    /// The migrations, oldest first.
    pub migrations: Vec<Migration>,
    /// The script to apply by hand (history rows included).
    pub script: String,
}

impl Schema {
    fn of<DB: Dialect>(engine: Engine, tables: &Tables) -> Result<Self, SqlError> {
        Ok(Self {
            engine: engine.name(),
            migrations: SqlStore::<DB>::migrations_for(tables)?,
            script: SqlStore::<DB>::script_for(tables)?,
        })
    }
}

/// The outbox database, whichever SQL engine the URL names.
pub enum OutboxDb {
    /// `sqlite://…`
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    /// `postgres://…` / `postgresql://…`
    #[cfg(feature = "postgres")]
    Postgres(PgStore),
    /// `mysql://…` / `mariadb://…`
    #[cfg(feature = "mysql")]
    MySql(MySqlStore),
}

impl OutboxDb {
    /// Connects to the `[outbox]` database (no migration).
    pub async fn connect(section: &OutboxSection) -> Result<Self, Error> {
        Self::open(
            "outbox",
            &section.connect_url()?,
            section.table_prefix.as_deref(),
            section.schema.as_deref(),
        )
        .await
    }

    /// Connects to the `[inbox]` database.
    pub async fn connect_inbox(section: &InboxSection) -> Result<Self, Error> {
        Self::open(
            "inbox",
            &section.connect_url()?,
            section.table_prefix.as_deref(),
            section.schema.as_deref(),
        )
        .await
    }

    /// Connects to the `key` database at `url` with its table settings.
    pub async fn open(
        key: &str,
        url: &SecretUrl,
        prefix: Option<&str>,
        schema: Option<&str>,
    ) -> Result<Self, Error> {
        let tables = tables(key, prefix, schema)?;
        let engine = Engine::of(key, url)?;
        let url = url.expose();
        Ok(match engine {
            #[cfg(feature = "sqlite")]
            Engine::Sqlite => Self::Sqlite(SqliteStore::connect(url, tables).await?),
            #[cfg(feature = "postgres")]
            Engine::Postgres => Self::Postgres(PgStore::connect(url, tables).await?),
            #[cfg(feature = "mysql")]
            Engine::MySql => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                Self::MySql(MySqlStore::connect(&url, tables).await?)
            }
        })
    }

    /// The schema the `key` database at `url` gets, without connecting (`zerolost
    /// migrate --print`).
    pub fn schema_for(
        key: &str,
        url: &SecretUrl,
        prefix: Option<&str>,
        schema: Option<&str>,
    ) -> Result<Schema, Error> {
        let tables = tables(key, prefix, schema)?;
        let engine = Engine::of(key, url)?;
        let schema = match engine {
            #[cfg(feature = "sqlite")]
            Engine::Sqlite => Schema::of::<zerolost_sqlx::sqlx::Sqlite>(engine, &tables),
            #[cfg(feature = "postgres")]
            Engine::Postgres => Schema::of::<zerolost_sqlx::sqlx::Postgres>(engine, &tables),
            #[cfg(feature = "mysql")]
            Engine::MySql => Schema::of::<zerolost_sqlx::sqlx::MySql>(engine, &tables),
        };
        schema.map_err(|e| Error::Config(format!("{key}: {e}")))
    }

    /// Creates or upgrades the tables.
    pub async fn migrate(&self) -> Result<(), Error> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => s.migrate().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.migrate().await,
            #[cfg(feature = "mysql")]
            Self::MySql(s) => s.migrate().await,
        }
    }

    /// Migration versions not applied yet.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, Error> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => s.pending_migrations().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.pending_migrations().await,
            #[cfg(feature = "mysql")]
            Self::MySql(s) => s.pending_migrations().await,
        }
    }

    /// The outbox as the relay and reconciler use it.
    pub fn outbox(&self) -> Arc<dyn OutboxStore> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => Arc::new(s.outbox()),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => Arc::new(s.outbox()),
            #[cfg(feature = "mysql")]
            Self::MySql(s) => Arc::new(s.outbox()),
        }
    }

    /// The inbox as the reconciler reads it.
    pub fn ledger(&self) -> Arc<dyn ConsumerLedger> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => Arc::new(s.inbox()),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => Arc::new(s.inbox()),
            #[cfg(feature = "mysql")]
            Self::MySql(s) => Arc::new(s.inbox()),
        }
    }

    /// The engine's name, for messages.
    pub fn engine(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
            #[cfg(feature = "mysql")]
            Self::MySql(_) => "mysql",
        }
    }
}

/// Runs `open` again while it fails with a retryable error (a database or broker that is
/// restarting), for up to `limit`, logging each failure: a daemon started during a brief
/// outage waits for it instead of exiting (and a chaos run's final readings wait for the
/// service its last fault restarted). Permanent errors (a bad URL, refused
/// credentials, an unsafe setting) return at once.
pub async fn patiently<T, F, Fut>(what: &str, limit: Duration, mut open: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match open().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_retryable() && started.elapsed() + delay < limit => {
                tracing::warn!(error = %e, "cannot reach {what} yet; trying again in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long a chaos consumer waits at start for its database, broker and Redis.
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(120);

/// The publisher of the `broker` the config names (confirmed publish, safety rules applied).
// Without any broker only the "not built" arm is left.
#[cfg_attr(
    not(any(feature = "kafka", feature = "rabbitmq", feature = "rocketmq")),
    allow(unreachable_code)
)]
pub async fn publisher(config: &Config) -> Result<Arc<dyn Publisher>, Error> {
    let broker = config.broker.ok_or_else(|| {
        Error::Config(
            "broker: say which broker the relay publishes to (\"kafka\", \"rabbitmq\" or \"rocketmq\")"
                .into(),
        )
    })?;
    Ok(match broker {
        #[cfg(feature = "kafka")]
        BrokerKind::Kafka => Arc::new(zerolost_kafka::KafkaPublisher::new(&kafka_config(config)?)?),
        #[cfg(feature = "rabbitmq")]
        BrokerKind::Rabbitmq => Arc::new(zerolost_rabbitmq::RabbitPublisher::new(&rabbit_config(
            config,
        )?)?),
        #[cfg(feature = "rocketmq")]
        BrokerKind::Rocketmq => {
            let runtime = zerolost_rocketmq::RocketRuntime::shared()?;
            Arc::new(
                zerolost_rocketmq::RocketPublisher::start(&runtime, &rocket_config(config)?)
                    .await?,
            )
        }
        #[allow(unreachable_patterns)]
        other => return Err(broker_not_built(other)),
    })
}

/// The error for a broker this build left out.
pub fn broker_not_built(broker: BrokerKind) -> Error {
    let name = broker.name();
    not_built(&format!("broker = \"{name}\""), name)
}

#[cfg(any(feature = "kafka", feature = "rabbitmq", feature = "rocketmq"))]
fn missing(section: &str) -> Error {
    Error::Config(format!("this command needs a [{section}] section"))
}

/// The `[kafka]` section as client settings.
#[cfg(feature = "kafka")]
pub fn kafka_config(config: &Config) -> Result<zerolost_kafka::KafkaConfig, Error> {
    let section = config.kafka.as_ref().ok_or_else(|| missing("kafka"))?;
    let mut kafka = zerolost_kafka::KafkaConfig::new(&section.brokers);
    for (key, value) in &section.client_settings()? {
        kafka = kafka.set(key, value);
    }
    for key in &section.allow_unsafe {
        kafka = kafka.allow_unsafe(key);
    }
    if let Some(timeout) = section.delivery_timeout {
        kafka = kafka.delivery_timeout(timeout);
    }
    kafka
        .producer_config()
        .map_err(|e| Error::Config(format!("kafka.client: {e}")))?;
    Ok(kafka)
}

/// The `[rabbitmq]` section as client settings.
#[cfg(feature = "rabbitmq")]
pub fn rabbit_config(config: &Config) -> Result<zerolost_rabbitmq::RabbitConfig, Error> {
    let section = config
        .rabbitmq
        .as_ref()
        .ok_or_else(|| missing("rabbitmq"))?;
    let mut rabbit = zerolost_rabbitmq::RabbitConfig::new(section.connect_url()?.expose())
        .tls(section.tls.clone());
    if let Some(timeout) = section.confirm_timeout {
        rabbit = rabbit.confirm_timeout(timeout);
    }
    if let Some(bytes) = section.max_message_size {
        rabbit = rabbit.max_message_size(bytes);
    }
    rabbit
        .validate()
        .map_err(|e| Error::Config(format!("rabbitmq: {e}")))?;
    Ok(rabbit)
}

/// The `[rocketmq]` section as client settings.
#[cfg(feature = "rocketmq")]
pub fn rocket_config(config: &Config) -> Result<zerolost_rocketmq::RocketConfig, Error> {
    let section = config
        .rocketmq
        .as_ref()
        .ok_or_else(|| missing("rocketmq"))?;
    let mut rocket = zerolost_rocketmq::RocketConfig::new(&section.name_server);
    if let Some(group) = &section.producer_group {
        rocket = rocket.producer_group(group);
    }
    if let Some(sends) = section.sends_in_flight {
        rocket = rocket.sends_in_flight(sends);
    }
    if let Some(timeout) = section.send_timeout {
        rocket = rocket.send_timeout(timeout);
    }
    if let Some(bytes) = section.max_message_size {
        rocket = rocket.max_message_size(bytes);
    }
    if let Some((access, secret)) = section.acl_keys()? {
        rocket = rocket.acl(zerolost_rocketmq::AclKeys::new(access, secret));
    }
    if let Some(files) = section.tls_files()? {
        rocket = rocket.tls(files);
    }
    rocket
        .validate()
        .map_err(|e| Error::Config(format!("rocketmq: {e}")))?;
    Ok(rocket)
}

/// The consumers' ledger: `[inbox]`, else `[redis]`.
pub async fn ledger(config: &Config) -> Result<Arc<dyn ConsumerLedger>, Error> {
    if let Some(inbox) = &config.inbox {
        return Ok(OutboxDb::connect_inbox(inbox).await?.ledger());
    }
    if let Some(redis) = &config.redis {
        #[cfg(feature = "redis")]
        return Ok(Arc::new(
            zerolost_redis::RedisDedupe::connect_with_tls(
                redis.connect_url()?.expose(),
                &redis.tls,
            )
            .await?
            .with_prefix(&redis.prefix)
            .map_err(|e| Error::Config(format!("redis.prefix: {e}")))?,
        ));
        #[cfg(not(feature = "redis"))]
        return Err(not_built(&format!("[redis] {}", redis.url), "redis"));
    }
    Err(Error::Config(
        "reconcile needs the consumers' ledger: an [inbox] section (SQL inbox) or [redis]".into(),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn patiently_retries_outages_and_returns_permanent_errors_at_once() {
        let calls = AtomicU32::new(0);
        let opened = patiently("a store", Duration::from_secs(10), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(Error::unavailable("db", "restarting")),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(opened.unwrap(), 2, "two outages waited out");

        let calls = AtomicU32::new(0);
        let refused = patiently("a store", Duration::from_secs(10), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::Config("bad url".into()))
        })
        .await;
        assert!(matches!(refused, Err(Error::Config(_))));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a permanent error is not retried"
        );

        let started = tokio::time::Instant::now();
        let gave_up = patiently("a store", Duration::from_millis(500), || async {
            Err::<(), _>(Error::unavailable("db", "down"))
        })
        .await;
        assert!(gave_up.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "gave up near the limit"
        );
    }
}
