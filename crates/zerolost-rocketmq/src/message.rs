//! RocketMQ messages as zerolost sees them.

use rocketmq_model::common::message::STRING_HASH_SET;
use rocketmq_model::common::message::message_ext::MessageExt;
use zerolost_core::Incoming;

/// The property RocketMQ keeps a message's sharding key in.
const SHARDING_KEY: &str = "__SHARDINGKEY";
/// The property holding a message's keys (space-separated).
const KEYS: &str = "KEYS";

/// A received message as an [`Incoming`]: the topic it was sent to (a redelivery from the
/// group's `%RETRY%` topic carries its original topic), the sharding key as key, the user
/// properties as headers (RocketMQ's own properties are left out), the first of its keys as
/// native id (zerolost puts the envelope id there), else the broker's message id.
pub(crate) fn incoming(message: &MessageExt) -> Incoming {
    let properties = message.properties();
    let property = |name: &str| {
        properties
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v.as_str().to_owned())
    };
    let native_id = property(KEYS)
        .and_then(|keys| keys.split_whitespace().next().map(str::to_owned))
        .or_else(|| Some(message.msg_id().as_str().to_owned()).filter(|id| !id.is_empty()));
    Incoming {
        destination: message.topic().as_str().to_owned(),
        key: property(SHARDING_KEY).filter(|k| !k.is_empty()),
        headers: properties
            .iter()
            .filter(|(name, _)| !STRING_HASH_SET.contains(name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_str().to_owned()))
            .collect(),
        native_id,
        payload: message.body().unwrap_or_default(),
    }
}
