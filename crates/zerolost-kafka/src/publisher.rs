//! [`KafkaPublisher`]: confirmed publish with `acks=all` and the idempotent producer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use zerolost_core::{Envelope, Error, Publisher, Receipt};

use crate::{KafkaConfig, KafkaError};

/// How long to wait before trying to enqueue again when librdkafka's local queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// A [`Publisher`] on Kafka: `publish` returns `Ok` only after the delivery report says
/// every in-sync replica stored the record (`acks=all`, idempotent producer).
///
/// The envelope's id travels in the `zerolost-id` header and, when the envelope has no
/// key, as the record key (so redeliveries of one message land on one partition).
/// `publish_batch` puts every record in flight at once and resolves each from its own
/// delivery report.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_core::Error> {
/// use zerolost_core::{Envelope, Publisher};
/// use zerolost_kafka::{KafkaConfig, KafkaPublisher};
/// let publisher = KafkaPublisher::new(&KafkaConfig::new("127.0.0.1:9092"))?;
/// let receipt = publisher.publish(&Envelope::new("orders", "{}")).await?;
/// println!("stored at {:?}", receipt.position); // partition/offset
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer,
    auto_create: bool,
    /// Shared by clones, like the producer.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("auto_create", &self.auto_create)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    /// A publisher with `config`'s producer settings; an unsafe setting is refused.
    pub fn new(config: &KafkaConfig) -> Result<Self, Error> {
        let producer = config
            .producer_config()?
            .create()
            .map_err(KafkaError::Config)?;
        Ok(Self {
            producer,
            auto_create: config.auto_create_topics(),
            closed: Arc::default(),
        })
    }

    /// The underlying producer (metadata queries, flush).
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    fn failed(&self, topic: &str, source: ClientError) -> Error {
        KafkaError::Produce {
            topic: topic.to_owned(),
            source,
            auto_create: self.auto_create,
        }
        .into()
    }

    /// Hands one record to librdkafka, waiting while its local queue is full.
    async fn enqueue(&self, envelope: &Envelope) -> Result<DeliveryFuture, Error> {
        if self.closed.load(AtomicOrdering::SeqCst) {
            return Err(Error::Closed("the Kafka publisher was closed".into()));
        }
        let id = envelope.id.to_string();
        let key = envelope.key.as_deref().unwrap_or(&id);
        let mut headers = OwnedHeaders::new();
        for (name, value) in envelope.wire_headers() {
            headers = headers.insert(Header {
                key: &name,
                value: Some(value.as_str()),
            });
        }
        let mut record = FutureRecord::to(&envelope.destination)
            .key(key)
            .payload(envelope.payload.as_ref())
            .headers(headers)
            .timestamp(envelope.created_at.timestamp_millis());
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((ClientError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((source, _)) => return Err(self.failed(&envelope.destination, source)),
            }
        }
    }

    async fn confirmed(
        &self,
        envelope: &Envelope,
        delivery: DeliveryFuture,
    ) -> Result<Receipt, Error> {
        match delivery.await {
            Ok(Ok(stored)) => Ok(Receipt {
                id: envelope.id,
                destination: envelope.destination.clone(),
                position: Some(format!("{}/{}", stored.partition, stored.offset)),
            }),
            Ok(Err((source, _))) => Err(self.failed(&envelope.destination, source)),
            Err(_) => Err(KafkaError::ReportLost {
                topic: envelope.destination.clone(),
            }
            .into()),
        }
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, envelope: &Envelope) -> Result<Receipt, Error> {
        let delivery = self.enqueue(envelope).await?;
        self.confirmed(envelope, delivery).await
    }

    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<Result<Receipt, Error>> {
        let mut in_flight = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            in_flight.push(self.enqueue(envelope).await);
        }
        let reports = envelopes
            .iter()
            .zip(in_flight)
            .map(|(envelope, sent)| async move { self.confirmed(envelope, sent?).await });
        futures::future::join_all(reports).await
    }

    /// Refuses further publishes and waits (on a blocking thread) until librdkafka has
    /// an answer for every record handed to it.
    async fn close(&self) -> Result<(), Error> {
        self.closed.store(true, AtomicOrdering::SeqCst);
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(CLOSE_FLUSH))
            .await
            .map_err(|e| Error::backend("kafka flush task", true, e.to_string()))?
            .map_err(|source| {
                KafkaError::Client {
                    operation: "flush",
                    source,
                }
                .into()
            })
    }
}

/// How long `close` waits for librdkafka's outstanding records.
const CLOSE_FLUSH: Duration = Duration::from_secs(30);
