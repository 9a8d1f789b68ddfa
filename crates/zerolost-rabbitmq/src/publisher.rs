//! Confirmed publish: confirm-mode channels, persistent and mandatory messages, each
//! message resolved by its own ack, nack or return.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind, PublisherConfirm};
use tokio::sync::Mutex;
use zerolost_core::{Envelope, Error, Publisher, Receipt};

use crate::error::is_not_found;
use crate::link::{Link, close_quietly};
use crate::{RabbitConfig, RabbitError};

/// Publishes with publisher confirms: `Ok` only on the broker's ack for that message.
///
/// Each message goes to the exchange named by its destination (`""` is the default
/// exchange, routing by queue name) with its key as routing key, `delivery_mode=2`
/// (persistent), `mandatory=true`, `message_id` = the envelope id (also in the
/// `zerolost-id` header) and its headers as AMQP headers. A message the broker returns (no
/// queue bound) or whose exchange does not exist is **unroutable** (permanent: the relay
/// parks it); a nack, a missing confirm or a broken connection is retryable (the relay
/// sends again, the consumer deduplicates). The connection and channels are made again
/// on the next call after they broke.
///
/// `publish_batch` publishes the whole batch on one channel and then awaits the confirms
/// together; concurrent batches spread over several channels.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::{Envelope, Publisher};
/// use zerolost_rabbitmq::{QueueSpec, RabbitConfig, RabbitPublisher, declare_destination};
///
/// let config = RabbitConfig::new("amqp://app:secret@127.0.0.1:5672/%2f");
/// declare_destination(&config, "orders", QueueSpec::default()).await?;
/// let publisher = RabbitPublisher::new(&config)?;
/// let receipt = publisher.publish(&Envelope::new("orders", "order 42 created")).await?;
/// assert_eq!(receipt.destination, "orders");
/// # Ok(()) }
/// ```
pub struct RabbitPublisher {
    link: Arc<Link>,
    channels: Vec<Mutex<Option<Channel>>>,
    next: AtomicUsize,
    /// Exchanges known to exist (checked passively once).
    exchanges: std::sync::Mutex<HashSet<String>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for RabbitPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitPublisher")
            .field("config", self.link.config())
            .finish_non_exhaustive()
    }
}

impl RabbitPublisher {
    /// A publisher; refuses unsafe settings (see [`RabbitConfig::validate`]). Connects on
    /// first use.
    pub fn new(config: &RabbitConfig) -> Result<Self, RabbitError> {
        config.validate()?;
        if let Some(reason) = config.unsafe_reason() {
            tracing::warn!(
                confirms = config.confirms(),
                persistent = config.persistent(),
                reason,
                "RabbitMQ publisher with unsafe settings allowed"
            );
        }
        let channels = (0..config.publisher_channel_count())
            .map(|_| Mutex::new(None))
            .collect();
        Ok(Self {
            link: Arc::new(Link::new(config.clone())),
            channels,
            next: AtomicUsize::new(0),
            exchanges: std::sync::Mutex::new(HashSet::new()),
            closed: AtomicBool::new(false),
        })
    }

