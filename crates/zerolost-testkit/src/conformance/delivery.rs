//! Delivery: a confirmed publish arrives, and an unsettled or requeued delivery comes back.

use super::support::*;
use crate::Backend;
use std::collections::HashMap;
use std::time::Duration;
use zerolost_core::{Envelope, MessageId};

/// Publish with confirms, receive the same ids, keys, headers and payloads, ack; nothing more comes.
pub async fn confirmed_round_trip(backend: &dyn Backend) {
    let dest = ok(backend.destination().await, "destination");
    let publisher = ok(backend.publisher().await, "publisher");
    let envelopes: Vec<Envelope> = (0..3)
        .map(|i| {
            Envelope::new(&dest, format!("payload-{i}"))
                .with_key(format!("key-{i}"))
                .with_header("trace", format!("t{i}"))
        })
        .collect();
    let receipt = ok(publisher.publish(&envelopes[0]).await, "publish");
    assert_eq!(receipt.id, envelopes[0].id);
    assert_eq!(receipt.destination, dest);
    for (env, result) in envelopes[1..]
        .iter()
        .zip(publisher.publish_batch(&envelopes[1..]).await)
    {
        assert_eq!(ok(result, "publish_batch").id, env.id);
    }

    let mut sub = ok(backend.subscriber(&dest).await, "subscribe");
    let mut received = HashMap::new();
    for _ in 0..envelopes.len() {
        let delivery = receive(sub.as_mut(), backend.patience()).await;
        let id = id_of(&delivery.message);
        received.insert(id, delivery.message.clone());
        ok(delivery.ack().await, "ack");
    }
    for env in &envelopes {
        let got = received
            .get(&env.id)
            .unwrap_or_else(|| panic!("message {} was confirmed but not delivered", env.id));
        assert_eq!(got.payload, env.payload, "payload of {}", env.id);
        assert_eq!(got.key, env.key, "key of {}", env.id);
        assert_eq!(got.headers.get("trace"), env.headers.get("trace"));
    }
    assert_no_more(sub.as_mut(), Duration::from_millis(500)).await;
}

/// How a test gives a delivery back without acknowledging it.
enum GiveBack {
    Drop,
    Nack,
}

/// Publishes one message, receives it, gives it back, and checks it comes back marked as
/// a redelivery; acks it; nothing more arrives.
async fn comes_back_after(backend: &dyn Backend, give_back: GiveBack) {
    let dest = ok(backend.destination().await, "destination");
    let env = Envelope::new(&dest, "give me back");
    let publisher = ok(backend.publisher().await, "publisher");
    ok(publisher.publish(&env).await, "publish");
    let mut sub = ok(backend.subscriber(&dest).await, "subscribe");
    let first = receive(sub.as_mut(), backend.patience()).await;
    assert_eq!(id_of(&first.message), env.id);
    match give_back {
        GiveBack::Drop => drop(first),
        GiveBack::Nack => ok(first.nack(true).await, "nack"),
    }
    let again = receive(sub.as_mut(), backend.patience()).await;
    assert_eq!(id_of(&again.message), env.id, "the message must come back");
    assert!(
        again.redelivered || again.delivery_count.is_some_and(|n| n >= 2),
        "a redelivery must say so: {again:?}"
    );
    ok(again.ack().await, "ack");
    assert_no_more(sub.as_mut(), Duration::from_millis(500)).await;
}

/// A delivery dropped without ack comes back (redelivered).
pub async fn unacked_delivery_is_redelivered(backend: &dyn Backend) {
    comes_back_after(backend, GiveBack::Drop).await;
}

/// `nack(requeue = true)` brings the message back.
pub async fn nack_requeue_redelivers(backend: &dyn Backend) {
    comes_back_after(backend, GiveBack::Nack).await;
}

/// Every publisher and subscriber closes the same way: after `close`, a publish and a
/// `next` fail with [`Error::Closed`](zerolost_core::Error::Closed); what was acknowledged
/// before stays settled, and what was given back goes to the next subscriber.
pub async fn closed_clients_refuse_and_hand_back(backend: &dyn Backend) {
    let dest = ok(backend.destination().await, "destination");
    let publisher = ok(backend.publisher().await, "publisher");
    let (settled, given_back) = (
        Envelope::new(&dest, "acknowledged before close"),
        Envelope::new(&dest, "given back before close"),
    );
    ok(publisher.publish(&settled).await, "publish");
    ok(publisher.publish(&given_back).await, "publish");
    ok(publisher.close().await, "close the publisher");
    let refused = publisher
        .publish(&Envelope::new(&dest, "after close"))
        .await;
    assert!(
        matches!(refused, Err(zerolost_core::Error::Closed(_))),
        "a publish after close: {refused:?}"
    );

    let mut first = ok(backend.subscriber(&dest).await, "subscribe");
    let (mut acked, mut held) = (false, Vec::new());
    while !acked || held.is_empty() {
        let delivery = receive(first.as_mut(), backend.patience()).await;
        let id = id_of(&delivery.message);
        if id == settled.id {
            ok(delivery.ack().await, "ack");
            acked = true;
        } else if id == given_back.id {
            held.push(delivery);
        }
    }
    drop(held); // given back unsettled, just before the close
    ok(first.close().await, "close the subscriber");
    let after = tokio::time::timeout(Duration::from_secs(5), first.next()).await;
    assert!(
        matches!(after, Ok(Err(zerolost_core::Error::Closed(_)))),
        "next after close must be Closed"
    );

    // A batch-settling backend may send the settled message back with its batch-mate.
    let comes_again: &[MessageId] = if backend.settles_in_batches() {
        &[given_back.id, settled.id]
    } else {
        &[given_back.id]
    };
    let mut second = ok(backend.subscriber(&dest).await, "subscribe again");
    loop {
        let again = receive(second.as_mut(), backend.patience()).await;
        let id = id_of(&again.message);
        assert!(
            comes_again.contains(&id),
            "the given-back message comes to the next subscriber, not {id}"
        );
        ok(again.ack().await, "ack");
        if id == given_back.id {
            break;
        }
    }
    // More copies of the given-back message may come (at least once); never the settled
    // one, unless it was sent back with its batch.
    while let Ok(Ok(extra)) = tokio::time::timeout(Duration::from_secs(1), second.next()).await {
        let id = id_of(&extra.message);
        assert!(
            comes_again.contains(&id),
            "{id} came again after it was settled"
        );
        ok(extra.ack().await, "ack");
    }
    ok(second.close().await, "close");
}
