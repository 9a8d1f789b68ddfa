//! [`RedisDedupe`]: the dedupe store and consumer ledger on Redis.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use zerolost_core::parking::ParkedDeadLetter;
use zerolost_core::{
    Claim, ClaimToken, ConsumerLedger, DedupeStore, Error, FailureRecord, MessageId, Outcome,
    ProcessedEntry, Snapshot, TlsFiles, redact_url,
};

use crate::keys::Keys;
use crate::{RedisStoreError, scripts};

/// How long a failure counter lives after its last failure, by default.
const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(24 * 3600);

/// A [`DedupeStore`] and [`ConsumerLedger`] on Redis: leased claims with random tokens
/// (`SET NX PX`), Lua compare-and-set to extend, complete or release, a fencing counter
/// per id (`FENCE:{id}`, kept as long as the failure counter or the mark, whichever is
/// longer), processed marks with a TTL, failure counters with a TTL. Reconnects by itself; while Redis is unreachable every
/// call fails with a retryable error, so the consumer fails closed.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_redis::RedisDedupe;
/// let dedupe = RedisDedupe::connect("redis://127.0.0.1:6379").await?;
/// let scoped = dedupe.with_prefix("billing:")?; // keys billing:MSG:{id}, billing:LOCK:{id}
/// # let _ = scoped; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisDedupe {
    conn: ConnectionManager,
    pub(crate) keys: Keys,
    failure_ttl: Duration,
}

impl std::fmt::Debug for RedisDedupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDedupe")
            .field("keys", &self.keys)
            .field("failure_ttl", &self.failure_ttl)
            .finish()
    }
}

impl RedisDedupe {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`) with a reconnecting
    /// connection manager; operations time out after 2 s. The password never appears in
    /// errors.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with_tls(url, &TlsFiles::default()).await
    }

    /// Connects to a `rediss://` URL with a CA file (instead of the system's roots) and, for
    /// mutual TLS, a client certificate; needs the `tls` feature. The server's name is
    /// checked against its certificate. `rediss://user:password@host:port` logs in as an
    /// ACL user.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), zerolost_core::Error> {
    /// use zerolost_core::TlsFiles;
    /// use zerolost_redis::RedisDedupe;
    /// let tls = TlsFiles::default().ca("/etc/zerolost/ca.pem");
    /// let store = RedisDedupe::connect_with_tls("rediss://app:s3cret@cache.internal:6380", &tls).await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn connect_with_tls(url: &str, tls: &TlsFiles) -> Result<Self, Error> {
        let client = crate::tls::client(url, tls)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = match ConnectionManager::new_with_config(client.clone(), config).await {
            Ok(conn) => conn,
            Err(e) => {
                let text = crate::tls::failure_text(&client, url, &e).await;
                return Err(Error::unavailable(&redact_url(url), text));
            }
        };
        Ok(Self::new(conn))
    }

    /// A store on an existing connection manager, with the article's key shapes.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            keys: Keys::default(),
            failure_ttl: DEFAULT_FAILURE_TTL,
        }
    }

    /// Puts `prefix` before every key (printable ASCII, no spaces, braces or glob
    /// characters); refused otherwise.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, Error> {
        self.keys = Keys::new(prefix)?;
        Ok(self)
    }

    /// How long a failure counter lives after its last failure (default 24 h).
    pub fn with_failure_ttl(mut self, ttl: Duration) -> Self {
        self.failure_ttl = ttl;
        self
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Processed => "processed",
        Outcome::DeadLettered => "dead_lettered",
    }
}

/// A processed mark: `outcome|token|finished-at-ms`.
fn parse_mark(key: &str, mark: &str) -> Result<(Outcome, DateTime<Utc>), RedisStoreError> {
    let corrupt = |reason: &str| RedisStoreError::Corrupt {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parts = mark.split('|');
    let outcome = match parts.next() {
        Some("processed") => Outcome::Processed,
        Some("dead_lettered") => Outcome::DeadLettered,
        _ => return Err(corrupt("unknown outcome")),
    };
    let at = parts
        .nth(1)
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| corrupt("no finish time"))?;
    Ok((outcome, at))
}

fn failure_record(
    key: &str,
    fields: &HashMap<String, String>,
) -> Result<Option<FailureRecord>, RedisStoreError> {
    let Some(attempts) = fields.get("attempts") else {
        return Ok(None);
    };
    let time = |name: &str| {
        fields
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| RedisStoreError::Corrupt {
                key: key.to_owned(),
                reason: format!("no {name}"),
            })
    };
    Ok(Some(FailureRecord {
        attempts: attempts.parse().map_err(|_| RedisStoreError::Corrupt {
            key: key.to_owned(),
            reason: "attempts is not a number".into(),
        })?,
        first_at: time("first_at")?,
        last_at: time("last_at")?,
        last_error: fields.get("last_error").cloned().unwrap_or_default(),
    }))
}

