//! Session state (MQTT 5.0 section 4.1): subscriptions, the queue of messages waiting to be
//! sent, outbound QoS 1/2 messages in flight, inbound QoS 2 packet ids awaiting PUBREL, the
//! will, and the expiry interval. A session outlives its connections.
//!
//! Invariants: `inflight` never holds more than the send window; packet ids in flight are
//! unique; messages leave the queue in the order they entered it; queue limits are enforced
//! on every enqueue.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use midge_codec::{
    ClientId, PacketId, ProtocolVersion, QoS, SubscriptionId, SubscriptionOptions, TopicFilter,
};
use parking_lot::Mutex;

use crate::config::QueueFullPolicy;
use crate::message::{Delivery, Message};
use crate::small::LazyU16Set;
use crate::store::{InflightRecord, QueuedRecord, RecoveredSession, SessionRecord, Store, StoreOp};
use crate::time::Timestamp;

/// Deliveries taken from a session queue per poll.
pub const MAX_POLL_BATCH: usize = 512;

/// Wakes the task driving a session's connection when there is something to send.
pub trait Notify: Send + Sync + fmt::Debug {
    /// Something changed: poll the session.
    fn notify(&self);
}

/// A will message waiting for its connection to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillMessage {
    /// The message to publish.
    pub message: Message,
    /// Will Delay Interval in seconds (5.0); 0 publishes at once.
    pub delay_secs: u32,
}

/// A subscription as the session remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The filter (possibly `$share/...`).
    pub filter: TopicFilter,
    /// Options, with the granted QoS.
    pub options: SubscriptionOptions,
    /// Subscription identifier (5.0).
    pub sub_id: Option<SubscriptionId>,
}

/// Limits of one session's queues, from the broker config and the client's CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Outbound QoS 1/2 messages in flight at once.
    pub max_inflight: u16,
    /// Queued messages.
    pub max_messages: usize,
    /// Queued payload bytes.
    pub max_bytes: usize,
    /// What to drop when full.
    pub policy: QueueFullPolicy,
    /// Queue QoS 0 messages while offline.
    pub queue_qos0_offline: bool,
}

/// Why `enqueue` did not simply queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Queued.
    Queued,
    /// Queued after dropping the oldest queued message.
    DroppedOldest,
    /// Not queued: the queue is full.
    DroppedNew,
    /// Not queued: QoS 0 for an offline session.
    NotQueued,
    /// Queued although the queue is at its limit (the session is connected, so it will
    /// drain): the publisher must pause until the queue drains (backpressure), and has
    /// been registered to be woken then.
    Congested,
}

/// State of an outbound QoS 1/2 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBLISH sent on an earlier connection of the session and not acknowledged: it is
    /// re-sent with DUP set as soon as the new connection's Receive Maximum allows.
    ToResend,
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// An outbound message in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflight {
    /// Its packet id.
    pub pid: PacketId,
    /// Its sequence number in the store (0: not stored).
    pub seq: u64,
    /// The delivery (kept until acknowledged for redelivery; for `Released` only the id
    /// matters).
    pub delivery: Delivery,
    /// Where it is in the flow.
    pub state: OutState,
}

/// Something the connection must send for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutItem {
    /// A PUBLISH; `pid` is `None` for QoS 0.
    Publish {
        /// The delivery.
        delivery: Delivery,
        /// Packet id for QoS 1/2.
        pid: Option<PacketId>,
        /// DUP flag (redelivery).
        dup: bool,
    },
    /// A PUBREL to resend after reconnecting.
    PubRel(PacketId),
}

/// The connection currently attached to a session.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Generation of the connection; a newer connection with the same client id gets a new
    /// generation and the old one learns it has been taken over.
    pub generation: u64,
    /// Wakes the connection's task.
    pub notify: Arc<dyn Notify>,
    /// Who is connected, for operators.
    pub info: Arc<ClientInfo>,
    /// An operator asked for this connection to be closed; it closes at its next poll.
    pub kicked: bool,
}

/// Facts about a connected client, for the admin API and `$SYS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
    /// The listener it came through (`mqtt://127.0.0.1:1883`).
    pub listener: Arc<str>,
    /// Its username (or certificate identity), if any.
    pub username: Option<Box<str>>,
    /// Effective keep-alive, seconds.
    pub keep_alive: u16,
    /// Clean Start / Clean Session of its CONNECT.
    pub clean_start: bool,
    /// When its CONNECT was accepted.
    pub connected_at: Timestamp,
}

