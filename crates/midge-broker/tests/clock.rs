//! Time-dependent behaviour of the broker core on a simulated clock: connect timeout,
//! keep-alive, will delay, session expiry and message expiry. No sockets, no sleeping.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use midge_broker::{Broker, BrokerConfig, CloseReason, Timestamp};
use midge_codec::{
    Disconnect, DisconnectProperties, Packet, PacketId, ProtocolVersion, PubAck, Publish,
    PublishProperties, QoS, QosPid, ReasonCode, Will, WillProperties,
};

#[test]
fn connect_timeout_closes_a_silent_socket() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut c = Client::new(&broker, t(0));
    assert_eq!(c.conn.next_deadline(), Some(t(10)));
    assert!(c.conn.handle_timeout(ms(9, 999)).is_ok());
    assert_eq!(
        c.conn.handle_timeout(t(10)),
        Err(CloseReason::ConnectTimeout)
    );
}

#[test]
fn keep_alive_expires_after_one_and_a_half_times_and_publishes_the_will() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut watcher = connected(
        &broker,
        connect_packet("w", ProtocolVersion::V311, true, 0),
        t(0),
    );
    subscribe(&mut watcher, "will/#", QoS::AtLeastOnce, t(0));

    let mut c = connect_packet("dev", ProtocolVersion::V5, true, 10);
    c.will = Some(Will {
        topic: "will/dev".parse().unwrap(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let mut dev = connected(&broker, c, t(0));
    // A PINGREQ at 14 s moves the deadline to 29 s.
    dev.send(Packet::PingReq, t(14)).unwrap();
    assert_eq!(dev.recv(t(14)), vec![Packet::PingResp]);
    assert_eq!(dev.conn.next_deadline(), Some(t(29)));
    assert!(dev.conn.handle_timeout(ms(28, 999)).is_ok());
    let reason = dev.conn.handle_timeout(t(29)).unwrap_err();
    assert_eq!(reason, CloseReason::KeepAliveTimeout);
    // 5.0: DISCONNECT 0x8D is sent before closing.
    assert!(matches!(
        dev.recv(t(29))[..],
        [Packet::Disconnect(Disconnect {
            code: ReasonCode::KeepAliveTimeout,
            ..
        })]
    ));
    dev.conn.finish(&reason, t(29));
    assert_eq!(
        payloads(&watcher.recv(t(29))),
        vec![Bytes::from_static(b"gone")]
    );
}

#[test]
fn server_keep_alive_caps_a_5_0_client() {
    let config = BrokerConfig {
        max_keep_alive_secs: 30,
        ..BrokerConfig::default()
    };
    let broker = Arc::new(Broker::new(config));
    let mut c = Client::new(&broker, t(0));
    c.send(
        Packet::Connect(Box::new(connect_packet("k", ProtocolVersion::V5, true, 0))),
        t(0),
    )
    .unwrap();
    match &c.recv(t(0))[..] {
        [Packet::ConnAck(ack)] => assert_eq!(ack.properties.server_keep_alive, Some(30)),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.conn.next_deadline(), Some(t(45)));
}

fn will_client(broker: &Arc<Broker>, delay: u32, expiry: u32, now: Timestamp) -> Client {
    let mut c = connect_packet("delayed", ProtocolVersion::V5, false, 0);
    c.properties.session_expiry_interval = Some(expiry);
    c.will = Some(Will {
        topic: "will/delayed".parse().unwrap(),
        payload: Bytes::from_static(b"late"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(delay),
            ..Default::default()
        },
    });
    connected(broker, c, now)
}

#[test]
fn will_delay_publishes_after_the_delay() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut watcher = connected(
        &broker,
        connect_packet("w", ProtocolVersion::V5, true, 0),
        t(0),
    );
    subscribe(&mut watcher, "will/#", QoS::AtMostOnce, t(0));
    let mut dev = will_client(&broker, 5, 100, t(0));
    dev.conn
        .finish(&CloseReason::ConnectionLost("reset".into()), t(1));
    assert_eq!(broker.pending_wills(), 1);
    assert_eq!(broker.next_deadline(), Some(t(6)));
    broker.tick(ms(5, 999));
    assert!(payloads(&watcher.recv(ms(5, 999))).is_empty());
    broker.tick(t(6));
    assert_eq!(
        payloads(&watcher.recv(t(6))),
        vec![Bytes::from_static(b"late")]
    );
}

#[test]
fn reconnect_within_the_will_delay_cancels_the_will() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut watcher = connected(
        &broker,
        connect_packet("w", ProtocolVersion::V5, true, 0),
        t(0),
    );
    subscribe(&mut watcher, "will/#", QoS::AtMostOnce, t(0));
    let mut dev = will_client(&broker, 5, 100, t(0));
    dev.conn
        .finish(&CloseReason::ConnectionLost("reset".into()), t(1));
    let _again = will_client(&broker, 5, 100, t(3));
    assert_eq!(broker.pending_wills(), 0);
    broker.tick(t(10));
    assert!(payloads(&watcher.recv(t(10))).is_empty());
}