#[async_trait]
impl DedupeStore for RedisDedupe {
    /// One script, one round trip: a done id answers its mark; a free id is locked with a
    /// random token (`SET NX PX`) and its fencing counter (`FENCE:{id}`) goes up by one.
    async fn claim(&self, id: MessageId, lease: Duration) -> Result<Claim, Error> {
        let token = ClaimToken::new(id);
        let mark_key = self.keys.mark(id);
        let (state, value): (i64, String) = scripts::CLAIM
            .key(self.keys.lock(id))
            .key(&mark_key)
            .key(self.keys.fence(id))
            .arg(token.token.to_string())
            .arg(millis(lease))
            .arg(millis(self.failure_ttl.max(lease)))
            .invoke_async(&mut self.conn())
            .await
            .map_err(RedisStoreError::command("claim"))?;
        match state {
            0 => return Ok(Claim::HeldByOther),
            1 => {
                let fence = value.parse().map_err(|_| RedisStoreError::Corrupt {
                    key: self.keys.fence(id),
                    reason: "the fencing counter is not a number".into(),
                })?;
                return Ok(Claim::Claimed(token.with_fence(fence)));
            }
            _ => {}
        }
        let (outcome, _) = parse_mark(&mark_key, &value)?;
        let _: u64 = self
            .conn()
            .incr(self.keys.duplicates(), 1)
            .await
            .map_err(RedisStoreError::command("count duplicate"))?;
        Ok(Claim::AlreadyProcessed(outcome))
    }

    async fn extend(&self, token: &ClaimToken, lease: Duration) -> Result<(), Error> {
        let held: i64 = scripts::EXTEND
            .key(self.keys.lock(token.id))
            .key(self.keys.fence(token.id))
            .arg(token.token.to_string())
            .arg(millis(lease))
            .invoke_async(&mut self.conn())
            .await
            .map_err(RedisStoreError::command("extend"))?;
        if held == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost { id: token.id })
        }
    }

    async fn complete(
        &self,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), Error> {
        let name = outcome_name(outcome);
        let mark = format!("{name}|{}|{}", token.token, Utc::now().timestamp_millis());
        let done: i64 = scripts::COMPLETE
            .key(self.keys.lock(token.id))
            .key(self.keys.mark(token.id))
            .key(self.keys.failures(token.id))
            .key(self.keys.fence(token.id))
            .arg(token.token.to_string())
            .arg(mark)
            .arg(millis(keep_for))
            .arg(name)
            .invoke_async(&mut self.conn())
            .await
            .map_err(RedisStoreError::command("complete"))?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost { id: token.id })
        }
    }

    async fn release(&self, token: &ClaimToken) -> Result<(), Error> {
        let done: i64 = scripts::RELEASE
            .key(self.keys.lock(token.id))
            .arg(token.token.to_string())
            .invoke_async(&mut self.conn())
            .await
            .map_err(RedisStoreError::command("release"))?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost { id: token.id })
        }
    }

    async fn failures(&self, id: MessageId) -> Result<Option<FailureRecord>, Error> {
        let key = self.keys.failures(id);
        let fields: HashMap<String, String> = self
            .conn()
            .hgetall(&key)
            .await
            .map_err(RedisStoreError::command("failures"))?;
        Ok(failure_record(&key, &fields)?)
    }

    async fn record_failure(&self, id: MessageId, error: &str) -> Result<FailureRecord, Error> {
        let key = self.keys.failures(id);
        let fields: HashMap<String, String> = scripts::RECORD_FAILURE
            .key(&key)
            .arg(Utc::now().timestamp_millis())
            .arg(error)
            .arg(millis(self.failure_ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(RedisStoreError::command("record failure"))?;
        failure_record(&key, &fields)?.ok_or_else(|| {
            RedisStoreError::Corrupt {
                key,
                reason: "the failure just recorded is not there".into(),
            }
            .into()
        })
    }

    async fn park_dead_letter(&self, parked: &ParkedDeadLetter) -> Result<(), Error> {
        self.park(parked).await
    }
}

#[async_trait]
impl ConsumerLedger for RedisDedupe {
    /// Scans the processed marks (`SCAN MATCH`, then GETs in pipelined chunks); marks
    /// expire after `keep_for`, so the ledger covers that window.
    async fn finished(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Snapshot<ProcessedEntry>, Error> {
        let taken_at = Utc::now();
        let mut conn = self.conn();
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter = conn
                .scan_options::<String>(
                    redis::ScanOptions::default()
                        .with_pattern(self.keys.mark_pattern())
                        .with_count(1000),
                )
                .await
                .map_err(RedisStoreError::command("scan"))?;
            while let Some(key) = iter.next_item().await {
                keys.push(key.map_err(RedisStoreError::command("scan"))?);
            }
        }
        let mut entries = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.get(key);
            }
            let marks: Vec<Option<String>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(RedisStoreError::command("read marks"))?;
            for (key, mark) in chunk.iter().zip(marks) {
                let (Some(mark), Some(id)) = (mark, self.keys.id_of_mark(key)) else {
                    continue; // expired between SCAN and GET, or not ours
                };
                let (outcome, at) = parse_mark(key, &mark)?;
                if since.is_none_or(|since| at >= since) {
                    entries.push(ProcessedEntry { id, outcome, at });
                }
            }
        }
        Ok(Snapshot { taken_at, entries })
    }

    async fn forget_dead_letter(&self, id: MessageId) -> Result<bool, Error> {
        let removed: i64 = scripts::FORGET_DEAD_LETTER
            .key(self.keys.mark(id))
            .key(self.keys.failures(id))
            .invoke_async(&mut self.conn())
            .await
            .map_err(RedisStoreError::command("forget dead letter"))?;
        Ok(removed == 1)
    }

    async fn parked_dead_letters(&self, destination: &str) -> Result<Vec<ParkedDeadLetter>, Error> {
        self.parked(destination).await
    }

    async fn remove_parked(&self, destination: &str, ids: &[MessageId]) -> Result<usize, Error> {
        self.unpark(destination, ids).await
    }

    async fn duplicates_suppressed(&self) -> Result<u64, Error> {
        let n: Option<u64> = self
            .conn()
            .get(self.keys.duplicates())
            .await
            .map_err(RedisStoreError::command("read duplicates"))?;
        Ok(n.unwrap_or(0))
    }
}
