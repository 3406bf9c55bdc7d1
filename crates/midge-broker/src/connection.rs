//! The protocol state machine of one client connection, without I/O: packets in, packets
//! out, time as a parameter. The server feeds it decoded packets and timeouts and writes
//! what it puts in an `OutBuffer`.
//!
//! Lifecycle: `AwaitingConnect` until a valid CONNECT (anything else first is a protocol
//! error, [MQTT-3.1.0-1]); `Active` while attached to a session; once any method returns a
//! `CloseReason`, the server flushes the output and calls `finish` exactly once.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use midge_codec::{
    encoded_len, ClientId, ConnAck, ConnAckProperties, DecodeError, Disconnect,
    DisconnectProperties, FilterEntry, MqttString, Packet, PacketId, ProtocolVersion, PubAck,
    Publish, PublishProperties, QoS, QosPid, ReasonCode, ReasonProperties, RetainHandling, SubAck,
    Subscribe, TopicName, UnsubAck, Unsubscribe,
};

use crate::auth::{Action, AuthExchange, ClientIdentity, ListenerAuth};
use crate::broker::{Attached, Broker};
use crate::message::{Delivery, Message};
use crate::out::OutBuffer;
use crate::session::{Notify, OutItem};
use crate::small::U16Map;
use crate::time::Timestamp;

mod connect;
mod quota;

/// Why a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT with this reason code (0x00 normal, 0x04 with will, ...).
    ClientDisconnect(ReasonCode),
    /// The broker refused the CONNECT with this CONNACK code.
    ConnectRefused(ReasonCode),
    /// The client broke the protocol; 5.0 clients were sent DISCONNECT with this code.
    ProtocolViolation(ReasonCode, String),
    /// No CONNECT within the connect timeout.
    ConnectTimeout,
    /// Nothing received for 1.5 times the keep-alive.
    KeepAliveTimeout,
    /// Another connection took the client id over.
    TakenOver,
    /// An operator closed the connection (admin API).
    Kicked,
    /// The broker is shutting down.
    ServerShutdown,
    /// The network connection closed or failed.
    ConnectionLost(String),
}

impl CloseReason {
    /// True unless the client ended the connection with a normal DISCONNECT: the will is
    /// published in every other case ([MQTT-3.1.2-8]).
    pub fn publishes_will(&self) -> bool {
        !matches!(self, CloseReason::ClientDisconnect(ReasonCode::Success))
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClientDisconnect(c) => write!(f, "client disconnected ({c})"),
            CloseReason::ConnectRefused(c) => write!(f, "connect refused ({c})"),
            CloseReason::ProtocolViolation(c, why) => write!(f, "protocol violation ({c}): {why}"),
            CloseReason::ConnectTimeout => f.write_str("no CONNECT in time"),
            CloseReason::KeepAliveTimeout => f.write_str("keep-alive timeout"),
            CloseReason::TakenOver => f.write_str("session taken over"),
            CloseReason::Kicked => f.write_str("disconnected by an operator"),
            CloseReason::ServerShutdown => f.write_str("server shutting down"),
            CloseReason::ConnectionLost(e) => write!(f, "connection lost: {e}"),
        }
    }
}

#[derive(Debug)]
struct Active {
    attached: Attached,
    /// The authenticated username (or certificate identity), for authorization.
    username: Option<Box<str>>,
    keep_alive: u16,
    /// Topic aliases the client set; boxed, since most clients never use them and this
    /// struct is part of every connection's memory.
    aliases: Option<Box<U16Map<TopicName>>>,
    connect_expiry: u32,
    resend: Vec<OutItem>,
    /// The enhanced authentication method of CONNECT; re-authentication must use it. Boxed:
    /// rarely set.
    auth_method: Option<Box<MqttString>>,
    /// A re-authentication exchange in progress.
    reauth: Option<Box<dyn AuthExchange>>,
    /// Acknowledgements that promise durability, held until their store ticket is on
    /// disk, in order.
    held_acks: VecDeque<(u64, Packet)>,
    /// Who is connected (shared with the session's attachment).
    info: Arc<crate::session::ClientInfo>,
    /// The limits in force when the client connected (a 5.0 client was told them in
    /// CONNACK): a reload that lowers them applies from the client's next connection.
    told: Told,
}

/// What the broker accepts from a client, as of its CONNECT.
#[derive(Debug, Clone, Copy)]
struct Told {
    receive_maximum: u16,
    topic_alias_maximum: u16,
    max_qos: QoS,
    retain_available: bool,
}

impl Told {
    fn from(config: &crate::BrokerConfig) -> Self {
        Told {
            receive_maximum: config.receive_maximum,
            topic_alias_maximum: config.topic_alias_maximum,
            max_qos: config.max_qos,
            retain_available: config.retain_available,
        }
    }
}

#[derive(Debug)]
enum State {
    AwaitingConnect,
    /// CONNECT received, its authentication not finished.
    Authenticating(Box<connect::PendingConnect>),
    /// A failed login, answered with CONNACK `code` at `at`.
    Refusing {
        at: Timestamp,
        code: ReasonCode,
    },
    Active(Box<Active>),
    Finished,
}

