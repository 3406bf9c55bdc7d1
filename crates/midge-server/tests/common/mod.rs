//! The raw test client of the conformance suite: a TCP socket that writes packets encoded by
//! `midge_codec::encode` or arbitrary bytes, and reads packets back with `midge_codec::decode`.
//! Every read has a timeout, so a broker that does not answer fails the test instead of
//! hanging it. Also: a server on 127.0.0.1:0 per test, packet builders, and a "bystander"
//! that proves a misbehaving client did not disturb anybody else.
//!
//! Shared by several test binaries, each of which uses only part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use midge_codec::{
    decode, encode, ClientId, ConnAck, Connect, ConnectProperties, DecodeLimits, Disconnect,
    FilterEntry, MqttString, Packet, PacketId, ProtocolVersion, PubAck, Publish, PublishProperties,
    QoS, QosPid, ReasonCode, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionId,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties,
    Will,
};
use midge_server::{RunningServer, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a read waits for a packet that must come.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a read waits to be sure that nothing comes.
pub const QUIET: Duration = Duration::from_millis(300);

pub const V311: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub const Q0: QoS = QoS::AtMostOnce;
pub const Q1: QoS = QoS::AtLeastOnce;
pub const Q2: QoS = QoS::ExactlyOnce;

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// The default server config of the suite: one listener on a free loopback port.
pub fn config() -> ServerConfig {
    ServerConfig {
        listeners: vec![midge_server::ListenerConfig::tcp(
            "127.0.0.1:0".parse().expect("loopback address"),
        )],
        connect_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    }
}

/// A running server; stopped when the test's runtime ends.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The server, for inspecting the broker.
    pub server: RunningServer,
}

/// Starts a server with `config` (its listeners are replaced by 127.0.0.1:0).
pub async fn start(mut config: ServerConfig) -> TestServer {
    config.listeners = vec![midge_server::ListenerConfig::tcp(
        "127.0.0.1:0".parse().expect("loopback address"),
    )];
    let server = Server::bind(config)
        .await
        .expect("bind 127.0.0.1:0")
        .start();
    let addr = server.local_addrs[0];
    TestServer { addr, server }
}

/// Starts a server with the default config.
pub async fn start_default() -> TestServer {
    start(config()).await
}

// ---------------------------------------------------------------------------------------------
// Packet builders
// ---------------------------------------------------------------------------------------------

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("test packet ids are non-zero")
}

pub fn topic(s: &str) -> TopicName {
    TopicName::try_from(s).expect("valid test topic")
}

pub fn mstr(s: &str) -> MqttString {
    MqttString::try_from(s).expect("valid test string")
}

pub fn filter(s: &str) -> FilterEntry {
    FilterEntry::parse(mstr(s))
}

pub fn sub_id(n: u32) -> SubscriptionId {
    SubscriptionId::new(n).expect("valid subscription identifier")
}

pub fn qos_pid(qos: QoS, id: u16) -> QosPid {
    QosPid::from_parts(qos, (qos != Q0).then(|| pid(id))).expect("qos and packet id agree")
}

/// A CONNECT with clean start, keep-alive 60 s and no properties.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: ClientId::try_from(client_id).expect("valid client id"),
        will: None,
        username: None,
        password: None,
    }
}

/// A will message without properties.
pub fn will(t: &str, payload: &[u8], qos: QoS, retain: bool) -> Will {
    Will {
        topic: topic(t),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: Default::default(),
    }
}

/// A PUBLISH; `id` is ignored at QoS 0.
pub fn publish(t: &str, qos: QoS, id: u16, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos: qos_pid(qos, id),
        retain: false,
        topic: Some(topic(t)),
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A retained PUBLISH.
pub fn retained(t: &str, qos: QoS, id: u16, payload: &[u8]) -> Publish {
    Publish {
        retain: true,
        ..publish(t, qos, id, payload)
    }
}

pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..Default::default()
    }
}

pub fn subscription(f: &str, options: SubscriptionOptions) -> Subscription {
    Subscription {
        filter: filter(f),
        options,
    }
}

pub fn subscribe_packet(id: u16, subs: Vec<Subscription>) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: SubscribeProperties::default(),
        subscriptions: subs,
    })
}

pub fn unsubscribe_packet(id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(id),
        properties: UnsubscribeProperties::default(),
        filters: filters.iter().map(|f| filter(f)).collect(),
    })
}

pub fn ack(id: u16) -> PubAck {
    PubAck::new(pid(id))
}

pub fn disconnect(code: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect {
        code,
        properties: Default::default(),
    })
}

