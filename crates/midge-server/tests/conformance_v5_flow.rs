//! Black-box conformance of midge to MQTT 5.0 over real TCP: the 5.0 features around
//! PUBLISH: topic aliases (3.3.2.3.4), flow control with Receive Maximum (4.9), Maximum
//! Packet Size in both directions (3.1.2.11.4, 3.2.2.3.6) and Message Expiry (3.3.2.3.3).

mod common;

use std::time::Duration;

use common::*;
use midge_codec::{Packet, PubAck, Publish, PublishProperties, ReasonCode};

fn persistent(id: &str, expiry: u32) -> midge_codec::Connect {
    connect_v5_with(id, |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(expiry);
    })
}

fn with_props(mut p: Publish, f: impl FnOnce(&mut PublishProperties)) -> Publish {
    f(&mut p.properties);
    p
}

// ---------------------------------------------------------------------------------------------
// 3.3.2.3.4 Topic Alias
// ---------------------------------------------------------------------------------------------
mod topic_alias {
    use super::*;

    fn aliased(t: Option<&str>, alias: u16, payload: &[u8]) -> Publish {
        Publish {
            topic: t.map(topic),
            ..with_props(publish("unused", Q1, alias, payload), |pp| {
                pp.topic_alias = Some(nz16(alias))
            })
        }
    }

    /// Section 3.3.2.3.4: a client sets an alias with a topic, then publishes with an empty
    /// topic and the alias; an alias can be remapped. Subscribers get the full topic and no
    /// alias.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_to_broker_aliases() {
        let s = start_default().await;
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("alias/#", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        for (t, payload) in [
            (Some("alias/one"), &b"set"[..]),
            (None, b"use"),
            (Some("alias/two"), b"remap"),
            (None, b"use again"),
        ] {
            p.publish_flow(aliased(t, 1, payload)).await;
        }
        for (t, payload) in [
            ("alias/one", &b"set"[..]),
            ("alias/one", b"use"),
            ("alias/two", b"remap"),
            ("alias/two", b"use again"),
        ] {
            let m = sub.recv_publish_acked().await;
            assert_eq!(m.topic, Some(topic(t)));
            assert_eq!(&m.payload[..], payload);
            assert_eq!(m.properties.topic_alias, None, "alias not forwarded");
        }
    }

