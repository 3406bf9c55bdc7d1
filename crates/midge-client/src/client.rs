//! The client handle and its connection task. The task owns the socket: it writes queued
//! packets in batches, reads every packet in each read, runs the QoS 1/2 flows in both
//! directions, sends PINGREQ when the connection is quiet, and, if asked to, reconnects and
//! resumes the session (resending unacknowledged messages with DUP).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_codec::{
    decode, encode, ConnAck, Connect, DecodeLimits, Disconnect, DisconnectProperties, FilterEntry,
    MqttString, Packet, PacketId, ProtocolVersion, PubAck, Publish, PublishProperties, QoS, QosPid,
    ReasonCode, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
    TopicFilter, TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::transport::{Connector, ReadHalf, Stream, WriteHalf};

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic.
    pub topic: TopicName,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// 5.0 properties.
    pub properties: PublishProperties,
}

impl Message {
    /// A message with no properties.
    pub fn new(
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<Self, ClientError> {
        Ok(Message {
            topic: TopicName::try_from(topic)?,
            payload: payload.into(),
            qos,
            retain,
            properties: PublishProperties::default(),
        })
    }
}

/// What the connection task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message from a subscription.
    Message(Publish),
    /// (Re)connected; `ConnAck::session_present` tells whether the session was resumed.
    Connected(ConnAck),
    /// The connection was lost; with `reconnect` on, a `Connected` follows when it is back.
    Disconnected(String),
}

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

#[derive(Debug)]
enum Command {
    Publish(Message, Option<Reply<ReasonCode>>),
    Subscribe(Vec<Subscription>, SubscribeProperties, Reply<SubAck>),
    Unsubscribe(Vec<TopicFilter>, Reply<UnsubAck>),
    Disconnect(Disconnect, oneshot::Sender<()>),
}

/// A handle to a connected client; cheap to clone. The connection closes (with DISCONNECT)
/// when every handle and the `Events` are dropped, or on `disconnect`.
#[derive(Debug, Clone)]
pub struct Client {
    cmd: mpsc::Sender<Command>,
    connack: ConnAck,
    client_id: String,
}

/// The stream of events of a client.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has stopped for good.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next message, skipping connection events; `None` once the client has stopped.
    pub async fn next_message(&mut self) -> Option<Publish> {
        loop {
            match self.rx.recv().await? {
                Event::Message(p) => return Some(p),
                _ => continue,
            }
        }
    }
}

impl Client {
    /// Connects over the transport of the options and waits for CONNACK. A refusal is
    /// `ClientError::Refused` with the broker's reason code and reason string; bad TLS
    /// settings are `ClientError::TlsSetup`, found before any network I/O.
    pub async fn connect(opts: ClientOptions) -> Result<(Client, Events), ClientError> {
        let connector = Connector::new(&opts)?;
        let (stream, connack, rest) = establish(&connector, &opts, opts.clean_start).await?;
        let client_id = connack
            .properties
            .assigned_client_identifier
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| opts.client_id.clone());
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (ev_tx, ev_rx) = mpsc::channel(opts.event_capacity.max(1));
        let task = Task::new(opts, connector, &connack, ev_tx);
        tokio::spawn(task.run(stream, rest, cmd_rx));
        Ok((
            Client {
                cmd: cmd_tx,
                connack,
                client_id,
            },
            Events { rx: ev_rx },
        ))
    }

    /// The CONNACK of the first connection.
    pub fn connack(&self) -> &ConnAck {
        &self.connack
    }

    /// The client identifier in use (assigned by the broker if none was given).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Publishes and waits until the flow completes: written (QoS 0), PUBACK (QoS 1) or
    /// PUBCOMP (QoS 2). Returns the broker's reason code (always `Success` for 3.x).
    pub async fn publish(&self, msg: Message) -> Result<ReasonCode, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Publish(msg, Some(tx))).await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Queues a message and returns at once; the flow completes in the background. Waits
    /// only while the client's command queue is full (backpressure).
    pub async fn publish_nowait(&self, msg: Message) -> Result<(), ClientError> {
        self.send(Command::Publish(msg, None)).await
    }

    /// Subscribes to one filter.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<SubAck, ClientError> {
        let f = TopicFilter::try_from(filter)?;
        self.subscribe_many(
            vec![Subscription {
                filter: FilterEntry::Valid(f),
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
            SubscribeProperties::default(),
        )
        .await
    }

    /// Subscribes to several filters with options and properties; returns the SUBACK.
    pub async fn subscribe_many(
        &self,
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<SubAck, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Subscribe(subscriptions, properties, tx))
            .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Unsubscribes.
    pub async fn unsubscribe(&self, filters: &[&str]) -> Result<UnsubAck, ClientError> {
        let filters = filters
            .iter()
            .map(|f| TopicFilter::try_from(*f))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = oneshot::channel();
        self.send(Command::Unsubscribe(filters, tx)).await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends DISCONNECT (normal) and closes the connection.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        self.disconnect_with(Disconnect::default()).await
    }

    /// Sends this DISCONNECT (e.g. 0x04 to have the will published) and closes.
    pub async fn disconnect_with(&self, d: Disconnect) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Disconnect(d, tx)).await?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    async fn send(&self, c: Command) -> Result<(), ClientError> {
        self.cmd.send(c).await.map_err(|_| ClientError::Closed)
    }
}

