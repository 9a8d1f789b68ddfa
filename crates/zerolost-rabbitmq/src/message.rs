//! AMQP messages as zerolost sees them.

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable};
use zerolost_core::Incoming;

/// A message taken off `queue` (by a consumer or `basic.get`) as an [`Incoming`]; its body
/// is moved out of `delivery`.
pub(crate) fn incoming(queue: &str, delivery: &mut lapin::message::Delivery) -> Incoming {
    Incoming {
        destination: queue.to_owned(),
        key: Some(delivery.routing_key.as_str().to_owned()).filter(|k| !k.is_empty()),
        headers: delivery
            .properties
            .headers()
            .as_ref()
            .map(header_strings)
            .unwrap_or_default(),
        native_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned()),
        payload: std::mem::take(&mut delivery.data).into(),
    }
}

/// The headers that have a text form (strings, integers, booleans); tables and arrays such
/// as `x-death` are left out.
fn header_strings(table: &FieldTable) -> BTreeMap<String, String> {
    table
        .inner()
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::Boolean(b) => b.to_string(),
                AMQPValue::ShortShortInt(n) => n.to_string(),
                AMQPValue::ShortShortUInt(n) => n.to_string(),
                AMQPValue::ShortInt(n) => n.to_string(),
                AMQPValue::ShortUInt(n) => n.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongUInt(n) => n.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                _ => return None,
            };
            Some((name.as_str().to_owned(), text))
        })
        .collect()
}