/// Facts about an accepted connection, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The client id (assigned if the client sent none).
    pub client_id: ClientId,
    /// Protocol version.
    pub protocol: ProtocolVersion,
    /// Effective keep-alive in seconds.
    pub keep_alive: u16,
    /// Whether a session was resumed.
    pub session_present: bool,
    /// Clean start requested.
    pub clean_start: bool,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    broker: Arc<Broker>,
    notify: Arc<dyn Notify>,
    state: State,
    version: ProtocolVersion,
    version_hint: Option<ProtocolVersion>,
    pending: Vec<Packet>,
    connect_deadline: Timestamp,
    last_received: Timestamp,
    disconnect_expiry: Option<u32>,
    /// The client's Maximum Packet Size (5.0), known once its CONNECT is decoded; nothing
    /// larger is ever sent to it ([MQTT-3.1.2-24]).
    client_max_packet: u32,
    /// Subscribers with a full queue this connection's publishes wait for (backpressure)
    /// and the PUBLISH packets stashed meanwhile; boxed, as only a congested connection
    /// has any.
    congestion: Option<Box<Congestion>>,
    /// Who may connect and what they may do, on this connection's listener.
    auth: Arc<ListenerAuth>,
    /// Identity of the client's verified TLS certificate, if any.
    cert_identity: Option<Box<str>>,
    /// The client's address and listener, for operators.
    origin: Option<Box<(std::net::SocketAddr, Arc<str>)>>,
    /// The publish rate bucket, once a rate applies (boxed: most connections have none,
    /// and this struct lives in every connection's task).
    quota: Option<Box<quota::Quota>>,
    /// The client has sent at least one PUBLISH (publishers are the ones paused when the
    /// broker is short of memory).
    published: bool,
}

/// Subscribers with a full queue that a connection's publishes wait for, and the PUBLISH
/// packets received meanwhile, processed in order once they drain; QoS 1/2 ones are not
/// acknowledged until then, so the client's window bounds the stash.
#[derive(Debug, Default)]
struct Congestion {
    blocked_on: Vec<Arc<crate::session::SessionHandle>>,
    stash: VecDeque<Publish>,
    stash_bytes: usize,
}

/// Session deliveries are moved into the output only while it holds less than this.
pub const OUTPUT_BUDGET: usize = 256 * 1024;

/// Stop reading from a client while its waiting PUBLISH packets weigh this much (payload,
/// topic and the packet's own size, see `stash_weight`).
pub const STASH_MAX_BYTES: usize = 64 * 1024;

/// What a stashed PUBLISH costs in memory: its payload and topic plus the decoded packet.
fn stash_weight(p: &Publish) -> usize {
    p.payload.len() + p.topic.as_ref().map_or(0, |t| t.len()) + std::mem::size_of::<Publish>()
}

impl Connection {
    /// A new connection that must send CONNECT within `connect_timeout`, on a listener
    /// open to anyone.
    pub fn new(
        broker: Arc<Broker>,
        notify: Arc<dyn Notify>,
        now: Timestamp,
        connect_timeout: Duration,
    ) -> Self {
        Self::with_auth(
            broker,
            notify,
            now,
            connect_timeout,
            Arc::new(ListenerAuth::open()),
            None,
        )
    }

    /// A new connection on a listener with `auth`; `cert_identity` is the identity of the
    /// client's verified certificate.
    pub fn with_auth(
        broker: Arc<Broker>,
        notify: Arc<dyn Notify>,
        now: Timestamp,
        connect_timeout: Duration,
        auth: Arc<ListenerAuth>,
        cert_identity: Option<Box<str>>,
    ) -> Self {
        Connection {
            auth,
            cert_identity,
            broker,
            notify,
            state: State::AwaitingConnect,
            version: ProtocolVersion::V311,
            version_hint: None,
            pending: Vec::new(),
            connect_deadline: now + connect_timeout,
            last_received: now,
            disconnect_expiry: None,
            client_max_packet: u32::MAX,
            congestion: None,
            origin: None,
            quota: None,
            published: false,
        }
    }

    /// True once the client has published something.
    pub fn has_published(&self) -> bool {
        self.published
    }

    /// Records the client's address and the listener it came through (shown to operators).
    pub fn set_origin(&mut self, peer: std::net::SocketAddr, listener: Arc<str>) {
        self.origin = Some(Box::new((peer, listener)));
    }

    /// The client's address, if `set_origin` gave it (until `finish`).
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        match (&self.origin, &self.state) {
            (Some(o), _) => Some(o.0),
            (None, State::Active(a)) => a.info.peer,
            (None, _) => None,
        }
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// True while the server should stop reading from this client: too many of its
    /// publishes wait for full subscriber queues.
    pub fn read_paused(&self) -> bool {
        self.congestion
            .as_ref()
            .is_some_and(|c| c.stash_bytes >= STASH_MAX_BYTES)
            || self.awaiting_verdict()
            || self
                .quota
                .as_ref()
                .is_some_and(|q| q.paused_until.is_some())
    }