/// Encodes a packet for a connection of `version`.
pub fn bytes_of(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("test packet encodes");
    buf.to_vec()
}

/// A CONNECT written byte by byte, for protocol name and level tests: `name`, `level`,
/// connect `flags`, keep-alive 60, no properties (a 5.0 level gets an empty property
/// length), client id `id`.
pub fn raw_connect(name: &[u8], level: u8, flags: u8, id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut out = vec![0x10];
    push_vbi(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Appends a variable byte integer.
pub fn push_vbi(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            break;
        }
    }
}

/// A packet from a first byte and a body, with the remaining length computed.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    push_vbi(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A client id unique within the test process.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// What a read produced.
#[derive(Debug)]
// One short-lived value per read: boxing the packet would only make matching clumsier.
#[allow(clippy::large_enum_variant)]
pub enum Read {
    /// A whole packet.
    Packet(Packet),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing within the time allowed.
    Timeout,
}

/// A raw MQTT client over TCP.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    /// Packets read while looking for another one (e.g. a PUBLISH that arrived before the
    /// PUBREL a QoS 2 flow waits for); `read` returns them first, in order.
    stash: VecDeque<Packet>,
    /// Protocol used to encode and decode.
    pub version: ProtocolVersion,
    /// Label used in failure messages.
    pub name: String,
}

