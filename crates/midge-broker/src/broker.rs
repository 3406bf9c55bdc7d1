//! The shared broker: session registry, subscription index, retained store, delayed wills
//! and session expiry. Every connection calls into one `Broker` behind an `Arc`.
//!
//! Concurrency: no lock is held across the whole publish path. A publish takes the index
//! read lock to find subscribers, releases it, then locks each target session briefly to
//! queue the message. Lock order, where locks nest: sessions map, then one session, then
//! timers; the index lock is never taken while a session lock is held.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use midge_codec::{
    ClientId, ProtocolVersion, QoS, SubscriptionId, SubscriptionOptions, TopicFilter, TopicName,
};
use parking_lot::{Mutex, RwLock};

use crate::config::{BrokerConfig, LiveLimits};
use crate::index::{Matches, Sub, SubscriptionIndex};
use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::retained::{RetainOutcome, RetainedStore};
use crate::session::{
    Attachment, ClientInfo, EnqueueOutcome, Notify, Persist, QueueLimits, SessionHandle,
    SessionState, StoredSubscription, WillMessage,
};
use crate::store::{Store, StoreError, StoreOp};
use crate::time::{secs, Timestamp};
use crate::watch::Watches;

/// Payloads up to this size are copied out of the connection's read buffer when published,
/// so that a small message kept in a queue or in the retained store does not pin a whole
/// read buffer; larger payloads stay shared (zero copy).
pub const COMPACT_PAYLOAD_MAX: usize = 4096;

/// Copies a message's topic and (small) payload into allocations of their own.
fn compact(mut msg: Message) -> Message {
    if let Ok(t) = TopicName::try_from(msg.topic.as_str()) {
        msg.topic = t;
    }
    if msg.payload.len() <= COMPACT_PAYLOAD_MAX {
        msg.payload = bytes::Bytes::copy_from_slice(&msg.payload);
    }
    msg
}

/// A client id in an allocation of its own (decoded ids share the read buffer).
fn own_client_id(id: &ClientId) -> ClientId {
    ClientId::try_from(id.as_str()).unwrap_or_else(|_| id.clone())
}

/// Session expiry interval meaning "never".
pub const NEVER_EXPIRE: u32 = u32::MAX;

/// Deadlines keyed by session uid, ordered by time.
#[derive(Debug)]
struct Deadlines<V> {
    by_uid: HashMap<u64, (Timestamp, V)>,
    order: BTreeSet<(Timestamp, u64)>,
}

impl<V> Default for Deadlines<V> {
    fn default() -> Self {
        Deadlines {
            by_uid: HashMap::new(),
            order: BTreeSet::new(),
        }
    }
}

impl<V> Deadlines<V> {
    fn insert(&mut self, uid: u64, at: Timestamp, v: V) {
        self.remove(uid);
        self.order.insert((at, uid));
        self.by_uid.insert(uid, (at, v));
    }

    fn remove(&mut self, uid: u64) -> Option<V> {
        let (at, v) = self.by_uid.remove(&uid)?;
        self.order.remove(&(at, uid));
        Some(v)
    }

    fn pop_due(&mut self, now: Timestamp) -> Vec<(u64, V)> {
        let mut out = Vec::new();
        while let Some(&(at, uid)) = self.order.first() {
            if at > now {
                break;
            }
            self.order.pop_first();
            if let Some((_, v)) = self.by_uid.remove(&uid) {
                out.push((uid, v));
            }
        }
        out
    }

    fn next(&self) -> Option<Timestamp> {
        self.order.first().map(|&(t, _)| t)
    }

    fn len(&self) -> usize {
        self.by_uid.len()
    }
}

#[derive(Debug, Default)]
struct Timers {
    /// Delayed wills with their client id.
    wills: Deadlines<(ClientId, Message)>,
    expiries: Deadlines<ClientId>,
}

/// Result of routing one message.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// Sessions the message was delivered to.
    pub matched: usize,
    /// Connected sessions whose queue is full: the publisher waits for them.
    pub congested: Vec<Arc<SessionHandle>>,
    /// The store ticket that must be durable before the publisher is acknowledged (0: none).
    pub ticket: u64,
}