    /// Drops the subscribers that have drained; true if some are still full.
    fn still_blocked(&mut self) -> bool {
        let notify = &self.notify;
        let Some(c) = self.congestion.as_mut() else {
            return false;
        };
        c.blocked_on.retain(|s| s.congested(notify));
        !c.blocked_on.is_empty()
    }

    /// True while PUBLISH packets wait in the stash.
    fn has_stash(&self) -> bool {
        self.congestion
            .as_ref()
            .is_some_and(|c| !c.stash.is_empty())
    }

    /// Processes stashed publishes while no subscriber queue is full (or all of them when
    /// `force`, before a DISCONNECT).
    fn process_stash(&mut self, now: Timestamp, force: bool) -> Result<(), CloseReason> {
        while self.has_stash() {
            if !force && self.still_blocked() {
                return Ok(());
            }
            let next = self.congestion.as_mut().and_then(|c| {
                let p = c.stash.pop_front()?;
                c.stash_bytes -= stash_weight(&p);
                Some(p)
            });
            if let Some(p) = next {
                self.route_publish(p, now)?;
            }
        }
        if self
            .congestion
            .as_ref()
            .is_some_and(|c| c.stash.is_empty() && c.blocked_on.is_empty())
        {
            self.congestion = None;
        }
        Ok(())
    }

    /// The protocol version (3.1.1 until CONNECT says otherwise).
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The client id once connected.
    pub fn client_id(&self) -> Option<&ClientId> {
        match &self.state {
            State::Active(a) => Some(&a.attached.session.client_id),
            _ => None,
        }
    }