/// Where a persistent session is stored.
#[derive(Debug, Clone)]
pub struct Persist {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The session's key in it.
    pub client_id: Arc<str>,
}

/// A queued message with its sequence number in the store (0: not stored).
#[derive(Debug, Clone)]
struct Queued {
    seq: u64,
    d: Delivery,
}

/// Queued messages kept only on disk, after those in memory: a persistent session that is
/// offline (or has not yet caught up) holds its backlog there, so memory stays flat however
/// many messages wait.
#[derive(Debug, Default, Clone, Copy)]
struct Spill {
    /// No spilled message has a smaller sequence number.
    from: u64,
    count: usize,
    bytes: usize,
}

/// The mutable state of a session, behind its mutex.
#[derive(Debug)]
pub struct SessionState {
    /// Protocol of the last connection.
    pub protocol: ProtocolVersion,
    /// Subscriptions by full filter string (a `BTreeMap`: 24 bytes in every session where a
    /// `HashMap` takes 48).
    pub subscriptions: BTreeMap<String, StoredSubscription>,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    spill: Spill,
    persist: Option<Persist>,
    next_seq: u64,
    inflight: VecDeque<Inflight>,
    in_use: LazyU16Set,
    /// Entries of `inflight` in state `ToResend`.
    to_resend: u32,
    next_pid: u16,
    /// Inbound QoS 2 packet ids received (PUBREC sent) and not yet released.
    pub incoming_qos2: LazyU16Set,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry_secs: u32,
    /// The will of the attached connection.
    pub will: Option<Box<WillMessage>>,
    /// The attached connection, if online.
    pub attachment: Option<Attachment>,
    /// When the session expires, while offline.
    pub expires_at: Option<Timestamp>,
    /// Queue limits.
    pub limits: QueueLimits,
    /// Messages dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because they expired while queued.
    pub dropped_expired: u64,
    /// Publishers paused because this queue is full, woken when it drains to half.
    /// Boxed: 8 bytes in every session, and only a session with a full queue has any.
    #[allow(clippy::box_collection)] // Deliberate: 8 bytes here instead of a 24-byte Vec.
    waiters: Option<Box<Vec<Arc<dyn Notify>>>>,
    last_ticket: u64,
}

/// A session shared between the registry, the subscription index and its connection.
#[derive(Debug)]
pub struct SessionHandle {
    /// Unique id of this session object (a new session for the same client id gets a new
    /// uid).
    pub uid: u64,
    /// The client identifier.
    pub client_id: ClientId,
    online: AtomicBool,
    state: Mutex<SessionState>,
}

impl SessionHandle {
    /// A new, empty, offline session.
    pub fn new(uid: u64, client_id: ClientId, state: SessionState) -> Self {
        SessionHandle {
            uid,
            client_id,
            online: AtomicBool::new(state.attachment.is_some()),
            state: Mutex::new(state),
        }
    }

    /// Locks the state. Never hold this lock while taking the subscription index lock.
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// True while a connection is attached (lock-free, may be momentarily stale).
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }

    /// Queues a delivery and wakes the connection if one is attached. Returns the outcome
    /// and the store ticket the delivery waits for (0 if none).
    ///
    /// `waiter` is the publisher's wake-up: registered when the outcome is `Congested`.
    pub fn deliver(
        &self,
        d: Delivery,
        now: Timestamp,
        waiter: Option<&Arc<dyn Notify>>,
    ) -> (EnqueueOutcome, u64) {
        let (outcome, notify, ticket) = {
            let mut st = self.lock();
            let before = st.last_ticket;
            let outcome = st.enqueue(d, now);
            let ticket = if st.last_ticket != before {
                st.last_ticket
            } else {
                0
            };
            if outcome == EnqueueOutcome::Congested {
                if let Some(w) = waiter {
                    st.add_waiter(w);
                }
            }
            let notify = match outcome {
                EnqueueOutcome::Queued
                | EnqueueOutcome::DroppedOldest
                | EnqueueOutcome::Congested => st.attachment.as_ref().map(|a| a.notify.clone()),
                _ => None,
            };
            (outcome, notify, ticket)
        };
        if let Some(n) = notify {
            n.notify();
        }
        (outcome, ticket)
    }
}

