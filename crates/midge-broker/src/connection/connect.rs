//! CONNECT and authentication: the client is identified, then authenticated in one of
//! three ways, then attached to its session.
//!
//! - Without password backends (or with a verified certificate used as the username) the
//!   decision is immediate.
//! - With password backends the check runs on the listener's `BlockingRunner` (hashing is
//!   slow on purpose); the connection waits in `Authenticating`, reads nothing more, and
//!   picks the verdict up in `poll_auth` when the job wakes it.
//! - With an MQTT 5 Authentication Method the connection runs an enhanced authentication
//!   exchange (AUTH 0x18 back and forth) before CONNACK; later AUTH 0x19 re-authenticates.
//!
//! A refused login is answered after the listener's `failed_login_delay` (state `Refusing`),
//! so guessing passwords is slow; it is counted in `auth_failures`.

use std::collections::VecDeque;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use midge_codec::{
    Auth, AuthProperties, ClientId, ConnAck, ConnAckProperties, Connect, MqttString, Packet,
    ProtocolVersion, PublishProperties, QoS, ReasonCode,
};

use super::{Active, CloseReason, ConnectInfo, Connection, State};
use crate::auth::{Action, AuthExchange, AuthRequest, AuthStep, ClientIdentity, ListenerAuth};
use crate::broker::ConnectRequest;
use crate::message::Message;
use crate::session::{ClientInfo, Notify, QueueLimits, WillMessage};
use crate::time::Timestamp;

/// A CONNECT waiting for its authentication to finish.
#[derive(Debug)]
pub(super) struct PendingConnect {
    connect: Connect,
    client_id: ClientId,
    /// The id the broker assigned, to tell a 5.0 client in CONNACK.
    assigned: Option<ClientId>,
    username: Option<Box<str>>,
    check: Check,
}

/// What a pending CONNECT waits for.
#[derive(Debug)]
enum Check {
    /// A password check on another thread; it leaves its verdict here.
    Password(Arc<Verdict>),
    /// An enhanced authentication exchange, waiting for the client's next AUTH.
    Exchange {
        method: MqttString,
        exchange: Box<dyn AuthExchange>,
    },
}

/// The verdict of a password check run elsewhere.
#[derive(Debug, Default)]
struct Verdict(AtomicU8);

const PENDING: u8 = 0;
const ALLOWED: u8 = 1;
const REFUSED: u8 = 2;

/// A password check, owned so that it can run on another thread.
struct PasswordJob {
    auth: Arc<ListenerAuth>,
    client_id: Box<str>,
    username: Option<Box<str>>,
    password: Option<Bytes>,
    cert_identity: Option<Box<str>>,
    verdict: Arc<Verdict>,
    notify: Arc<dyn Notify>,
}

impl PasswordJob {
    fn run(self) {
        let ok = self.auth.authenticate(&AuthRequest {
            client_id: &self.client_id,
            username: self.username.as_deref(),
            password: self.password.as_deref(),
            peer: None,
            cert_identity: self.cert_identity.as_deref(),
        });
        self.verdict
            .0
            .store(if ok { ALLOWED } else { REFUSED }, Ordering::Release);
        self.notify.notify();
    }
}

/// The method and final data of a successful enhanced authentication, for CONNACK.
type EnhancedOutcome = Option<(MqttString, Option<Bytes>)>;

