//! Broker-neutral fault wrappers: they wrap any backend's publisher or dedupe store, so
//! the same fault scenario runs on every backend.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use zerolost_core::{
    Claim, ClaimToken, DedupeStore, Envelope, Error, FailureRecord, MessageId, Outcome, Publisher,
    Receipt,
};

/// Fails publishes of chosen ids retryably (before they reach the broker): the first
/// `n` attempts of each `flaky` id, every attempt of each `dead` id.
pub struct FlakyPublisher<P> {
    inner: P,
    remaining: Mutex<HashMap<MessageId, u32>>,
    dead: HashSet<MessageId>,
}

impl<P: Publisher> FlakyPublisher<P> {
    /// Wraps `inner`.
    pub fn new(
        inner: P,
        flaky: impl IntoIterator<Item = (MessageId, u32)>,
        dead: impl IntoIterator<Item = MessageId>,
    ) -> Self {
        Self {
            inner,
            remaining: Mutex::new(flaky.into_iter().collect()),
            dead: dead.into_iter().collect(),
        }
    }

    fn fails(&self, id: MessageId) -> bool {
        if self.dead.contains(&id) {
            return true;
        }
        let mut remaining = self.remaining.lock().unwrap_or_else(|p| p.into_inner());
        match remaining.get_mut(&id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

#[async_trait]
impl<P: Publisher> Publisher for FlakyPublisher<P> {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        if self.fails(envelope.id) {
            return Err(Error::unavailable(
                "broker",
                "connection reset (test fault)",
            ));
        }
        self.inner.publish(envelope).await
    }
}

/// A broker that lies: it confirms chosen ids without storing them. Simulates a loss
/// inside the broker, which only reconciliation can catch.
pub struct LossyPublisher<P> {
    inner: P,
    lose: HashSet<MessageId>,
}

impl<P: Publisher> LossyPublisher<P> {
    /// Wraps `inner`, losing `lose`.
    pub fn new(inner: P, lose: impl IntoIterator<Item = MessageId>) -> Self {
        Self {
            inner,
            lose: lose.into_iter().collect(),
        }
    }
}

#[async_trait]
impl<P: Publisher> Publisher for LossyPublisher<P> {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        if self.lose.contains(&envelope.id) {
            return Ok(Receipt {
                id: envelope.id,
                destination: envelope.destination.clone(),
                position: None,
            });
        }
        self.inner.publish(envelope).await
    }
}

/// A dedupe store that can be switched off (every call: unavailable), to prove the
/// consumer fails closed on any store. Remembers when the last claim or extension that
/// the store granted was sent.
pub struct SwitchableDedupe<D> {
    inner: D,
    down: AtomicBool,
    last_grant: Mutex<Option<tokio::time::Instant>>,
}

impl<D: DedupeStore> SwitchableDedupe<D> {
    /// Wraps `inner`, switched on.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            last_grant: Mutex::new(None),
        }
    }

    /// When the latest claim or extension that succeeded was sent: the claim's lease at
    /// the store runs at most until then plus the lease.
    pub fn last_grant(&self) -> Option<tokio::time::Instant> {
        *self.last_grant.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn granted(&self, sent: tokio::time::Instant) {
        *self.last_grant.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent);
    }

    /// Switches the store off (`true`) or on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable(
                "dedupe store",
                "switched off by the test",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl<D: DedupeStore> DedupeStore for SwitchableDedupe<D> {
    async fn claim(&self, id: MessageId, lease: Duration) -> Result<Claim, Error> {
        self.check()?;
        let sent = tokio::time::Instant::now();
        let claim = self.inner.claim(id, lease).await?;
        if matches!(claim, Claim::Claimed(_)) {
            self.granted(sent);
        }
        Ok(claim)
    }
    async fn extend(&self, token: &ClaimToken, lease: Duration) -> Result<(), Error> {
        self.check()?;
        let sent = tokio::time::Instant::now();
        self.inner.extend(token, lease).await?;
        self.granted(sent);
        Ok(())
    }
    async fn complete(
        &self,
        token: &ClaimToken,
        outcome: Outcome,
        keep_for: Duration,
    ) -> Result<(), Error> {
        self.check()?;
        self.inner.complete(token, outcome, keep_for).await
    }
    async fn release(&self, token: &ClaimToken) -> Result<(), Error> {
        self.check()?;
        self.inner.release(token).await
    }
    async fn failures(&self, id: MessageId) -> Result<Option<FailureRecord>, Error> {
        self.check()?;
        self.inner.failures(id).await
    }
    async fn record_failure(&self, id: MessageId, error: &str) -> Result<FailureRecord, Error> {
        self.check()?;
        self.inner.record_failure(id, error).await
    }
    async fn park_dead_letter(
        &self,
        parked: &zerolost_core::parking::ParkedDeadLetter,
    ) -> Result<(), Error> {
        self.check()?;
        self.inner.park_dead_letter(parked).await
    }
}

/// A confirmed publisher that stores nothing and records how often each id was
/// published (for relay tests and store benchmarks: the broker costs nothing).
#[derive(Clone, Default)]
pub struct RecordingPublisher {
    published: std::sync::Arc<Mutex<HashMap<MessageId, u32>>>,
    max_payload: Option<usize>,
}

impl RecordingPublisher {
    /// A publisher that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rejects (permanently) payloads larger than `bytes`, like a broker's size limit.
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Publish counts by id.
    pub fn counts(&self) -> HashMap<MessageId, u32> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many distinct ids were published.
    pub fn distinct(&self) -> usize {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[async_trait]
impl Publisher for RecordingPublisher {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        if let Some(max) = self.max_payload
            && envelope.payload.len() > max
        {
            return Err(Error::Rejected {
                reason: format!(
                    "message of {} bytes exceeds the broker's limit of {max} bytes",
                    envelope.payload.len()
                ),
            });
        }
        *self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(envelope.id)
            .or_default() += 1;
        Ok(Receipt {
            id: envelope.id,
            destination: envelope.destination.clone(),
            position: None,
        })
    }
}
