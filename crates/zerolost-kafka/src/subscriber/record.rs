//! Kafka records as zerolost's [`Incoming`] messages.

use std::collections::BTreeMap;

use bytes::Bytes;
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};
use zerolost_core::Incoming;

/// Header carrying the record's topic in [`Incoming::headers`] (and so into a DLQ copy).
pub const TOPIC_HEADER: &str = "zerolost-kafka-topic";
/// Header carrying the record's partition.
pub const PARTITION_HEADER: &str = "zerolost-kafka-partition";
/// Header carrying the record's offset.
pub const OFFSET_HEADER: &str = "zerolost-kafka-offset";

/// A record as zerolost sees it: headers as stored (UTF-8, lossy), key, payload, and its
/// position as `native_id` (`topic/partition/offset`).
pub(crate) fn record(message: &BorrowedMessage<'_>) -> Incoming {
    let mut headers = BTreeMap::new();
    if let Some(record_headers) = message.headers() {
        for header in record_headers.iter() {
            let value = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            headers.insert(header.key.to_owned(), value);
        }
    }
    Incoming {
        destination: message.topic().to_owned(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        native_id: Some(format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        )),
        payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
    }
}

/// A delivered record, with its position also in headers (so a dead-letter copy keeps it).
pub(super) fn incoming(message: &BorrowedMessage<'_>) -> Incoming {
    let mut incoming = record(message);
    let headers = &mut incoming.headers;
    headers.insert(TOPIC_HEADER.to_owned(), message.topic().to_owned());
    headers.insert(PARTITION_HEADER.to_owned(), message.partition().to_string());
    headers.insert(OFFSET_HEADER.to_owned(), message.offset().to_string());
    incoming
}