impl Connection {
    pub(super) fn on_connect(
        &mut self,
        c: Connect,
        now: Timestamp,
    ) -> Result<Option<ConnectInfo>, CloseReason> {
        self.version = c.protocol;
        self.client_max_packet = c
            .properties
            .maximum_packet_size
            .map_or(u32::MAX, NonZeroU32::get);
        let (client_id, assigned) = self.identify(&c, now)?;
        let identity_user = self
            .cert_identity
            .as_deref()
            .filter(|_| self.auth.use_identity_as_username);
        let username: Option<Box<str>> = match identity_user {
            Some(id) => Some(id.into()),
            None => c.username.as_ref().map(|u| u.as_str().into()),
        };
        let method = c
            .properties
            .authentication_method
            .clone()
            .filter(|_| c.protocol.is_v5());
        if let Some(method) = method {
            let Some(mut exchange) = self.auth.start_exchange(method.as_str()) else {
                self.count_auth_failure();
                return Err(self.refuse(
                    ReasonCode::BadAuthenticationMethod,
                    "authentication method not supported",
                ));
            };
            let data = c.properties.authentication_data.clone().unwrap_or_default();
            let step = exchange.step(&data);
            let pending = Box::new(PendingConnect {
                connect: c,
                client_id,
                assigned,
                username,
                check: Check::Exchange { method, exchange },
            });
            return self.after_step(pending, step, now);
        }
        let decided = if identity_user.is_some() {
            // A verified certificate whose identity is the username authenticates by itself.
            Some(true)
        } else if !self.auth.has_authenticators() {
            Some(self.auth.allow_anonymous)
        } else {
            None
        };
        let verdict = Arc::new(Verdict::default());
        let pending = Box::new(PendingConnect {
            client_id,
            assigned,
            username,
            check: Check::Password(verdict.clone()),
            connect: c,
        });
        let job = PasswordJob {
            auth: self.auth.clone(),
            client_id: pending.client_id.as_str().into(),
            username: pending.username.clone(),
            password: pending.connect.password.clone(),
            cert_identity: self.cert_identity.clone(),
            verdict,
            notify: self.notify.clone(),
        };
        match (decided, self.auth.runner.clone()) {
            (Some(ok), _) => self.after_password(pending, ok, now),
            (None, None) => {
                let ok = self.auth.authenticate(&AuthRequest {
                    client_id: &job.client_id,
                    username: job.username.as_deref(),
                    password: job.password.as_deref(),
                    peer: None,
                    cert_identity: job.cert_identity.as_deref(),
                });
                self.after_password(pending, ok, now)
            }
            (None, Some(runner)) => {
                if !runner.run(Box::new(move || job.run())) {
                    return Err(self.refuse(ReasonCode::ServerBusy, "too many logins waiting"));
                }
                self.state = State::Authenticating(pending);
                Ok(None)
            }
        }
    }

    /// Picks up the verdict of a password check that ran on another thread. Call it when
    /// the connection was woken; returns the connection's facts once it is accepted.
    pub fn poll_auth(&mut self, now: Timestamp) -> Result<Option<ConnectInfo>, CloseReason> {
        let verdict = match &self.state {
            State::Authenticating(p) => match &p.check {
                Check::Password(v) => v.0.load(Ordering::Acquire),
                Check::Exchange { .. } => return Ok(None),
            },
            _ => return Ok(None),
        };
        if verdict == PENDING {
            return Ok(None);
        }
        let State::Authenticating(pending) = std::mem::replace(&mut self.state, State::Finished)
        else {
            return Ok(None);
        };
        self.state = State::AwaitingConnect;
        self.after_password(pending, verdict == ALLOWED, now)
    }

    /// True while a password check runs: nothing more is read from the client until then.
    pub(super) fn awaiting_verdict(&self) -> bool {
        match &self.state {
            State::Authenticating(p) => matches!(p.check, Check::Password(_)),
            State::Refusing { .. } => true,
            _ => false,
        }
    }

    /// Handles a packet that arrives while the CONNECT is being authenticated: only AUTH
    /// and DISCONNECT may come before CONNACK in an exchange ([MQTT-3.1.2-30]).
    pub(super) fn on_packet_while_authenticating(
        &mut self,
        packet: Packet,
        now: Timestamp,
    ) -> Result<Option<ConnectInfo>, CloseReason> {
        let State::Authenticating(mut pending) =
            std::mem::replace(&mut self.state, State::AwaitingConnect)
        else {
            return Ok(None);
        };
        let a = match packet {
            Packet::Auth(a) => a,
            Packet::Disconnect(d) => return Err(CloseReason::ClientDisconnect(d.code)),
            other => {
                return Err(self.refuse(
                    ReasonCode::ProtocolError,
                    &format!(
                        "[MQTT-3.1.2-30] {} before CONNACK during authentication",
                        other.packet_type()
                    ),
                ))
            }
        };
        let Check::Exchange { method, exchange } = &mut pending.check else {
            return Err(self.refuse(
                ReasonCode::ProtocolError,
                "AUTH without an authentication method in CONNECT",
            ));
        };
        if a.code != ReasonCode::ContinueAuthentication
            || a.properties.authentication_method.as_ref() != Some(method)
        {
            return Err(self.refuse(
                ReasonCode::ProtocolError,
                "[MQTT-4.12.0-4] AUTH during authentication must continue it with the same method",
            ));
        }
        let data = a.properties.authentication_data.unwrap_or_default();
        let step = exchange.step(&data);
        self.after_step(pending, step, now)
    }

