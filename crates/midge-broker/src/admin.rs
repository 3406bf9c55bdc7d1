//! What operators see and do (the admin API and `$SYS`): snapshots of sessions with their
//! clients and subscriptions, retained messages and totals; kicking a client, deleting a
//! session or a retained message. A snapshot locks one session at a time, briefly: it is
//! consistent per session, not across sessions.

use std::sync::Arc;

use midge_codec::{ClientId, ProtocolVersion, TopicFilter};

use crate::broker::Broker;
use crate::message::Message;
use crate::session::{ClientInfo, SessionHandle, StoredSubscription};
use crate::store::StoreOp;
use crate::time::Timestamp;

/// One session as operators see it.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// Client identifier.
    pub client_id: ClientId,
    /// The connected client, if online.
    pub client: Option<Arc<ClientInfo>>,
    /// Protocol of the last connection.
    pub protocol: ProtocolVersion,
    /// Session Expiry Interval, seconds (`u32::MAX`: never).
    pub expiry_secs: u32,
    /// When it expires, while offline.
    pub expires_at: Option<Timestamp>,
    /// Messages queued (in memory and spilled to the store).
    pub queued: usize,
    /// Bytes queued.
    pub queued_bytes: usize,
    /// Messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Number of subscriptions.
    pub subscription_count: usize,
    /// The subscriptions, sorted by filter (empty unless asked for).
    pub subscriptions: Vec<StoredSubscription>,
}

/// Sums over every session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sessions, online and offline.
    pub sessions: usize,
    /// Sessions with a connected client.
    pub online: usize,
    /// Messages queued.
    pub queued_messages: usize,
    /// Bytes queued.
    pub queued_bytes: usize,
    /// Messages in flight.
    pub inflight: usize,
}

fn snapshot(s: &SessionHandle, with_subscriptions: bool) -> SessionSnapshot {
    let st = s.lock();
    let mut subscriptions: Vec<StoredSubscription> = if with_subscriptions {
        st.subscriptions.values().cloned().collect()
    } else {
        Vec::new()
    };
    subscriptions.sort_by(|a, b| a.filter.as_str().cmp(b.filter.as_str()));
    SessionSnapshot {
        client_id: s.client_id.clone(),
        client: st.attachment.as_ref().map(|a| a.info.clone()),
        protocol: st.protocol,
        expiry_secs: st.expiry_secs,
        expires_at: st.expires_at,
        queued: st.queued_len(),
        queued_bytes: st.queued_bytes(),
        inflight: st.inflight_len(),
        subscription_count: st.subscriptions.len(),
        subscriptions,
    }
}

impl Broker {
    /// Every session whose client id passes `keep`, sorted by client id.
    pub fn sessions_snapshot(
        &self,
        mut keep: impl FnMut(&str) -> bool,
        with_subscriptions: bool,
    ) -> Vec<SessionSnapshot> {
        let handles: Vec<Arc<SessionHandle>> = self
            .sessions
            .lock()
            .iter()
            .filter(|(id, _)| keep(id))
            .map(|(_, s)| s.clone())
            .collect();
        let mut out: Vec<SessionSnapshot> = handles
            .iter()
            .map(|s| snapshot(s, with_subscriptions))
            .collect();
        out.sort_by(|a, b| a.client_id.as_str().cmp(b.client_id.as_str()));
        out
    }

    /// One session with its subscriptions.
    pub fn session_snapshot(&self, client_id: &str) -> Option<SessionSnapshot> {
        let s = self.session(client_id)?;
        Some(snapshot(&s, true))
    }

    /// Sums over every session.
    pub fn totals(&self) -> Totals {
        let handles: Vec<Arc<SessionHandle>> = self.sessions.lock().values().cloned().collect();
        let mut t = Totals {
            sessions: handles.len(),
            ..Totals::default()
        };
        for s in handles {
            let st = s.lock();
            t.online += usize::from(st.attachment.is_some());
            t.queued_messages += st.queued_len();
            t.queued_bytes += st.queued_bytes();
            t.inflight += st.inflight_len();
        }
        t
    }

    /// Disconnects the client connected with this id (5.0 clients get DISCONNECT 0x98); its
    /// will is published as for any connection that ends without DISCONNECT. False if no
    /// client is connected with it.
    pub fn kick(&self, client_id: &str) -> bool {
        let Some(s) = self.session(client_id) else {
            return false;
        };
        let notify = {
            let mut st = s.lock();
            match st.attachment.as_mut() {
                Some(a) => {
                    a.kicked = true;
                    a.notify.clone()
                }
                None => return false,
            }
        };
        notify.notify();
        true
    }

    /// Deletes a session with its subscriptions, queue and stored state; a connected client
    /// is disconnected first (as by `kick`) and its session ends with it. False if there is
    /// no session with this id.
    pub fn delete_session(&self, client_id: &str, now: Timestamp) -> bool {
        let Some(s) = self.session(client_id) else {
            return false;
        };
        let online = {
            let mut st = s.lock();
            match st.attachment.as_mut() {
                Some(a) => {
                    a.kicked = true;
                    let notify = a.notify.clone();
                    st.expiry_secs = 0;
                    Some(notify)
                }
                None => None,
            }
        };
        match online {
            Some(notify) => notify.notify(),
            None => {
                self.cancel_timers(&s, now);
                self.end_session(&s, now);
            }
        }
        true
    }

    /// Retained messages matching `filter` (expired ones excluded), sorted by topic.
    pub fn retained_snapshot(&self, filter: &TopicFilter, now: Timestamp) -> Vec<Arc<Message>> {
        let mut out = self.retained.read().matching(filter, now);
        out.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
        out
    }

    /// Deletes the retained message of a topic without publishing anything. False if there
    /// was none.
    pub fn delete_retained(&self, topic: &str) -> bool {
        let removed = self.retained.write().remove(topic);
        if removed {
            if let Some(store) = &self.store {
                store.submit(StoreOp::Retain {
                    topic: Arc::from(topic),
                    msg: None,
                });
            }
        }
        removed
    }
}