impl SessionHandle {
    /// True while this session's queue is at its limit and a publisher of QoS 1/2 messages to
    /// it must wait; registers `waiter` to be woken when it drains.
    pub fn congested(&self, waiter: &Arc<dyn Notify>) -> bool {
        let mut st = self.lock();
        let congested = st.attachment.is_some() && st.queued_len() >= st.limits.max_messages;
        if congested {
            st.add_waiter(waiter);
        }
        congested
    }
}

impl SessionState {
    /// A new empty session.
    pub fn new(protocol: ProtocolVersion, expiry_secs: u32, limits: QueueLimits) -> Self {
        SessionState {
            protocol,
            subscriptions: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            spill: Spill::default(),
            persist: None,
            next_seq: 1,
            inflight: VecDeque::new(),
            in_use: LazyU16Set::default(),
            to_resend: 0,
            next_pid: 1,
            incoming_qos2: LazyU16Set::default(),
            expiry_secs,
            will: None,
            attachment: None,
            expires_at: None,
            limits,
            dropped_queue_full: 0,
            dropped_expired: 0,
            waiters: None,
            last_ticket: 0,
        }
    }

    /// Queues a delivery, applying the queue limits. A persistent session also stores it;
    /// the ticket of that (0 if nothing was stored) is in `last_ticket`.
    pub fn enqueue(&mut self, d: Delivery, now: Timestamp) -> EnqueueOutcome {
        if self.attachment.is_none() && d.qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline
        {
            return EnqueueOutcome::NotQueued;
        }
        let weight = d.msg.weight();
        // A connected subscriber drains its queue: rather than drop a message, queue it beyond
        // the limit and make the publisher wait (for QoS 0 too, so that a flood of QoS 0 does
        // not starve the subscriber it floods). Paused publishers add at most one message
        // each, so twice the limit is a hard cap that is not reached in practice.
        let (len, bytes) = (self.queued_len(), self.queued_bytes());
        if self.attachment.is_some()
            && (len >= self.limits.max_messages || bytes + weight > self.limits.max_bytes)
            && len < self.limits.max_messages.saturating_mul(2)
            && bytes + weight <= self.limits.max_bytes.saturating_mul(2)
        {
            self.push(d, weight);
            return EnqueueOutcome::Congested;
        }
        let mut outcome = EnqueueOutcome::Queued;
        while self.queued_len() >= self.limits.max_messages
            || (self.queued_bytes() + weight > self.limits.max_bytes && self.queued_len() > 0)
        {
            // An expired message at the front goes first, whatever the policy. Only the front
            // is looked at: a full scan here would cost O(queue) per message under overload;
            // expired messages further back are dropped when they reach the front.
            if self.queue.front().is_some_and(|q| q.d.msg.is_expired(now)) {
                self.pop_front_dropped();
                self.dropped_expired += 1;
                continue;
            }
            match self.limits.policy {
                QueueFullPolicy::DropNewest => {
                    self.dropped_queue_full += 1;
                    return EnqueueOutcome::DroppedNew;
                }
                QueueFullPolicy::DropOldest => {
                    if !self.drop_oldest() {
                        break;
                    }
                    self.dropped_queue_full += 1;
                    outcome = EnqueueOutcome::DroppedOldest;
                }
            }
        }
        if self.limits.max_messages == 0 || weight > self.limits.max_bytes {
            self.dropped_queue_full += 1;
            return EnqueueOutcome::DroppedNew;
        }
        self.push(d, weight);
        outcome
    }

    /// Makes the session persistent in `persist` (storing its record), or not (`None`:
    /// its stored state is deleted, after its backlog is read back into memory).
    pub fn set_persist(&mut self, persist: Option<Persist>, offline_since: Option<Timestamp>) {
        match persist {
            Some(p) => {
                self.persist = Some(p);
                self.save(offline_since);
            }
            None => {
                if self.persist.is_none() {
                    return;
                }
                while self.spill.count > 0 {
                    let before = self.spill.count;
                    self.unspill(MAX_POLL_BATCH);
                    if self.spill.count == before {
                        break;
                    }
                }
                self.submit(|client_id| StoreOp::DeleteSession { client_id });
                self.persist = None;
                for q in &mut self.queue {
                    q.seq = 0;
                }
                for i in &mut self.inflight {
                    i.seq = 0;
                }
            }
        }
    }