    /// Re-authentication on a live connection (AUTH 0x19, then 0x18 back and forth).
    pub(super) fn on_auth(&mut self, a: Auth) -> Result<(), CloseReason> {
        let State::Active(active) = &mut self.state else {
            return Ok(());
        };
        let Some(method) = active.auth_method.as_deref().cloned() else {
            return Err(self.violation(
                ReasonCode::ProtocolError,
                "[MQTT-4.12.0-1] AUTH without an authentication method in CONNECT",
            ));
        };
        if a.properties.authentication_method.as_ref() != Some(&method) {
            return Err(self.violation(
                ReasonCode::ProtocolError,
                "[MQTT-4.12.1-1] re-authentication must use the method of CONNECT",
            ));
        }
        let exchange = match (a.code, active.reauth.take()) {
            (ReasonCode::ReAuthenticate, None) => self.auth.start_exchange(method.as_str()),
            (ReasonCode::ContinueAuthentication, Some(ex)) => Some(ex),
            _ => None,
        };
        let Some(mut exchange) = exchange else {
            return Err(self.violation(
                ReasonCode::ProtocolError,
                "unexpected AUTH reason code for the state of re-authentication",
            ));
        };
        let data = a.properties.authentication_data.unwrap_or_default();
        let step = exchange.step(&data);
        let State::Active(active) = &mut self.state else {
            return Ok(());
        };
        match step {
            AuthStep::Continue(data) => {
                active.reauth = Some(exchange);
                self.pending.push(auth_packet(
                    ReasonCode::ContinueAuthentication,
                    method,
                    Some(data),
                ));
                Ok(())
            }
            // The same user only: re-authentication refreshes credentials, it does not
            // hand a session to someone else.
            AuthStep::Success { data, username }
                if active.username.as_deref() == Some(&username) =>
            {
                self.pending
                    .push(auth_packet(ReasonCode::Success, method, data));
                Ok(())
            }
            AuthStep::Success { .. } | AuthStep::Failed => {
                self.count_auth_failure();
                Err(self.violation(ReasonCode::NotAuthorized, "re-authentication failed"))
            }
        }
    }

    /// Continues after a step of the CONNECT's enhanced authentication exchange.
    fn after_step(
        &mut self,
        mut pending: Box<PendingConnect>,
        step: AuthStep,
        now: Timestamp,
    ) -> Result<Option<ConnectInfo>, CloseReason> {
        match step {
            AuthStep::Continue(data) => {
                if let Check::Exchange { method, .. } = &pending.check {
                    self.pending.push(auth_packet(
                        ReasonCode::ContinueAuthentication,
                        method.clone(),
                        Some(data),
                    ));
                }
                self.state = State::Authenticating(pending);
                Ok(None)
            }
            AuthStep::Success { data, username }
                if pending.username.as_deref().is_none_or(|u| *u == *username) =>
            {
                pending.username = Some(username);
                let method = match pending.check {
                    Check::Exchange { ref method, .. } => method.clone(),
                    Check::Password(_) => return self.login_failed(ReasonCode::NotAuthorized, now),
                };
                self.complete_connect(*pending, Some((method, data)), now)
                    .map(Some)
            }
            AuthStep::Success { .. } | AuthStep::Failed => {
                self.login_failed(ReasonCode::NotAuthorized, now)
            }
        }
    }

