//! The durability seam: every change to state that must survive a restart is handed to a
//! [`Store`] as a [`StoreOp`], in the order the broker made it, and the store tells when it
//! is on disk. The core decides *what* is durable and *when an acknowledgement may leave*;
//! the store decides *how* (on-disk format, group commit, fsync policy).
//!
//! What is durable, for sessions with a non-zero expiry ("persistent" sessions):
//! - the session: client id, protocol, expiry interval, subscriptions with their options and
//!   identifiers, and when it went offline (so that a session that expired while the broker
//!   was down is expired at start);
//! - its queue of QoS 1/2 messages, each with a per-session sequence number, and for those
//!   in flight their packet id and whether PUBREL was sent;
//! - the inbound QoS 2 packet ids waiting for PUBREL;
//!
//! plus retained messages and delayed wills (published at their time even across a
//! restart).
//!
//! Ordering contract: ops are applied in submission order; `submit` returns a ticket that
//! grows with every op, and once [`Store::durable`] reaches a ticket, that op and every
//! earlier one are on disk. An acknowledgement that promises durability (PUBACK, PUBREC to a
//! publisher) is held until its ticket is durable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use midge_codec::{PacketId, ProtocolVersion, QoS, SubscriptionId};
use parking_lot::Mutex;

use crate::message::{Delivery, Message};
use crate::session::{Notify, StoredSubscription};
use crate::time::Timestamp;

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Protocol of the last connection.
    pub protocol: ProtocolVersion,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_secs: u32,
    /// When the session went offline (`None` while connected).
    pub offline_since: Option<Timestamp>,
    /// Its subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
}

/// One queued message of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    /// The message (shared with the other sessions it went to).
    pub msg: Arc<Message>,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers.
    pub sub_ids: Vec<SubscriptionId>,
    /// The shared subscription it came through.
    pub share: Option<Arc<str>>,
}

impl QueuedRecord {
    /// The record of a delivery.
    pub fn of(d: &Delivery) -> Self {
        QueuedRecord {
            msg: d.msg.clone(),
            qos: d.qos,
            retain: d.retain,
            sub_ids: d.sub_ids.clone(),
            share: d.share.clone(),
        }
    }

    /// The delivery it records.
    pub fn into_delivery(self) -> Delivery {
        Delivery {
            msg: self.msg,
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids,
            share: self.share,
        }
    }
}

/// Where an outbound message in flight stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightRecord {
    /// PUBLISH sent with this packet id, not acknowledged.
    Published(PacketId),
    /// PUBREC received, PUBREL sent with this packet id.
    Released(PacketId),
}

/// One change to durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Creates or replaces a session's record.
    PutSession {
        /// The client id.
        client_id: Arc<str>,
        /// The record.
        record: SessionRecord,
    },
    /// Deletes a session with its queue, inflight state and inbound QoS 2 ids.
    DeleteSession {
        /// The client id.
        client_id: Arc<str>,
    },
    /// Appends a message to a session's queue.
    Enqueue {
        /// The client id.
        client_id: Arc<str>,
        /// Its sequence number in the session (increasing).
        seq: u64,
        /// The message.
        record: QueuedRecord,
    },
    /// Records that a queued message was sent (or released) with a packet id.
    SetInflight {
        /// The client id.
        client_id: Arc<str>,
        /// The message's sequence number.
        seq: u64,
        /// Its state.
        state: InflightRecord,
    },
    /// Removes a message from a session's queue (acknowledged, dropped or expired).
    Dequeue {
        /// The client id.
        client_id: Arc<str>,
        /// The message's sequence number.
        seq: u64,
    },
    /// An inbound QoS 2 packet id was received (`true`) or released (`false`).
    IncomingQos2 {
        /// The client id.
        client_id: Arc<str>,
        /// The packet id.
        pid: PacketId,
        /// Received or released.
        present: bool,
    },
    /// Stores (`Some`) or deletes (`None`) the retained message of a topic.
    Retain {
        /// The topic.
        topic: Arc<str>,
        /// The message.
        msg: Option<Arc<Message>>,
    },
    /// A will waiting for its delay (`Some`), or no longer waiting (`None`).
    Will {
        /// The client id.
        client_id: Arc<str>,
        /// The will and when it is due.
        will: Option<(Arc<Message>, Timestamp)>,
    },
}

