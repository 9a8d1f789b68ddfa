//! Dead letters the DLQ refused, kept per destination in two hashes: metadata (JSON) and
//! payload (bytes), written payload first so a listed entry always has its payload. They
//! have no TTL: they wait for a redrive.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use zerolost_core::parking::ParkedDeadLetter;
use zerolost_core::{Envelope, Error, Failure, MessageId};

use crate::{RedisDedupe, RedisStoreError};

/// What is kept of a parked dead letter besides its payload.
#[derive(Serialize, Deserialize)]
struct Meta {
    destination: String,
    key: Option<String>,
    headers: BTreeMap<String, String>,
    created_at: DateTime<Utc>,
    failure: Failure,
    refused: String,
    parked_at: DateTime<Utc>,
}

impl RedisDedupe {
    pub(crate) async fn park(&self, parked: &ParkedDeadLetter) -> Result<(), Error> {
        let (meta_key, payload_key) = self.keys.parked(&parked.failure.original_destination);
        let envelope = &parked.envelope;
        let meta = Meta {
            destination: envelope.destination.clone(),
            key: envelope.key.clone(),
            headers: envelope.headers.clone(),
            created_at: envelope.created_at,
            failure: parked.failure.clone(),
            refused: parked.refused.clone(),
            parked_at: parked.parked_at,
        };
        let json = serde_json::to_string(&meta).map_err(|e| RedisStoreError::Corrupt {
            key: meta_key.clone(),
            reason: e.to_string(),
        })?;
        let field = envelope.id.to_string();
        let mut conn = self.conn();
        let _: bool = conn
            .hset_nx(&payload_key, &field, envelope.payload.as_ref())
            .await
            .map_err(RedisStoreError::command("park dead letter"))?;
        let _: bool = conn
            .hset_nx(&meta_key, &field, json)
            .await
            .map_err(RedisStoreError::command("park dead letter"))?;
        Ok(())
    }

    pub(crate) async fn parked(&self, destination: &str) -> Result<Vec<ParkedDeadLetter>, Error> {
        let (meta_key, payload_key) = self.keys.parked(destination);
        let mut conn = self.conn();
        let metas: HashMap<String, String> = conn
            .hgetall(&meta_key)
            .await
            .map_err(RedisStoreError::command("list parked dead letters"))?;
        let payloads: HashMap<String, Vec<u8>> = conn
            .hgetall(&payload_key)
            .await
            .map_err(RedisStoreError::command("list parked dead letters"))?;
        let mut parked = Vec::with_capacity(metas.len());
        for (field, json) in metas {
            let corrupt = |reason: String| RedisStoreError::Corrupt {
                key: format!("{meta_key} {field}"),
                reason,
            };
            let id: MessageId = field
                .parse()
                .map_err(|_| corrupt("not a message id".into()))?;
            let meta: Meta = serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))?;
            let payload = payloads.get(&field).cloned().unwrap_or_default();
            let mut envelope = Envelope::new(meta.destination, payload).with_id(id);
            envelope.key = meta.key;
            envelope.headers = meta.headers;
            envelope.created_at = meta.created_at;
            parked.push(ParkedDeadLetter {
                envelope,
                failure: meta.failure,
                refused: meta.refused,
                parked_at: meta.parked_at,
            });
        }
        parked.sort_by_key(|p| (p.parked_at, p.envelope.id));
        Ok(parked)
    }

    pub(crate) async fn unpark(
        &self,
        destination: &str,
        ids: &[MessageId],
    ) -> Result<usize, Error> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (meta_key, payload_key) = self.keys.parked(destination);
        let fields: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut conn = self.conn();
        let removed: usize = conn
            .hdel(&meta_key, &fields)
            .await
            .map_err(RedisStoreError::command("remove parked dead letters"))?;
        let _: usize = conn
            .hdel(&payload_key, &fields)
            .await
            .map_err(RedisStoreError::command("remove parked dead letters"))?;
        Ok(removed)
    }
}