/// What a connection asks for when its CONNECT is accepted.
#[derive(Debug)]
pub struct ConnectRequest {
    /// Client identifier (already assigned if the client sent an empty one).
    pub client_id: ClientId,
    /// Protocol of the connection.
    pub protocol: ProtocolVersion,
    /// Clean Start / Clean Session.
    pub clean_start: bool,
    /// Session expiry interval granted, seconds (`NEVER_EXPIRE` for 3.x persistent sessions).
    pub expiry_secs: u32,
    /// The will, if any.
    pub will: Option<WillMessage>,
    /// Queue limits for the session.
    pub limits: QueueLimits,
    /// Wakes the connection.
    pub notify: Arc<dyn Notify>,
    /// Who is connecting, for operators.
    pub info: Arc<ClientInfo>,
}

/// The session a connection is attached to.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The session.
    pub session: Arc<SessionHandle>,
    /// This connection's generation.
    pub generation: u64,
    /// Whether an existing session was resumed (CONNACK Session Present).
    pub session_present: bool,
}

/// The broker.
#[derive(Debug)]
pub struct Broker {
    config: arc_swap::ArcSwap<BrokerConfig>,
    pub(crate) sessions: Mutex<HashMap<Box<str>, Arc<SessionHandle>>>,
    pub(crate) index: RwLock<SubscriptionIndex>,
    pub(crate) retained: RwLock<RetainedStore>,
    timers: Mutex<Timers>,
    next_uid: AtomicU64,
    next_generation: AtomicU64,
    pub(crate) store: Option<Arc<dyn Store>>,
    /// Live views of the messages on some filters (admin topic watch).
    pub(crate) watches: Watches,
    /// Counters and gauges.
    pub metrics: Metrics,
    /// Limits that may change while running.
    pub limits: LiveLimits,
}

/// Queued messages per session read into memory at start; the rest stays on disk.
pub const RECOVERED_HEAD: usize = 64;

impl Broker {
    /// A broker with no sessions.
    pub fn new(config: BrokerConfig) -> Self {
        Broker {
            retained: RwLock::new(RetainedStore::new(config.max_retained_messages)),
            config: arc_swap::ArcSwap::from_pointee(config),
            sessions: Mutex::new(HashMap::new()),
            index: RwLock::new(SubscriptionIndex::new()),
            timers: Mutex::new(Timers::default()),
            next_uid: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
            store: None,
            watches: Watches::default(),
            metrics: Metrics::default(),
            limits: LiveLimits::default(),
        }
    }

    /// A broker whose persistent sessions, retained messages and delayed wills are kept in
    /// `store`, starting from what the store holds: sessions come back offline with their
    /// subscriptions, queues and inflight messages; a session whose expiry passed while the
    /// broker was down expires at the first `tick`.
    pub fn with_store(
        config: BrokerConfig,
        store: Arc<dyn Store>,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let recovered = store.recover(RECOVERED_HEAD)?;
        let mut broker = Broker::new(config);
        broker.store = Some(store.clone());
        let limits = broker.default_limits();
        let mut uids: HashMap<Arc<str>, u64> = HashMap::new();
        {
            let mut sessions = broker.sessions.lock();
            let mut index = broker.index.write();
            let mut timers = broker.timers.lock();
            for rs in recovered.sessions {
                let Ok(client_id) = ClientId::try_from(&*rs.client_id) else {
                    tracing::error!(client_id = %rs.client_id, "stored session with an invalid client id skipped");
                    continue;
                };
                let offline_since = rs.record.offline_since.unwrap_or(now);
                let expiry = rs.record.expiry_secs;
                let key = rs.client_id.clone();
                let mut st = SessionState::recovered(rs, limits, store.clone());
                if expiry != NEVER_EXPIRE {
                    st.expires_at = Some(offline_since + secs(expiry));
                }
                // A session that was online when the broker stopped went offline now.
                st.save(Some(offline_since));
                let subs: Vec<StoredSubscription> = st.subscriptions.values().cloned().collect();
                let uid = broker.next_uid.fetch_add(1, Ordering::Relaxed);
                let expires_at = st.expires_at;
                let handle = Arc::new(SessionHandle::new(uid, client_id.clone(), st));
                for sub in subs {
                    index.insert(
                        &sub.filter,
                        Sub {
                            session: handle.clone(),
                            options: sub.options,
                            sub_id: sub.sub_id,
                        },
                    );
                }
                if let Some(at) = expires_at {
                    timers.expiries.insert(uid, at, client_id.clone());
                }
                uids.insert(key, uid);
                sessions.insert(Box::from(client_id.as_str()), handle);
            }
            for (client_id, msg, at) in recovered.wills {
                let Ok(id) = ClientId::try_from(&*client_id) else {
                    continue;
                };
                let uid = uids
                    .get(&client_id)
                    .copied()
                    .unwrap_or_else(|| broker.next_uid.fetch_add(1, Ordering::Relaxed));
                timers.wills.insert(uid, at, (id, (*msg).clone()));
            }
        }
        {
            let mut retained = broker.retained.write();
            for msg in recovered.retained {
                retained.put(msg, now);
            }
        }
        // Sessions that expired and wills that came due while the broker was down.
        broker.tick(now);
        Ok(broker)
    }

