//! A chaos run's world: the services (through the service scripts), the database tables,
//! the destination and its DLQ, the TCP proxies, and the config file the child processes
//! (`zerolost-lab relay` (the operator's relay), `zerolost-lab chaos-consumer`) read.

use std::path::PathBuf;
use std::sync::Arc;

use zerolost_core::{ConsumerLedger, Error, OutboxStore, default_dlq_name};
use zerolost_testkit::{Backend, Enqueue};

use super::effects::EffectsDb;
use super::secure::Tls;
use super::spec::{ChaosArgs, ChaosBackend, ChaosDedupe, ChaosStore, TABLE_PREFIX};
use super::toxi;
use crate::kinds::{BenchTarget, default_url};
use crate::stores::SqlEnqueue;
use zerolost_cli::config::{BrokerKind, Config};
use zerolost_cli::ops::connect::{OutboxDb, kafka_config, rabbit_config, rocket_config};

/// The scenario's limit: the designated unsendable messages are one byte larger.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The 3-node test cluster (`scripts/services/kafka.sh start cluster`).
fn kafka_cluster() -> String {
    zerolost_testkit::service_url(
        "ZEROLOST_KAFKA_CLUSTER",
        "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094",
    )
}

/// The service scripts (`scripts/services/*.sh`): start, kill, restart.
#[derive(Debug, Clone)]
pub struct Services {
    dir: PathBuf,
}

