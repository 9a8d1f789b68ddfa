//! Synchronous send where only `SEND_OK` counts.

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;

use rocketmq_client_rust::{DefaultMQAdminExt, DefaultMQProducer};
use rocketmq_model::common::message::message_builder::MessageBuilder;
use rocketmq_model::result::SendStatus;
use zerolost_core::{Envelope, Error, Publisher, Receipt};

use crate::error::routed;
use crate::{RocketConfig, RocketError, RocketRuntime};

/// Publishes with synchronous sends: `Ok` only when the broker answered `SEND_OK` (on a
/// `SYNC_FLUSH` broker: written to disk). `FLUSH_DISK_TIMEOUT`, `FLUSH_SLAVE_TIMEOUT`,
/// `SLAVE_NOT_AVAILABLE` and timeouts are retryable (the message may be stored; the relay
/// sends it again and the consumer deduplicates); a topic without a route is unroutable
/// (the relay parks it).
///
/// The envelope id is the message's key (indexed by the broker) and the `zerolost-id`
/// property; headers become user properties; the envelope's key becomes the sharding key.
/// `publish_batch` keeps [`RocketConfig::sends_in_flight`] sends in flight and resolves
/// each on its own. Before the first message to a topic the brokers serving it are audited
/// ([`crate::audit`]): to an `ASYNC_FLUSH` broker (or an `ASYNC_MASTER` with slaves) nothing is
/// sent unless [`RocketConfig::allow_unsafe`] was called — an unsafe-config error the relay
/// parks with its fix.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::{Envelope, Publisher};
/// use zerolost_rocketmq::{RocketConfig, RocketPublisher, RocketRuntime};
/// let publisher = RocketPublisher::start(
///     &RocketRuntime::shared()?,
///     &RocketConfig::new("127.0.0.1:9876"),
/// )
/// .await?;
/// publisher.publish(&Envelope::new("orders", "order 42 created")).await?;
/// # Ok(()) }
/// ```
pub struct RocketPublisher {
    /// A handle on the client's shared producer (clones share it).
    producer: DefaultMQProducer,
    /// Used by the durability audit; locked to shut it down from `close(&self)`.
    admin: tokio::sync::Mutex<DefaultMQAdminExt>,
    closed: std::sync::atomic::AtomicBool,
    config: RocketConfig,
    /// Topics audited: `Err(finding)` when their brokers are not durable.
    audited: tokio::sync::RwLock<HashMap<String, Result<(), String>>>,
}

impl std::fmt::Debug for RocketPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocketPublisher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RocketPublisher {
    /// Starts a producer; refuses unsafe settings (see [`RocketConfig::validate`]).
    pub async fn start(
        runtime: &RocketRuntime,
        config: &RocketConfig,
    ) -> Result<Self, RocketError> {
        config.validate()?;
        if let Some(reason) = config.unsafe_reason() {
            tracing::warn!(reason, "RocketMQ publisher with unsafe settings allowed");
        }
        let timeout = u32::try_from(config.send_timeout_value().as_millis()).unwrap_or(u32::MAX);
        let mut producer = DefaultMQProducer::builder(runtime.client_runtime())
            .client_config(crate::tls::client_config(config)?)
            .producer_group(config.group().to_owned())
            .name_server_addr(config.name_server().to_owned())
            .send_msg_timeout(timeout)
            // The relay retries, with backoff, and knows about it; one attempt per send here.
            .retry_times_when_send_failed(0)
            .build();
        if let Some(keys) = config.acl_keys() {
            producer.set_rpc_hook(std::sync::Arc::new(keys.hook()));
        }
        // The client's futures are deep types: boxed, so callers' futures stay small.
        Box::pin(producer.start())
            .await
            .map_err(|source| RocketError::Client {
                operation: "producer start",
                source,
            })?;
        let mut admin = crate::topology::admin_client(runtime, config)?;
        Box::pin(admin.start())
            .await
            .map_err(|source| RocketError::Client {
                operation: "admin start",
                source,
            })?;
        Ok(Self {
            producer,
            admin: tokio::sync::Mutex::new(admin),
            closed: Default::default(),
            config: config.clone(),
            audited: tokio::sync::RwLock::new(HashMap::new()),
        })
    }

