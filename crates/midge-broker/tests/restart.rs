//! Durable state across a restart of the broker core: a broker is dropped and a new one is
//! built on the same store (`MemoryStore` here; the on-disk store runs the same flows in
//! its own tests). Sessions with their subscriptions, offline queues, QoS 2 packet ids in
//! both directions, retained messages, delayed wills and expiry deadlines come back; offline
//! backlogs stay on the store rather than in memory; and acknowledgements that promise
//! durability wait for the store.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use midge_broker::session::Notify;
use midge_broker::store::{MemoryStore, QueuedRecord, Recovered, Store, StoreError, StoreOp};
use midge_broker::{Broker, BrokerConfig, Timestamp};
use midge_codec::{
    ConnAck, Connect, Packet, PacketId, ProtocolVersion, PubAck, PublishProperties, QoS, QosPid,
    ReasonCode, Will, WillProperties,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn start(store: &Arc<MemoryStore>, now: Timestamp) -> Arc<Broker> {
    Arc::new(Broker::with_store(BrokerConfig::default(), store.clone(), now).unwrap())
}

/// A 5.0 CONNECT resuming a session that lasts an hour.
fn persistent(id: &str) -> Connect {
    let mut c = connect_packet(id, V5, false, 0);
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// Connects to a persistent session; returns the client, Session Present and the packets
/// that followed CONNACK.
fn resume(broker: &Arc<Broker>, id: &str, now: Timestamp) -> (Client, bool, Vec<Packet>) {
    let mut client = Client::new(broker, now);
    client
        .send(Packet::Connect(Box::new(persistent(id))), now)
        .unwrap();
    let mut packets = client.recv(now);
    match packets.remove(0) {
        Packet::ConnAck(ConnAck {
            code: ReasonCode::Success,
            session_present,
            ..
        }) => (client, session_present, packets),
        other => panic!("{other:?}"),
    }
}

fn publish_qos(c: &mut Client, topic: &str, payload: &'static [u8], qos: QosPid, now: Timestamp) {
    c.send(
        publish(topic, payload, qos, PublishProperties::default()),
        now,
    )
    .unwrap();
}

fn publishes(packets: &[Packet]) -> Vec<(Bytes, Option<PacketId>, bool)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.payload.clone(), p.qos.packet_id(), p.dup)),
            _ => None,
        })
        .collect()
}

#[test]
fn sessions_queues_and_retained_messages_survive_a_restart() {
    let store = Arc::new(MemoryStore::new());
    let broker = start(&store, t(0));
    let (mut sub, present, _) = resume(&broker, "sub", t(0));
    assert!(!present);
    subscribe(&mut sub, "home/+/light", QoS::ExactlyOnce, t(0));
    let _ = sub.send(disconnect_packet(), t(0));
    sub.conn.finish(
        &midge_broker::CloseReason::ClientDisconnect(ReasonCode::Success),
        t(0),
    );

    let mut publisher = connected(&broker, connect_packet("pub", V5, true, 0), t(1));
    publish_qos(
        &mut publisher,
        "home/a/light",
        b"one",
        QosPid::AtLeastOnce(pid(1)),
        t(1),
    );
    publish_qos(
        &mut publisher,
        "home/b/light",
        b"two",
        QosPid::ExactlyOnce(pid(2)),
        t(1),
    );
    let mut retained = publish(
        "home/c/light",
        b"kept",
        QosPid::AtLeastOnce(pid(3)),
        PublishProperties::default(),
    );
    if let Packet::Publish(p) = &mut retained {
        p.retain = true;
    }
    publisher.send(retained, t(1)).unwrap();
    publisher.recv(t(1));
    // Offline, the backlog is in the store, not in memory.
    let session = broker.session("sub").unwrap();
    assert_eq!(session.lock().queued_len(), 3);
    assert_eq!(session.lock().queued_in_memory(), 0);
    assert_eq!(store.queued("sub"), 3);
    drop(publisher);
    drop(session);
    drop(broker);

    // Restart.
    let broker = start(&store, t(10));
    assert_eq!(broker.session_count(), 1);
    assert_eq!(broker.retained_count(), 1);
    assert_eq!(broker.subscription_count(), 1);
    let (_sub, present, packets) = resume(&broker, "sub", t(10));
    assert!(present, "the session is resumed after the restart");
    let got = publishes(&packets);
    let payloads: Vec<_> = got.iter().map(|(p, _, _)| p.clone()).collect();
    assert_eq!(payloads, ["one", "two", "kept"], "in order, nothing lost");
}