    fn forget_exchanges(&self) {
        self.exchanges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Which of `names` exist; a missing one is answered `Ok(false)`.
    async fn check_exchanges(&self, names: &[&str]) -> Result<HashMap<String, bool>, RabbitError> {
        let mut answers = HashMap::new();
        let unknown: Vec<&str> = {
            let known = self.exchanges.lock().unwrap_or_else(|e| e.into_inner());
            names
                .iter()
                .copied()
                .filter(|name| !name.is_empty() && !known.contains(*name))
                .collect()
        };
        for name in unknown {
            // A passive declare that fails closes its channel: one scratch channel per check.
            let channel = self.link.channel(false).await?;
            let exists = match channel
                .exchange_declare(
                    short(name)?,
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
            {
                Ok(()) => {
                    close_quietly(channel);
                    true
                }
                Err(e) if is_not_found(&e) => false,
                Err(e) => {
                    return Err(RabbitError::Amqp {
                        operation: "exchange.declare (passive)",
                        source: e,
                    });
                }
            };
            if exists {
                self.exchanges
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_owned());
            }
            answers.insert(name.to_owned(), exists);
        }
        Ok(answers)
    }

    fn properties(&self, envelope: &Envelope) -> Result<BasicProperties, RabbitError> {
        let mut headers = FieldTable::default();
        for (name, value) in envelope.wire_headers() {
            headers.insert(
                ShortString::try_new(name)
                    .map_err(|e| RabbitError::Invalid(format!("header name: {e}")))?,
                AMQPValue::LongString(value.into()),
            );
        }
        let mode = if self.link.config().persistent() {
            2
        } else {
            1
        };
        Ok(BasicProperties::default()
            .with_delivery_mode(mode)
            .with_message_id(envelope.id.to_string().into())
            .with_timestamp(u64::try_from(envelope.created_at.timestamp()).unwrap_or(0))
            .with_headers(headers))
    }

    /// Publishes `envelopes` (each with its index in the caller's batch) on `channel` and
    /// waits for their confirms.
    async fn publish_on_channel(
        &self,
        channel: &Channel,
        envelopes: &[(usize, &Envelope)],
    ) -> Round {
        let sent = self.send(channel, envelopes).await;
        let mut round = if self.link.config().confirms() {
            self.confirm(sent.pending).await
        } else {
            Round {
                results: (sent.pending.into_iter())
                    .map(|(index, envelope, _)| (index, Ok(receipt(envelope))))
                    .collect(),
                healthy: true,
            }
        };
        round.results.extend(sent.failed);
        round.healthy &= sent.healthy;
        round
    }

    /// `basic.publish` of each message, in order; after the channel fails, the rest are not
    /// sent (not confirmed, retryable).
    async fn send<'e>(&self, channel: &Channel, envelopes: &[(usize, &'e Envelope)]) -> Sent<'e> {
        let mut sent = Sent {
            pending: Vec::with_capacity(envelopes.len()),
            failed: Vec::new(),
            healthy: true,
        };
        for &(index, envelope) in envelopes {
            if !sent.healthy {
                let e = not_confirmed("the channel closed before this message was sent");
                sent.failed.push((index, Err(e)));
                continue;
            }
            let prepared = short(&envelope.destination).and_then(|exchange| {
                let key = short(envelope.key.as_deref().unwrap_or(""))?;
                Ok((exchange, key, self.properties(envelope)?))
            });
            let (exchange, key, properties) = match prepared {
                Ok(parts) => parts,
                Err(e) => {
                    sent.failed.push((index, Err(e.into())));
                    continue;
                }
            };
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            // Bounded like the confirms: a broker that blocks the connection must not hang the batch.
            let publish =
                channel.basic_publish(exchange, key, options, &envelope.payload, properties);
            match tokio::time::timeout(self.link.config().confirm_timeout_value(), publish).await {
                Ok(Ok(confirm)) => sent.pending.push((index, envelope, confirm)),
                Ok(Err(e)) => {
                    sent.healthy = false;
                    let e = not_confirmed(&format!("basic.publish: {e}"));
                    sent.failed.push((index, Err(e)));
                }
                Err(_) => {
                    sent.healthy = false;
                    let e = not_confirmed("basic.publish did not complete in time");
                    sent.failed.push((index, Err(e)));
                }
            }
        }
        sent
    }

    /// Waits for the confirms of the messages sent: each is confirmed, nacked, returned
    /// (unroutable) or unknown (the channel failed, or no confirm within the timeout).
    async fn confirm(&self, pending: Vec<(usize, &Envelope, PublisherConfirm)>) -> Round {
        let timeout = self.link.config().confirm_timeout_value();
        let (sent, confirms): (Vec<(usize, &Envelope)>, Vec<PublisherConfirm>) = pending
            .into_iter()
            .map(|(index, envelope, confirm)| ((index, envelope), confirm))
            .unzip();
        let Ok(confirmations) =
            tokio::time::timeout(timeout, futures::future::join_all(confirms)).await
        else {
            // No confirm for that long: the connection is likely dead but not yet noticed.
            self.link.reset().await;
            return Round {
                results: (sent.into_iter())
                    .map(|(index, _)| (index, Err(RabbitError::ConfirmTimeout(timeout).into())))
                    .collect(),
                healthy: false,
            };
        };
        // The broker sends basic.return before the ack of the same message, but a return
        // may ride on the confirmation of another message of the batch (acks with
        // `multiple`): match returns by message id.
        let mut healthy = true;
        let mut returned: HashSet<String> = HashSet::new();
        let mut outcomes = Vec::with_capacity(confirmations.len());
        for confirmation in confirmations {
            let (message, outcome) = match confirmation {
                Ok(Confirmation::Ack(message)) => (message, Ok(())),
                Ok(Confirmation::Nack(message)) => (message, Err(None)),
                Ok(Confirmation::NotRequested) => (
                    None,
                    Err(Some("the channel is not in confirm mode".to_owned())),
                ),
                Err(e) => {
                    healthy = false;
                    (None, Err(Some(format!("confirm: {e}"))))
                }
            };
            returned.extend(message.as_ref().and_then(returned_id));
            outcomes.push(outcome);
        }
        let results = sent
            .into_iter()
            .zip(outcomes)
            .map(|((index, envelope), outcome)| {
                let destination = || envelope.destination.clone();
                let result = if returned.contains(&envelope.id.to_string()) {
                    Err(RabbitError::Unroutable {
                        exchange: destination(),
                    }
                    .into())
                } else {
                    match outcome {
                        Ok(()) => Ok(receipt(envelope)),
                        Err(None) => Err(RabbitError::Nacked {
                            exchange: destination(),
                        }
                        .into()),
                        Err(Some(reason)) => Err(not_confirmed(&reason)),
                    }
                };
                (index, result)
            })
            .collect();
        Round { results, healthy }
    }

    async fn publish_all(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        if self.closed.load(Ordering::SeqCst) {
            let closed = || Err(Error::Closed("the RabbitMQ publisher was closed".into()));
            return envelopes.iter().map(|_| closed()).collect();
        }
        let mut results: Vec<Option<Result<Receipt, Error>>> =
            envelopes.iter().map(|_| None).collect();
        let limit = self.link.config().max_message_bytes();
        for (index, envelope) in envelopes.iter().enumerate() {
            if envelope.payload.len() > limit {
                results[index] = Some(Err(Error::Rejected {
                    reason: format!(
                        "message of {} bytes exceeds the broker's max_message_size of {limit} bytes",
                        envelope.payload.len()
                    ),
                }));
            }
        }
        let names: Vec<&str> = {
            let mut names: Vec<&str> = envelopes.iter().map(|e| e.destination.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        match self.check_exchanges(&names).await {
            Ok(answers) => {
                for (index, envelope) in envelopes.iter().enumerate() {
                    if answers.get(&envelope.destination) == Some(&false)
                        && results[index].is_none()
                    {
                        results[index] = Some(Err(RabbitError::Unroutable {
                            exchange: envelope.destination.clone(),
                        }
                        .into()));
                    }
                }
            }
            Err(e) => {
                return envelopes
                    .iter()
                    .map(|_| Err(connection_error(&e)))
                    .collect();
            }
        }
        let to_send: Vec<(usize, &Envelope)> = envelopes
            .iter()
            .enumerate()
            .filter(|(index, _)| results[*index].is_none())
            .collect();
        if !to_send.is_empty() {
            let slot =
                &self.channels[self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len()];
            let mut slot = slot.lock().await;
            let channel = match slot.as_ref() {
                Some(channel) if channel.status().connected() => Ok(channel.clone()),
                _ => self.link.channel(self.link.config().confirms()).await,
            };
            match channel {
                Ok(channel) => {
                    let round = self.publish_on_channel(&channel, &to_send).await;
                    for (index, result) in round.results {
                        results[index] = Some(result);
                    }
                    if round.healthy {
                        *slot = Some(channel);
                    } else {
                        // Unknown confirms or a closed channel: start the next batch on a
                        // fresh channel, and check exchanges again (one may have gone).
                        *slot = None;
                        close_quietly(channel);
                        self.forget_exchanges();
                    }
                }
                Err(e) => {
                    *slot = None;
                    for (index, _) in to_send {
                        results[index] = Some(Err(connection_error(&e)));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(not_confirmed("not sent"))))
            .collect()
    }
}

/// What one batch on a channel came to: a result per message (by its index in the
/// caller's batch) and whether the channel can carry the next batch.
struct Round {
    results: Vec<(usize, Result<Receipt, Error>)>,
    healthy: bool,
}

/// The messages of a batch `basic.publish` took (awaiting their confirms) and those it
/// did not, with why.
struct Sent<'e> {
    pending: Vec<(usize, &'e Envelope, PublisherConfirm)>,
    failed: Vec<(usize, Result<Receipt, Error>)>,
    healthy: bool,
}

fn short(value: &str) -> Result<ShortString, RabbitError> {
    ShortString::try_new(value).map_err(|e| {
        RabbitError::Invalid(format!(
            "exchange names and routing keys are at most 255 bytes: {e}"
        ))
    })
}

fn returned_id(message: &lapin::message::BasicReturnMessage) -> Option<String> {
    message
        .delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
}

fn receipt(envelope: &Envelope) -> Receipt {
    Receipt {
        id: envelope.id,
        destination: envelope.destination.clone(),
        position: None,
    }
}

fn not_confirmed(reason: &str) -> Error {
    Error::NotConfirmed {
        reason: format!("RabbitMQ: {reason}; the message may or may not be stored"),
    }
}

/// A connection-level failure, said of every message of the batch (their class kept).
fn connection_error(error: &RabbitError) -> Error {
    if error.is_retryable() {
        Error::unavailable("rabbitmq", error)
    } else {
        Error::backend("rabbitmq", false, error.to_string())
    }
}

#[async_trait]
impl Publisher for RabbitPublisher {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        self.publish_all(std::slice::from_ref(envelope))
            .await
            .pop()
            .unwrap_or_else(|| Err(not_confirmed("not sent")))
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        self.publish_all(envelopes).await
    }

    /// Refuses further publishes and closes the channels and the connection (a publish
    /// in flight ends with its confirm or a retryable error).
    async fn close(&self) -> Result<(), Error> {
        self.closed.store(true, Ordering::SeqCst);
        for slot in &self.channels {
            slot.lock().await.take();
        }
        self.link.close().await;
        Ok(())
    }
}