impl Client {
    /// Opens a TCP connection; sends nothing.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Client {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        stream.set_nodelay(true).expect("set_nodelay");
        Client {
            stream,
            buf: BytesMut::new(),
            stash: VecDeque::new(),
            version,
            name: "client".to_owned(),
        }
    }

    /// Sends `connect` and returns the CONNACK, whatever its code.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (Client, ConnAck) {
        let mut c = Client::open(addr, connect.protocol).await;
        c.name = connect.client_id.to_string();
        c.send(&Packet::Connect(Box::new(connect))).await;
        let ack = c.recv_connack().await;
        (c, ack)
    }

    /// Connects with `connect` and asserts that the broker accepted it.
    pub async fn connect_ok(addr: SocketAddr, connect: Connect) -> (Client, ConnAck) {
        let (c, ack) = Client::connect_with(addr, connect).await;
        assert_eq!(ack.code, ReasonCode::Success, "{}: CONNACK {ack:?}", c.name);
        (c, ack)
    }

    /// A 3.1.1 client with a clean session.
    pub async fn v311(addr: SocketAddr, client_id: &str) -> Client {
        Client::connect_ok(addr, connect_packet(V311, client_id))
            .await
            .0
    }

    /// A 5.0 client with clean start and session expiry 0.
    pub async fn v5(addr: SocketAddr, client_id: &str) -> Client {
        Client::connect_ok(addr, connect_packet(V5, client_id))
            .await
            .0
    }

    /// Writes raw bytes. A write error is ignored: the broker may already have closed the
    /// connection, which the next read reports.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Encodes and writes a packet.
    pub async fn send(&mut self, packet: &Packet) {
        let bytes = bytes_of(packet, self.version);
        self.send_raw(&bytes).await;
    }

    pub async fn send_publish(&mut self, p: Publish) {
        self.send(&Packet::Publish(p)).await;
    }

    /// Reads the next packet or learns that the connection closed, waiting at most `wait`.
    pub async fn read(&mut self, wait: Duration) -> Read {
        if let Some(p) = self.stash.pop_front() {
            return Read::Packet(p);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let limits = DecodeLimits::default();
            match decode(&mut self.buf, self.version, &limits) {
                Ok(Some(p)) => return Read::Packet(p),
                Ok(None) => {}
                Err(e) => panic!("{}: broker sent an undecodable packet: {e}", self.name),
            }
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Read::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    // Nothing more can come; bytes left over would be a truncated packet.
                    assert!(
                        self.buf.is_empty(),
                        "{}: connection closed inside a packet: {:02x?}",
                        self.name,
                        &self.buf[..]
                    );
                    return Read::Closed;
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next packet; fails the test if none arrives within `TIMEOUT`.
    pub async fn recv(&mut self) -> Packet {
        match self.read(TIMEOUT).await {
            Read::Packet(p) => p,
            other => panic!("{}: expected a packet, got {other:?}", self.name),
        }
    }

    /// The raw bytes of the next packet (framed by its remaining length, not decoded).
    pub async fn recv_frame(&mut self) -> Vec<u8> {
        assert!(
            self.stash.is_empty(),
            "{}: packets stashed before a raw read",
            self.name
        );
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(len) = frame_len(&self.buf) {
                if self.buf.len() >= len {
                    return self.buf.split_to(len).to_vec();
                }
            }
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => panic!("{}: no packet within {TIMEOUT:?}", self.name),
                Ok(Ok(0)) | Ok(Err(_)) => panic!(
                    "{}: connection closed; bytes left {:02x?}",
                    self.name,
                    &self.buf[..]
                ),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next packet for which `want` returns `Some`; packets before it are kept for later
    /// reads, in order.
    pub async fn recv_matching<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&Packet) -> Option<T>,
    ) -> T {
        let mut skipped = Vec::new();
        let found = loop {
            let p = match self.read(TIMEOUT).await {
                Read::Packet(p) => p,
                other => panic!(
                    "{}: expected {what}, got {other:?} (after {skipped:?})",
                    self.name
                ),
            };
            match want(&p) {
                Some(t) => break t,
                None => skipped.push(p),
            }
            if skipped.len() > 1000 {
                panic!("{}: no {what} among {} packets", self.name, skipped.len());
            }
        };
        for p in skipped.into_iter().rev() {
            self.stash.push_front(p);
        }
        found
    }

    pub async fn recv_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Packet::ConnAck(a) => a,
            other => panic!("{}: expected CONNACK, got {other:?}", self.name),
        }
    }

    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("{}: expected PUBLISH, got {other:?}", self.name),
        }
    }

    pub async fn recv_suback(&mut self) -> SubAck {
        match self.recv().await {
            Packet::SubAck(a) => a,
            other => panic!("{}: expected SUBACK, got {other:?}", self.name),
        }
    }

    pub async fn recv_unsuback(&mut self) -> UnsubAck {
        match self.recv().await {
            Packet::UnsubAck(a) => a,
            other => panic!("{}: expected UNSUBACK, got {other:?}", self.name),
        }
    }

    /// Receives a PUBLISH and acknowledges it as its QoS requires (QoS 2: PUBREC, waits for
    /// PUBREL, PUBCOMP).
    pub async fn recv_publish_acked(&mut self) -> Publish {
        let p = self.recv_publish().await;
        self.ack_publish(&p).await;
        p
    }

    /// Completes the receiver side of a QoS 1 or 2 flow.
    pub async fn ack_publish(&mut self, p: &Publish) {
        match p.qos {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.send(&Packet::PubAck(PubAck::new(id))).await,
            QosPid::ExactlyOnce(id) => {
                self.send(&Packet::PubRec(PubAck::new(id))).await;
                self.recv_matching("PUBREL", |p| match p {
                    Packet::PubRel(r) if r.packet_id == id => Some(()),
                    _ => None,
                })
                .await;
                self.send(&Packet::PubComp(PubAck::new(id))).await;
            }
        }
    }

    /// Subscribes and returns the SUBACK, checking its packet id.
    pub async fn subscribe_with(&mut self, id: u16, subs: Vec<Subscription>) -> SubAck {
        self.send(&subscribe_packet(id, subs)).await;
        let a = self.recv_suback().await;
        assert_eq!(a.packet_id, pid(id), "{}: SUBACK packet id", self.name);
        a
    }

    /// Subscribes to one filter and asserts the granted QoS is the one requested.
    pub async fn subscribe(&mut self, f: &str, qos: QoS) {
        let a = self
            .subscribe_with(1, vec![subscription(f, opts(qos))])
            .await;
        assert_eq!(a.codes, vec![granted(qos)], "{}: SUBACK for {f}", self.name);
    }

    /// Publishes and completes the sender side of the flow; returns the PUBACK or PUBREC.
    pub async fn publish_flow(&mut self, p: Publish) -> Option<PubAck> {
        let qos = p.qos;
        self.send_publish(p).await;
        match qos {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(id) => Some(
                self.recv_matching("PUBACK", |p| match p {
                    Packet::PubAck(a) if a.packet_id == id => Some(a.clone()),
                    _ => None,
                })
                .await,
            ),
            QosPid::ExactlyOnce(id) => {
                let rec = self
                    .recv_matching("PUBREC", |p| match p {
                        Packet::PubRec(a) if a.packet_id == id => Some(a.clone()),
                        _ => None,
                    })
                    .await;
                if rec.code.is_error() {
                    // A failed PUBREC ends the flow ([MQTT-4.3.3]).
                    return Some(rec);
                }
                self.send(&Packet::PubRel(PubAck::new(id))).await;
                let comp = self
                    .recv_matching("PUBCOMP", |p| match p {
                        Packet::PubComp(c) if c.packet_id == id => Some(c.clone()),
                        _ => None,
                    })
                    .await;
                assert_eq!(comp.code, ReasonCode::Success, "{}: PUBCOMP", self.name);
                Some(rec)
            }
        }
    }

    /// Publishes at `qos` (packet id 1) and completes the flow.
    pub async fn publish(&mut self, t: &str, qos: QoS, payload: &[u8]) {
        self.publish_flow(publish(t, qos, 1, payload)).await;
    }

    /// Asserts that no packet arrives within `QUIET` (and the connection stays open).
    pub async fn expect_nothing(&mut self) {
        self.expect_nothing_for(QUIET).await;
    }

    pub async fn expect_nothing_for(&mut self, wait: Duration) {
        match self.read(wait).await {
            Read::Timeout => {}
            other => panic!("{}: expected silence, got {other:?}", self.name),
        }
    }

    /// Asserts that the broker closes the connection within `TIMEOUT` without sending
    /// anything more.
    pub async fn expect_closed(&mut self) {
        match self.read(TIMEOUT).await {
            Read::Closed => {}
            other => panic!(
                "{}: expected the connection to close, got {other:?}",
                self.name
            ),
        }
    }

    /// Asserts a DISCONNECT with `code` followed by the close (5.0 server-initiated
    /// disconnect). Returns it for property checks.
    pub async fn expect_disconnect(&mut self, code: ReasonCode) -> Disconnect {
        let d = match self.read(TIMEOUT).await {
            Read::Packet(Packet::Disconnect(d)) => d,
            other => panic!("{}: expected DISCONNECT {code}, got {other:?}", self.name),
        };
        assert_eq!(d.code, code, "{}: DISCONNECT reason code {d:?}", self.name);
        self.expect_closed().await;
        d
    }

    /// PINGREQ, and asserts PINGRESP: proves the connection is alive and in order.
    pub async fn ping(&mut self) {
        self.send(&Packet::PingReq).await;
        match self.recv().await {
            Packet::PingResp => {}
            other => panic!("{}: expected PINGRESP, got {other:?}", self.name),
        }
    }

    /// Normal DISCONNECT and waits for the broker to close.
    pub async fn disconnect(mut self) {
        self.send(&disconnect(ReasonCode::Success)).await;
        self.expect_closed().await;
    }

    /// Drops the socket without DISCONNECT (an abnormal close).
    pub fn drop_connection(self) {
        drop(self);
    }
}