/// A session as recovered at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    /// The client id.
    pub client_id: Arc<str>,
    /// Its record.
    pub record: SessionRecord,
    /// The first queued messages, in order, with their inflight state (the rest stays on
    /// disk and is read when the session drains its queue).
    pub head: Vec<(u64, QueuedRecord, Option<InflightRecord>)>,
    /// Messages queued in all (head included).
    pub queued: u64,
    /// Payload bytes queued in all.
    pub queued_bytes: u64,
    /// The next sequence number to use.
    pub next_seq: u64,
    /// Inbound QoS 2 ids waiting for PUBREL.
    pub incoming_qos2: Vec<PacketId>,
}

/// Everything a store holds, as read at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Sessions.
    pub sessions: Vec<RecoveredSession>,
    /// Retained messages.
    pub retained: Vec<Arc<Message>>,
    /// Delayed wills: client id, message, when due.
    pub wills: Vec<(Arc<str>, Arc<Message>, Timestamp)>,
}

/// Why a store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O or engine failure.
    #[error("storage failure: {0}")]
    Io(String),
    /// Data that cannot be read.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The store is sound but not for this process: in use by another one, or written by a
    /// newer version. Moving it aside would lose good data, so recovery never does.
    #[error("{0}")]
    Unavailable(String),
}

/// Durable storage behind the broker.
pub trait Store: Send + Sync + fmt::Debug {
    /// Queues an op to be applied after every op submitted before it; returns its ticket.
    fn submit(&self, op: StoreOp) -> u64;

    /// The highest ticket submitted so far.
    fn submitted(&self) -> u64;

    /// Opens an atomic group: the ops submitted from now until [`Store::end_group`] (by
    /// anyone) reach the disk together with everything before them, or not at all. An
    /// inbound QoS 2 message needs this: its packet id and its copies in the subscribers'
    /// queues must not survive a crash without each other. Keep groups short; the default
    /// (for stores that apply every op at once) does nothing.
    fn begin_group(&self) -> u64 {
        0
    }

    /// Closes a group opened by [`Store::begin_group`] (pass what it returned).
    fn end_group(&self, _group: u64) {}

    /// The highest ticket on disk: it and every earlier op survive a crash.
    fn durable(&self) -> u64;

    /// Wakes `notify` once `ticket` is durable (at once if it already is).
    fn notify_durable(&self, ticket: u64, notify: Arc<dyn Notify>);

    /// Up to `max` queued messages of a session with a sequence number of at least `from`,
    /// in order, as they are once every submitted op is applied.
    fn read_queue(
        &self,
        client_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, QueuedRecord)>, StoreError>;

    /// Everything stored, for the start of the broker; `head` is how many queued messages
    /// per session to read into memory.
    fn recover(&self, head: usize) -> Result<Recovered, StoreError>;
}

/// A [`Store`] in memory, durable at once: for tests of restarts within one process (build
/// a new broker on the same store) and for embedding.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    ticket: u64,
    sessions: HashMap<Arc<str>, MemorySession>,
    retained: BTreeMap<Arc<str>, Arc<Message>>,
    wills: HashMap<Arc<str>, (Arc<Message>, Timestamp)>,
}

#[derive(Debug)]
struct MemorySession {
    record: Option<SessionRecord>,
    queue: BTreeMap<u64, (QueuedRecord, Option<InflightRecord>)>,
    incoming_qos2: Vec<PacketId>,
}