    /// True if the session is stored.
    pub fn is_persistent(&self) -> bool {
        self.persist.is_some()
    }

    /// Stores the session's record (expiry, subscriptions, when it went offline).
    pub fn save(&mut self, offline_since: Option<Timestamp>) {
        if self.persist.is_none() {
            return;
        }
        let mut subscriptions: Vec<StoredSubscription> =
            self.subscriptions.values().cloned().collect();
        subscriptions.sort_by(|a, b| a.filter.as_str().cmp(b.filter.as_str()));
        let record = SessionRecord {
            protocol: self.protocol,
            expiry_secs: self.expiry_secs,
            offline_since,
            subscriptions,
        };
        self.submit(|client_id| StoreOp::PutSession { client_id, record });
    }

    /// Deletes the session from the store (it ends).
    pub fn delete_stored(&mut self) {
        self.submit(|client_id| StoreOp::DeleteSession { client_id });
        self.persist = None;
    }

    /// An inbound QoS 2 PUBLISH was received (PUBREC follows).
    pub fn receive_qos2(&mut self, pid: PacketId) {
        self.incoming_qos2.insert(pid.get());
        self.submit(|client_id| StoreOp::IncomingQos2 {
            client_id,
            pid,
            present: true,
        });
    }

    /// PUBREL received: forgets the inbound id. False if it was not known.
    pub fn release_qos2(&mut self, pid: PacketId) -> bool {
        let known = self.incoming_qos2.remove(&pid.get());
        if known {
            self.submit(|client_id| StoreOp::IncomingQos2 {
                client_id,
                pid,
                present: false,
            });
        }
        known
    }

    /// A session as recovered from the store, offline, with its queue head in memory and
    /// the rest of its backlog left on disk.
    pub fn recovered(rec: RecoveredSession, limits: QueueLimits, store: Arc<dyn Store>) -> Self {
        let mut st = SessionState::new(rec.record.protocol, rec.record.expiry_secs, limits);
        for sub in rec.record.subscriptions {
            st.add_subscription(sub);
        }
        let mut head_bytes = 0usize;
        let mut last_seq = 0;
        let mut max_pid = 0u16;
        for (seq, r, inflight) in rec.head {
            last_seq = seq;
            let d = r.into_delivery();
            match inflight.filter(|_| d.qos != QoS::AtMostOnce) {
                Some(InflightRecord::Published(pid)) | Some(InflightRecord::Released(pid))
                    if !st.in_use.contains(&pid.get()) =>
                {
                    st.in_use.insert(pid.get());
                    max_pid = max_pid.max(pid.get());
                    let state = match inflight {
                        Some(InflightRecord::Released(_)) => OutState::Released,
                        _ => {
                            st.to_resend += 1;
                            OutState::ToResend
                        }
                    };
                    st.inflight.push_back(Inflight {
                        pid,
                        seq,
                        delivery: d,
                        state,
                    });
                }
                _ => {
                    head_bytes += d.msg.weight();
                    st.queue.push_back(Queued { seq, d });
                }
            }
        }
        st.queued_bytes = head_bytes;
        let in_memory = st.queue.len() + st.inflight.len();
        let spilled = (rec.queued as usize).saturating_sub(in_memory);
        if spilled > 0 {
            let inflight_bytes: usize = st.inflight.iter().map(|i| i.delivery.msg.weight()).sum();
            st.spill = Spill {
                from: last_seq + 1,
                count: spilled,
                bytes: (rec.queued_bytes as usize).saturating_sub(head_bytes + inflight_bytes),
            };
        }
        st.next_seq = rec.next_seq.max(last_seq + 1);
        st.next_pid = max_pid.checked_add(1).unwrap_or(1);
        for pid in rec.incoming_qos2 {
            st.incoming_qos2.insert(pid.get());
        }
        st.persist = Some(Persist {
            store,
            client_id: rec.client_id,
        });
        st
    }

    /// The ticket of the last op this session stored.
    pub fn last_ticket(&self) -> u64 {
        self.last_ticket
    }

    /// Submits an op for a persistent session; returns its ticket (0 if not persistent).
    fn submit(&mut self, op: impl FnOnce(Arc<str>) -> StoreOp) -> u64 {
        let Some(p) = &self.persist else {
            return 0;
        };
        let t = p.store.submit(op(p.client_id.clone()));
        self.last_ticket = t;
        t
    }

