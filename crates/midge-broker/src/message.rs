//! Application messages as the broker routes them, shared (`Arc`) between every subscriber.

use std::sync::Arc;

use bytes::Bytes;
use midge_codec::{PublishProperties, QoS, SubscriptionId, TopicName};

use crate::time::Timestamp;

/// A published application message. The payload and properties are shared by every
/// subscriber it is delivered to; only the per-subscriber header differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name (aliases already resolved).
    pub topic: TopicName,
    /// Payload.
    pub payload: Bytes,
    /// QoS as published.
    pub qos: QoS,
    /// RETAIN flag as published.
    pub retain: bool,
    /// Properties to forward (topic alias and subscription identifiers removed; message
    /// expiry recomputed when sent).
    pub properties: PublishProperties,
    /// When the message expires (from Message Expiry Interval), if it does.
    pub expires_at: Option<Timestamp>,
}

impl Message {
    /// True if the message has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Bytes counted against queue limits.
    pub fn weight(&self) -> usize {
        self.payload.len() + self.topic.len()
    }
}

/// One message on its way to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The shared message.
    pub msg: Arc<Message>,
    /// QoS of this delivery: min(published, granted).
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions (5.0).
    pub sub_ids: Vec<SubscriptionId>,
    /// The shared subscription (`$share/{group}/{filter}`) this delivery came through, so
    /// that it can go to another member if this session ends before it is acknowledged.
    pub share: Option<Arc<str>>,
}