    /// The store, if the broker has one.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.store.as_ref()
    }

    /// Queue limits of a session before its client says more (recovered sessions).
    fn default_limits(&self) -> QueueLimits {
        let c = self.config.load();
        QueueLimits {
            max_inflight: c.max_inflight.max(1),
            max_messages: c.max_queued_messages,
            max_bytes: c.max_queued_bytes,
            policy: c.queue_full_policy,
            queue_qos0_offline: c.queue_qos0_offline,
        }
    }

    /// Where a session with this expiry is stored (`None`: not at all).
    fn persist_for(&self, client_id: &ClientId, expiry_secs: u32) -> Option<Persist> {
        let store = self.store.as_ref().filter(|_| expiry_secs != 0)?;
        Some(Persist {
            store: store.clone(),
            client_id: Arc::from(client_id.as_str()),
        })
    }

    /// Stores (or clears) a session's delayed will.
    fn store_will(&self, client_id: &ClientId, will: Option<(Arc<Message>, Timestamp)>) {
        if let Some(store) = &self.store {
            store.submit(StoreOp::Will {
                client_id: Arc::from(client_id.as_str()),
                will,
            });
        }
    }

    /// The configuration.
    pub fn config(&self) -> arc_swap::Guard<Arc<BrokerConfig>> {
        self.config.load()
    }

    /// Replaces the configuration (reload): connections read it on their next use; queue
    /// limits of existing sessions change when their client next connects.
    pub fn set_config(&self, config: BrokerConfig) {
        self.retained.write().set_max(config.max_retained_messages);
        self.config.store(Arc::new(config));
    }

    /// Attaches a connection to its session, creating, resuming or replacing it, and taking
    /// over from a connection that still holds the client id ([MQTT-3.1.4-3]).
    pub fn connect(&self, mut req: ConnectRequest, now: Timestamp) -> Attached {
        // Deadlines that passed since the last timer tick (or while the broker was down)
        // come first: an expired session is not resumed, a will that came due is published.
        if self.next_deadline().is_some_and(|at| at <= now) {
            self.tick(now);
        }
        req.client_id = own_client_id(&req.client_id);
        if let Some(w) = req.will.as_mut() {
            w.message = compact(w.message.clone());
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let attachment = Attachment {
            generation,
            notify: req.notify.clone(),
            info: req.info.clone(),
            kicked: false,
        };
        let mut wills = Vec::new();
        let mut taken_over: Option<Arc<dyn Notify>> = None;
        let mut discarded = None;
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(req.client_id.as_str()).cloned();
        let resumed = match existing {
            Some(s) => {
                let mut st = s.lock();
                if let Some(old) = st.attachment.take() {
                    taken_over = Some(old.notify);
                    // The old connection's will is sent unless the new connection resumes
                    // the session and the will has a delay (MQTT 5.0 section 3.1.3.2.2).
                    if let Some(w) = st.will.take() {
                        if req.clean_start || w.delay_secs == 0 {
                            wills.push(w.message);
                        }
                    }
                }
                let cancelled_will = {
                    let mut timers = self.timers.lock();
                    timers.expiries.remove(s.uid);
                    timers.wills.remove(s.uid)
                };
                if cancelled_will.is_some() {
                    self.store_will(&req.client_id, None);
                }
                // A session with expiry 0 ends with its connection ([MQTT-3.1.2-6] for a
                // 3.1.1 clean session): a takeover cannot resume it.
                if req.clean_start || st.expiry_secs == 0 {
                    drop(st);
                    discarded = Some(s);
                    None
                } else {
                    st.protocol = req.protocol;
                    st.expiry_secs = req.expiry_secs;
                    st.will = req.will.clone().map(Box::new);
                    st.attachment = Some(attachment.clone());
                    st.expires_at = None;
                    st.limits = req.limits;
                    st.set_persist(self.persist_for(&req.client_id, req.expiry_secs), None);
                    drop(st);
                    s.set_online(true);
                    Some(s)
                }
            }
            None => None,
        };
        let (session, session_present) = match resumed {
            Some(s) => (s, true),
            None => {
                let mut st = SessionState::new(req.protocol, req.expiry_secs, req.limits);
                st.will = req.will.map(Box::new);
                st.attachment = Some(attachment);
                st.set_persist(self.persist_for(&req.client_id, req.expiry_secs), None);
                let uid = self.next_uid.fetch_add(1, Ordering::Relaxed);
                let s = Arc::new(SessionHandle::new(uid, req.client_id.clone(), st));
                sessions.insert(Box::from(req.client_id.as_str()), s.clone());
                (s, false)
            }
        };
        drop(sessions);
        if let Some(n) = taken_over {
            n.notify();
        } else {
            self.metrics.connected(1);
        }
        if let Some(old) = discarded {
            self.discard_session(&old, now);
        }
        for w in wills {
            self.publish(w, None, now);
        }
        self.metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        Attached {
            session,
            generation,
            session_present,
        }
    }

    /// Detaches a connection from its session when the connection ends. `publish_will` is
    /// false only after a normal DISCONNECT. `new_expiry` is the Session Expiry Interval of
    /// a 5.0 DISCONNECT. Does nothing if the connection was already taken over.
    pub fn disconnect(
        &self,
        session: &Arc<SessionHandle>,
        generation: u64,
        publish_will: bool,
        new_expiry: Option<u32>,
        now: Timestamp,
    ) {
        let (will, expiry) = {
            let mut st = session.lock();
            match &st.attachment {
                Some(a) if a.generation == generation => {}
                _ => return,
            }
            st.attachment = None;
            session.set_online(false);
            self.metrics.connected(-1);
            // Offline sessions apply their drop policy: paused publishers may go on.
            st.wake_waiters();
            if let Some(e) = new_expiry {
                st.expiry_secs = e;
            }
            let expiry = st.expiry_secs;
            if expiry != 0 && expiry != NEVER_EXPIRE {
                st.expires_at = Some(now + secs(expiry));
            }
            if expiry != 0 {
                st.save(Some(now));
            }
            (st.will.take(), expiry)
        };
        if let Some(w) = will.filter(|_| publish_will) {
            if w.delay_secs == 0 || expiry == 0 {
                self.publish(w.message, None, now);
            } else {
                // Published when the delay passes or the session ends, whichever is first.
                let at = now + secs(w.delay_secs.min(expiry));
                self.store_will(&session.client_id, Some((Arc::new(w.message.clone()), at)));
                self.timers.lock().wills.insert(
                    session.uid,
                    at,
                    (session.client_id.clone(), w.message),
                );
            }
        }
        if expiry == 0 {
            self.end_session(session, now);
        } else if expiry != NEVER_EXPIRE {
            self.timers.lock().expiries.insert(
                session.uid,
                now + secs(expiry),
                session.client_id.clone(),
            );
        }
    }

    /// Cancels an offline session's expiry timer and publishes its delayed will now (the
    /// session is about to end, which fires the will).
    pub(crate) fn cancel_timers(&self, session: &SessionHandle, now: Timestamp) {
        let will = {
            let mut timers = self.timers.lock();
            timers.expiries.remove(session.uid);
            timers.wills.remove(session.uid)
        };
        if let Some((client_id, w)) = will {
            self.store_will(&client_id, None);
            self.publish(w, None, now);
        }
    }

    /// Removes a session from the registry if it is still the registered one, then discards
    /// it.
    pub(crate) fn end_session(&self, session: &Arc<SessionHandle>, now: Timestamp) {
        {
            let mut sessions = self.sessions.lock();
            match sessions.get(session.client_id.as_str()) {
                Some(s) if s.uid == session.uid => {
                    sessions.remove(session.client_id.as_str());
                }
                _ => {}
            }
        }
        self.discard_session(session, now);
    }

    /// Drops a session's subscriptions and hands its shared-subscription messages to other
    /// members of their groups.
    fn discard_session(&self, session: &Arc<SessionHandle>, now: Timestamp) {
        let (subs, pending) = {
            let mut st = session.lock();
            st.wake_waiters();
            let subs: Vec<StoredSubscription> = std::mem::take(&mut st.subscriptions)
                .into_values()
                .collect();
            let pending = st.drain_all();
            st.delete_stored();
            (subs, pending)
        };
        {
            let mut idx = self.index.write();
            for s in &subs {
                idx.remove(&s.filter, session.uid);
            }
        }
        let mut moved = Vec::new();
        {
            let idx = self.index.read();
            for d in pending {
                let Some(key) = d.share.clone() else { continue };
                let Ok(filter) = TopicFilter::try_from(&*key) else {
                    continue;
                };
                if let Some(member) = idx.group(&filter).and_then(|g| g.pick()) {
                    moved.push((member.session.clone(), d));
                }
            }
        }
        for (s, d) in moved {
            self.count_enqueue(s.deliver(d, now, None).0);
        }
    }

    /// Routes a message to every matching subscription and stores it if retained. Returns
    /// the number of sessions it was queued for. `publisher` is the publishing session, for
    /// No Local.
    pub fn publish(
        &self,
        msg: Message,
        publisher: Option<&Arc<SessionHandle>>,
        now: Timestamp,
    ) -> usize {
        self.publish_from(msg, publisher, None, now).matched
    }

    /// `publish` for a client's PUBLISH: also returns the connected sessions whose queues are
    /// full, which the publisher must wait for (it is registered through `waiter` and woken
    /// when they drain).
    pub fn publish_from(
        &self,
        msg: Message,
        publisher: Option<&Arc<SessionHandle>>,
        waiter: Option<&Arc<dyn Notify>>,
        now: Timestamp,
    ) -> PublishOutcome {
        self.metrics.count_received(msg.qos, msg.payload.len());
        let outcome = self.route(msg, publisher, waiter, now);
        if outcome.matched == 0 {
            self.metrics
                .messages_unrouted
                .fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Publishes a broker message (`$SYS`): routed and retained like any other, not counted
    /// as received or unrouted, and never written to the store.
    pub fn publish_internal(&self, msg: Message, now: Timestamp) -> usize {
        self.route(msg, None, None, now).matched
    }

    fn route(
        &self,
        msg: Message,
        publisher: Option<&Arc<SessionHandle>>,
        waiter: Option<&Arc<dyn Notify>>,
        now: Timestamp,
    ) -> PublishOutcome {
        let mut msg = compact(msg);
        // The expiry interval runs from the moment the broker publishes the message (for a
        // will: when it is published, not when CONNECT arrived).
        if let Some(interval) = msg.properties.message_expiry_interval {
            msg.expires_at = Some(now + secs(interval));
        }
        let msg = Arc::new(msg);
        self.watches.offer(&msg);
        let mut ticket = 0;
        if msg.retain && self.config.load().retain_available {
            let outcome = self.retained.write().put(msg.clone(), now);
            if outcome == RetainOutcome::Full {
                self.metrics
                    .retained_dropped_full
                    .fetch_add(1, Ordering::Relaxed);
            } else if let Some(store) = self
                .store
                .as_ref()
                .filter(|_| !msg.topic.as_str().starts_with("$SYS/"))
            {
                ticket = store.submit(StoreOp::Retain {
                    topic: Arc::from(msg.topic.as_str()),
                    msg: (outcome == RetainOutcome::Stored).then(|| msg.clone()),
                });
            }
        }
        let publisher_uid = publisher.map(|p| p.uid);
        let mut targets: Vec<(Arc<SessionHandle>, Delivery)> = Vec::new();
        {
            let idx = self.index.read();
            let mut m = Matches::default();
            idx.matches(msg.topic.as_str(), &mut m);
            m.subs.sort_unstable_by_key(|s| s.session.uid);
            for sub in m.subs {
                if sub.options.no_local && Some(sub.session.uid) == publisher_uid {
                    continue;
                }
                let qos = msg.qos.min(sub.options.qos);
                let retain = sub.options.retain_as_published && msg.retain;
                match targets.last_mut() {
                    // Overlapping subscriptions of one session: one delivery at the highest
                    // QoS with every subscription identifier ([MQTT-3.3.4-2], 3.1.1
                    // [MQTT-3.3.5-1]).
                    Some((s, d)) if s.uid == sub.session.uid && d.share.is_none() => {
                        d.qos = d.qos.max(qos);
                        d.retain |= retain;
                        d.sub_ids.extend(sub.sub_id);
                    }
                    _ => targets.push((
                        sub.session.clone(),
                        Delivery {
                            msg: msg.clone(),
                            qos,
                            retain,
                            sub_ids: sub.sub_id.into_iter().collect(),
                            share: None,
                        },
                    )),
                }
            }
            for g in m.groups {
                if let Some(sub) = g.pick() {
                    targets.push((
                        sub.session.clone(),
                        Delivery {
                            msg: msg.clone(),
                            qos: msg.qos.min(sub.options.qos),
                            retain: sub.options.retain_as_published && msg.retain,
                            sub_ids: sub.sub_id.into_iter().collect(),
                            share: Some(g.key.clone()),
                        },
                    ));
                }
            }
        }
        let matched = targets.len();
        let mut congested = Vec::new();
        for (s, d) in targets {
            let (outcome, t) = s.deliver(d, now, waiter);
            ticket = ticket.max(t);
            if outcome == EnqueueOutcome::Congested {
                congested.push(s);
            }
            self.count_enqueue(outcome);
        }
        PublishOutcome {
            matched,
            congested,
            ticket,
        }
    }

    fn count_enqueue(&self, outcome: EnqueueOutcome) {
        match outcome {
            EnqueueOutcome::Queued => {}
            EnqueueOutcome::Congested => {
                self.metrics
                    .publishers_paused
                    .fetch_add(1, Ordering::Relaxed);
            }
            EnqueueOutcome::DroppedOldest | EnqueueOutcome::DroppedNew => {
                self.metrics
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
            EnqueueOutcome::NotQueued => {
                self.metrics
                    .dropped_offline_qos0
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Adds or replaces a subscription of `session`. Returns true if it did not exist.
    pub fn subscribe(
        &self,
        session: &Arc<SessionHandle>,
        filter: &TopicFilter,
        options: SubscriptionOptions,
        sub_id: Option<SubscriptionId>,
    ) -> bool {
        // Kept for the session's lifetime: not in the shared read buffer.
        let owned = TopicFilter::try_from(filter.as_str());
        let filter = owned.as_ref().unwrap_or(filter);
        let is_new = {
            let mut st = session.lock();
            let is_new = st.add_subscription(StoredSubscription {
                filter: filter.clone(),
                options,
                sub_id,
            });
            st.save(None);
            is_new
        };
        self.index.write().insert(
            filter,
            Sub {
                session: session.clone(),
                options,
                sub_id,
            },
        );
        is_new
    }

    /// Removes a subscription. Returns true if it existed.
    pub fn unsubscribe(&self, session: &Arc<SessionHandle>, filter: &TopicFilter) -> bool {
        let existed = {
            let mut st = session.lock();
            let existed = st.subscriptions.remove(filter.as_str()).is_some();
            if existed {
                st.save(None);
            }
            existed
        };
        self.index.write().remove(filter, session.uid);
        existed
    }

    /// Retained messages matching a filter, for delivery on subscribe.
    pub fn retained_matching(&self, filter: &TopicFilter, now: Timestamp) -> Vec<Arc<Message>> {
        if !self.config.load().retain_available {
            return Vec::new();
        }
        self.retained.read().matching(filter, now)
    }

    /// Fires due delayed wills and expires due sessions. Call at `next_deadline` or
    /// periodically.
    pub fn tick(&self, now: Timestamp) {
        let (wills, expiries) = {
            let mut t = self.timers.lock();
            (t.wills.pop_due(now), t.expiries.pop_due(now))
        };
        for (_, (client_id, w)) in wills {
            self.store_will(&client_id, None);
            self.publish(w, None, now);
        }
        for (uid, client_id) in expiries {
            let session = self.sessions.lock().get(client_id.as_str()).cloned();
            let Some(s) = session.filter(|s| s.uid == uid) else {
                continue;
            };
            let expired = {
                let st = s.lock();
                st.attachment.is_none() && st.expires_at.is_some_and(|t| t <= now)
            };
            if expired {
                self.metrics
                    .sessions_expired
                    .fetch_add(1, Ordering::Relaxed);
                self.end_session(&s, now);
            }
        }
    }

    /// The earliest pending will or session expiry.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let t = self.timers.lock();
        match (t.wills.next(), t.expiries.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Number of sessions (online and offline).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The session of a client id, if any.
    pub fn session(&self, client_id: &str) -> Option<Arc<SessionHandle>> {
        self.sessions.lock().get(client_id).cloned()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.index.read().len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Number of delayed wills waiting.
    pub fn pending_wills(&self) -> usize {
        self.timers.lock().wills.len()
    }

    /// The granted QoS for a requested one.
    pub fn grant_qos(&self, requested: QoS) -> QoS {
        requested.min(self.config.load().max_qos)
    }
}