    fn after_password(
        &mut self,
        pending: Box<PendingConnect>,
        ok: bool,
        now: Timestamp,
    ) -> Result<Option<ConnectInfo>, CloseReason> {
        if !ok {
            return self.login_failed(ReasonCode::BadUserNameOrPassword, now);
        }
        self.complete_connect(*pending, None, now).map(Some)
    }

    /// Refuses a login with `code` (0x86 for a password, 0x87 for an enhanced
    /// authentication exchange), after the listener's delay.
    fn login_failed(
        &mut self,
        code: ReasonCode,
        now: Timestamp,
    ) -> Result<Option<ConnectInfo>, CloseReason> {
        self.count_auth_failure();
        let delay = self.auth.failed_login_delay;
        if delay.is_zero() {
            return Err(self.refuse(code, "authentication failed"));
        }
        self.state = State::Refusing {
            at: now + delay,
            code,
        };
        Ok(None)
    }

    fn count_auth_failure(&self) {
        self.broker
            .metrics
            .auth_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The client id, assigned by the broker if the client sent none.
    fn identify(
        &mut self,
        c: &Connect,
        now: Timestamp,
    ) -> Result<(ClientId, Option<ClientId>), CloseReason> {
        let mut assigned = None;
        let client_id = if c.client_id.is_empty() {
            match c.protocol {
                ProtocolVersion::V5 => {
                    let id = self.assign_client_id(now);
                    assigned = Some(id.clone());
                    id
                }
                ProtocolVersion::V311 if c.clean_start => self.assign_client_id(now),
                _ => {
                    return Err(self.refuse(
                        ReasonCode::ClientIdentifierNotValid,
                        "[MQTT-3.1.3-8] a zero-length client id needs clean session",
                    ))
                }
            }
        } else {
            c.client_id.clone()
        };
        if client_id.as_str().len() > self.broker.config().max_client_id_len {
            return Err(self.refuse(
                ReasonCode::ClientIdentifierNotValid,
                "client identifier too long",
            ));
        }
        Ok((client_id, assigned))
    }

    /// Attaches an authenticated client to its session and sends CONNACK.
    fn complete_connect(
        &mut self,
        pending: PendingConnect,
        enhanced: EnhancedOutcome,
        now: Timestamp,
    ) -> Result<ConnectInfo, CloseReason> {
        let PendingConnect {
            connect: c,
            client_id,
            assigned,
            username,
            ..
        } = pending;
        let v5 = c.protocol.is_v5();
        let config = self.broker.config();
        if let Some(w) = &c.will {
            let who = ClientIdentity {
                client_id: client_id.as_str(),
                username: username.as_deref(),
            };
            if !self.auth.authorize(&who, Action::Publish, w.topic.as_str()) {
                return Err(self.refuse(ReasonCode::NotAuthorized, "will topic not authorized"));
            }
        }
        let mut keep_alive = c.keep_alive;
        let mut server_keep_alive = None;
        let max_ka = config.max_keep_alive_secs;
        if v5 && max_ka > 0 && (keep_alive == 0 || keep_alive > max_ka) {
            keep_alive = max_ka;
            server_keep_alive = Some(max_ka);
        }
        let requested_expiry = c.properties.session_expiry_interval.unwrap_or(0);
        let expiry = if v5 {
            requested_expiry.min(config.max_session_expiry_secs)
        } else if c.clean_start {
            0
        } else {
            config.max_session_expiry_secs
        };
        let will = match c.will {
            Some(w) => {
                if w.qos > config.max_qos {
                    return Err(self.refuse(ReasonCode::QoSNotSupported, "will QoS not supported"));
                }
                if w.retain && !config.retain_available {
                    return Err(self.refuse(ReasonCode::RetainNotSupported, "retain not supported"));
                }
                let props = w.properties;
                Some(WillMessage {
                    delay_secs: props.will_delay_interval.unwrap_or(0),
                    message: Message {
                        topic: w.topic,
                        payload: w.payload,
                        qos: w.qos,
                        retain: w.retain,
                        properties: PublishProperties {
                            payload_format_indicator: props.payload_format_indicator,
                            message_expiry_interval: props.message_expiry_interval,
                            content_type: props.content_type,
                            response_topic: props.response_topic,
                            correlation_data: props.correlation_data,
                            user_properties: props.user_properties,
                            ..Default::default()
                        },
                        expires_at: None,
                    },
                })
            }
            None => None,
        };
        let client_receive_max = c
            .properties
            .receive_maximum
            .map_or(u16::MAX, NonZeroU16::get);
        let limits = QueueLimits {
            max_inflight: config.max_inflight.min(client_receive_max).max(1),
            max_messages: config.max_queued_messages,
            max_bytes: config.max_queued_bytes,
            policy: config.queue_full_policy,
            queue_qos0_offline: config.queue_qos0_offline,
        };
        // Kept by the connection too: its logs name the peer.
        let info = Arc::new(ClientInfo {
            peer: self.origin.as_ref().map(|o| o.0),
            // Not needed after CONNECT: freed here.
            listener: self.origin.take().map_or_else(|| Arc::from(""), |o| o.1),
            username: username.clone(),
            keep_alive,
            clean_start: c.clean_start,
            connected_at: now,
        });
        let attached = self.broker.connect(
            ConnectRequest {
                client_id: client_id.clone(),
                protocol: c.protocol,
                clean_start: c.clean_start,
                expiry_secs: expiry,
                will,
                limits,
                notify: self.notify.clone(),
                info: info.clone(),
            },
            now,
        );
        let session_present = attached.session_present;
        let resend = if session_present {
            attached.session.lock().resend_inflight()
        } else {
            Vec::new()
        };
        let mut properties = ConnAckProperties::default();
        let auth_method = enhanced.as_ref().map(|(m, _)| Box::new(m.clone()));
        if v5 {
            properties.receive_maximum = NonZeroU16::new(config.receive_maximum);
            properties.maximum_packet_size = NonZeroU32::new(config.max_packet_size);
            properties.topic_alias_maximum =
                (config.topic_alias_maximum > 0).then_some(config.topic_alias_maximum);
            properties.maximum_qos = (config.max_qos < QoS::ExactlyOnce).then_some(config.max_qos);
            properties.retain_available = Some(config.retain_available);
            properties.wildcard_subscription_available = Some(true);
            properties.subscription_identifiers_available = Some(true);
            properties.shared_subscription_available = Some(true);
            properties.assigned_client_identifier = assigned.map(|id| id.as_mqtt_str().clone());
            properties.server_keep_alive = server_keep_alive;
            if expiry != requested_expiry {
                properties.session_expiry_interval = Some(expiry);
            }
            if c.properties.request_response_information == Some(true) {
                properties.response_information = MqttString::try_from(format!(
                    "{}{}",
                    config.response_information_prefix,
                    client_id.as_str()
                ))
                .ok();
            }
            if let Some((method, data)) = enhanced {
                properties.authentication_method = Some(method);
                properties.authentication_data = data;
            }
        }
        self.pending.push(Packet::ConnAck(ConnAck {
            session_present,
            code: ReasonCode::Success,
            properties,
        }));
        // The session's copy of the id, not the decoded one that shares the read buffer.
        let client_id = attached.session.client_id.clone();
        self.state = State::Active(Box::new(Active {
            attached,
            username,
            keep_alive,
            aliases: None,
            connect_expiry: expiry,
            resend,
            auth_method,
            reauth: None,
            held_acks: VecDeque::new(),
            info,
            told: super::Told::from(&config),
        }));
        Ok(ConnectInfo {
            client_id,
            protocol: c.protocol,
            keep_alive,
            session_present,
            clean_start: c.clean_start,
        })
    }
}

fn auth_packet(code: ReasonCode, method: MqttString, data: Option<Bytes>) -> Packet {
    Packet::Auth(Auth {
        code,
        properties: AuthProperties {
            authentication_method: Some(method),
            authentication_data: data,
            ..Default::default()
        },
    })
}