impl Services {
    /// `dir`, else `ZEROLOST_SERVICES_DIR`, else `scripts/services` under the working
    /// directory.
    pub fn locate(dir: Option<PathBuf>) -> Result<Self, Error> {
        let dir = dir
            .or_else(|| std::env::var_os("ZEROLOST_SERVICES_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("scripts/services"));
        if !dir.join("lib.sh").exists() {
            return Err(Error::Config(format!(
                "no service scripts in {} (run from the zerolost checkout, or pass --services DIR)",
                dir.display()
            )));
        }
        Ok(Self { dir })
    }

    /// Runs `<script>.sh args…`; an error carries the end of its output.
    pub async fn run(&self, script: &str, args: &[&str]) -> Result<(), Error> {
        let path = self.dir.join(format!("{script}.sh"));
        let output = tokio::process::Command::new("bash")
            .arg(&path)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::backend("run a service script", false, e))?;
        if output.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        Err(Error::unavailable(
            script,
            format!(
                "{} {} failed ({}): {}",
                path.display(),
                args.join(" "),
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        ))
    }
}

/// Holds the machine's chaos lock: the runs share the services they kill and restart, and
/// their proxies, so two at once would spoil each other's verdict. The lock file is in the
/// service scripts' state directory (`ZEROLOST_STATE_DIR`, default `/var/tmp/zerolost`).
pub fn exclusive() -> Result<std::fs::File, Error> {
    let dir = std::env::var_os("ZEROLOST_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/zerolost"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("chaos.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Config(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Config(format!(
            "another zerolost-lab chaos run holds {} (runs share the services they kill): wait for it to end",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Config(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// A TCP link the children reach through Toxiproxy.
#[derive(Debug, Clone)]
pub struct Link {
    /// What it leads to: `database`, `redis`, `rabbitmq`.
    pub name: &'static str,
    /// The proxy's name.
    pub proxy: String,
}

/// Everything a run needs, set up.
pub struct World {
    /// The destination (topic / exchange and queue) of the run.
    pub destination: String,
    /// Where the config file and the children's logs are.
    pub run_dir: PathBuf,
    /// The relays' config file.
    pub config_path: PathBuf,
    /// Each consumer's config file: the relays' links, but its dedupe store through a link of
    /// its own.
    pub consumer_configs: Vec<PathBuf>,
    /// The database without a proxy: where the consumers record their handler runs, so no
    /// fault can keep a run from the verdict.
    pub direct_db_url: String,
    /// The effects table.
    pub effects_table: String,
    /// Where a Redis-deduplicated handler records its re-runs.
    pub reruns_table: String,
    /// Where the consumers record every handler run.
    pub runs_table: String,
    /// The Redis key prefix of this run (`--dedupe redis`).
    pub redis_prefix: Option<String>,
    /// The database, directly.
    pub db: EffectsDb,
    /// The outbox, directly.
    pub outbox: Arc<dyn OutboxStore>,
    /// The producer's transactions.
    pub enqueue: Arc<dyn Enqueue>,
    /// The consumers' ledger, directly.
    pub ledger: Arc<dyn ConsumerLedger>,
    /// The broker, directly (DLQ reads).
    pub backend: Arc<dyn Backend>,
    /// Kafka client settings (leader lookups).
    pub kafka: Option<zerolost_kafka::KafkaConfig>,
    /// Links through proxies, shared by the children.
    pub links: Vec<Link>,
    /// Each consumer's own link to its dedupe store (none with SQLite and the inbox).
    pub consumer_links: Vec<Link>,
    /// The service scripts.
    pub services: Services,
    /// This process's own config: direct connections to every service.
    direct: Config,
}

/// `host:port` of a URL (after any `user:password@`).
fn host_port(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split(['/', '?']).next().filter(|s| s.contains(':'))
}

/// Local ports of the run's proxies (below Linux's ephemeral range).
const PROXY_PORTS: [(&str, u16); 5] = [
    ("database", 28470),
    ("redis", 28471),
    ("rabbitmq", 28472),
    (CONSUMER_LINKS[0], 28473),
    (CONSUMER_LINKS[1], 28474),
];

/// The consumers of a run, each with a link of its own to its dedupe store.
pub const CONSUMER_LINKS: [&str; 2] = ["consumer-1 store", "consumer-2 store"];

fn proxy_port(name: &str) -> u16 {
    PROXY_PORTS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(28479, |(_, p)| *p)
}

impl World {
    /// Starts the services the run needs (idempotent), makes the tables, the destination
    /// and the proxies, and writes the children's config file.
    pub async fn prepare(args: &ChaosArgs, seed: u64) -> Result<Self, Error> {
        let services = start_services(args).await?;
        let tls = Tls::of(args.tls, args.backend)?;

        let stamp = chrono::Utc::now().timestamp();
        let name = format!("zl-chaos-{}-{seed}-{stamp}", backend_name(args.backend));
        let run_dir = std::path::absolute(args.run_dir.join(&name))
            .map_err(|e| Error::Config(format!("--run-dir: {e}")))?;
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", run_dir.display())))?;

        // The database: direct URL for this process, proxied for the children.
        let mut links = Vec::new();
        let direct_url = match args.store {
            ChaosStore::Postgres => default_url(BenchTarget::Postgres),
            ChaosStore::Mysql => default_url(BenchTarget::Mysql),
            ChaosStore::Sqlite => format!("sqlite://{}", run_dir.join("chaos.sqlite").display()),
        };
        let direct_url = match &tls {
            Some(tls) if args.store != ChaosStore::Sqlite => tls.db_url(&direct_url),
            _ => direct_url,
        };
        let child_db_url = match host_port(&direct_url) {
            Some(upstream) if args.store != ChaosStore::Sqlite => {
                links.push(proxy("database", upstream).await?);
                direct_url.replacen(upstream, &listen("database"), 1)
            }
            _ => direct_url.clone(),
        };
        let db = open_db(&direct_url).await?;
        let effects = EffectsDb::of(&db);
        let (effects_table, reruns_table, runs_table) = recreate_tables(&effects).await?;

        let redis_prefix = (args.dedupe == ChaosDedupe::Redis).then(|| format!("{name}:"));
        let (direct_urls, child_urls) = link_urls(
            args,
            tls,
            &direct_url,
            child_db_url,
            redis_prefix.is_some(),
            &mut links,
        )
        .await?;
        let write = |file: &str, urls: &Urls| -> Result<PathBuf, Error> {
            let path = run_dir.join(file);
            std::fs::write(&path, config_text(&name, args.backend, urls))
                .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
            Ok(path)
        };
        let config_path = write("zerolost.toml", &child_urls)?;
        let (consumer_links, consumer_urls) = consumer_links(&child_urls, &direct_urls).await?;
        let mut consumer_configs = Vec::new();
        for (i, urls) in consumer_urls.iter().enumerate() {
            consumer_configs.push(write(&format!("consumer-{}.toml", i + 1), urls)?);
        }
        // This process's own view: direct connections.
        let direct = Config::load(Some(&write("direct.toml", &direct_urls)?))?;
        let backend = backend_for(&direct, false).await?;
        let kafka = match args.backend {
            ChaosBackend::Kafka => Some(kafka_config(&direct)?),
            _ => None,
        };
        create_destination(&direct, &name).await?;

        let ledger = ledger_of(redis_prefix.as_deref(), &direct_urls, &db).await?;
        let (outbox, enqueue) = outbox_pair(&db);
        Ok(Self {
            destination: name,
            run_dir,
            config_path,
            consumer_configs,
            direct_db_url: direct_url,
            effects_table,
            reruns_table,
            runs_table,
            redis_prefix,
            db: effects,
            outbox,
            enqueue,
            ledger,
            backend,
            kafka,
            links,
            consumer_links,
            services,
            direct,
        })
    }

    /// Removes the run's proxies and, after a clean run, its RabbitMQ queues (a failed run
    /// keeps them to be inspected). Quorum queues left behind pile up over runs, and every
    /// one of them recovers its log whenever the broker restarts.
    pub async fn teardown(&self, clean: bool) {
        for link in self.links.iter().chain(&self.consumer_links) {
            toxi::delete(&link.proxy).await;
        }
        if !clean || self.direct.broker != Some(BrokerKind::Rabbitmq) {
            return;
        }
        let deleted = match rabbit_config(&self.direct) {
            Ok(rabbit) => zerolost_rabbitmq::delete_destination(&rabbit, &self.destination)
                .await
                .map_err(Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            eprintln!("zerolost-lab chaos: {} kept: {e}", self.destination);
        }
    }
}

/// Starts (idempotently) the services a run needs.
async fn start_services(args: &ChaosArgs) -> Result<Services, Error> {
    let services = Services::locate(args.services.clone())?;
    let mut needed: Vec<(&str, &[&str])> = vec![("toxiproxy", &["start"])];
    needed.push(match args.backend {
        ChaosBackend::Kafka => ("kafka", &["start", "cluster"]),
        ChaosBackend::Rabbitmq => ("rabbitmq", &["start"]),
        ChaosBackend::Rocketmq => ("rocketmq", &["start"]),
    });
    match args.store {
        ChaosStore::Postgres => needed.push(("postgres", &["start"])),
        ChaosStore::Mysql => needed.push(("mariadb", &["start"])),
        ChaosStore::Sqlite => {}
    }
    if args.dedupe == ChaosDedupe::Redis {
        needed.push(("redis", &["start"]));
    }
    for (script, script_args) in &needed {
        services.run(script, script_args).await?;
    }
    Ok(services)
}

/// Makes the run's own tables anew: (effects, re-runs, runs), with the effects' key and the
/// refused marks beside them.
async fn recreate_tables(effects: &EffectsDb) -> Result<(String, String, String), Error> {
    let effects_table = format!("{TABLE_PREFIX}effects");
    let reruns_table = format!("{TABLE_PREFIX}reruns");
    let runs_table = format!("{TABLE_PREFIX}runs");
    effects.recreate(&effects_table).await?;
    effects.recreate(&reruns_table).await?;
    effects
        .recreate_applied(&applied_table(&effects_table))
        .await?;
    effects.recreate_runs(&runs_table).await?;
    effects
        .recreate_marks(&super::marks::marks_table(&runs_table))
        .await?;
    Ok((effects_table, reruns_table, runs_table))
}

/// The consumers' ledger: Redis under the run's prefix, else the database's inbox.
async fn ledger_of(
    redis_prefix: Option<&str>,
    urls: &Urls,
    db: &OutboxDb,
) -> Result<Arc<dyn ConsumerLedger>, Error> {
    let (Some(prefix), Some(url)) = (redis_prefix, &urls.redis) else {
        return Ok(db.ledger());
    };
    let files = urls.tls.as_ref().map(Tls::files).unwrap_or_default();
    Ok(Arc::new(
        zerolost_redis::RedisDedupe::connect_with_tls(url, &files)
            .await?
            .with_prefix(prefix)?,
    ))
}

/// The table that keys a Redis-deduplicated handler's effect by message id (with the
/// fence of the claim that wrote it).
pub fn applied_table(effects_table: &str) -> String {
    format!("{effects_table}_applied")
}

/// The addresses of the run's services for this process (direct) and for the children
/// (through the proxies, which are made here and added to `links`).
async fn link_urls(
    args: &ChaosArgs,
    tls: Option<Tls>,
    direct_db: &str,
    child_db: String,
    redis: bool,
    links: &mut Vec<Link>,
) -> Result<(Urls, Urls), Error> {
    let mut direct_urls = Urls {
        db: direct_db.to_owned(),
        redis: None,
        amqp: None,
        tls: tls.clone(),
    };
    if redis {
        direct_urls.redis = Some(match &tls {
            Some(_) => Tls::redis_url(),
            None => default_url(BenchTarget::Redis),
        });
    }
    if args.backend == ChaosBackend::Rabbitmq {
        direct_urls.amqp = Some(match &tls {
            Some(_) => Tls::amqp_url(),
            None => zerolost_rabbitmq::testkit::test_url(),
        });
    }
    let mut child_urls = Urls {
        db: child_db,
        ..direct_urls.clone()
    };
    for (name, url) in [
        ("redis", &mut child_urls.redis),
        ("rabbitmq", &mut child_urls.amqp),
    ] {
        if let Some(u) = url.as_mut()
            && let Some(upstream) = host_port(u).map(str::to_owned)
        {
            links.push(proxy(name, &upstream).await?);
            *u = u.replacen(&upstream, &listen(name), 1);
        }
    }
    Ok((direct_urls, child_urls))
}

/// A proxy per consumer to its dedupe store (Redis, else the inbox's database), and each
/// consumer's addresses with it. None for SQLite with the inbox (no server to cut off).
async fn consumer_links(child: &Urls, direct: &Urls) -> Result<(Vec<Link>, Vec<Urls>), Error> {
    let upstream = match &direct.redis {
        Some(redis) => host_port(redis),
        None => host_port(&direct.db),
    };
    let Some(upstream) = upstream else {
        return Ok((Vec::new(), vec![child.clone(); CONSUMER_LINKS.len()]));
    };
    let (mut links, mut urls) = (Vec::new(), Vec::new());
    for (i, name) in CONSUMER_LINKS.into_iter().enumerate() {
        let link = Link {
            name,
            proxy: format!("zerolost-chaos-store-{}", i + 1),
        };
        toxi::create(&link.proxy, &listen(name), upstream).await?;
        let mut own = child.clone();
        match &direct.redis {
            Some(redis) => own.redis = Some(redis.replacen(upstream, &listen(name), 1)),
            None => own.db = direct.db.replacen(upstream, &listen(name), 1),
        }
        links.push(link);
        urls.push(own);
    }
    Ok((links, urls))
}

fn listen(name: &str) -> String {
    format!("127.0.0.1:{}", proxy_port(name))
}

async fn proxy(name: &'static str, upstream: &str) -> Result<Link, Error> {
    let proxy = format!("zerolost-chaos-{name}");
    toxi::create(&proxy, &listen(name), upstream).await?;
    Ok(Link { name, proxy })
}

/// The run's database, its tables dropped and migrated anew (SQLite: a new file).
async fn open_db(url: &str) -> Result<OutboxDb, Error> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    let section: zerolost_cli::config::OutboxSection = serde_json::from_value(serde_json::json!({
        "url": url, "table_prefix": TABLE_PREFIX
    }))
    .map_err(|e| Error::Config(format!("the run's database: {e}")))?;
    let db = OutboxDb::connect(&section).await.map_err(|e| {
        Error::Config(format!(
            "cannot reach the run's database ({e}); the service scripts start it: scripts/services/up.sh"
        ))
    })?;
    match &db {
        OutboxDb::Sqlite(s) => s.drop_tables().await?,
        OutboxDb::Postgres(s) => s.drop_tables().await?,
        OutboxDb::MySql(s) => s.drop_tables().await?,
    }
    db.migrate().await?;
    Ok(db)
}

fn outbox_pair(db: &OutboxDb) -> (Arc<dyn OutboxStore>, Arc<dyn Enqueue>) {
    match db {
        OutboxDb::Sqlite(s) => (Arc::new(s.outbox()), Arc::new(SqlEnqueue(s.outbox()))),
        OutboxDb::Postgres(s) => (Arc::new(s.outbox()), Arc::new(SqlEnqueue(s.outbox()))),
        OutboxDb::MySql(s) => (Arc::new(s.outbox()), Arc::new(SqlEnqueue(s.outbox()))),
    }
}

/// The broker a config names as a testkit [`Backend`] (subscribers, DLQ sink and reads).
/// `consumer`: Kafka consumers get a 10 s session, so a killed member's partitions move
/// to the survivor within seconds.
pub async fn backend_for(config: &Config, consumer: bool) -> Result<Arc<dyn Backend>, Error> {
    Ok(match config.broker {
        Some(BrokerKind::Kafka) => {
            let mut kafka = kafka_config(config)?;
            if consumer {
                kafka = kafka
                    .set("session.timeout.ms", "10000")
                    .set("heartbeat.interval.ms", "2000");
            }
            Arc::new(zerolost_kafka::testkit::KafkaBackend::real(
                kafka,
                zerolost_kafka::TopicSpec::DURABLE,
            ))
        }
        Some(BrokerKind::Rabbitmq) => Arc::new(zerolost_rabbitmq::testkit::RabbitBackend::new(
            rabbit_config(config)?,
        )),
        Some(BrokerKind::Rocketmq) => Arc::new(zerolost_rocketmq::testkit::RocketBackend::new(
            zerolost_rocketmq::RocketRuntime::shared()?,
            rocket_config(config)?,
            zerolost_rocketmq::TopicSpec::new(zerolost_rocketmq::testkit::TEST_CLUSTER),
        )),
        None => return Err(Error::Config("the run's config names no broker".into())),
    })
}

async fn create_destination(config: &Config, name: &str) -> Result<(), Error> {
    match config.broker {
        Some(BrokerKind::Kafka) => {
            let kafka = kafka_config(config)?;
            let spec = zerolost_kafka::TopicSpec::DURABLE;
            zerolost_kafka::ensure_topic(&kafka, name, spec).await?;
            zerolost_kafka::ensure_topic(&kafka, &default_dlq_name(name), spec).await?;
        }
        Some(BrokerKind::Rabbitmq) => {
            zerolost_rabbitmq::declare_destination(
                &rabbit_config(config)?,
                name,
                zerolost_rabbitmq::QueueSpec::default(),
            )
            .await?;
        }
        Some(BrokerKind::Rocketmq) => {
            zerolost_rocketmq::declare_destination(
                &zerolost_rocketmq::RocketRuntime::shared()?,
                &rocket_config(config)?,
                &zerolost_rocketmq::TopicSpec::new(zerolost_rocketmq::testkit::TEST_CLUSTER),
                name,
            )
            .await?;
        }
        None => {}
    }
    Ok(())
}

/// The backend's name on the command line.
pub fn backend_name(backend: ChaosBackend) -> &'static str {
    match backend {
        ChaosBackend::Kafka => "kafka",
        ChaosBackend::Rabbitmq => "rabbitmq",
        ChaosBackend::Rocketmq => "rocketmq",
    }
}

/// The addresses a config file names, and the CA of a `--tls` run.
#[derive(Debug, Clone)]
struct Urls {
    db: String,
    redis: Option<String>,
    amqp: Option<String>,
    tls: Option<Tls>,
}

/// The run's config file: its destination, outbox and inbox (or Redis), a relay patient
/// enough to outlast every fault (a row is parked only when the broker refuses it), no
/// HTTP endpoint (two relays share the host), and the broker with the run's size limit.
fn config_text(name: &str, backend: ChaosBackend, urls: &Urls) -> String {
    let tls = |section: &str| {
        urls.tls
            .as_ref()
            .map(|t| t.section(section))
            .unwrap_or_default()
    };
    let dedupe = match &urls.redis {
        Some(redis) => format!("[redis]\nurl = {redis:?}\n{}", tls("redis")),
        None => format!(
            "[inbox]\nurl = {:?}\ntable_prefix = {TABLE_PREFIX:?}\n",
            urls.db
        ),
    };
    let broker = match backend {
        ChaosBackend::Kafka => format!(
            "[kafka]\nbrokers = {:?}\nclient = {{ \"message.max.bytes\" = \"{MAX_MESSAGE_BYTES}\"{} }}\n",
            match &urls.tls {
                Some(_) => Tls::kafka_cluster(),
                None => kafka_cluster(),
            },
            urls.tls.as_ref().map(Tls::kafka_client).unwrap_or_default()
        ),
        ChaosBackend::Rabbitmq => format!(
            "[rabbitmq]\nurl = {:?}\nmax_message_size = {MAX_MESSAGE_BYTES}\n{}",
            urls.amqp.as_deref().unwrap_or_default(),
            tls("rabbitmq")
        ),
        ChaosBackend::Rocketmq => format!(
            "[rocketmq]\nname_server = {:?}\nmax_message_size = {MAX_MESSAGE_BYTES}\n",
            zerolost_rocketmq::testkit::test_name_server()
        ),
    };
    format!(
        "# zerolost-lab chaos run {name} (written by `zerolost-lab chaos`).\n\
         broker = {:?}\ndestinations = [{name:?}]\n\n\
         [outbox]\nurl = {:?}\ntable_prefix = {TABLE_PREFIX:?}\nmigrate = false\n\n\
         {dedupe}\n\
         [relay]\nbatch_size = 200\nlease_for = \"10s\"\nmax_attempts = 1000\n\
         backoff_base = \"100ms\"\nbackoff_cap = \"2s\"\nidle_poll = \"50ms\"\n\
         stats_interval = \"5s\"\ndlq_interval = \"0s\"\n\n\
         [http]\nlisten = \"\"\n\n{broker}",
        backend_name(backend),
        urls.db
    )
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_skips_credentials_and_paths() {
        assert_eq!(
            host_port("postgres://u:p@127.0.0.1:55432/db"),
            Some("127.0.0.1:55432")
        );
        assert_eq!(
            host_port("redis://127.0.0.1:56379"),
            Some("127.0.0.1:56379")
        );
        assert_eq!(host_port("sqlite:///tmp/x.db"), None);
    }
}
