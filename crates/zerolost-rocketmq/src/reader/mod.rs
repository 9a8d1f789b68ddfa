//! Reading a topic whole (DLQ listings, reconcile, tests): every message from each queue's
//! first offset to its end at the start of the read; no consumer group's offset moves.
//!
//! Plaintext links read with the classic pull consumer ([`classic`]). Over TLS it cannot:
//! in rocketmq-client-rust 1.0 its builder resets the TLS switch of the lite pull consumer
//! it is built on, so TLS links read with a lite pull consumer of their own ([`lite`]).

mod classic;
mod lite;

use std::sync::{Arc, Mutex, PoisonError};

use zerolost_core::Incoming;

use crate::{RocketConfig, RocketError, RocketRuntime};

/// Every message stored on `topic` now, read from each queue's first offset (nothing is
/// consumed: no consumer group's offset moves). For tests, audits and DLQ tools; a topic
/// of millions of messages is read whole.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerolost_rocketmq::RocketError> {
/// use zerolost_rocketmq::{RocketConfig, RocketRuntime, dlq_topic, topic_contents};
/// let config = RocketConfig::new("127.0.0.1:9876");
/// let dead = topic_contents(&RocketRuntime::shared()?, &config, &dlq_topic("orders")).await?;
/// println!("{} dead letters", dead.len());
/// # Ok(()) }
/// ```
pub async fn topic_contents(
    runtime: &RocketRuntime,
    config: &RocketConfig,
    topic: &str,
) -> Result<Vec<Incoming>, RocketError> {
    match reader(runtime, config).await? {
        Reader::Classic(reader) => Box::pin(classic::read_topic(&reader, topic)).await,
        Reader::Lite(reader) => Box::pin(reader.read_topic(topic)).await,
    }
}

#[derive(Clone)]
enum Reader {
    Classic(classic::Reader),
    Lite(Arc<lite::LiteReader>),
}

/// Readers kept for the life of the process: a pull consumer that has pulled takes ~20 s
/// to shut down (its long-poll timeout).
static READERS: Mutex<Vec<(String, Reader)>> = Mutex::new(Vec::new());

/// A reader is shared by the configs with the same name server, access key and TLS files.
fn reader_key(config: &RocketConfig) -> String {
    let key = config
        .acl_keys()
        .map(|k| k.access_key())
        .unwrap_or_default();
    format!("{} {key} {:?}", config.name_server(), config.tls_files())
}

async fn reader(runtime: &RocketRuntime, config: &RocketConfig) -> Result<Reader, RocketError> {
    let cached = |readers: &[(String, Reader)]| {
        readers
            .iter()
            .find(|(key, _)| *key == reader_key(config))
            .map(|(_, reader)| reader.clone())
    };
    if let Some(reader) = cached(&READERS.lock().unwrap_or_else(PoisonError::into_inner)) {
        return Ok(reader);
    }
    let reader = match config.tls_files() {
        None => Reader::Classic(classic::start(runtime, config).await?),
        Some(_) => Reader::Lite(Arc::new(lite::LiteReader::start(runtime, config).await?)),
    };
    let mut readers = READERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(earlier) = cached(&readers) {
        // Another caller started one meanwhile; this one is left to the runtime.
        return Ok(earlier);
    }
    readers.push((reader_key(config), reader.clone()));
    Ok(reader)
}