#[test]
fn will_is_published_when_the_session_expires_before_the_delay() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut watcher = connected(
        &broker,
        connect_packet("w", ProtocolVersion::V5, true, 0),
        t(0),
    );
    subscribe(&mut watcher, "will/#", QoS::AtMostOnce, t(0));
    let mut dev = will_client(&broker, 60, 2, t(0));
    dev.conn
        .finish(&CloseReason::ConnectionLost("reset".into()), t(1));
    broker.tick(t(3));
    assert_eq!(
        payloads(&watcher.recv(t(3))),
        vec![Bytes::from_static(b"late")]
    );
    assert!(
        broker.session("delayed").is_none(),
        "session expired at 3 s"
    );
}

#[test]
fn normal_disconnect_discards_the_will_and_0x04_sends_it() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut watcher = connected(
        &broker,
        connect_packet("w", ProtocolVersion::V5, true, 0),
        t(0),
    );
    subscribe(&mut watcher, "will/#", QoS::AtMostOnce, t(0));
    for (code, expected) in [
        (ReasonCode::Success, 0),
        (ReasonCode::DisconnectWithWillMessage, 1),
    ] {
        let mut dev = will_client(&broker, 0, 0, t(0));
        let reason = dev
            .send(
                Packet::Disconnect(Disconnect {
                    code,
                    properties: DisconnectProperties::default(),
                }),
                t(1),
            )
            .unwrap_err();
        dev.conn.finish(&reason, t(1));
        assert_eq!(payloads(&watcher.recv(t(1))).len(), expected, "{code}");
    }
}

#[test]
fn session_expiry_removes_an_offline_session_and_its_queue() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut c = connect_packet("s", ProtocolVersion::V5, false, 0);
    c.properties.session_expiry_interval = Some(10);
    let mut sub = connected(&broker, c.clone(), t(0));
    subscribe(&mut sub, "q/#", QoS::AtLeastOnce, t(0));
    sub.conn
        .finish(&CloseReason::ConnectionLost("gone".into()), t(1));
    let mut publisher = connected(
        &broker,
        connect_packet("p", ProtocolVersion::V5, true, 0),
        t(1),
    );
    publisher
        .send(
            publish(
                "q/1",
                b"m1",
                QosPid::AtLeastOnce(PacketId::new(1).unwrap()),
                Default::default(),
            ),
            t(2),
        )
        .unwrap();
    broker.tick(ms(10, 999));
    assert!(broker.session("s").is_some(), "not yet expired at 10.999 s");
    // Reconnecting before expiry resumes the session with its queued message.
    let mut resumed = Client::new(&broker, t(5));
    resumed
        .send(Packet::Connect(Box::new(c.clone())), t(5))
        .unwrap();
    let packets = resumed.recv(t(5));
    assert!(matches!(&packets[0], Packet::ConnAck(a) if a.session_present));
    assert_eq!(payloads(&packets), vec![Bytes::from_static(b"m1")]);
    resumed
        .conn
        .finish(&CloseReason::ConnectionLost("gone".into()), t(6));
    broker.tick(ms(15, 999));
    assert!(broker.session("s").is_some());
    broker.tick(t(16));
    assert!(
        broker.session("s").is_none(),
        "expired 10 s after the last disconnect"
    );
    assert_eq!(broker.subscription_count(), 0);
}