#[test]
fn qos2_packet_ids_survive_in_both_directions() {
    let store = Arc::new(MemoryStore::new());
    let broker = start(&store, t(0));
    let (mut sub, _, _) = resume(&broker, "sub", t(0));
    subscribe(&mut sub, "q2/#", QoS::ExactlyOnce, t(0));
    let (mut publisher, _, _) = resume(&broker, "pub", t(0));
    // Inbound: PUBREC sent, PUBREL not yet received.
    publish_qos(
        &mut publisher,
        "q2/a",
        b"first",
        QosPid::ExactlyOnce(pid(7)),
        t(0),
    );
    assert!(matches!(publisher.recv(t(0))[..], [Packet::PubRec(_)]));
    publish_qos(
        &mut publisher,
        "q2/b",
        b"second",
        QosPid::ExactlyOnce(pid(8)),
        t(0),
    );
    publisher.recv(t(0));
    // Outbound: "first" released (PUBREC received), "second" published only.
    let got = publishes(&sub.recv(t(0)));
    assert_eq!(got.len(), 2);
    let first_pid = got[0].1.unwrap();
    let second_pid = got[1].1.unwrap();
    sub.send(Packet::PubRec(PubAck::new(first_pid)), t(0))
        .unwrap();
    assert!(matches!(sub.recv(t(0))[..], [Packet::PubRel(_)]));
    drop((sub, publisher, broker));

    let broker = start(&store, t(5));
    let (mut sub, present, packets) = resume(&broker, "sub", t(5));
    assert!(present);
    // PUBREL again for the released one, the other re-sent with DUP and its packet id.
    assert!(
        packets
            .iter()
            .any(|p| matches!(p, Packet::PubRel(a) if a.packet_id == first_pid)),
        "{packets:?}"
    );
    let got = publishes(&packets);
    assert_eq!(got, vec![(Bytes::from("second"), Some(second_pid), true)]);

    // The publisher re-sends its unreleased message: acknowledged, not delivered twice.
    let (mut publisher, present, _) = resume(&broker, "pub", t(5));
    assert!(present);
    let mut dup = publish(
        "q2/a",
        b"first",
        QosPid::ExactlyOnce(pid(7)),
        PublishProperties::default(),
    );
    if let Packet::Publish(p) = &mut dup {
        p.dup = true;
    }
    publisher.send(dup, t(5)).unwrap();
    assert!(matches!(publisher.recv(t(5))[..], [Packet::PubRec(_)]));
    publisher
        .send(Packet::PubRel(PubAck::new(pid(7))), t(5))
        .unwrap();
    match &publisher.recv(t(5))[..] {
        [Packet::PubComp(c)] => assert_eq!(c.code, ReasonCode::Success),
        other => panic!("{other:?}"),
    }
    assert!(
        publishes(&sub.recv(t(5))).is_empty(),
        "no duplicate delivery"
    );
}

#[test]
fn expiry_and_delayed_wills_run_on_across_a_restart() {
    let store = Arc::new(MemoryStore::new());
    let broker = start(&store, t(0));
    let (mut watcher, _, _) = resume(&broker, "watcher", t(0));
    subscribe(&mut watcher, "wills/#", QoS::AtLeastOnce, t(0));
    // A session that expires after 10 s, and a will due 30 s after its connection drops.
    let mut c = connect_packet("short", V5, true, 0);
    c.properties.session_expiry_interval = Some(10);
    let mut short = connected(&broker, c, t(0));
    short.conn.finish(
        &midge_broker::CloseReason::ConnectionLost("gone".into()),
        t(0),
    );
    let mut c = persistent("dying");
    c.will = Some(Will {
        topic: "wills/dying".try_into().unwrap(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(30),
            ..Default::default()
        },
    });
    let mut dying = connected(&broker, c, t(0));
    dying.conn.finish(
        &midge_broker::CloseReason::ConnectionLost("gone".into()),
        t(0),
    );
    assert_eq!(broker.pending_wills(), 1);
    watcher.conn.finish(
        &midge_broker::CloseReason::ConnectionLost("gone".into()),
        t(0),
    );
    drop((short, dying, watcher, broker));

    // The broker is down for 20 s: "short" expired meanwhile, the will is not due yet.
    let broker = start(&store, t(20));
    assert_eq!(broker.pending_wills(), 1);
    broker.tick(t(20));
    assert!(
        broker.session("short").is_none(),
        "expired while the broker was down"
    );
    assert!(broker.session("dying").is_some());
    broker.tick(t(30));
    assert_eq!(broker.pending_wills(), 0);
    let (watcher, _, packets) = resume(&broker, "watcher", t(31));
    let got = publishes(&packets);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "bye");
    drop((watcher, broker));
    // Nothing of the will or the expired session is left in the store.
    let broker = start(&store, t(40));
    assert_eq!(broker.pending_wills(), 0);
    assert!(broker.session("short").is_none());
}