    /// True while new messages go to disk only: the session is persistent and offline, or
    /// has messages on disk that must be sent first.
    fn spilling(&self) -> bool {
        self.persist.is_some() && (self.spill.count > 0 || self.attachment.is_none())
    }

    fn push(&mut self, d: Delivery, weight: usize) {
        let spilling = self.spilling();
        let seq = if self.persist.is_some() && (d.qos != QoS::AtMostOnce || spilling) {
            let seq = self.next_seq;
            self.next_seq += 1;
            let record = QueuedRecord::of(&d);
            self.submit(|client_id| StoreOp::Enqueue {
                client_id,
                seq,
                record,
            });
            seq
        } else {
            0
        };
        if spilling {
            if self.spill.count == 0 {
                self.spill.from = seq;
            }
            self.spill.count += 1;
            self.spill.bytes += weight;
        } else {
            self.queued_bytes += weight;
            self.queue.push_back(Queued { seq, d });
        }
    }

    /// Removes the front of the in-memory queue, which is dropped (expired or overflow).
    fn pop_front_dropped(&mut self) {
        if let Some(q) = self.queue.pop_front() {
            self.queued_bytes -= q.d.msg.weight();
            self.forget(q.seq);
        }
    }

    /// Removes a stored message for good.
    fn forget(&mut self, seq: u64) {
        if seq != 0 {
            self.submit(|client_id| StoreOp::Dequeue { client_id, seq });
        }
    }

    /// Drops the oldest queued message, in memory or on disk. False if there is none.
    fn drop_oldest(&mut self) -> bool {
        if !self.queue.is_empty() {
            self.pop_front_dropped();
            return true;
        }
        if self.spill.count == 0 {
            return false;
        }
        match self.read_spill(1).pop() {
            Some((seq, r)) => {
                self.spill.from = seq + 1;
                self.spill.count -= 1;
                self.spill.bytes = self.spill.bytes.saturating_sub(r.msg.weight());
                self.forget(seq);
                true
            }
            None => false,
        }
    }

    /// Reads up to `max` spilled messages (without taking them). A store that cannot be
    /// read leaves the backlog where it is: it is logged and counted as empty here.
    fn read_spill(&mut self, max: usize) -> Vec<(u64, QueuedRecord)> {
        let Some(p) = &self.persist else {
            return Vec::new();
        };
        match p.store.read_queue(&p.client_id, self.spill.from, max) {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => {
                tracing::error!(client_id = %p.client_id, missing = self.spill.count, "queued messages missing from the store");
                self.spill = Spill::default();
                Vec::new()
            }
            Err(e) => {
                tracing::error!(client_id = %p.client_id, error = %e, "cannot read queued messages from the store");
                self.spill = Spill::default();
                Vec::new()
            }
        }
    }

    /// Moves up to `max` spilled messages into memory, in order.
    fn unspill(&mut self, max: usize) {
        for (seq, r) in self.read_spill(max) {
            let weight = r.msg.weight();
            self.spill.from = seq + 1;
            self.spill.count = self.spill.count.saturating_sub(1);
            self.spill.bytes = self.spill.bytes.saturating_sub(weight);
            self.queued_bytes += weight;
            self.queue.push_back(Queued {
                seq,
                d: r.into_delivery(),
            });
        }
        if self.spill.count == 0 {
            self.spill.bytes = 0;
        }
    }

    /// Number of queued (not yet sent) messages, in memory and on disk.
    pub fn queued_len(&self) -> usize {
        self.queue.len() + self.spill.count
    }