    /// [MQTT-3.3.2-9] An alias above the Topic Alias Maximum: DISCONNECT 0x94 with a reason
    /// string; alias 0 likewise ([MQTT-3.3.2-8]).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alias_above_maximum_or_zero() {
        let mut cfg = config();
        cfg.broker.topic_alias_maximum = 2;
        let s = start(cfg).await;
        let mut by = Bystander::new(s.addr).await;
        let (mut p, ack) = Client::connect_ok(s.addr, connect_packet(V5, "p")).await;
        assert_eq!(ack.properties.topic_alias_maximum, Some(2));
        p.publish_flow(aliased(Some("a/t"), 2, b"ok")).await;
        p.send_publish(aliased(Some("a/t"), 3, b"too high")).await;
        let d = p.expect_disconnect(ReasonCode::TopicAliasInvalid).await;
        assert!(
            d.properties.reason_string.is_some(),
            "reason string on error"
        );
        let mut p = Client::v5(s.addr, "p0").await;
        // Topic alias property 0x23 with value 0.
        p.send_raw(&frame(
            0x30,
            &[0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x00, b'x'],
        ))
        .await;
        p.expect_disconnect(ReasonCode::TopicAliasInvalid).await;
        by.check().await;
    }

    /// Topic Alias Maximum 0 in the config: CONNACK does not offer aliases and any alias
    /// is invalid.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aliases_disabled() {
        let mut cfg = config();
        cfg.broker.topic_alias_maximum = 0;
        let s = start(cfg).await;
        let (mut p, ack) = Client::connect_ok(s.addr, connect_packet(V5, "p")).await;
        assert_eq!(ack.properties.topic_alias_maximum, None, "absent means 0");
        p.send_publish(aliased(Some("a/t"), 1, b"x")).await;
        p.expect_disconnect(ReasonCode::TopicAliasInvalid).await;
    }

    /// Section 3.3.2.3.4: an empty topic with an alias never set is a protocol error; aliases do
    /// not survive the connection ([MQTT-3.3.2-7]).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_alias_and_per_connection_scope() {
        let s = start_default().await;
        let (mut p, _) = Client::connect_ok(s.addr, persistent("scoped", 60)).await;
        p.publish_flow(aliased(Some("scope/t"), 1, b"set")).await;
        p.disconnect().await;
        let (mut p, ack) = Client::connect_ok(s.addr, persistent("scoped", 60)).await;
        assert!(ack.session_present);
        p.send_publish(aliased(None, 1, b"use")).await;
        p.expect_disconnect(ReasonCode::ProtocolError).await;
    }

    /// A retained message published through an alias is stored under its topic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retained_through_alias() {
        let s = start_default().await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish_flow(aliased(Some("ra/t"), 1, b"first")).await;
        p.publish_flow(Publish {
            retain: true,
            ..aliased(None, 1, b"kept")
        })
        .await;
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("ra/#", Q1).await;
        let m = sub.recv_publish_acked().await;
        assert!(m.retain);
        assert_eq!(
            (m.topic, &m.payload[..]),
            (Some(topic("ra/t")), &b"kept"[..])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4.9 Flow control (Receive Maximum) and Maximum Packet Size
// ---------------------------------------------------------------------------------------------
mod flow_control {
    use super::*;

    /// [MQTT-3.3.4-7] The broker never has more unacknowledged QoS 1/2
    /// messages towards a client than its Receive Maximum; a QoS 2 message counts until
    /// PUBCOMP.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_respects_client_receive_maximum() {
        let s = start_default().await;
        let cp = connect_v5_with("slow", |c| c.properties.receive_maximum = Some(nz16(2)));
        let (mut sub, _) = Client::connect_ok(s.addr, cp).await;
        sub.subscribe("rm/#", Q2).await;
        let mut p = Client::v5(s.addr, "pub").await;
        for i in 0..5u8 {
            let qos = if i % 2 == 0 { Q1 } else { Q2 };
            p.publish(&format!("rm/{i}"), qos, &[i]).await;
        }
        let m0 = sub.recv_publish().await;
        let m1 = sub.recv_publish().await;
        sub.expect_nothing().await;
        assert_eq!((m0.payload[0], m1.payload[0]), (0, 1));
        // PUBREC alone does not free the slot of a QoS 2 message.
        let id1 = m1.qos.packet_id().expect("QoS 2");
        sub.send(&Packet::PubRec(PubAck::new(id1))).await;
        assert!(matches!(sub.recv().await, Packet::PubRel(r) if r.packet_id == id1));
        sub.expect_nothing().await;
        sub.send(&Packet::PubComp(PubAck::new(id1))).await;
        let m2 = sub.recv_publish().await;
        assert_eq!(m2.payload[0], 2);
        sub.expect_nothing().await;
        sub.ack_publish(&m0).await;
        let m3 = sub.recv_publish().await;
        assert_eq!(m3.payload[0], 3);
        sub.ack_publish(&m2).await;
        sub.ack_publish(&m3).await;
        assert_eq!(sub.recv_publish_acked().await.payload[0], 4);
        sub.expect_nothing().await;
    }

    /// [MQTT-3.3.4-9] and section 3.2.2.3.3: a client sending more unacknowledged QoS 2
    /// PUBLISH than the broker's Receive Maximum gets DISCONNECT 0x93; within the limit all
    /// is well.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_exceeding_receive_maximum() {
        let mut cfg = config();
        cfg.broker.receive_maximum = 2;
        let s = start(cfg).await;
        let mut by = Bystander::new(s.addr).await;
        let (mut p, connack) = Client::connect_ok(s.addr, connect_packet(V5, "eager")).await;
        assert_eq!(connack.properties.receive_maximum, Some(nz16(2)));
        for id in 1..=2 {
            p.send_publish(publish("rx", Q2, id, b"x")).await;
            assert!(matches!(p.recv().await, Packet::PubRec(_)));
        }
        // Releasing one makes room for one more.
        p.send(&Packet::PubRel(ack(1))).await;
        assert!(matches!(p.recv().await, Packet::PubComp(_)));
        p.send_publish(publish("rx", Q2, 3, b"x")).await;
        assert!(matches!(p.recv().await, Packet::PubRec(_)));
        p.send_publish(publish("rx", Q2, 4, b"one too many")).await;
        p.expect_disconnect(ReasonCode::ReceiveMaximumExceeded)
            .await;
        by.check().await;
    }

    /// [MQTT-3.2.2-15] A packet larger than the broker's Maximum Packet Size: DISCONNECT
    /// 0x95; a packet of exactly the maximum is accepted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn packet_larger_than_broker_maximum() {
        let mut cfg = config();
        cfg.broker.max_packet_size = 128;
        let s = start(cfg).await;
        let mut by = Bystander::new(s.addr).await;
        let mut p = Client::v5(s.addr, "big").await;
        // 1 + 1 (remaining length) + 3 (topic) + 2 (id) + 1 (properties) + payload = 128.
        let exact = publish("t", Q1, 1, &[b'x'; 120]);
        assert_eq!(bytes_of(&Packet::Publish(exact.clone()), V5).len(), 128);
        p.publish_flow(exact).await;
        p.send_publish(publish("t", Q1, 2, &[b'x'; 121])).await;
        p.expect_disconnect(ReasonCode::PacketTooLarge).await;
        by.check().await;
    }

    /// [MQTT-3.1.2-25] A message larger than the client's Maximum Packet Size is not sent
    /// to it (and does not block the messages after it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn message_larger_than_client_maximum_not_sent() {
        let s = start_default().await;
        let cp = connect_v5_with("small", |c| {
            c.properties.maximum_packet_size = Some(nz32(64));
            c.properties.receive_maximum = Some(nz16(1));
        });
        let (mut small, _) = Client::connect_ok(s.addr, cp).await;
        small.subscribe("mps/#", Q1).await;
        let mut big = Client::v5(s.addr, "big").await;
        big.subscribe("mps/#", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("mps/big", Q1, &[7u8; 100]).await;
        p.publish("mps/small", Q1, b"fits").await;
        let m = small.recv_publish_acked().await;
        assert_eq!(m.topic, Some(topic("mps/small")), "the big one was skipped");
        small.expect_nothing().await;
        assert_eq!(big.recv_publish_acked().await.payload.len(), 100);
        assert_eq!(&big.recv_publish_acked().await.payload[..], b"fits");
    }

    /// [MQTT-3.1.2-25] A retained message larger than the client's Maximum Packet Size is
    /// not sent on subscribe either.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retained_larger_than_client_maximum_not_sent() {
        let s = start_default().await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish_flow(retained("rbig/a", Q1, 1, &[1u8; 200])).await;
        p.publish_flow(retained("rbig/b", Q1, 2, b"small")).await;
        let cp = connect_v5_with("tiny", |c| {
            c.properties.maximum_packet_size = Some(nz32(100))
        });
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.subscribe("rbig/+", Q1).await;
        let m = c.recv_publish_acked().await;
        assert_eq!(m.topic, Some(topic("rbig/b")));
        c.expect_nothing().await;
    }

    /// [MQTT-4.9.0-2] [MQTT-3.3.4-7] Receive Maximum is per connection: when a persistent
    /// session reconnects with a smaller Receive Maximum than the messages still
    /// unacknowledged, the broker re-sends only as many as the new maximum allows, the rest
    /// as acknowledgements free the quota, all with DUP set, their original ids and order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resend_after_reconnect_respects_new_receive_maximum() {
        let s = start_default().await;
        let (mut sub, _) = Client::connect_ok(s.addr, persistent("shrinking", 60)).await;
        sub.subscribe("shrink", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        for i in 0..4u8 {
            p.publish("shrink", Q1, &[i]).await;
        }
        let mut first = Vec::new();
        for _ in 0..4 {
            first.push(sub.recv_publish().await);
        }
        sub.drop_connection();
        let mut cp = persistent("shrinking", 60);
        cp.properties.receive_maximum = Some(nz16(2));
        let (mut sub, ack) = Client::connect_ok(s.addr, cp).await;
        assert!(ack.session_present);
        let a = sub.recv_publish().await;
        let b = sub.recv_publish().await;
        sub.expect_nothing().await;
        sub.ack_publish(&a).await;
        let c = sub.recv_publish().await;
        sub.expect_nothing().await;
        sub.ack_publish(&b).await;
        sub.ack_publish(&c).await;
        let d = sub.recv_publish_acked().await;
        for (again, orig) in [a, b, c, d].iter().zip(&first) {
            assert!(again.dup, "re-sent with DUP");
            assert_eq!(again.qos, orig.qos, "original packet id");
            assert_eq!(again.payload, orig.payload, "original order");
        }
        sub.expect_nothing().await;
    }

    /// [MQTT-3.1.2-24] [MQTT-3.14.2-3] The broker does not send a packet larger than the
    /// client's Maximum Packet Size: a DISCONNECT leaves out its reason string when it would
    /// not fit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disconnect_reason_string_fits_client_maximum() {
        let s = start_default().await;
        let cp = connect_v5_with("tight", |c| {
            c.properties.maximum_packet_size = Some(nz32(16))
        });
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.send(&Packet::Connect(Box::new(connect_packet(V5, "tight"))))
            .await;
        let frame = c.recv_frame().await;
        assert!(
            frame.len() <= 16,
            "DISCONNECT of {} bytes: {frame:02x?}",
            frame.len()
        );
        assert_eq!(&frame[..1], [0xE0]);
        assert_eq!(frame[2], ReasonCode::ProtocolError.as_u8());
        c.expect_closed().await;
    }

    /// [MQTT-3.2.2-19] A refusing CONNACK leaves out its reason string when it would exceed
    /// the client's Maximum Packet Size.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connack_reason_string_fits_client_maximum() {
        let s = start_default().await;
        let cp = connect_v5_with("tight", |c| {
            c.properties.maximum_packet_size = Some(nz32(16));
            c.properties.authentication_method = Some(mstr("GS2-KRB5"));
        });
        let mut c = Client::open(s.addr, V5).await;
        c.send(&Packet::Connect(Box::new(cp))).await;
        let frame = c.recv_frame().await;
        assert!(
            frame.len() <= 16,
            "CONNACK of {} bytes: {frame:02x?}",
            frame.len()
        );
        assert_eq!(frame[3], ReasonCode::BadAuthenticationMethod.as_u8());
        c.expect_closed().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3.3.2.3.3 Message Expiry Interval