    /// Refuses a topic whose brokers do not flush before `SEND_OK` (see [`crate::audit`]),
    /// unless unsafe use is allowed. Audited once per topic.
    async fn check_durable(&self, topic: &str) -> Result<(), Error> {
        if self.config.unsafe_reason().is_some() {
            return Ok(());
        }
        let refused = |fix: &String| Error::UnsafeConfig {
            setting: "flushDiskType".into(),
            fix: fix.clone(),
        };
        // Every publish passes here: a shared read of the cached verdict.
        if let Some(verdict) = self.audited.read().await.get(topic) {
            return verdict.as_ref().map_err(refused).copied();
        }
        let mut audited = self.audited.write().await;
        if let Some(verdict) = audited.get(topic) {
            return verdict.as_ref().map_err(refused).copied();
        }
        let admin = self.admin.lock().await;
        let report = Box::pin(crate::audit::audit_with(&admin, topic)).await?;
        drop(admin);
        let verdict = match report.findings.first() {
            None => Ok(()),
            Some(finding) => Err(format!(
                "{} is {}: {}; or call `allow_unsafe(\"why\")`",
                finding.subject, finding.found, finding.fix
            )),
        };
        let outcome = verdict.as_ref().map_err(refused).copied();
        audited.insert(topic.to_owned(), verdict);
        outcome
    }

    async fn send(&self, envelope: &Envelope) -> Result<Receipt, RocketError> {
        let topic = envelope.destination.clone();
        let limit = self.config.max_message_size_value();
        if envelope.payload.len() > limit {
            return Err(RocketError::TooLarge {
                size: envelope.payload.len(),
                limit,
            });
        }
        let id = envelope.id.to_string();
        let mut builder = MessageBuilder::new()
            .topic(topic.as_str())
            .body_slice(&envelope.payload)
            .key(id.as_str())
            .wait_store_msg_ok(true);
        if let Some(key) = &envelope.key {
            builder = builder.sharding_key(key.as_str());
        }
        for (name, value) in &envelope.wire_headers() {
            builder = builder
                .raw_property(name.as_str(), value.as_str())
                .map_err(|e| RocketError::Invalid(format!("property `{name}`: {e}")))?;
        }
        let message = builder
            .build()
            .map_err(|e| RocketError::Invalid(format!("message: {e}")))?;
        let timeout =
            u64::try_from(self.config.send_timeout_value().as_millis()).unwrap_or(u64::MAX);
        let sent = Box::pin(self.producer.send_with_timeout(message, timeout))
            .await
            .map_err(routed("send", &topic))?;
        let Some(result) = sent else {
            return if self.config.forgets() {
                Ok(Receipt {
                    id: envelope.id,
                    destination: topic,
                    position: None,
                })
            } else {
                Err(RocketError::NotStored {
                    topic,
                    status: "no answer",
                })
            };
        };
        match result.send_status {
            SendStatus::SendOk => Ok(Receipt {
                id: envelope.id,
                destination: topic,
                position: result.message_queue.as_ref().map(|queue| {
                    format!(
                        "{}/{}@{}",
                        queue.broker_name(),
                        queue.queue_id(),
                        result.queue_offset
                    )
                }),
            }),
            SendStatus::FlushDiskTimeout => Err(RocketError::NotStored {
                topic,
                status: "FLUSH_DISK_TIMEOUT",
            }),
            SendStatus::FlushSlaveTimeout => Err(RocketError::NotStored {
                topic,
                status: "FLUSH_SLAVE_TIMEOUT",
            }),
            SendStatus::SlaveNotAvailable => Err(RocketError::NotStored {
                topic,
                status: "SLAVE_NOT_AVAILABLE",
            }),
        }
    }
}

#[async_trait]
impl Publisher for RocketPublisher {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Closed("the RocketMQ publisher was closed".into()));
        }
        self.check_durable(&envelope.destination).await?;
        self.send(envelope).await.map_err(Error::from)
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        // Unordered: a slow send does not hold back the window; results are put back in order.
        let sends: Vec<_> = envelopes
            .iter()
            .map(|e| self.publish(e))
            .enumerate()
            .map(|(i, send)| send.map(move |result| (i, result)))
            .collect();
        let mut done: Vec<(usize, Result<Receipt, Error>)> = futures::stream::iter(sends)
            .buffer_unordered(self.config.in_flight())
            .collect()
            .await;
        done.sort_unstable_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, result)| result).collect()
    }

    /// Refuses further publishes and stops the producer and the audit's admin client
    /// (a send in flight ends with `SEND_OK` or an error).
    async fn close(&self) -> Result<(), Error> {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let mut producer = self.producer.clone();
        Box::pin(producer.shutdown()).await;
        Box::pin(self.admin.lock().await.shutdown()).await;
        Ok(())
    }
}
