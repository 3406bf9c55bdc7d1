//! Backpressure: QoS 1/2 messages for a connected subscriber whose queue is full are not
//! dropped; the publisher's further PUBLISH packets wait, unacknowledged, until it drains.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use midge_broker::{Broker, BrokerConfig};
use midge_codec::{Packet, PacketId, ProtocolVersion, PubAck, QoS, QosPid};

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

#[test]
fn a_full_queue_pauses_the_publisher_instead_of_dropping() {
    let config = BrokerConfig {
        max_queued_messages: 4,
        max_inflight: 1,
        ..BrokerConfig::default()
    };
    let broker = Arc::new(Broker::new(config));
    let mut sub = connected(
        &broker,
        connect_packet("sub", ProtocolVersion::V311, true, 0),
        t(0),
    );
    subscribe(&mut sub, "bp", QoS::AtLeastOnce, t(0));
    let mut publisher = connected(
        &broker,
        connect_packet("pub", ProtocolVersion::V311, true, 0),
        t(0),
    );

    // 1 goes in flight at the first poll; the queue then takes 4 more, the next one is
    // queued over the limit (congested) and everything after it waits unacknowledged.
    sub.recv(t(0));
    for n in 1..=10u16 {
        publisher
            .send(
                publish("bp", b"x", QosPid::AtLeastOnce(pid(n)), Default::default()),
                t(1),
            )
            .unwrap();
        if n == 1 {
            assert_eq!(sub.recv(t(1)).len(), 1, "first message in flight");
        }
    }
    let acks: Vec<Packet> = publisher.recv(t(1));
    assert_eq!(
        acks.len(),
        6,
        "five queued plus one over the limit are acknowledged: {acks:?}"
    );
    assert!(broker.metrics.dropped_queue_full.load(Ordering::Relaxed) == 0);

    // The subscriber acknowledges and drains; the publisher is woken and its stashed
    // publishes go through in order.
    let before = publisher.wakeups.0.load(Ordering::Relaxed);
    let mut received = 1;
    let mut next_ack = 1u16;
    while received < 10 {
        sub.send(Packet::PubAck(PubAck::new(pid(next_ack))), t(2))
            .unwrap();
        next_ack += 1;
        received += sub.recv(t(2)).len();
        publisher.recv(t(2));
    }
    assert!(
        publisher.wakeups.0.load(Ordering::Relaxed) > before,
        "publisher was woken"
    );
    assert_eq!(broker.metrics.dropped_queue_full.load(Ordering::Relaxed), 0);
}

#[test]
fn offline_subscribers_still_apply_the_drop_policy() {
    let config = BrokerConfig {
        max_queued_messages: 2,
        ..BrokerConfig::default()
    };
    let broker = Arc::new(Broker::new(config));
    let mut sub = connected(
        &broker,
        connect_packet("s", ProtocolVersion::V311, false, 0),
        t(0),
    );
    subscribe(&mut sub, "off", QoS::AtLeastOnce, t(0));
    sub.conn.finish(
        &midge_broker::CloseReason::ConnectionLost("gone".into()),
        t(0),
    );
    let mut publisher = connected(
        &broker,
        connect_packet("p", ProtocolVersion::V311, true, 0),
        t(0),
    );
    for n in 1..=5u16 {
        publisher
            .send(
                publish("off", b"x", QosPid::AtLeastOnce(pid(n)), Default::default()),
                t(1),
            )
            .unwrap();
    }
    assert_eq!(
        publisher.recv(t(1)).len(),
        5,
        "never paused for an offline session"
    );
    assert_eq!(broker.metrics.dropped_queue_full.load(Ordering::Relaxed), 3);
}