impl MemorySession {
    fn new() -> Self {
        MemorySession {
            record: None,
            queue: BTreeMap::new(),
            incoming_qos2: Vec::new(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of queued messages stored for a session.
    pub fn queued(&self, client_id: &str) -> usize {
        self.inner
            .lock()
            .sessions
            .get(client_id)
            .map_or(0, |s| s.queue.len())
    }
}

impl Store for MemoryStore {
    fn submit(&self, op: StoreOp) -> u64 {
        let mut g = self.inner.lock();
        g.ticket += 1;
        match op {
            StoreOp::PutSession { client_id, record } => {
                g.sessions
                    .entry(client_id)
                    .or_insert_with(MemorySession::new)
                    .record = Some(record);
            }
            StoreOp::DeleteSession { client_id } => {
                g.sessions.remove(&client_id);
            }
            StoreOp::Enqueue {
                client_id,
                seq,
                record,
            } => {
                g.sessions
                    .entry(client_id)
                    .or_insert_with(MemorySession::new)
                    .queue
                    .insert(seq, (record, None));
            }
            StoreOp::SetInflight {
                client_id,
                seq,
                state,
            } => {
                if let Some(e) = g
                    .sessions
                    .get_mut(&client_id)
                    .and_then(|s| s.queue.get_mut(&seq))
                {
                    e.1 = Some(state);
                }
            }
            StoreOp::Dequeue { client_id, seq } => {
                if let Some(s) = g.sessions.get_mut(&client_id) {
                    s.queue.remove(&seq);
                }
            }
            StoreOp::IncomingQos2 {
                client_id,
                pid,
                present,
            } => {
                let s = g
                    .sessions
                    .entry(client_id)
                    .or_insert_with(MemorySession::new);
                s.incoming_qos2.retain(|p| *p != pid);
                if present {
                    s.incoming_qos2.push(pid);
                }
            }
            StoreOp::Retain { topic, msg } => match msg {
                Some(m) => {
                    g.retained.insert(topic, m);
                }
                None => {
                    g.retained.remove(&topic);
                }
            },
            StoreOp::Will { client_id, will } => match will {
                Some(w) => {
                    g.wills.insert(client_id, w);
                }
                None => {
                    g.wills.remove(&client_id);
                }
            },
        }
        g.ticket
    }

    fn submitted(&self) -> u64 {
        self.inner.lock().ticket
    }

    fn durable(&self) -> u64 {
        self.inner.lock().ticket
    }

    fn notify_durable(&self, _ticket: u64, notify: Arc<dyn Notify>) {
        notify.notify();
    }

    fn read_queue(
        &self,
        client_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, QueuedRecord)>, StoreError> {
        let g = self.inner.lock();
        Ok(g.sessions.get(client_id).map_or_else(Vec::new, |s| {
            s.queue
                .range(from..)
                .take(max)
                .map(|(seq, (r, _))| (*seq, r.clone()))
                .collect()
        }))
    }

    fn recover(&self, head: usize) -> Result<Recovered, StoreError> {
        let g = self.inner.lock();
        let mut out = Recovered::default();
        for (id, s) in &g.sessions {
            let Some(record) = s.record.clone() else {
                continue;
            };
            out.sessions.push(RecoveredSession {
                client_id: id.clone(),
                record,
                head: s
                    .queue
                    .iter()
                    .enumerate()
                    .filter(|(i, (_, (_, inflight)))| *i < head || inflight.is_some())
                    .map(|(_, (seq, (r, inflight)))| (*seq, r.clone(), *inflight))
                    .collect(),
                queued: s.queue.len() as u64,
                queued_bytes: s.queue.values().map(|(r, _)| r.msg.weight() as u64).sum(),
                next_seq: s.queue.keys().next_back().map_or(1, |s| s + 1),
                incoming_qos2: s.incoming_qos2.clone(),
            });
        }
        out.retained = g.retained.values().cloned().collect();
        out.wills = g
            .wills
            .iter()
            .map(|(id, (m, at))| (id.clone(), m.clone(), *at))
            .collect();
        Ok(out)
    }
}
