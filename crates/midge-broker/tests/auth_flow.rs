//! Authentication in the connection state machine, on a simulated clock: password checks
//! that run on another thread (the connection waits and reads nothing meanwhile), the delay
//! before a refused login is answered, MQTT 5 enhanced authentication through AUTH packets
//! (a challenge-response toy method here; SCRAM itself is tested end to end in
//! midge-server), and re-authentication on a live connection.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use midge_broker::auth::{
    AuthExchange, AuthRequest, AuthStep, Authenticator, BlockingRunner, Decision,
    EnhancedAuthenticator, ListenerAuth,
};
use midge_broker::{Broker, BrokerConfig, CloseReason, Connection, OutBuffer};
use midge_codec::{
    Auth, AuthProperties, ConnAck, Connect, MqttString, Packet, ProtocolVersion, ReasonCode,
};

/// Accepts `user` with password `secret`, defers without a user name.
#[derive(Debug)]
struct OnePassword;

impl Authenticator for OnePassword {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Decision {
        match (req.username, req.password) {
            (None, _) => Decision::Defer,
            (Some("user"), Some(b"secret")) => Decision::Allow,
            _ => Decision::Deny,
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Keeps jobs until the test runs them; refuses more than `capacity`.
#[derive(Default)]
struct ManualRunner {
    jobs: Mutex<Vec<Job>>,
    capacity: usize,
}

impl std::fmt::Debug for ManualRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManualRunner")
    }
}

impl BlockingRunner for ManualRunner {
    fn run(&self, job: Job) -> bool {
        let mut jobs = self.jobs.lock().unwrap();
        if jobs.len() >= self.capacity {
            return false;
        }
        jobs.push(job);
        true
    }
}

impl ManualRunner {
    fn run_all(&self) -> usize {
        let jobs: Vec<_> = self.jobs.lock().unwrap().drain(..).collect();
        let n = jobs.len();
        for job in jobs {
            job();
        }
        n
    }
}

/// "TOY": the client sends its name, the server answers `challenge`, the client must send
/// the name reversed.
#[derive(Debug)]
struct Toy;

#[derive(Debug)]
struct ToyExchange(Option<String>);

impl EnhancedAuthenticator for Toy {
    fn start(&self, method: &str) -> Option<Box<dyn AuthExchange>> {
        (method == "TOY").then(|| Box::new(ToyExchange(None)) as Box<dyn AuthExchange>)
    }
}

impl AuthExchange for ToyExchange {
    fn step(&mut self, data: &[u8]) -> AuthStep {
        match self.0.take() {
            None => {
                self.0 = Some(String::from_utf8_lossy(data).into_owned());
                AuthStep::Continue(Bytes::from_static(b"challenge"))
            }
            Some(name) => {
                let reversed: String = name.chars().rev().collect();
                if data == reversed.as_bytes() {
                    AuthStep::Success {
                        data: Some(Bytes::from_static(b"welcome")),
                        username: name.into(),
                    }
                } else {
                    AuthStep::Failed
                }
            }
        }
    }
}

fn client_with(broker: &Arc<Broker>, auth: ListenerAuth) -> Client {
    let wakeups = Arc::new(CountingNotify::default());
    Client {
        conn: Connection::with_auth(
            broker.clone(),
            wakeups.clone(),
            t(0),
            Duration::from_secs(10),
            Arc::new(auth),
            None,
        ),
        out: OutBuffer::new(),
        wakeups,
    }
}

fn password_auth(runner: &Arc<ManualRunner>, delay: Duration) -> ListenerAuth {
    ListenerAuth {
        authenticators: vec![Arc::new(OnePassword)],
        runner: Some(runner.clone()),
        failed_login_delay: delay,
        ..Default::default()
    }
}

fn login(v: ProtocolVersion, user: &str, password: &[u8]) -> Packet {
    let mut c = connect_packet("dev-1", v, true, 0);
    c.username = Some(user.try_into().unwrap());
    c.password = Some(Bytes::copy_from_slice(password));
    Packet::Connect(Box::new(c))
}

fn connack(packets: &[Packet]) -> &ConnAck {
    match packets {
        [Packet::ConnAck(c)] => c,
        other => panic!("expected one CONNACK, got {other:?}"),
    }
}

fn broker() -> Arc<Broker> {
    Arc::new(Broker::new(BrokerConfig::default()))
}

#[test]
fn a_password_check_runs_elsewhere_and_the_connection_waits_for_it() {
    let broker = broker();
    let runner = Arc::new(ManualRunner {
        capacity: 10,
        ..Default::default()
    });
    let mut c = client_with(&broker, password_auth(&runner, Duration::ZERO));
    assert_eq!(
        c.conn
            .handle_packet(login(ProtocolVersion::V5, "user", b"secret"), t(0))
            .unwrap(),
        None
    );
    // Waiting: no CONNACK, nothing more read, still under the connect timeout.
    assert!(c.recv(t(0)).is_empty());
    assert!(c.conn.read_paused());
    assert!(!c.conn.is_connected());
    assert_eq!(c.conn.poll_auth(t(0)).unwrap(), None);
    assert_eq!(runner.run_all(), 1);
    assert_eq!(
        c.wakeups.0.load(Ordering::Relaxed),
        1,
        "the job wakes the task"
    );
    let info = c.conn.poll_auth(t(0)).unwrap().expect("connected");
    assert_eq!(info.client_id.as_str(), "dev-1");
    assert!(!c.conn.read_paused());
    assert_eq!(connack(&c.recv(t(0))).code, ReasonCode::Success);
}

#[test]
fn a_wrong_password_is_answered_after_the_delay_and_counted() {
    let broker = broker();
    let runner = Arc::new(ManualRunner {
        capacity: 10,
        ..Default::default()
    });
    let delay = Duration::from_secs(2);
    for (v, code) in [
        (ProtocolVersion::V5, ReasonCode::BadUserNameOrPassword),
        (ProtocolVersion::V311, ReasonCode::BadUserNameOrPassword),
    ] {
        let mut c = client_with(&broker, password_auth(&runner, delay));
        c.conn
            .handle_packet(login(v, "user", b"guess"), t(0))
            .unwrap();
        runner.run_all();
        assert_eq!(c.conn.poll_auth(t(1)).unwrap(), None);
        assert!(c.recv(t(1)).is_empty(), "no answer before the delay");
        assert!(c.conn.read_paused());
        assert_eq!(c.conn.next_deadline(), Some(t(3)));
        assert!(c.conn.handle_timeout(ms(2, 999)).is_ok());
        assert_eq!(
            c.conn.handle_timeout(t(3)),
            Err(CloseReason::ConnectRefused(code))
        );
        assert_eq!(connack(&c.recv(t(3))).code, code);
    }
    assert_eq!(broker.metrics.auth_failures.load(Ordering::Relaxed), 2);
}

#[test]
fn anonymous_clients_and_a_full_runner() {
    let broker = broker();
    let runner = Arc::new(ManualRunner {
        capacity: 0,
        ..Default::default()
    });
    // Every job is refused: the client hears "server busy" at once.
    let mut c = client_with(&broker, password_auth(&runner, Duration::ZERO));
    assert_eq!(
        c.conn
            .handle_packet(login(ProtocolVersion::V5, "user", b"secret"), t(0)),
        Err(CloseReason::ConnectRefused(ReasonCode::ServerBusy))
    );
    assert_eq!(connack(&c.recv(t(0))).code, ReasonCode::ServerBusy);

    // Without any authenticator the anonymous setting decides at once.
    let mut c = client_with(
        &broker,
        ListenerAuth {
            allow_anonymous: false,
            ..Default::default()
        },
    );
    let connect = connect_packet("anon", ProtocolVersion::V311, true, 0);
    assert_eq!(
        c.conn
            .handle_packet(Packet::Connect(Box::new(connect)), t(0)),
        Err(CloseReason::ConnectRefused(
            ReasonCode::BadUserNameOrPassword
        ))
    );
}

fn toy_auth() -> ListenerAuth {
    ListenerAuth {
        enhanced: vec![Arc::new(Toy)],
        failed_login_delay: Duration::from_secs(1),
        ..Default::default()
    }
}

fn toy_connect(method: &str, data: &[u8]) -> Packet {
    let mut c: Connect = connect_packet("dev-2", ProtocolVersion::V5, true, 0);
    c.properties.authentication_method = Some(MqttString::try_from(method).unwrap());
    c.properties.authentication_data = Some(Bytes::copy_from_slice(data));
    Packet::Connect(Box::new(c))
}

fn auth(code: ReasonCode, method: &str, data: &[u8]) -> Packet {
    Packet::Auth(Auth {
        code,
        properties: AuthProperties {
            authentication_method: Some(MqttString::try_from(method).unwrap()),
            authentication_data: Some(Bytes::copy_from_slice(data)),
            ..Default::default()
        },
    })
}

fn auth_reply(packets: &[Packet]) -> (ReasonCode, Bytes) {
    match packets {
        [Packet::Auth(a)] => (
            a.code,
            a.properties.authentication_data.clone().unwrap_or_default(),
        ),
        other => panic!("expected one AUTH, got {other:?}"),
    }
}

#[test]
fn enhanced_authentication_exchanges_auth_packets_before_connack() {
    let broker = broker();
    let mut c = client_with(&broker, toy_auth());
    assert_eq!(
        c.conn.handle_packet(toy_connect("TOY", b"abc"), t(0)),
        Ok(None)
    );
    assert_eq!(
        auth_reply(&c.recv(t(0))),
        (ReasonCode::ContinueAuthentication, Bytes::from("challenge"))
    );
    assert!(!c.conn.read_paused(), "the client's AUTH must be read");
    let info = c
        .conn
        .handle_packet(
            auth(ReasonCode::ContinueAuthentication, "TOY", b"cba"),
            t(0),
        )
        .unwrap()
        .expect("connected");
    assert_eq!(info.client_id.as_str(), "dev-2");
    let ack = connack(&c.recv(t(0))).clone();
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(
        ack.properties
            .authentication_method
            .as_ref()
            .unwrap()
            .as_str(),
        "TOY"
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );

    // Re-authentication on the live connection: 0x19, 0x18, then AUTH 0x00.
    c.send(auth(ReasonCode::ReAuthenticate, "TOY", b"abc"), t(1))
        .unwrap();
    assert_eq!(
        auth_reply(&c.recv(t(1))).0,
        ReasonCode::ContinueAuthentication
    );
    c.send(
        auth(ReasonCode::ContinueAuthentication, "TOY", b"cba"),
        t(1),
    )
    .unwrap();
    assert_eq!(
        auth_reply(&c.recv(t(1))),
        (ReasonCode::Success, Bytes::from("welcome"))
    );

    // A failed re-authentication, or one as somebody else, ends the connection with 0x87.
    for name in [&b"abc"[..], b"xyz"] {
        c.send(auth(ReasonCode::ReAuthenticate, "TOY", name), t(2))
            .unwrap();
        c.recv(t(2));
        let wrong: &[u8] = if name == b"abc" { b"abc" } else { b"zyx" };
        let r = c.send(auth(ReasonCode::ContinueAuthentication, "TOY", wrong), t(2));
        assert!(
            matches!(
                r,
                Err(CloseReason::ProtocolViolation(ReasonCode::NotAuthorized, _))
            ),
            "{r:?}"
        );
        match &c.recv(t(2))[..] {
            [Packet::Disconnect(d)] => assert_eq!(d.code, ReasonCode::NotAuthorized),
            other => panic!("{other:?}"),
        }
        c = client_with(&broker, toy_auth());
        c.send(toy_connect("TOY", b"abc"), t(0)).unwrap();
        c.send(
            auth(ReasonCode::ContinueAuthentication, "TOY", b"cba"),
            t(0),
        )
        .unwrap();
        c.recv(t(0));
    }
}

#[test]
fn enhanced_authentication_failures() {
    let broker = broker();
    // An unknown method: 0x8C at once.
    let mut c = client_with(&broker, toy_auth());
    assert_eq!(
        c.conn.handle_packet(toy_connect("SCRAM-SHA-1", b"x"), t(0)),
        Err(CloseReason::ConnectRefused(
            ReasonCode::BadAuthenticationMethod
        ))
    );
    assert_eq!(
        connack(&c.recv(t(0))).code,
        ReasonCode::BadAuthenticationMethod
    );

    // A wrong answer: 0x87 after the delay.
    let mut c = client_with(&broker, toy_auth());
    c.send(toy_connect("TOY", b"abc"), t(0)).unwrap();
    c.recv(t(0));
    assert_eq!(
        c.conn.handle_packet(
            auth(ReasonCode::ContinueAuthentication, "TOY", b"abc"),
            t(0)
        ),
        Ok(None)
    );
    assert!(c.recv(t(0)).is_empty());
    assert_eq!(
        c.conn.handle_timeout(t(1)),
        Err(CloseReason::ConnectRefused(ReasonCode::NotAuthorized))
    );
    assert_eq!(connack(&c.recv(t(1))).code, ReasonCode::NotAuthorized);

    // Anything but AUTH or DISCONNECT during the exchange is a protocol error.
    let mut c = client_with(&broker, toy_auth());
    c.send(toy_connect("TOY", b"abc"), t(0)).unwrap();
    c.recv(t(0));
    let r = c.send(Packet::PingReq, t(0));
    assert_eq!(
        r,
        Err(CloseReason::ConnectRefused(ReasonCode::ProtocolError))
    );

    // AUTH with another method during the exchange, too.
    let mut c = client_with(&broker, toy_auth());
    c.send(toy_connect("TOY", b"abc"), t(0)).unwrap();
    c.recv(t(0));
    let r = c.send(
        auth(ReasonCode::ContinueAuthentication, "OTHER", b"cba"),
        t(0),
    );
    assert_eq!(
        r,
        Err(CloseReason::ConnectRefused(ReasonCode::ProtocolError))
    );

    // A client that never answers hits the connect timeout.
    let mut c = client_with(&broker, toy_auth());
    c.send(toy_connect("TOY", b"abc"), t(0)).unwrap();
    assert_eq!(
        c.conn.handle_timeout(t(10)),
        Err(CloseReason::ConnectTimeout)
    );

    // Re-authentication needs a method in CONNECT, and the same one.
    let mut c = connected(
        &broker,
        connect_packet("plain", ProtocolVersion::V5, true, 0),
        t(0),
    );
    let r = c.send(auth(ReasonCode::ReAuthenticate, "TOY", b"abc"), t(0));
    assert!(matches!(
        r,
        Err(CloseReason::ProtocolViolation(ReasonCode::ProtocolError, _))
    ));
    assert!(broker.metrics.auth_failures.load(Ordering::Relaxed) >= 2);
}