    /// Payload bytes queued, in memory and on disk.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes + self.spill.bytes
    }

    /// Number of queued messages held in memory.
    pub fn queued_in_memory(&self) -> usize {
        self.queue.len()
    }

    /// Number of outbound messages in flight.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// The inflight messages in send order.
    pub fn inflight(&self) -> impl Iterator<Item = &Inflight> {
        self.inflight.iter()
    }

    /// Takes every queued delivery (the session is ending).
    pub fn drain_all(&mut self) -> Vec<Delivery> {
        while self.spill.count > 0 {
            let before = self.spill.count;
            self.unspill(MAX_POLL_BATCH);
            if self.spill.count == before {
                break;
            }
        }
        self.queued_bytes = 0;
        self.in_use.clear();
        self.to_resend = 0;
        let mut out: Vec<Delivery> = self
            .inflight
            .drain(..)
            .filter(|i| i.state != OutState::Released)
            .map(|i| i.delivery)
            .collect();
        out.extend(self.queue.drain(..).map(|q| q.d));
        out
    }

    /// Starts re-sending after a reconnect ([MQTT-4.4.0-1]): returns the PUBREL packets to
    /// send again, in order, and marks every unacknowledged PUBLISH for `poll_deliveries`,
    /// which re-sends them with DUP set and their original ids, in their original order, only
    /// as fast as the new connection's Receive Maximum allows ([MQTT-3.3.4-7]): the client
    /// may have reconnected with a smaller one than the number of messages in flight.
    pub fn resend_inflight(&mut self) -> Vec<OutItem> {
        let mut rels = Vec::new();
        self.to_resend = 0;
        for i in &mut self.inflight {
            match i.state {
                OutState::Published | OutState::ToResend => {
                    i.state = OutState::ToResend;
                    self.to_resend += 1;
                }
                OutState::Released => rels.push(OutItem::PubRel(i.pid)),
            }
        }
        rels
    }

    /// Moves queued messages into flight while the send window allows, appending what to send
    /// to `out`. Expired messages are dropped.
    pub fn poll_deliveries(&mut self, now: Timestamp, out: &mut Vec<OutItem>) {
        if self.to_resend > 0 {
            self.poll_resends(out);
        }
        if self.queue.is_empty() && self.spill.count > 0 && self.attachment.is_some() {
            self.unspill(MAX_POLL_BATCH);
        }
        self.move_into_flight(now, out);
        if self.waiters.is_some() && self.queued_len() <= self.limits.max_messages / 2 {
            self.wake_waiters();
        }
    }

    /// Wakes every paused publisher (the queue drained, or the session went offline and
    /// applies its drop policy from now on).
    pub fn wake_waiters(&mut self) {
        for w in self.waiters.take().into_iter().flat_map(|w| *w) {
            w.notify();
        }
    }

    fn add_waiter(&mut self, w: &Arc<dyn Notify>) {
        let waiters = self.waiters.get_or_insert_with(Box::default);
        if !waiters.iter().any(|x| Arc::ptr_eq(x, w)) {
            waiters.push(w.clone());
        }
    }

    fn move_into_flight(&mut self, now: Timestamp, out: &mut Vec<OutItem>) {
        while let Some(front) = self.queue.front() {
            // A bounded batch per poll: what is not taken stays queued, where it counts
            // against the queue limit (and so pushes back on publishers).
            if out.len() >= MAX_POLL_BATCH {
                break;
            }
            if front.d.msg.is_expired(now) {
                self.pop_front_dropped();
                self.dropped_expired += 1;
                continue;
            }
            if front.d.qos != QoS::AtMostOnce
                && self.inflight.len() >= usize::from(self.limits.max_inflight)
            {
                break;
            }
            let Some(Queued { seq, d }) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= d.msg.weight();
            if d.qos == QoS::AtMostOnce {
                self.forget(seq);
                out.push(OutItem::Publish {
                    delivery: d,
                    pid: None,
                    dup: false,
                });
                continue;
            }
            let pid = self.alloc_pid();
            // QoS 2 keeps its packet id across a restart, so that the receiver recognises a
            // re-sent message; QoS 1 may get a new one.
            if seq != 0 && d.qos == QoS::ExactlyOnce {
                self.submit(|client_id| StoreOp::SetInflight {
                    client_id,
                    seq,
                    state: InflightRecord::Published(pid),
                });
            }
            self.inflight.push_back(Inflight {
                pid,
                seq,
                delivery: d.clone(),
                state: OutState::Published,
            });
            out.push(OutItem::Publish {
                delivery: d,
                pid: Some(pid),
                dup: false,
            });
        }
    }

    /// Re-sends marked messages while fewer than `max_inflight` are unacknowledged on this
    /// connection. Marked messages still occupy their place in `inflight`, so queued
    /// messages wait behind them and order is kept.
    fn poll_resends(&mut self, out: &mut Vec<OutItem>) {
        let window = usize::from(self.limits.max_inflight);
        let mut outstanding = self.inflight.len() - self.to_resend as usize;
        for i in &mut self.inflight {
            if outstanding >= window {
                break;
            }
            if i.state == OutState::ToResend {
                i.state = OutState::Published;
                self.to_resend -= 1;
                outstanding += 1;
                out.push(OutItem::Publish {
                    delivery: i.delivery.clone(),
                    pid: Some(i.pid),
                    dup: true,
                });
            }
        }
    }

    fn alloc_pid(&mut self) -> PacketId {
        loop {
            let v = self.next_pid;
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.in_use.contains(&v) {
                if let Some(pid) = PacketId::new(v) {
                    self.in_use.insert(v);
                    return pid;
                }
            }
        }
    }

    fn position(&self, pid: PacketId) -> Option<usize> {
        self.inflight.iter().position(|i| i.pid == pid)
    }

    fn remove_at(&mut self, pos: usize) {
        if let Some(i) = self.inflight.remove(pos) {
            self.in_use.remove(&i.pid.get());
            if i.state == OutState::ToResend {
                self.to_resend -= 1;
            }
            self.forget(i.seq);
        }
    }

    /// PUBACK received: releases a QoS 1 message. False if the id was not in flight as QoS 1.
    pub fn on_puback(&mut self, pid: PacketId) -> bool {
        match self.position(pid) {
            Some(pos)
                if self.inflight[pos].delivery.qos == QoS::AtLeastOnce
                    && self.inflight[pos].state != OutState::Released =>
            {
                self.remove_at(pos);
                true
            }
            _ => false,
        }
    }

    /// PUBREC received. Returns true if a PUBREL must be sent: the id is a QoS 2 message in
    /// flight and the code is a success. A failure code ends the flow ([MQTT-4.3.3]).
    pub fn on_pubrec(&mut self, pid: PacketId, success: bool) -> bool {
        let Some(pos) = self.position(pid) else {
            return false;
        };
        if self.inflight[pos].delivery.qos != QoS::ExactlyOnce {
            return false;
        }
        if !success {
            self.remove_at(pos);
            return false;
        }
        if self.inflight[pos].state == OutState::ToResend {
            self.to_resend -= 1;
        }
        self.inflight[pos].state = OutState::Released;
        let seq = self.inflight[pos].seq;
        if seq != 0 {
            self.submit(|client_id| StoreOp::SetInflight {
                client_id,
                seq,
                state: InflightRecord::Released(pid),
            });
        }
        true
    }

    /// PUBCOMP received: ends a QoS 2 flow.
    pub fn on_pubcomp(&mut self, pid: PacketId) -> bool {
        match self.position(pid) {
            Some(pos) if self.inflight[pos].state == OutState::Released => {
                self.remove_at(pos);
                true
            }
            _ => false,
        }
    }

    /// Forgets an inflight message that will never be sent (too large for the client).
    pub fn discard_inflight(&mut self, pid: PacketId) {
        if let Some(pos) = self.position(pid) {
            self.remove_at(pos);
        }
    }

    /// Replaces the subscription options kept for `filter`; returns true if it is new.
    pub fn add_subscription(&mut self, sub: StoredSubscription) -> bool {
        self.subscriptions
            .insert(sub.filter.as_str().to_owned(), sub)
            .is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use midge_codec::{PublishProperties, TopicName};
    use std::sync::Arc;

    fn limits(max_messages: usize) -> QueueLimits {
        QueueLimits {
            max_inflight: 2,
            max_messages,
            max_bytes: 1 << 20,
            policy: QueueFullPolicy::DropOldest,
            queue_qos0_offline: false,
        }
    }

    fn delivery(n: u8, qos: QoS) -> Delivery {
        Delivery {
            msg: Arc::new(Message {
                topic: TopicName::try_from("t").expect("valid"),
                payload: Bytes::from(vec![n]),
                qos,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: None,
            }),
            qos,
            retain: false,
            sub_ids: Vec::new(),
            share: None,
        }
    }

    #[test]
    fn window_limits_inflight_and_keeps_order() {
        let mut s = SessionState::new(ProtocolVersion::V5, 0, limits(10));
        for n in 0..4 {
            s.enqueue(delivery(n, QoS::AtLeastOnce), Timestamp(0));
        }
        let mut out = Vec::new();
        s.poll_deliveries(Timestamp(0), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(s.queued_len(), 2);
        let first = PacketId::new(1).expect("non-zero");
        assert!(s.on_puback(first));
        assert!(!s.on_puback(first));
        out.clear();
        s.poll_deliveries(Timestamp(0), &mut out);
        assert_eq!(out.len(), 1);
        match &out[0] {
            OutItem::Publish { delivery, .. } => assert_eq!(delivery.msg.payload[0], 2),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn drop_oldest_when_full() {
        let mut s = SessionState::new(ProtocolVersion::V5, 0, limits(2));
        s.attachment = None;
        for n in 0..3 {
            s.enqueue(delivery(n, QoS::AtLeastOnce), Timestamp(0));
        }
        assert_eq!(s.queued_len(), 2);
        assert_eq!(s.dropped_queue_full, 1);
    }

    #[test]
    fn qos0_not_queued_offline() {
        let mut s = SessionState::new(ProtocolVersion::V5, 0, limits(2));
        assert_eq!(
            s.enqueue(delivery(0, QoS::AtMostOnce), Timestamp(0)),
            EnqueueOutcome::NotQueued
        );
    }

    #[test]
    fn qos2_flow_and_resend() {
        let mut s = SessionState::new(ProtocolVersion::V5, 0, limits(10));
        s.enqueue(delivery(0, QoS::ExactlyOnce), Timestamp(0));
        s.enqueue(delivery(1, QoS::ExactlyOnce), Timestamp(0));
        let mut out = Vec::new();
        s.poll_deliveries(Timestamp(0), &mut out);
        let p1 = PacketId::new(1).expect("non-zero");
        assert!(s.on_pubrec(p1, true));
        let resend = s.resend_inflight();
        assert_eq!(resend, [OutItem::PubRel(p1)]);
        out.clear();
        s.poll_deliveries(Timestamp(0), &mut out);
        assert!(matches!(out[..], [OutItem::Publish { dup: true, .. }]));
        assert!(s.on_pubcomp(p1));
        assert_eq!(s.inflight_len(), 1);
    }

    #[test]
    fn resend_respects_a_smaller_window() {
        let mut s = SessionState::new(ProtocolVersion::V5, 0, limits(10));
        s.limits.max_inflight = 4;
        for n in 0..4 {
            s.enqueue(delivery(n, QoS::AtLeastOnce), Timestamp(0));
        }
        s.enqueue(delivery(4, QoS::AtLeastOnce), Timestamp(0));
        let mut out = Vec::new();
        s.poll_deliveries(Timestamp(0), &mut out);
        assert_eq!(out.len(), 4);
        // Reconnect with Receive Maximum 2.
        s.limits.max_inflight = 2;
        assert!(s.resend_inflight().is_empty());
        let payloads = |out: &[OutItem]| -> Vec<(u8, bool)> {
            out.iter()
                .map(|o| match o {
                    OutItem::Publish { delivery, dup, .. } => (delivery.msg.payload[0], *dup),
                    other => panic!("unexpected {other:?}"),
                })
                .collect()
        };
        out.clear();
        s.poll_deliveries(Timestamp(0), &mut out);
        assert_eq!(payloads(&out), [(0, true), (1, true)]);
        out.clear();
        s.poll_deliveries(Timestamp(0), &mut out);
        assert!(out.is_empty(), "window full");
        // An acknowledgement of a message not yet re-sent also frees its place.
        assert!(s.on_puback(PacketId::new(4).expect("non-zero")));
        assert!(s.on_puback(PacketId::new(1).expect("non-zero")));
        s.poll_deliveries(Timestamp(0), &mut out);
        assert_eq!(payloads(&out), [(2, true)]);
        out.clear();
        assert!(s.on_puback(PacketId::new(2).expect("non-zero")));
        s.poll_deliveries(Timestamp(0), &mut out);
        assert_eq!(
            payloads(&out),
            [(4, false)],
            "queued messages after the re-sends"
        );
    }
}
#[cfg(test)]
mod size {
    /// Every session, connected or not, is one `Arc<SessionHandle>` allocation: 16 bytes of
    /// counts plus the handle. At most 368 bytes keeps it in jemalloc's 384-byte class
    /// (the next is 448), a large part of an idle connection's memory (issue 4).
    #[test]
    fn a_session_fits_a_384_byte_allocation() {
        let size = std::mem::size_of::<super::SessionHandle>();
        assert!(size <= 368, "SessionHandle grew to {size} bytes");
    }
}