    /// True once CONNECT has been accepted.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Active(_))
    }

    /// Looks at the first bytes of a connection before its CONNECT is decoded, to learn the
    /// protocol level, so that a malformed 5.0 CONNECT is answered with a 5.0 CONNACK.
    pub fn sniff_connect(&mut self, buf: &[u8]) {
        if !matches!(self.state, State::AwaitingConnect) || self.version_hint.is_some() {
            return;
        }
        self.version_hint = sniff_level(buf);
    }

    /// The earliest time at which `handle_timeout` must be called.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let own = self.own_deadline();
        match (own, self.quota.as_ref().and_then(|q| q.paused_until)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn own_deadline(&self) -> Option<Timestamp> {
        match &self.state {
            State::AwaitingConnect | State::Authenticating(_) => Some(self.connect_deadline),
            State::Refusing { at, .. } => Some(*at),
            State::Active(a) if a.keep_alive > 0 => {
                Some(self.last_received + Duration::from_millis(u64::from(a.keep_alive) * 1500))
            }
            _ => None,
        }
    }

    /// Checks the connect timeout and keep-alive ([MQTT-3.1.2-22]).
    pub fn handle_timeout(&mut self, now: Timestamp) -> Result<(), CloseReason> {
        self.check_quota_pause(now);
        match self.own_deadline() {
            Some(d) if now >= d => match self.state {
                State::AwaitingConnect | State::Authenticating(_) => {
                    Err(CloseReason::ConnectTimeout)
                }
                State::Refusing { code, .. } => Err(self.refuse(code, "authentication failed")),
                _ => {
                    self.send_disconnect(ReasonCode::KeepAliveTimeout, None);
                    Err(CloseReason::KeepAliveTimeout)
                }
            },
            _ => Ok(()),
        }
    }

    /// Answers a packet that could not be decoded: CONNACK or DISCONNECT with the reason code
    /// for 5.0, nothing for 3.x; the connection then closes.
    pub fn handle_decode_error(&mut self, err: &DecodeError) -> CloseReason {
        let code = err.reason_code();
        match &self.state {
            State::AwaitingConnect => {
                match (err, self.version_hint) {
                    (DecodeError::UnsupportedProtocolVersion(level), _) => {
                        // A level newer than 5 gets the 5.0 answer, older ones the 3.x one.
                        self.version = if *level > 5 {
                            ProtocolVersion::V5
                        } else {
                            ProtocolVersion::V311
                        };
                        self.push_connack_refusal(ReasonCode::UnsupportedProtocolVersion, None);
                    }
                    (_, Some(ProtocolVersion::V5)) => {
                        self.version = ProtocolVersion::V5;
                        self.push_connack_refusal(code, Some(err.to_string()));
                    }
                    _ => {}
                }
                CloseReason::ProtocolViolation(code, err.to_string())
            }
            _ => {
                self.send_disconnect(code, Some(err.to_string()));
                CloseReason::ProtocolViolation(code, err.to_string())
            }
        }
    }

    /// Handles one decoded packet.
    pub fn handle_packet(
        &mut self,
        packet: Packet,
        now: Timestamp,
    ) -> Result<Option<ConnectInfo>, CloseReason> {
        self.last_received = now;
        match self.state {
            State::AwaitingConnect => {}
            State::Authenticating(_) => return self.on_packet_while_authenticating(packet, now),
            // Nothing is read while a refusal waits (see `read_paused`); ignore it if it was.
            State::Refusing { .. } | State::Finished => return Ok(None),
            State::Active(_) => return self.on_active_packet(packet, now).map(|()| None),
        }
        match packet {
            Packet::Connect(c) => self.on_connect(*c, now),
            other => Err(CloseReason::ProtocolViolation(
                ReasonCode::ProtocolError,
                format!(
                    "[MQTT-3.1.0-1] first packet was {} instead of CONNECT",
                    other.packet_type()
                ),
            )),
        }
    }

    fn on_active_packet(&mut self, packet: Packet, now: Timestamp) -> Result<(), CloseReason> {
        match packet {
            Packet::Publish(p) => self.on_publish(p, now),
            Packet::PubAck(a) => {
                self.with_session(|s| {
                    s.on_puback(a.packet_id);
                });
                Ok(())
            }
            Packet::PubRec(a) => self.on_pubrec(a),
            Packet::PubRel(a) => self.on_pubrel(a),
            Packet::PubComp(a) => {
                self.with_session(|s| {
                    s.on_pubcomp(a.packet_id);
                });
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s, now),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => {
                self.pending.push(Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => {
                // Publishes sent before DISCONNECT are delivered, even to full queues.
                self.process_stash(now, true)?;
                self.on_disconnect(d)
            }
            Packet::Connect(_) => Err(self.violation(
                ReasonCode::ProtocolError,
                "[MQTT-3.1.0-2] second CONNECT on a connection",
            )),
            Packet::Auth(a) => self.on_auth(a),
            other => Err(self.violation(
                ReasonCode::ProtocolError,
                &format!("a client must not send {}", other.packet_type()),
            )),
        }
    }

    /// Queues DISCONNECT 0x8B (5.0) before the broker closes the connection.
    pub fn shutdown(&mut self) -> CloseReason {
        self.send_disconnect(ReasonCode::ServerShuttingDown, None);
        CloseReason::ServerShutdown
    }

    /// Moves pending packets and session deliveries into `out`. Returns `TakenOver` if
    /// another connection took the session.
    pub fn poll_output(&mut self, now: Timestamp, out: &mut OutBuffer) -> Result<(), CloseReason> {
        if self.has_stash() && matches!(self.state, State::Active(_)) {
            self.process_stash(now, false)?;
        }
        self.release_held();
        self.flush_pending(out);
        let version = self.version;
        let max_packet = self.client_max_packet;
        let State::Active(active) = &mut self.state else {
            return Ok(());
        };
        let session = active.attached.session.clone();
        let mut items = std::mem::take(&mut active.resend);
        // The store ticket of the packet ids given out in this poll: a QoS 2 PUBLISH waits
        // until its id is on disk, or after a crash the broker could give the id to another
        // message while the client still holds it, and the client would drop that message
        // as a duplicate.
        let mut pids_ticket = 0;
        {
            let mut st = session.lock();
            let ours = st
                .attachment
                .as_ref()
                .is_some_and(|a| a.generation == active.attached.generation);
            if !ours {
                drop(st);
                self.send_disconnect(ReasonCode::SessionTakenOver, None);
                self.flush_pending(out);
                return Err(CloseReason::TakenOver);
            }
            if st.attachment.as_ref().is_some_and(|a| a.kicked) {
                drop(st);
                self.send_disconnect(
                    ReasonCode::AdministrativeAction,
                    Some("disconnected by an operator".to_owned()),
                );
                self.flush_pending(out);
                return Err(CloseReason::Kicked);
            }
            // Deliveries leave the queue only while the socket keeps up: otherwise the queue
            // would drain into an ever larger output buffer and never push back.
            if out.len() < OUTPUT_BUDGET {
                let before = st.last_ticket();
                st.poll_deliveries(now, &mut items);
                if st.last_ticket() != before {
                    pids_ticket = st.last_ticket();
                }
            }
        }
        let pids_durable = match self.broker.store() {
            Some(store) if pids_ticket != 0 => store.durable() >= pids_ticket,
            _ => true,
        };
        let mut too_large = Vec::new();
        for item in items {
            match item {
                OutItem::PubRel(pid) => {
                    let _ = out.push(&Packet::PubRel(PubAck::new(pid)), version);
                }
                OutItem::Publish { delivery, pid, dup } => {
                    if self.auth.has_authorizers() && !self.may_receive(&delivery) {
                        // Discarded as if delivered, like a message too large for the client.
                        self.broker
                            .metrics
                            .dropped_not_authorized
                            .fetch_add(1, Ordering::Relaxed);
                        too_large.extend(pid);
                        continue;
                    }
                    let Some(p) = build_publish(&delivery, pid, dup, version, now) else {
                        continue;
                    };
                    let packet = Packet::Publish(p);
                    if encoded_len(&packet, version) > max_packet as usize {
                        // [MQTT-3.1.2-25]: discard as if it had been delivered.
                        too_large.extend(pid);
                        continue;
                    }
                    let hold =
                        (!pids_durable && delivery.qos == QoS::ExactlyOnce) || self.holds_packets();
                    if hold {
                        self.send_when_durable(pids_ticket, packet);
                        self.broker.metrics.count_sent(delivery.qos);
                    } else if let Packet::Publish(p) = &packet {
                        if out.push_publish(p, version).is_ok() {
                            self.broker.metrics.count_sent(delivery.qos);
                        }
                    }
                }
            }
        }
        if !too_large.is_empty() {
            self.broker
                .metrics
                .dropped_too_large
                .fetch_add(too_large.len() as u64, Ordering::Relaxed);
            let mut st = session.lock();
            for pid in too_large {
                st.discard_inflight(pid);
            }
            drop(st);
            // Discarding opened the window: let the driver poll again.
            self.notify.notify();
        }
        // Held deliveries that turned out durable already.
        if !self.pending.is_empty() {
            self.flush_pending(out);
        }
        Ok(())
    }

    /// Whether the client may receive this message (authorization's Receive).
    fn may_receive(&self, d: &Delivery) -> bool {
        let State::Active(a) = &self.state else {
            return false;
        };
        let who = ClientIdentity {
            client_id: a.attached.session.client_id.as_str(),
            username: a.username.as_deref(),
        };
        self.auth
            .authorize(&who, Action::Receive, d.msg.topic.as_str())
    }

    /// Ends the connection: detaches from the session, publishing or scheduling the will
    /// unless the client disconnected normally. Idempotent.
    pub fn finish(&mut self, reason: &CloseReason, now: Timestamp) {
        let state = std::mem::replace(&mut self.state, State::Finished);
        if let State::Active(a) = state {
            self.broker.metrics.count_disconnect(reason);
            self.broker.disconnect(
                &a.attached.session,
                a.attached.generation,
                reason.publishes_will(),
                self.disconnect_expiry,
                now,
            );
        }
    }

    fn with_session(&mut self, f: impl FnOnce(&mut crate::session::SessionState)) {
        if let State::Active(a) = &self.state {
            f(&mut a.attached.session.lock());
        }
    }

    fn violation(&mut self, code: ReasonCode, why: &str) -> CloseReason {
        self.send_disconnect(code, Some(why.to_owned()));
        CloseReason::ProtocolViolation(code, why.to_owned())
    }

    /// Queues a server DISCONNECT for 5.0 clients; 3.x has none, the socket just closes.
    fn send_disconnect(&mut self, code: ReasonCode, reason: Option<String>) {
        if !self.version.is_v5() || !matches!(self.state, State::Active(_)) {
            return;
        }
        let properties = DisconnectProperties {
            reason_string: reason.and_then(|r| MqttString::try_from(r).ok()),
            ..Default::default()
        };
        self.pending
            .push(Packet::Disconnect(Disconnect { code, properties }));
    }

    fn push_connack_refusal(&mut self, code: ReasonCode, reason: Option<String>) {
        self.broker
            .metrics
            .connects_refused
            .fetch_add(1, Ordering::Relaxed);
        let properties = ConnAckProperties {
            reason_string: reason
                .filter(|_| self.version.is_v5())
                .and_then(|r| MqttString::try_from(r).ok()),
            ..Default::default()
        };
        self.pending.push(Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties,
        }));
    }

    fn refuse(&mut self, code: ReasonCode, why: &str) -> CloseReason {
        self.push_connack_refusal(code, Some(why.to_owned()));
        CloseReason::ConnectRefused(code)
    }

    fn assign_client_id(&self, now: Timestamp) -> ClientId {
        let n = self
            .broker
            .metrics
            .connections_total
            .load(Ordering::Relaxed);
        let ptr = Arc::as_ptr(&self.notify) as *const () as usize as u64;
        let mixed = now.as_millis().rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ptr;
        ClientId::try_from(format!("midge-{mixed:016x}")).unwrap_or_default()
    }

    fn on_publish(&mut self, p: Publish, now: Timestamp) -> Result<(), CloseReason> {
        self.published = true;
        let Some(p) = self.within_quota(p, now) else {
            return Ok(());
        };
        if self.has_stash() || self.still_blocked() {
            let c = self.congestion.get_or_insert_with(Box::default);
            c.stash_bytes += stash_weight(&p);
            c.stash.push_back(p);
            return Ok(());
        }
        self.route_publish(p, now)
    }

    fn route_publish(&mut self, p: Publish, now: Timestamp) -> Result<(), CloseReason> {
        let v5 = self.version.is_v5();
        let told = match &self.state {
            State::Active(a) => a.told,
            _ => Told::from(&self.broker.config()),
        };
        let max_qos = told.max_qos;
        let retain_available = told.retain_available;
        let alias_max = told.topic_alias_maximum;
        let receive_max = told.receive_maximum;
        if p.qos.qos() > max_qos {
            return Err(self.violation(
                ReasonCode::QoSNotSupported,
                "[MQTT-3.2.2-11] QoS not supported",
            ));
        }
        if p.retain && !retain_available {
            return Err(self.violation(
                ReasonCode::RetainNotSupported,
                "[MQTT-3.2.2-14] retain not supported",
            ));
        }
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(self.violation(
                ReasonCode::ProtocolError,
                "[MQTT-3.3.4-6] a client must not send a subscription identifier",
            ));
        }
        let State::Active(active) = &mut self.state else {
            return Ok(());
        };
        let topic = match (p.topic, p.properties.topic_alias) {
            (topic, Some(alias)) if alias.get() > alias_max => {
                let _ = topic;
                return Err(self.violation(
                    ReasonCode::TopicAliasInvalid,
                    "[MQTT-3.3.2-9] topic alias greater than the topic alias maximum",
                ));
            }
            (Some(t), Some(alias)) => {
                active
                    .aliases
                    .get_or_insert_with(Box::default)
                    .insert(alias.get(), t.clone());
                t
            }
            (Some(t), None) => t,
            (None, Some(alias)) => {
                match active.aliases.as_ref().and_then(|a| a.get(&alias.get())) {
                    Some(t) => t.clone(),
                    None => {
                        return Err(self.violation(
                            ReasonCode::ProtocolError,
                            "[MQTT-3.3.4] topic alias not set on this connection",
                        ))
                    }
                }
            }
            (None, None) => {
                return Err(self.violation(ReasonCode::ProtocolError, "PUBLISH without topic"));
            }
        };
        let session = active.attached.session.clone();
        let pid = p.qos.packet_id();
        if self.auth.has_authorizers() {
            let who = ClientIdentity {
                client_id: active.attached.session.client_id.as_str(),
                username: active.username.as_deref(),
            };
            if !self.auth.authorize(&who, Action::Publish, topic.as_str()) {
                self.broker
                    .metrics
                    .dropped_not_authorized
                    .fetch_add(1, Ordering::Relaxed);
                // 5.0 says why; 3.1.1 has no code for it, so the message is acknowledged
                // and dropped, as mosquitto does.
                if let Some(pid) = pid {
                    let code = if v5 {
                        ReasonCode::NotAuthorized
                    } else {
                        ReasonCode::Success
                    };
                    self.push_ack(p.qos, pid, code);
                }
                return Ok(());
            }
        }
        if v5
            && p.properties.payload_format_indicator == Some(true)
            && std::str::from_utf8(&p.payload).is_err()
        {
            // [MQTT-3.3.2-4]: not UTF-8 although it says so; refuse the message.
            if let Some(pid) = pid {
                self.push_ack(p.qos, pid, ReasonCode::PayloadFormatInvalid);
            }
            return Ok(());
        }
        let mut qos2_ticket = 0;
        // The packet id of an inbound QoS 2 message and its copies in the queues are stored
        // atomically: after a crash the id alone would make the client's re-send look like a
        // duplicate (the message lost), the copies alone would deliver it twice.
        let group = match (p.qos, self.broker.store()) {
            (QosPid::ExactlyOnce(_), Some(store)) => Some((store.clone(), store.begin_group())),
            _ => None,
        };
        let end_group = |group: &Option<(Arc<dyn crate::store::Store>, u64)>| {
            if let Some((store, g)) = group {
                store.end_group(*g);
            }
        };
        if let QosPid::ExactlyOnce(pid) = p.qos {
            let mut st = session.lock();
            if st.incoming_qos2.contains(&pid.get()) {
                // A duplicate before PUBREL: acknowledge again, deliver nothing.
                drop(st);
                end_group(&group);
                self.push_ack(p.qos, pid, ReasonCode::Success);
                return Ok(());
            }
            if st.incoming_qos2.len() >= usize::from(receive_max) {
                drop(st);
                end_group(&group);
                return Err(self.violation(
                    ReasonCode::ReceiveMaximumExceeded,
                    "[MQTT-3.3.4-9] receive maximum exceeded",
                ));
            }
            st.receive_qos2(pid);
            qos2_ticket = st.last_ticket();
        }
        let mut properties = p.properties;
        properties.topic_alias = None;
        let msg = Message {
            topic,
            payload: p.payload,
            qos: p.qos.qos(),
            retain: p.retain,
            properties,
            expires_at: None,
        };
        let outcome = self
            .broker
            .publish_from(msg, Some(&session), Some(&self.notify), now);
        end_group(&group);
        let matched = outcome.matched;
        if !outcome.congested.is_empty() {
            self.congestion.get_or_insert_with(Box::default).blocked_on = outcome.congested;
        }
        if let Some(pid) = pid {
            let code = if matched == 0 {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            };
            self.push_ack_after(outcome.ticket.max(qos2_ticket), p.qos, pid, code);
        }
        Ok(())
    }

    fn push_ack(&mut self, qos: QosPid, pid: PacketId, code: ReasonCode) {
        self.push_ack_after(0, qos, pid, code);
    }

    /// Acknowledges a PUBLISH once store ticket `ticket` is durable (0: nothing to wait
    /// for), after every acknowledgement held before it.
    fn push_ack_after(&mut self, ticket: u64, qos: QosPid, pid: PacketId, code: ReasonCode) {
        let ack = PubAck {
            packet_id: pid,
            code,
            properties: ReasonProperties::default(),
        };
        let packet = match qos {
            QosPid::AtLeastOnce(_) => Packet::PubAck(ack),
            QosPid::ExactlyOnce(_) => Packet::PubRec(ack),
            QosPid::AtMostOnce => return,
        };
        self.send_when_durable(ticket, packet);
    }

    /// Sends `packet` once `ticket` is durable, keeping the order of held packets.
    fn send_when_durable(&mut self, ticket: u64, packet: Packet) {
        let store = self.broker.store();
        let State::Active(active) = &mut self.state else {
            self.pending.push(packet);
            return;
        };
        let durable = match store {
            Some(s) if ticket != 0 => s.durable() >= ticket,
            _ => true,
        };
        if durable && active.held_acks.is_empty() {
            self.pending.push(packet);
            return;
        }
        if let (false, Some(s)) = (durable, store) {
            if active.held_acks.is_empty() {
                s.notify_durable(ticket, self.notify.clone());
            }
        }
        active.held_acks.push_back((ticket, packet));
    }

    /// Moves the pending packets into `out`.
    fn flush_pending(&mut self, out: &mut OutBuffer) {
        let version = self.version;
        let max_packet = self.client_max_packet;
        for p in self.pending.drain(..) {
            let p = fit_to_client(p, max_packet, version);
            // Our own packets are built valid; an encode failure is a bug worth a log line,
            // not a reason to stop serving the client.
            if let Err(e) = out.push(&p, version) {
                tracing::error!(error = %e, packet = %p.packet_type(), "cannot encode packet");
            }
        }
        // Packets are large; an idle connection should not keep room for a few of them.
        if self.pending.capacity() > 0 {
            self.pending = Vec::new();
        }
    }

    /// True while packets wait for the store (later ones must queue behind them).
    fn holds_packets(&self) -> bool {
        matches!(&self.state, State::Active(a) if !a.held_acks.is_empty())
    }

    /// Releases the held acknowledgements whose tickets are durable.
    fn release_held(&mut self) {
        let (Some(store), State::Active(active)) = (self.broker.store(), &mut self.state) else {
            return;
        };
        if active.held_acks.is_empty() {
            return;
        }
        let durable = store.durable();
        while let Some((ticket, _)) = active.held_acks.front() {
            if *ticket > durable {
                store.notify_durable(*ticket, self.notify.clone());
                break;
            }
            if let Some((_, p)) = active.held_acks.pop_front() {
                self.pending.push(p);
            }
        }
    }

    fn on_pubrec(&mut self, a: PubAck) -> Result<(), CloseReason> {
        let mut known = false;
        let mut ticket = 0;
        self.with_session(|s| {
            let before = s.last_ticket();
            known = s.on_pubrec(a.packet_id, !a.code.is_error());
            if s.last_ticket() != before {
                ticket = s.last_ticket();
            }
        });
        if a.code.is_error() {
            return Ok(());
        }
        let mut rel = PubAck::new(a.packet_id);
        if !known {
            rel.code = ReasonCode::PacketIdentifierNotFound;
        }
        // The client forgets the id at PUBREL: the release must be on disk first, or a
        // restart would send the message again as a PUBLISH the client takes for new.
        self.send_when_durable(ticket, Packet::PubRel(rel));
        Ok(())
    }

    fn on_pubrel(&mut self, a: PubAck) -> Result<(), CloseReason> {
        let mut known = false;
        let mut ticket = 0;
        self.with_session(|s| {
            let before = s.last_ticket();
            known = s.release_qos2(a.packet_id);
            if s.last_ticket() != before {
                ticket = s.last_ticket();
            }
        });
        let mut comp = PubAck::new(a.packet_id);
        if !known {
            comp.code = ReasonCode::PacketIdentifierNotFound;
        }
        // Once PUBCOMP is sent the client may reuse the id: its release must be on disk
        // first, or a restart would take the next message with that id for a duplicate.
        self.send_when_durable(ticket, Packet::PubComp(comp));
        Ok(())
    }

    fn on_subscribe(&mut self, s: Subscribe, now: Timestamp) -> Result<(), CloseReason> {
        let State::Active(active) = &self.state else {
            return Ok(());
        };
        let session = active.attached.session.clone();
        let sub_id = s.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let mut retained = Vec::new();
        for sub in s.subscriptions {
            let filter = match sub.filter {
                FilterEntry::Valid(f) => f,
                FilterEntry::Invalid(..) => {
                    codes.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            if self.auth.has_authorizers() {
                let who = ClientIdentity {
                    client_id: active.attached.session.client_id.as_str(),
                    username: active.username.as_deref(),
                };
                if !self
                    .auth
                    .authorize(&who, Action::Subscribe, filter.filter())
                {
                    // 0x87 Not authorized; 3.1.1 knows only 0x80 Failure (the codec maps it).
                    codes.push(ReasonCode::NotAuthorized);
                    continue;
                }
            }
            let granted = self.broker.grant_qos(sub.options.qos);
            let mut options = sub.options;
            options.qos = granted;
            let is_new = self.broker.subscribe(&session, &filter, options, sub_id);
            codes.push(match granted {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
            // Retained messages are not sent for shared subscriptions (section 4.8.2).
            let send_retained = !filter.is_shared()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => is_new,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                for msg in self.broker.retained_matching(&filter, now) {
                    retained.push(Delivery {
                        qos: msg.qos.min(granted),
                        msg,
                        retain: true,
                        sub_ids: sub_id.into_iter().collect(),
                        share: None,
                    });
                }
            }
        }
        self.pending.push(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: ReasonProperties::default(),
            codes,
        }));
        for d in retained {
            session.deliver(d, now, None);
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), CloseReason> {
        let State::Active(active) = &self.state else {
            return Ok(());
        };
        let session = active.attached.session.clone();
        let codes = u
            .filters
            .iter()
            .map(|f| match f {
                FilterEntry::Valid(f) => {
                    if self.broker.unsubscribe(&session, f) {
                        ReasonCode::Success
                    } else {
                        ReasonCode::NoSubscriptionExisted
                    }
                }
                FilterEntry::Invalid(..) => ReasonCode::TopicFilterInvalid,
            })
            .collect();
        self.pending.push(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: ReasonProperties::default(),
            codes: if self.version.is_v5() {
                codes
            } else {
                Vec::new()
            },
        }));
        Ok(())
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Result<(), CloseReason> {
        if let Some(e) = d.properties.session_expiry_interval {
            let connect_expiry = match &self.state {
                State::Active(a) => a.connect_expiry,
                _ => 0,
            };
            if connect_expiry == 0 && e != 0 {
                return Err(self.violation(
                    ReasonCode::ProtocolError,
                    "[MQTT-3.14.2-2] session expiry set on DISCONNECT after CONNECT had 0",
                ));
            }
            self.disconnect_expiry = Some(e.min(self.broker.config().max_session_expiry_secs));
        }
        Err(CloseReason::ClientDisconnect(d.code))
    }
}