#[test]
fn a_large_offline_backlog_stays_in_the_store_and_drains_in_order() {
    let store = Arc::new(MemoryStore::new());
    let broker = start(&store, t(0));
    let (mut sub, _, _) = resume(&broker, "backlog", t(0));
    subscribe(&mut sub, "b", QoS::AtLeastOnce, t(0));
    sub.conn.finish(
        &midge_broker::CloseReason::ConnectionLost("gone".into()),
        t(0),
    );
    let mut publisher = connected(&broker, connect_packet("pub", V5, true, 0), t(0));
    let payloads: Vec<&'static [u8]> = (0..900)
        .map(|i| &*Box::leak(format!("{i}").into_bytes().into_boxed_slice()))
        .collect();
    for (i, p) in payloads.iter().enumerate() {
        publish_qos(
            &mut publisher,
            "b",
            p,
            QosPid::AtLeastOnce(pid(i as u16 % 60000 + 1)),
            t(0),
        );
        publisher.recv(t(0));
    }
    let s = broker.session("backlog").unwrap();
    assert_eq!(s.lock().queued_len(), 900);
    assert_eq!(s.lock().queued_in_memory(), 0);
    drop(s);
    let (mut sub, _, first) = resume(&broker, "backlog", t(1));
    let mut got = Vec::new();
    let mut batch = publishes(&first);
    for _ in 0..200 {
        if batch.is_empty() {
            break;
        }
        for (payload, id, _) in batch {
            got.push(payload);
            sub.send(Packet::PubAck(PubAck::new(id.unwrap())), t(1))
                .unwrap();
        }
        batch = publishes(&sub.recv(t(1)));
    }
    let expected: Vec<Bytes> = payloads.iter().map(|p| Bytes::from_static(p)).collect();
    assert_eq!(got, expected);
    assert_eq!(
        store.queued("backlog"),
        0,
        "acknowledged messages leave the store"
    );
}

/// A store whose writes become durable only when the test says so.
#[derive(Debug, Default)]
struct SlowStore {
    inner: MemoryStore,
    durable: AtomicU64,
    waiting: Mutex<Vec<(u64, Arc<dyn Notify>)>>,
}

impl SlowStore {
    fn flush(&self) {
        self.durable.store(self.inner.submitted(), Ordering::SeqCst);
        let due: Vec<_> = std::mem::take(&mut *self.waiting.lock().unwrap());
        for (_, n) in due {
            n.notify();
        }
    }
}

impl Store for SlowStore {
    fn submit(&self, op: StoreOp) -> u64 {
        self.inner.submit(op)
    }
    fn submitted(&self) -> u64 {
        self.inner.submitted()
    }
    fn durable(&self) -> u64 {
        self.durable.load(Ordering::SeqCst)
    }
    fn notify_durable(&self, ticket: u64, notify: Arc<dyn Notify>) {
        if ticket <= self.durable() {
            notify.notify();
        } else {
            self.waiting.lock().unwrap().push((ticket, notify));
        }
    }
    fn read_queue(
        &self,
        id: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, QueuedRecord)>, StoreError> {
        self.inner.read_queue(id, from, max)
    }
    fn recover(&self, head: usize) -> Result<Recovered, StoreError> {
        self.inner.recover(head)
    }
}

#[test]
fn acknowledgements_wait_until_the_message_is_durable() {
    let store = Arc::new(SlowStore::default());
    let broker =
        Arc::new(Broker::with_store(BrokerConfig::default(), store.clone(), t(0)).unwrap());
    let mut sub = Client::new(&broker, t(0));
    sub.send(Packet::Connect(Box::new(persistent("sub"))), t(0))
        .unwrap();
    store.flush();
    sub.recv(t(0));
    subscribe(&mut sub, "d/#", QoS::AtLeastOnce, t(0));
    let mut publisher = connected(&broker, connect_packet("pub", V5, true, 0), t(0));
    publish_qos(
        &mut publisher,
        "d/1",
        b"x",
        QosPid::AtLeastOnce(pid(1)),
        t(0),
    );
    publish_qos(
        &mut publisher,
        "nobody/listens",
        b"y",
        QosPid::AtLeastOnce(pid(2)),
        t(0),
    );
    assert!(
        publisher.recv(t(0)).is_empty(),
        "no PUBACK before the message is on disk"
    );
    let wakeups = publisher.wakeups.0.load(Ordering::Relaxed);
    store.flush();
    assert!(
        publisher.wakeups.0.load(Ordering::Relaxed) > wakeups,
        "the publisher is woken"
    );
    let acks: Vec<u16> = publisher
        .recv(t(0))
        .iter()
        .map(|p| match p {
            Packet::PubAck(a) => a.packet_id.get(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acks, [1, 2], "in order, the second held behind the first");
    // A QoS 0 subscriber-less publish needs no waiting.
    publish_qos(
        &mut publisher,
        "nobody/listens",
        b"z",
        QosPid::AtLeastOnce(pid(3)),
        t(0),
    );
    assert_eq!(publisher.recv(t(0)).len(), 1);
}

fn disconnect_packet() -> Packet {
    Packet::Disconnect(midge_codec::Disconnect {
        code: ReasonCode::Success,
        properties: Default::default(),
    })
}
