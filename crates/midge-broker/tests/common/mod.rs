//! Test harness for the broker core: connections driven by hand on a simulated clock.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_broker::{Broker, CloseReason, Connection, Notify, OutBuffer, Timestamp};
use midge_codec::{
    decode, ConnAck, Connect, ConnectProperties, DecodeLimits, Packet, PacketId, ProtocolVersion,
    Publish, PublishProperties, QoS, QosPid, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions,
};

#[derive(Debug, Default)]
pub struct NoopNotify;

impl Notify for NoopNotify {
    fn notify(&self) {}
}

pub struct Client {
    pub conn: Connection,
    pub out: OutBuffer,
    pub wakeups: Arc<CountingNotify>,
}

/// Counts how often a connection was woken.
#[derive(Debug, Default)]
pub struct CountingNotify(pub AtomicUsize);

impl Notify for CountingNotify {
    fn notify(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Client {
    pub fn new(broker: &Arc<Broker>, now: Timestamp) -> Self {
        let wakeups = Arc::new(CountingNotify::default());
        Client {
            conn: Connection::new(
                broker.clone(),
                wakeups.clone(),
                now,
                Duration::from_secs(10),
            ),
            out: OutBuffer::new(),
            wakeups,
        }
    }

    pub fn send(&mut self, p: Packet, now: Timestamp) -> Result<(), CloseReason> {
        self.conn.handle_packet(p, now).map(|_| ())
    }

    pub fn recv(&mut self, now: Timestamp) -> Vec<Packet> {
        let _ = self.conn.poll_output(now, &mut self.out);
        let mut bytes = BytesMut::new();
        for c in self.out.chunks() {
            bytes.extend_from_slice(c);
        }
        let n = self.out.len();
        self.out.advance(n);
        let mut packets = Vec::new();
        while let Some(p) =
            decode(&mut bytes, self.conn.version(), &DecodeLimits::default()).unwrap()
        {
            packets.push(p);
        }
        packets
    }
}

pub fn connect_packet(id: &str, v: ProtocolVersion, clean: bool, keep_alive: u16) -> Connect {
    Connect {
        protocol: v,
        clean_start: clean,
        keep_alive,
        properties: ConnectProperties::default(),
        client_id: id.try_into().unwrap(),
        will: None,
        username: None,
        password: None,
    }
}

pub fn connected(broker: &Arc<Broker>, c: Connect, now: Timestamp) -> Client {
    let mut client = Client::new(broker, now);
    client.send(Packet::Connect(Box::new(c)), now).unwrap();
    let packets = client.recv(now);
    assert!(
        matches!(
            &packets[..],
            [Packet::ConnAck(ConnAck {
                code: ReasonCode::Success,
                ..
            })]
        ),
        "{packets:?}"
    );
    client
}

pub fn subscribe(client: &mut Client, filter: &str, qos: QoS, now: Timestamp) {
    let s = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: filter.parse::<midge_codec::TopicFilter>().unwrap().into(),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
    };
    client.send(Packet::Subscribe(s), now).unwrap();
    assert!(matches!(client.recv(now)[..], [Packet::SubAck(_)]));
}

pub fn publish(
    topic: &str,
    payload: &'static [u8],
    qos: QosPid,
    props: PublishProperties,
) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: Some(topic.parse().unwrap()),
        properties: props,
        payload: Bytes::from_static(payload),
    })
}

pub fn payloads(packets: &[Packet]) -> Vec<Bytes> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.payload.clone()),
            _ => None,
        })
        .collect()
}

pub fn t(secs: u64) -> Timestamp {
    Timestamp(1_000_000 + secs * 1000)
}

pub fn ms(secs: u64, millis: u64) -> Timestamp {
    Timestamp(1_000_000 + secs * 1000 + millis)
}