#[test]
fn expired_messages_are_dropped_from_the_queue_and_the_interval_is_reduced() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let mut c = connect_packet("s", ProtocolVersion::V5, false, 0);
    c.properties.session_expiry_interval = Some(1000);
    let mut sub = connected(&broker, c.clone(), t(0));
    subscribe(&mut sub, "e/#", QoS::AtLeastOnce, t(0));
    sub.conn
        .finish(&CloseReason::ConnectionLost("gone".into()), t(0));
    let mut publisher = connected(
        &broker,
        connect_packet("p", ProtocolVersion::V5, true, 0),
        t(0),
    );
    let expiring = |secs| PublishProperties {
        message_expiry_interval: Some(secs),
        ..Default::default()
    };
    publisher
        .send(
            publish(
                "e/short",
                b"short",
                QosPid::AtLeastOnce(PacketId::new(1).unwrap()),
                expiring(5),
            ),
            t(0),
        )
        .unwrap();
    publisher
        .send(
            publish(
                "e/long",
                b"long",
                QosPid::AtLeastOnce(PacketId::new(2).unwrap()),
                expiring(60),
            ),
            t(0),
        )
        .unwrap();
    let mut resumed = Client::new(&broker, t(20));
    resumed.send(Packet::Connect(Box::new(c)), t(20)).unwrap();
    let packets = resumed.recv(t(20));
    let publishes: Vec<&Publish> = packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(publishes.len(), 1, "the 5 s message expired while queued");
    assert_eq!(publishes[0].payload, Bytes::from_static(b"long"));
    assert_eq!(publishes[0].properties.message_expiry_interval, Some(40));
}

#[test]
fn inflight_messages_are_resent_with_dup_after_reconnect() {
    let broker = Arc::new(Broker::new(BrokerConfig::default()));
    let c = connect_packet("r", ProtocolVersion::V311, false, 0);
    let mut sub = connected(&broker, c.clone(), t(0));
    subscribe(&mut sub, "r", QoS::ExactlyOnce, t(0));
    let mut publisher = connected(
        &broker,
        connect_packet("p", ProtocolVersion::V311, true, 0),
        t(0),
    );
    publisher
        .send(
            publish(
                "r",
                b"x",
                QosPid::ExactlyOnce(PacketId::new(9).unwrap()),
                Default::default(),
            ),
            t(0),
        )
        .unwrap();
    let first = sub.recv(t(0));
    let Some(Packet::Publish(p)) = first.first() else {
        panic!("{first:?}")
    };
    assert!(!p.dup);
    let pid = p.qos.packet_id().unwrap();
    sub.conn
        .finish(&CloseReason::ConnectionLost("gone".into()), t(1));
    let mut again = Client::new(&broker, t(2));
    again
        .send(Packet::Connect(Box::new(c.clone())), t(2))
        .unwrap();
    let packets = again.recv(t(2));
    match &packets[..] {
        [Packet::ConnAck(a), Packet::Publish(p)] => {
            assert!(a.session_present);
            assert!(p.dup);
            assert_eq!(p.qos.packet_id(), Some(pid));
        }
        other => panic!("{other:?}"),
    }
    // PUBREC, then after another reconnect only PUBREL is resent.
    again.send(Packet::PubRec(PubAck::new(pid)), t(3)).unwrap();
    assert_eq!(again.recv(t(3)), vec![Packet::PubRel(PubAck::new(pid))]);
    again
        .conn
        .finish(&CloseReason::ConnectionLost("gone".into()), t(4));
    let mut third = Client::new(&broker, t(5));
    third.send(Packet::Connect(Box::new(c)), t(5)).unwrap();
    let packets = third.recv(t(5));
    assert!(matches!(&packets[..], [Packet::ConnAck(_), Packet::PubRel(r)] if r.packet_id == pid));
}