/// Length of the first packet in `buf`, if its fixed header is complete.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    let mut mult = 1usize;
    for i in 1..5 {
        let b = *buf.get(i)?;
        len += usize::from(b & 0x7F) * mult;
        mult *= 128;
        if b & 0x80 == 0 {
            return Some(1 + i + len);
        }
    }
    None
}

/// The SUBACK code that grants `qos`.
pub fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

/// A 5.0 CONNECT with properties set by `f`.
pub fn connect_v5_with(client_id: &str, f: impl FnOnce(&mut Connect)) -> Connect {
    let mut c = connect_packet(V5, client_id);
    f(&mut c);
    c
}

pub fn nz16(v: u16) -> NonZeroU16 {
    NonZeroU16::new(v).expect("non-zero")
}

pub fn nz32(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).expect("non-zero")
}

pub fn filter_of(s: &str) -> TopicFilter {
    TopicFilter::try_from(s).expect("valid filter")
}

// ---------------------------------------------------------------------------------------------
// Bystander
// ---------------------------------------------------------------------------------------------

/// A well-behaved client connected before a misbehaving one. `check` proves that it is still
/// connected and still receives messages routed through the broker.
#[derive(Debug)]
pub struct Bystander {
    addr: SocketAddr,
    sub: Client,
    n: u32,
}

impl Bystander {
    /// Connects a 3.1.1 subscriber to `bystander/#` at QoS 1.
    pub async fn new(addr: SocketAddr) -> Bystander {
        let mut sub = Client::v311(addr, &unique_id("bystander")).await;
        sub.subscribe("bystander/#", Q1).await;
        Bystander { addr, sub, n: 0 }
    }

    /// A new client publishes at QoS 1 to `bystander/...`; the bystander must receive it.
    pub async fn check(&mut self) {
        self.n += 1;
        let payload = format!("still alive {}", self.n);
        let mut publisher = Client::v5(self.addr, &unique_id("bystander-pub")).await;
        publisher
            .publish("bystander/check", Q1, payload.as_bytes())
            .await;
        let p = self.sub.recv_publish_acked().await;
        assert_eq!(p.topic, Some(topic("bystander/check")), "bystander topic");
        assert_eq!(&p.payload[..], payload.as_bytes(), "bystander payload");
        self.sub.ping().await;
        publisher.disconnect().await;
    }
}

/// Polls `cond` every 20 ms until it holds or `TIMEOUT` passes.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