/// Connects the transport, sends CONNECT, waits for CONNACK. Returns bytes read after the
/// CONNACK.
async fn establish(
    connector: &Connector,
    opts: &ClientOptions,
    clean_start: bool,
) -> Result<(Stream, ConnAck, BytesMut), ClientError> {
    let fut = async {
        let mut stream = connector.connect().await?;
        let mut properties = opts.properties.clone();
        properties.session_expiry_interval = opts.session_expiry_secs;
        let connect = Connect {
            protocol: opts.protocol,
            clean_start,
            keep_alive: u16::try_from(opts.keep_alive.as_secs()).unwrap_or(u16::MAX),
            properties,
            client_id: opts.client_id.as_str().try_into()?,
            will: opts.will.clone(),
            username: opts
                .username
                .as_deref()
                .map(MqttString::try_from)
                .transpose()?,
            password: opts.password.clone(),
        };
        let mut buf = BytesMut::new();
        encode(&Packet::Connect(Box::new(connect)), opts.protocol, &mut buf)?;
        stream.write_all(&buf).await?;
        stream.flush().await?;
        let mut inbuf = BytesMut::with_capacity(4096);
        loop {
            if let Some(p) = decode(&mut inbuf, opts.protocol, &DecodeLimits::default())? {
                return match p {
                    Packet::ConnAck(ack) if ack.code == ReasonCode::Success => {
                        Ok((stream, ack, inbuf))
                    }
                    Packet::ConnAck(ack) => Err(ClientError::Refused {
                        code: ack.code,
                        reason: ack.properties.reason_string.map(|s| s.to_string()),
                    }),
                    other => Err(ClientError::Protocol(format!(
                        "expected CONNACK, got {}",
                        other.packet_type()
                    ))),
                };
            }
            if stream.read_buf(&mut inbuf).await? == 0 {
                return Err(ClientError::Disconnected {
                    code: None,
                    reason: Some("connection closed before CONNACK".into()),
                });
            }
        }
    };
    tokio::time::timeout(opts.connect_timeout, fut)
        .await
        .map_err(|_| ClientError::Timeout("CONNACK"))?
        .map_err(|e| connector.explain(e))
}

#[derive(Debug)]
struct Outgoing {
    publish: Publish,
    awaiting_comp: bool,
    reply: Option<Reply<ReasonCode>>,
}

enum Exit {
    Closed,
    Lost(ClientError),
}

struct Task {
    opts: ClientOptions,
    connector: Connector,
    version: ProtocolVersion,
    events: mpsc::Sender<Event>,
    queue: VecDeque<(Message, Option<Reply<ReasonCode>>)>,
    inflight: HashMap<u16, Outgoing>,
    order: VecDeque<u16>,
    subs: HashMap<u16, Reply<SubAck>>,
    unsubs: HashMap<u16, Reply<UnsubAck>>,
    incoming_qos2: HashSet<u16>,
    next_pid: u16,
    window: usize,
    max_packet: usize,
    out: BytesMut,
    last_write: Instant,
    ping_sent: Option<Instant>,
}

impl Task {
    fn new(
        opts: ClientOptions,
        connector: Connector,
        connack: &ConnAck,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let mut t = Task {
            connector,
            version: opts.protocol,
            events,
            queue: VecDeque::new(),
            inflight: HashMap::new(),
            order: VecDeque::new(),
            subs: HashMap::new(),
            unsubs: HashMap::new(),
            incoming_qos2: HashSet::new(),
            next_pid: 1,
            window: usize::from(opts.max_inflight.max(1)),
            max_packet: usize::MAX,
            out: BytesMut::new(),
            last_write: Instant::now(),
            ping_sent: None,
            opts,
        };
        t.apply_connack(connack);
        t
    }