// ---------------------------------------------------------------------------------------------
mod expiry {
    use super::*;

    /// [MQTT-3.3.2-5] [MQTT-3.3.2-6] Expired messages are dropped from the queue of an
    /// offline session; the others are forwarded with the interval reduced by the time they
    /// waited.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_dropped_remaining_reduced() {
        let s = start_default().await;
        let (mut sub, _) = Client::connect_ok(s.addr, persistent("late", 60)).await;
        sub.subscribe("mx/#", Q1).await;
        sub.disconnect().await;
        let mut p = Client::v5(s.addr, "pub").await;
        let exp = |t: &str, secs: Option<u32>| {
            with_props(publish(t, Q1, 1, b"x"), |pp| {
                pp.message_expiry_interval = secs
            })
        };
        p.publish_flow(exp("mx/short", Some(1))).await;
        p.publish_flow(exp("mx/long", Some(10))).await;
        p.publish_flow(exp("mx/forever", None)).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let (mut sub, _) = Client::connect_ok(s.addr, persistent("late", 60)).await;
        let long = sub.recv_publish_acked().await;
        assert_eq!(
            long.topic,
            Some(topic("mx/long")),
            "the expired one was dropped"
        );
        let left = long.properties.message_expiry_interval.expect("interval");
        assert!(
            (7..=8).contains(&left),
            "interval reduced by the wait: {left}"
        );
        let forever = sub.recv_publish_acked().await;
        assert_eq!(forever.topic, Some(topic("mx/forever")));
        assert_eq!(forever.properties.message_expiry_interval, None);
        sub.expect_nothing().await;
    }

    /// An online subscriber gets the interval as published (nothing waited).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwarded_immediately_keeps_interval() {
        let s = start_default().await;
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("mx", Q0).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish_flow(with_props(publish("mx", Q0, 0, b"x"), |pp| {
            pp.message_expiry_interval = Some(60)
        }))
        .await;
        let m = sub.recv_publish().await;
        assert_eq!(m.properties.message_expiry_interval, Some(60));
    }

    /// A retained message expires too: a later subscriber does not get it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retained_message_expires() {
        let s = start_default().await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish_flow(with_props(retained("mx/r", Q0, 0, b"x"), |pp| {
            pp.message_expiry_interval = Some(1)
        }))
        .await;
        let mut early = Client::v5(s.addr, "early").await;
        early.subscribe("mx/r", Q0).await;
        assert!(early.recv_publish().await.retain);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut late = Client::v5(s.addr, "late").await;
        late.subscribe("mx/r", Q0).await;
        late.expect_nothing().await;
    }
}