/// Builds the PUBLISH for one delivery: QoS downgraded, subscription identifiers set, the
/// message expiry interval reduced by the time the message waited ([MQTT-3.3.2-6]).
fn build_publish(
    d: &Delivery,
    pid: Option<PacketId>,
    dup: bool,
    version: ProtocolVersion,
    now: Timestamp,
) -> Option<Publish> {
    let qos = QosPid::from_parts(d.qos, pid)?;
    let properties = if version.is_v5() {
        let mut props = d.msg.properties.clone();
        props.subscription_identifiers = d.sub_ids.clone();
        if let Some(at) = d.msg.expires_at {
            let left_ms = at.as_millis().saturating_sub(now.as_millis());
            props.message_expiry_interval =
                Some(u32::try_from(left_ms.div_ceil(1000)).unwrap_or(u32::MAX));
        }
        props
    } else {
        PublishProperties::default()
    };
    Some(Publish {
        dup,
        qos,
        retain: d.retain,
        topic: Some(d.msg.topic.clone()),
        properties,
        payload: d.msg.payload.clone(),
    })
}

/// Leaves out the Reason String and User Properties of a packet the broker built when they
/// would make it larger than the client's Maximum Packet Size: the specification says the
/// sender must not send them in that case ([MQTT-3.2.2-19], [MQTT-3.14.2-3] and the same
/// rule for every acknowledgement), and they are only diagnostics.
fn fit_to_client(mut p: Packet, max: u32, version: ProtocolVersion) -> Packet {
    if encoded_len(&p, version) <= usize::try_from(max).unwrap_or(usize::MAX) {
        return p;
    }
    match &mut p {
        Packet::ConnAck(a) => {
            a.properties.reason_string = None;
            a.properties.user_properties.clear();
        }
        Packet::Disconnect(d) => {
            d.properties.reason_string = None;
            d.properties.user_properties.clear();
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.properties = ReasonProperties::default();
        }
        Packet::SubAck(a) => a.properties = ReasonProperties::default(),
        Packet::UnsubAck(a) => a.properties = ReasonProperties::default(),
        _ => {}
    }
    p
}

/// Reads the protocol level of a CONNECT from its first bytes, if they are there.
fn sniff_level(buf: &[u8]) -> Option<ProtocolVersion> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    let mut i = 1;
    while *buf.get(i)? & 0x80 != 0 {
        i += 1;
        if i > 4 {
            return None;
        }
    }
    i += 1;
    let name_len = usize::from(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]));
    let level = *buf.get(i + 2 + name_len)?;
    match level {
        5 => Some(ProtocolVersion::V5),
        4 => Some(ProtocolVersion::V311),
        3 => Some(ProtocolVersion::V31),
        _ => None,
    }
}

#[cfg(test)]
mod size {
    /// A connected client's `Active` state is one boxed allocation; at most 160 bytes keeps
    /// it in jemalloc's 160-byte class (the next is 192) for every idle connection.
    #[test]
    fn active_state_fits_a_160_byte_allocation() {
        let size = std::mem::size_of::<super::Active>();
        assert!(size <= 160, "Active grew to {size} bytes");
    }
}
