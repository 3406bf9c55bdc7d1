//! Retained messages (MQTT 5.0 section 3.3.1.3): at most one per topic, replaced by a newer
//! one, deleted by an empty payload, bounded in count.

use std::collections::HashMap;
use std::sync::Arc;

use midge_codec::TopicFilter;

use crate::message::Message;
use crate::time::Timestamp;

/// Outcome of storing a retained message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainOutcome {
    /// Stored (new or replacing).
    Stored,
    /// An empty payload removed the topic's retained message.
    Deleted,
    /// The store is full and the topic had no retained message.
    Full,
}

/// The retained store.
#[derive(Debug, Default)]
pub struct RetainedStore {
    by_topic: HashMap<Box<str>, Arc<Message>>,
    max: usize,
}

impl RetainedStore {
    /// An empty store holding at most `max` messages.
    pub fn new(max: usize) -> Self {
        RetainedStore {
            by_topic: HashMap::new(),
            max,
        }
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Stores, replaces or (empty payload) deletes the retained message of the topic. A full
    /// store first drops its expired messages before it refuses a new topic.
    pub fn put(&mut self, msg: Arc<Message>, now: Timestamp) -> RetainOutcome {
        if msg.payload.is_empty() {
            self.by_topic.remove(msg.topic.as_str());
            return RetainOutcome::Deleted;
        }
        if self.by_topic.len() >= self.max
            && !self.by_topic.contains_key(msg.topic.as_str())
            && (self.purge_expired(now) == 0 || self.by_topic.len() >= self.max)
        {
            return RetainOutcome::Full;
        }
        self.by_topic.insert(Box::from(msg.topic.as_str()), msg);
        RetainOutcome::Stored
    }

    /// Changes the largest number of messages kept (new messages are refused while above).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Removes the retained message of a topic; false if there was none.
    pub fn remove(&mut self, topic: &str) -> bool {
        self.by_topic.remove(topic).is_some()
    }

    /// Retained messages matching `filter` that have not expired at `now`.
    pub fn matching(&self, filter: &TopicFilter, now: Timestamp) -> Vec<Arc<Message>> {
        if !filter.has_wildcards() {
            return self
                .by_topic
                .get(filter.filter())
                .filter(|m| !m.is_expired(now))
                .cloned()
                .into_iter()
                .collect();
        }
        // TODO(#4): index retained topics in a trie so that a wildcard subscribe does not
        // scan every retained message.
        self.by_topic
            .values()
            .filter(|m| !m.is_expired(now) && filter.matches(&m.topic))
            .cloned()
            .collect()
    }

    /// Drops expired retained messages; returns how many.
    fn purge_expired(&mut self, now: Timestamp) -> usize {
        let before = self.by_topic.len();
        self.by_topic.retain(|_, m| !m.is_expired(now));
        before - self.by_topic.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use midge_codec::{PublishProperties, QoS, TopicName};

    fn msg(topic: &str, expires_at: Option<Timestamp>) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::try_from(topic).expect("valid"),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: PublishProperties::default(),
            expires_at,
        })
    }

    #[test]
    fn a_full_store_makes_room_by_dropping_expired_messages() {
        let mut store = RetainedStore::new(2);
        assert_eq!(
            store.put(msg("a", Some(Timestamp(10))), Timestamp(0)),
            RetainOutcome::Stored
        );
        assert_eq!(
            store.put(msg("b", None), Timestamp(0)),
            RetainOutcome::Stored
        );
        assert_eq!(store.put(msg("c", None), Timestamp(5)), RetainOutcome::Full);
        assert_eq!(
            store.put(msg("c", None), Timestamp(10)),
            RetainOutcome::Stored
        );
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.put(msg("d", None), Timestamp(10)),
            RetainOutcome::Full
        );
    }
}