    fn apply_connack(&mut self, connack: &ConnAck) {
        let server_max = connack
            .properties
            .receive_maximum
            .map_or(usize::from(u16::MAX), |r| usize::from(r.get()));
        self.window = usize::from(self.opts.max_inflight.max(1)).min(server_max);
        self.max_packet = connack
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |m| m.get() as usize);
    }

    async fn run(mut self, stream: Stream, mut rest: BytesMut, mut cmds: mpsc::Receiver<Command>) {
        let mut stream = Some(stream);
        loop {
            let Some(s) = stream.take() else { return };
            let (mut reader, mut writer) = s.into_split();
            let exit = self
                .serve(&mut reader, &mut writer, &mut rest, &mut cmds)
                .await;
            let err = match exit {
                Exit::Closed => return,
                Exit::Lost(e) => e,
            };
            let _ = self.events.send(Event::Disconnected(err.to_string())).await;
            if !self.opts.reconnect {
                self.fail_all(&err);
                return;
            }
            let mut backoff = Duration::from_millis(100);
            loop {
                if self.events.is_closed() && cmds.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                match establish(&self.connector, &self.opts, false).await {
                    Ok((s, connack, r)) => {
                        self.apply_connack(&connack);
                        self.on_resumed(connack.session_present);
                        let _ = self.events.send(Event::Connected(connack)).await;
                        stream = Some(s);
                        rest = r;
                        break;
                    }
                    Err(ClientError::Refused { .. }) if backoff >= Duration::from_secs(5) => {
                        self.fail_all(&err);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "reconnect failed");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// After a reconnect: resend what is in flight, in order, with DUP ([MQTT-4.4.0-1]);
    /// a session that was not resumed restarts its flows.
    fn on_resumed(&mut self, session_present: bool) {
        if !session_present {
            self.incoming_qos2.clear();
        }
        let v = self.version;
        for pid in &self.order {
            if let Some(o) = self.inflight.get_mut(pid) {
                let pid = PacketId::new(*pid).expect("invariant: inflight ids are non-zero");
                let p = if o.awaiting_comp && session_present {
                    Packet::PubRel(PubAck::new(pid))
                } else {
                    o.awaiting_comp = false;
                    o.publish.dup = true;
                    Packet::Publish(o.publish.clone())
                };
                let _ = encode(&p, v, &mut self.out);
            }
        }
        // SUBSCRIBE/UNSUBSCRIBE in flight are lost with the connection.
        for (_, r) in self.subs.drain() {
            let _ = r.send(Err(ClientError::Disconnected {
                code: None,
                reason: None,
            }));
        }
        for (_, r) in self.unsubs.drain() {
            let _ = r.send(Err(ClientError::Disconnected {
                code: None,
                reason: None,
            }));
        }
    }

    fn fail_all(&mut self, err: &ClientError) {
        let msg = err.to_string();
        let lost = || ClientError::Disconnected {
            code: None,
            reason: Some(msg.clone()),
        };
        for (_, o) in self.inflight.drain() {
            if let Some(r) = o.reply {
                let _ = r.send(Err(lost()));
            }
        }
        for (_, r) in self.queue.drain(..) {
            if let Some(r) = r {
                let _ = r.send(Err(lost()));
            }
        }
        for (_, r) in self.subs.drain() {
            let _ = r.send(Err(lost()));
        }
        for (_, r) in self.unsubs.drain() {
            let _ = r.send(Err(lost()));
        }
    }

    fn alloc_pid(&mut self) -> PacketId {
        loop {
            let v = self.next_pid;
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&v)
                && !self.subs.contains_key(&v)
                && !self.unsubs.contains_key(&v)
            {
                if let Some(p) = PacketId::new(v) {
                    return p;
                }
            }
        }
    }

    /// Moves queued messages into flight while the window allows.
    fn fill(&mut self) -> Result<(), ClientError> {
        while let Some((msg, _)) = self.queue.front() {
            if msg.qos != QoS::AtMostOnce && self.inflight.len() >= self.window {
                break;
            }
            let Some((msg, reply)) = self.queue.pop_front() else {
                break;
            };
            let pid = (msg.qos != QoS::AtMostOnce).then(|| self.alloc_pid());
            let publish = Publish {
                dup: false,
                qos: QosPid::from_parts(msg.qos, pid)
                    .expect("invariant: a packet id is allocated exactly for QoS 1 and 2"),
                retain: msg.retain,
                topic: Some(msg.topic),
                properties: msg.properties,
                payload: msg.payload,
            };
            let packet = Packet::Publish(publish);
            if midge_codec::encoded_len(&packet, self.version) > self.max_packet {
                if let Some(r) = reply {
                    let _ = r.send(Err(ClientError::Protocol(
                        "message larger than the broker's Maximum Packet Size".into(),
                    )));
                }
                continue;
            }
            encode(&packet, self.version, &mut self.out)?;
            let Packet::Publish(publish) = packet else {
                continue;
            };
            match pid {
                None => {
                    if let Some(r) = reply {
                        let _ = r.send(Ok(ReasonCode::Success));
                    }
                }
                Some(pid) => {
                    self.order.push_back(pid.get());
                    self.inflight.insert(
                        pid.get(),
                        Outgoing {
                            publish,
                            awaiting_comp: false,
                            reply,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn complete(&mut self, pid: u16, result: Result<ReasonCode, ClientError>) {
        if let Some(o) = self.inflight.remove(&pid) {
            if let Some(pos) = self.order.iter().position(|p| *p == pid) {
                self.order.remove(pos);
            }
            if let Some(r) = o.reply {
                let _ = r.send(result);
            }
        }
    }

    fn ping_deadline(&self) -> Option<Instant> {
        let ka = self.opts.keep_alive;
        if ka.is_zero() {
            return None;
        }
        Some(match self.ping_sent {
            Some(sent) => sent + ka,
            None => self.last_write + ka,
        })
    }

    async fn serve(
        &mut self,
        reader: &mut ReadHalf,
        writer: &mut WriteHalf,
        inbuf: &mut BytesMut,
        cmds: &mut mpsc::Receiver<Command>,
    ) -> Exit {
        self.ping_sent = None;
        self.last_write = Instant::now();
        // Packets that arrived together with the CONNACK.
        if let Err(e) = self.handle_input(inbuf).await {
            return e;
        }
        loop {
            if let Err(e) = self.fill() {
                return Exit::Lost(e);
            }
            let deadline = self.ping_deadline();
            let accept_cmds = self.queue.len() < self.window.max(64);
            tokio::select! {
                // Cancel-safe: `read_buf` reads nothing if dropped before completion.
                r = reader.read_buf(inbuf) => {
                    match r {
                        Ok(0) => return Exit::Lost(ClientError::Disconnected { code: None, reason: Some("connection closed".into()) }),
                        Ok(_) => {
                            if let Err(e) = self.handle_input(inbuf).await {
                                return e;
                            }
                        }
                        Err(e) => return Exit::Lost(e.into()),
                    }
                }
                // Cancel-safe: writes advance the buffer only by what was written; a
                // flush that did not complete stays due.
                r = writer.write_or_flush(&mut self.out), if !self.out.is_empty() || writer.unflushed() => {
                    if let Err(e) = r {
                        return Exit::Lost(e.into());
                    }
                    self.last_write = Instant::now();
                }
                // Cancel-safe: `recv` loses no message when dropped.
                c = cmds.recv(), if accept_cmds => {
                    match c {
                        None => {
                            let _ = encode(&Packet::Disconnect(Disconnect::default()), self.version, &mut self.out);
                            let _ = writer.write_all_buf(&mut self.out).await;
                            let _ = writer.flush().await;
                            let _ = writer.shutdown().await;
                            return Exit::Closed;
                        }
                        Some(Command::Disconnect(d, done)) => {
                            let _ = encode(&Packet::Disconnect(d), self.version, &mut self.out);
                            let _ = writer.write_all_buf(&mut self.out).await;
                            let _ = writer.flush().await;
                            let _ = writer.shutdown().await;
                            self.fail_all(&ClientError::Closed);
                            let _ = done.send(());
                            return Exit::Closed;
                        }
                        Some(c) => {
                            if let Err(e) = self.command(c) {
                                return Exit::Lost(e);
                            }
                        }
                    }
                }
                // Cancel-safe: a timer, recomputed each turn.
                _ = sleep_until(deadline) => {
                    if self.ping_sent.is_some() {
                        return Exit::Lost(ClientError::Timeout("PINGRESP"));
                    }
                    let _ = encode(&Packet::PingReq, self.version, &mut self.out);
                    self.ping_sent = Some(Instant::now());
                }
            }
        }
    }

    fn command(&mut self, c: Command) -> Result<(), ClientError> {
        match c {
            Command::Publish(m, r) => self.queue.push_back((m, r)),
            Command::Subscribe(subscriptions, properties, r) => {
                let pid = self.alloc_pid();
                encode(
                    &Packet::Subscribe(Subscribe {
                        packet_id: pid,
                        properties,
                        subscriptions,
                    }),
                    self.version,
                    &mut self.out,
                )?;
                self.subs.insert(pid.get(), r);
            }
            Command::Unsubscribe(filters, r) => {
                let pid = self.alloc_pid();
                encode(
                    &Packet::Unsubscribe(Unsubscribe {
                        packet_id: pid,
                        properties: UnsubscribeProperties::default(),
                        filters: filters.into_iter().map(FilterEntry::Valid).collect(),
                    }),
                    self.version,
                    &mut self.out,
                )?;
                self.unsubs.insert(pid.get(), r);
            }
            Command::Disconnect(..) => {}
        }
        Ok(())
    }

    async fn handle_input(&mut self, inbuf: &mut BytesMut) -> Result<(), Exit> {
        loop {
            let packet = match decode(inbuf, self.version, &DecodeLimits::default()) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Exit::Lost(e.into())),
            };
            self.packet(packet).await?;
        }
    }

    async fn packet(&mut self, p: Packet) -> Result<(), Exit> {
        let v = self.version;
        match p {
            Packet::Publish(p) => {
                match p.qos {
                    QosPid::AtMostOnce => self.deliver(p).await?,
                    QosPid::AtLeastOnce(pid) => {
                        self.deliver(p).await?;
                        let _ = encode(&Packet::PubAck(PubAck::new(pid)), v, &mut self.out);
                    }
                    QosPid::ExactlyOnce(pid) => {
                        // Delivered on first receipt; the id is kept until PUBREL so that a
                        // resend is not delivered twice.
                        if self.incoming_qos2.insert(pid.get()) {
                            self.deliver(p).await?;
                        }
                        let _ = encode(&Packet::PubRec(PubAck::new(pid)), v, &mut self.out);
                    }
                }
            }
            Packet::PubAck(a) => self.complete(a.packet_id.get(), Ok(a.code)),
            Packet::PubRec(a) => {
                if a.code.is_error() {
                    self.complete(a.packet_id.get(), Ok(a.code));
                } else {
                    if let Some(o) = self.inflight.get_mut(&a.packet_id.get()) {
                        o.awaiting_comp = true;
                    }
                    let _ = encode(&Packet::PubRel(PubAck::new(a.packet_id)), v, &mut self.out);
                }
            }
            Packet::PubRel(a) => {
                self.incoming_qos2.remove(&a.packet_id.get());
                let _ = encode(&Packet::PubComp(PubAck::new(a.packet_id)), v, &mut self.out);
            }
            Packet::PubComp(a) => self.complete(a.packet_id.get(), Ok(a.code)),
            Packet::SubAck(s) => {
                if let Some(r) = self.subs.remove(&s.packet_id.get()) {
                    let _ = r.send(Ok(s));
                }
            }
            Packet::UnsubAck(u) => {
                if let Some(r) = self.unsubs.remove(&u.packet_id.get()) {
                    let _ = r.send(Ok(u));
                }
            }
            Packet::PingResp => self.ping_sent = None,
            Packet::Disconnect(d) => {
                return Err(Exit::Lost(ClientError::Disconnected {
                    code: Some(d.code),
                    reason: d.properties.reason_string.map(|s| s.to_string()),
                }))
            }
            other => {
                return Err(Exit::Lost(ClientError::Protocol(format!(
                    "unexpected {} from the broker",
                    other.packet_type()
                ))))
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, p: Publish) -> Result<(), Exit> {
        // Waits while the application is behind: the client stops reading (backpressure).
        // If the application dropped its `Events`, messages are discarded.
        let _ = self.events.send(Event::Message(p)).await;
        Ok(())
    }
}

/// A normal-disconnect DISCONNECT with a session expiry (5.0), for callers that want to
/// change the expiry when they leave.
pub fn disconnect_with_expiry(secs: u32) -> Disconnect {
    Disconnect {
        code: ReasonCode::Success,
        properties: DisconnectProperties {
            session_expiry_interval: Some(secs),
            ..Default::default()
        },
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
