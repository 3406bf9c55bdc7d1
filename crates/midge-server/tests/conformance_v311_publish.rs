//! Black-box conformance of midge to MQTT 3.1.1 over real TCP: PUBLISH and the QoS flows,
//! SUBSCRIBE/UNSUBSCRIBE with topic matching and shared subscriptions, and retained
//! messages (chapters 3.3 to 3.11, 4.3, 4.4 and 4.7 of the 3.1.1 specification).

mod common;

use common::*;
use midge_codec::{Packet, QosPid, ReasonCode};

// ---------------------------------------------------------------------------------------------
// 3.3 - 3.7 PUBLISH and its acknowledgements (4.3 QoS flows)
// ---------------------------------------------------------------------------------------------
mod publish {
    use super::*;

    /// QoS 0 in both directions: exact bytes of the forwarded PUBLISH.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos0_exact_bytes() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("a/b", Q0).await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.send_raw(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'])
            .await;
        assert_eq!(
            sub.recv_frame().await,
            [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i']
        );
    }

    /// Section 4.3.2: QoS 1: PUBACK `40 02 id` to the publisher; the subscriber gets QoS 1 with
    /// a packet id and acknowledges it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos1_flow() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("q1", Q1).await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.send_raw(&[0x32, 0x07, 0x00, 0x02, b'q', b'1', 0x12, 0x34, b'x'])
            .await;
        assert_eq!(p.recv_frame().await, [0x40, 0x02, 0x12, 0x34]);
        let got = sub.recv_publish().await;
        assert!(matches!(got.qos, QosPid::AtLeastOnce(_)), "{got:?}");
        assert!(!got.dup && !got.retain);
        sub.ack_publish(&got).await;
        sub.expect_nothing().await;
    }

    /// Section 4.3.3: QoS 2: PUBREC, PUBREL, PUBCOMP on both sides, exact bytes on the
    /// publisher side.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos2_flow() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("q2", Q2).await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.send_raw(&[0x34, 0x07, 0x00, 0x02, b'q', b'2', 0x00, 0x09, b'y'])
            .await;
        assert_eq!(p.recv_frame().await, [0x50, 0x02, 0x00, 0x09]);
        p.send_raw(&[0x62, 0x02, 0x00, 0x09]).await;
        assert_eq!(p.recv_frame().await, [0x70, 0x02, 0x00, 0x09]);
        let got = sub.recv_publish().await;
        let QosPid::ExactlyOnce(id) = got.qos else {
            panic!("expected QoS 2, got {got:?}");
        };
        sub.send(&Packet::PubRec(midge_codec::PubAck::new(id)))
            .await;
        let rel = sub.recv_frame().await;
        assert_eq!(rel, [0x62, 0x02, (id.get() >> 8) as u8, id.get() as u8]);
        sub.send(&Packet::PubComp(midge_codec::PubAck::new(id)))
            .await;
        sub.expect_nothing().await;
    }

    /// [MQTT-4.3.3-2] A duplicate QoS 2 PUBLISH before PUBREL is acknowledged again with
    /// PUBREC but not delivered twice; after PUBREL the same id is a new message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos2_duplicate_before_pubrel_not_delivered_twice() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("dup", Q0).await;
        let mut p = Client::v311(s.addr, "pub").await;
        let first = publish("dup", Q2, 7, b"once");
        p.send_publish(first.clone()).await;
        assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id == pid(7)));
        let again = midge_codec::Publish {
            dup: true,
            ..first.clone()
        };
        p.send_publish(again).await;
        assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id == pid(7)));
        assert_eq!(&sub.recv_publish().await.payload[..], b"once");
        sub.expect_nothing().await;
        p.send(&Packet::PubRel(ack(7))).await;
        assert!(matches!(p.recv().await, Packet::PubComp(a) if a.packet_id == pid(7)));
        // The id is free again: a new message with it is delivered.
        p.publish_flow(publish("dup", Q2, 7, b"twice")).await;
        assert_eq!(&sub.recv_publish().await.payload[..], b"twice");
    }

    /// [MQTT-3.8.4-6] Delivery QoS is min(published QoS, granted QoS).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivery_qos_is_minimum() {
        let s = start_default().await;
        let mut p = Client::v311(s.addr, "pub").await;
        for (granted, published, expected) in [
            (Q0, Q2, Q0),
            (Q1, Q2, Q1),
            (Q2, Q2, Q2),
            (Q2, Q1, Q1),
            (Q2, Q0, Q0),
            (Q1, Q0, Q0),
        ] {
            let mut sub = Client::v311(s.addr, "sub").await;
            sub.subscribe("minq", granted).await;
            p.publish("minq", published, b"m").await;
            let got = sub.recv_publish_acked().await;
            assert_eq!(
                got.qos.qos(),
                expected,
                "granted {granted:?}, published {published:?}"
            );
            sub.disconnect().await;
        }
    }

    /// [MQTT-2.3.1-1..4] Unacknowledged outbound messages carry distinct non-zero packet ids,
    /// acknowledgements may come in any order, and messages keep their order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn packet_ids_distinct_and_order_kept() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("ids", Q2).await;
        let mut p = Client::v311(s.addr, "pub").await;
        for i in 0..6u8 {
            let qos = if i % 2 == 0 { Q1 } else { Q2 };
            p.publish_flow(publish("ids", qos, u16::from(i) + 1, &[i]))
                .await;
        }
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(sub.recv_publish().await);
        }
        let payloads: Vec<u8> = got.iter().map(|p| p.payload[0]).collect();
        assert_eq!(payloads, [0, 1, 2, 3, 4, 5], "order kept");
        let mut ids: Vec<u16> = got
            .iter()
            .map(|p| p.qos.packet_id().expect("QoS > 0").get())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 6, "distinct packet ids");
        for p in got.iter().rev() {
            sub.ack_publish(p).await;
        }
        sub.expect_nothing().await;
    }

    /// [MQTT-4.4.0-1] [MQTT-3.3.1-1] After a persistent session reconnects, unacknowledged
    /// PUBLISH packets are re-sent with DUP=1 and their original ids, and PUBREL packets are
    /// re-sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redelivery_with_dup_after_reconnect() {
        let s = start_default().await;
        let persistent = || {
            let mut c = connect_packet(V311, "redeliver");
            c.clean_start = false;
            c
        };
        let (mut sub, _) = Client::connect_ok(s.addr, persistent()).await;
        sub.subscribe("re/#", Q2).await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("re/1", Q1, b"qos1").await;
        p.publish("re/2", Q2, b"qos2 unreceived").await;
        p.publish("re/3", Q2, b"qos2 released").await;
        let m1 = sub.recv_publish().await;
        let m2 = sub.recv_publish().await;
        let m3 = sub.recv_publish().await;
        assert!(!m1.dup && !m2.dup && !m3.dup);
        let id3 = m3.qos.packet_id().expect("QoS 2");
        sub.send(&Packet::PubRec(midge_codec::PubAck::new(id3)))
            .await;
        assert!(matches!(sub.recv().await, Packet::PubRel(r) if r.packet_id == id3));
        sub.drop_connection();

        let (mut sub, ack) = Client::connect_ok(s.addr, persistent()).await;
        assert!(ack.session_present);
        // PUBLISH packets come again in their original order and the PUBREL too; the
        // specification does not order the PUBREL relative to the PUBLISH packets.
        sub.recv_matching("PUBREL", |p| match p {
            Packet::PubRel(r) if r.packet_id == id3 => Some(()),
            _ => None,
        })
        .await;
        let r1 = sub.recv_publish().await;
        assert!(r1.dup, "re-sent PUBLISH has DUP set");
        assert_eq!((r1.qos, &r1.payload[..]), (m1.qos, &b"qos1"[..]));
        let r2 = sub.recv_publish().await;
        assert!(r2.dup);
        assert_eq!((r2.qos, &r2.payload[..]), (m2.qos, &b"qos2 unreceived"[..]));
        sub.ack_publish(&r1).await;
        sub.ack_publish(&r2).await;
        sub.send(&Packet::PubComp(midge_codec::PubAck::new(id3)))
            .await;
        sub.expect_nothing().await;
        sub.disconnect().await;
        // Everything was acknowledged: nothing is re-sent next time.
        let (mut sub, ack) = Client::connect_ok(s.addr, persistent()).await;
        assert!(ack.session_present);
        sub.expect_nothing().await;
    }

    /// [MQTT-3.3.2-2] A topic name with a wildcard is a protocol violation: close, and the
    /// other clients keep working.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wildcard_in_topic_name_closes() {
        let s = start_default().await;
        let mut by = Bystander::new(s.addr).await;
        for t in [&b"a/+"[..], b"#", b"a/#/b"] {
            let mut c = Client::v311(s.addr, "wild").await;
            let mut body = Vec::new();
            body.extend_from_slice(&(t.len() as u16).to_be_bytes());
            body.extend_from_slice(t);
            c.send_raw(&frame(0x30, &body)).await;
            c.expect_closed().await;
        }
        by.check().await;
    }

    /// Large payloads (beyond the zero-copy threshold) arrive byte-exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_payload_exact() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("big", Q1).await;
        let mut p = Client::v311(s.addr, "pub").await;
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        p.publish("big", Q1, &payload).await;
        let m = sub.recv_publish_acked().await;
        assert_eq!(m.payload.len(), payload.len());
        assert!(m.payload[..] == payload[..], "payload byte-exact");
    }

    /// Many packets in one write are all processed, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_packets() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("pipe", Q0).await;
        let mut p = Client::v311(s.addr, "pub").await;
        let mut bytes = Vec::new();
        for i in 1..=100u16 {
            bytes.extend(bytes_of(
                &Packet::Publish(publish("pipe", Q1, i, &i.to_be_bytes())),
                V311,
            ));
        }
        p.send_raw(&bytes).await;
        for i in 1..=100u16 {
            match p.recv().await {
                Packet::PubAck(a) => assert_eq!(a.packet_id, pid(i)),
                other => panic!("expected PUBACK {i}, got {other:?}"),
            }
            assert_eq!(&sub.recv_publish().await.payload[..], i.to_be_bytes());
        }
    }

    /// A packet that arrives one byte at a time is assembled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn packet_split_into_single_bytes() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("slow/t", Q0).await;
        let mut p = Client::v311(s.addr, "pub").await;
        let bytes = bytes_of(&Packet::Publish(publish("slow/t", Q1, 3, b"drip")), V311);
        for b in bytes {
            p.send_raw(&[b]).await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(matches!(p.recv().await, Packet::PubAck(a) if a.packet_id == pid(3)));
        assert_eq!(&sub.recv_publish().await.payload[..], b"drip");
    }

    /// The broker keeps at most `max_inflight` unacknowledged messages towards a client.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inflight_window_from_config() {
        let mut cfg = config();
        cfg.broker.max_inflight = 2;
        let s = start(cfg).await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("win", Q1).await;
        let mut p = Client::v311(s.addr, "pub").await;
        for i in 0..4u8 {
            p.publish("win", Q1, &[i]).await;
        }
        let a = sub.recv_publish().await;
        let b = sub.recv_publish().await;
        sub.expect_nothing().await;
        sub.ack_publish(&b).await;
        let c = sub.recv_publish().await;
        assert_eq!(c.payload[0], 2);
        sub.expect_nothing().await;
        sub.ack_publish(&a).await;
        assert_eq!(sub.recv_publish_acked().await.payload[0], 3);
        sub.ack_publish(&c).await;
        sub.expect_nothing().await;
    }

    /// [MQTT-3.3.1-3] The DUP flag of an incoming PUBLISH is not propagated to subscribers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dup_not_propagated() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("dupf", Q1).await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish_flow(midge_codec::Publish {
            dup: true,
            ..publish("dupf", Q1, 4, b"x")
        })
        .await;
        assert!(!sub.recv_publish_acked().await.dup);
    }
}

// ---------------------------------------------------------------------------------------------
// 3.8 - 3.11 SUBSCRIBE / UNSUBSCRIBE, 4.7 topic names and filters
// ---------------------------------------------------------------------------------------------
mod subscribe {
    use super::*;

    /// Collects publishes until the connection is quiet; returns their topics.
    async fn topics_received(c: &mut Client) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match c.read(QUIET).await {
                Read::Packet(Packet::Publish(p)) => {
                    out.push(p.topic.expect("topic").as_str().to_owned())
                }
                Read::Timeout => return out,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Section 4.7.1: `+` matches one level, `#` the parent and any number of levels.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wildcard_matching() {
        let s = start_default().await;
        let topics = ["a/b/c", "a/b", "a", "a/b/c/d", "b/x", "a//c", "/a"];
        let cases: [(&str, &[&str]); 8] = [
            ("a/+/c", &["a/b/c", "a//c"]),
            ("a/#", &["a/b/c", "a/b", "a", "a/b/c/d", "a//c"]),
            ("+/+", &["a/b", "b/x", "/a"]),
            ("+", &["a"]),
            ("#", &topics),
            ("a/b", &["a/b"]),
            ("+/b/#", &["a/b/c", "a/b", "a/b/c/d"]),
            ("/+", &["/a"]),
        ];
        let mut subs = Vec::new();
        for (i, (f, _)) in cases.iter().enumerate() {
            let mut c = Client::v311(s.addr, &format!("sub{i}")).await;
            c.subscribe(f, Q0).await;
            subs.push(c);
        }
        let mut p = Client::v311(s.addr, "pub").await;
        for t in topics {
            p.publish(t, Q0, b"x").await;
        }
        for ((f, expected), c) in cases.iter().zip(subs.iter_mut()) {
            assert_eq!(topics_received(c).await, *expected, "filter {f}");
        }
    }

    /// [MQTT-4.7.2-1] Topics starting with `$` are not matched by a filter starting with a
    /// wildcard, but by one naming the `$` level.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dollar_topics_not_matched_by_leading_wildcard() {
        let s = start_default().await;
        let mut all = Client::v311(s.addr, "all").await;
        all.subscribe("#", Q0).await;
        let mut plus = Client::v311(s.addr, "plus").await;
        plus.subscribe("+/info", Q0).await;
        let mut dollar = Client::v311(s.addr, "dollar").await;
        dollar.subscribe("$app/#", Q0).await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("$app/info", Q0, b"dollar").await;
        p.publish("app/info", Q0, b"plain").await;
        assert_eq!(topics_received(&mut all).await, ["app/info"]);
        assert_eq!(topics_received(&mut plus).await, ["app/info"]);
        assert_eq!(topics_received(&mut dollar).await, ["$app/info"]);
    }

    /// Section 3.9.3: SUBACK carries one return code per filter in order: the granted QoS, or
    /// 0x80 for an invalid filter; the connection stays up and the valid filters work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suback_codes_and_invalid_filters() {
        let s = start_default().await;
        let mut c = Client::v311(s.addr, "sub").await;
        c.send(&subscribe_packet(
            10,
            vec![
                subscription("ok/0", opts(Q0)),
                subscription("a/#/b", opts(Q1)),
                subscription("ok/2", opts(Q2)),
                subscription("a+", opts(Q0)),
                subscription("", opts(Q0)),
                subscription("$share/g", opts(Q0)),
                subscription("ok/1", opts(Q1)),
            ],
        ))
        .await;
        assert_eq!(
            c.recv_frame().await,
            [0x90, 0x09, 0x00, 0x0A, 0x00, 0x80, 0x02, 0x80, 0x80, 0x80, 0x01]
        );
        c.ping().await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("ok/2", Q2, b"still subscribed").await;
        assert_eq!(c.recv_publish_acked().await.qos.qos(), Q2);
    }

    /// Section 3.9.3: the granted QoS is the minimum of the requested QoS and the broker's
    /// maximum.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn granted_qos_capped_by_broker_maximum() {
        let mut cfg = config();
        cfg.broker.max_qos = Q1;
        let s = start(cfg).await;
        let mut c = Client::v311(s.addr, "sub").await;
        let a = c
            .subscribe_with(
                3,
                vec![
                    subscription("cap/2", opts(Q2)),
                    subscription("cap/1", opts(Q1)),
                    subscription("cap/0", opts(Q0)),
                ],
            )
            .await;
        assert_eq!(
            a.codes,
            [
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS1,
                ReasonCode::Success
            ]
        );
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("cap/2", Q1, b"x").await;
        assert_eq!(c.recv_publish_acked().await.qos.qos(), Q1);
    }

    /// [MQTT-3.3.5-1] Overlapping subscriptions of one client: the message is delivered
    /// once, at the highest QoS of the matching subscriptions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_subscriptions_deliver_once_at_max_qos() {
        let s = start_default().await;
        let mut c = Client::v311(s.addr, "sub").await;
        c.send(&subscribe_packet(
            4,
            vec![
                subscription("o/#", opts(Q0)),
                subscription("o/+", opts(Q2)),
                subscription("o/x", opts(Q1)),
            ],
        ))
        .await;
        assert_eq!(
            c.recv_frame().await,
            [0x90, 0x05, 0x00, 0x04, 0x00, 0x02, 0x01]
        );
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("o/x", Q2, b"overlap").await;
        let got = c.recv_publish_acked().await;
        assert_eq!(got.qos.qos(), Q2);
        c.expect_nothing().await;
        p.publish("o/y/z", Q2, b"only #").await;
        assert_eq!(c.recv_publish_acked().await.qos.qos(), Q0);
        c.expect_nothing().await;
    }

    /// [MQTT-3.8.4-3] Subscribing again to the same filter replaces the subscription (new
    /// QoS, one delivery) and re-sends the retained messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resubscribe_replaces_and_resends_retained() {
        let s = start_default().await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish_flow(retained("rs/t", Q2, 1, b"kept")).await;
        let mut c = Client::v311(s.addr, "sub").await;
        c.subscribe("rs/t", Q0).await;
        let r = c.recv_publish().await;
        assert!(r.retain && r.qos.qos() == Q0);
        c.subscribe("rs/t", Q1).await;
        let r = c.recv_publish_acked().await;
        assert!(r.retain, "retained re-sent on re-subscribe");
        assert_eq!(r.qos.qos(), Q1, "with the new QoS");
        p.publish("rs/t", Q2, b"live").await;
        let live = c.recv_publish_acked().await;
        assert_eq!((&live.payload[..], live.qos.qos()), (&b"live"[..], Q1));
        c.expect_nothing().await;
        assert_eq!(s.server.broker.subscription_count(), 1);
    }

    /// [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK `B0 02 id`, also when nothing was
    /// subscribed; no more messages after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsubscribe_stops_delivery() {
        let s = start_default().await;
        let mut c = Client::v311(s.addr, "sub").await;
        c.subscribe("un/t", Q1).await;
        c.send(&unsubscribe_packet(7, &["un/t"])).await;
        assert_eq!(c.recv_frame().await, [0xB0, 0x02, 0x00, 0x07]);
        c.send(&unsubscribe_packet(8, &["never/subscribed"])).await;
        assert_eq!(c.recv_frame().await, [0xB0, 0x02, 0x00, 0x08]);
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("un/t", Q1, b"x").await;
        c.expect_nothing().await;
        assert_eq!(s.server.broker.subscription_count(), 0);
    }

    /// [MQTT-3.8.1-1] [MQTT-3.10.1-1] [MQTT-3.8.3-3] [MQTT-3.8.3-4] Malformed SUBSCRIBE or
    /// UNSUBSCRIBE (reserved flags, no filter, QoS 3, reserved option bits) closes the
    /// connection; others are unaffected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_subscribe_closes() {
        let s = start_default().await;
        let mut by = Bystander::new(s.addr).await;
        let cases: [(&str, Vec<u8>); 6] = [
            (
                "flags 0000",
                frame(0x80, &[0x00, 0x01, 0x00, 0x01, b't', 0x00]),
            ),
            ("no filter", frame(0x82, &[0x00, 0x01])),
            ("QoS 3", frame(0x82, &[0x00, 0x01, 0x00, 0x01, b't', 0x03])),
            (
                "option bit 2",
                frame(0x82, &[0x00, 0x01, 0x00, 0x01, b't', 0x04]),
            ),
            (
                "unsubscribe flags",
                frame(0xA0, &[0x00, 0x01, 0x00, 0x01, b't']),
            ),
            ("unsubscribe empty", frame(0xA2, &[0x00, 0x01])),
        ];
        for (what, bytes) in cases {
            let mut c = Client::v311(s.addr, "bad-sub").await;
            c.name = what.to_owned();
            c.send_raw(&bytes).await;
            c.expect_closed().await;
        }
        by.check().await;
    }

    /// Shared subscriptions `$share/{group}/{filter}` are accepted from 3.1.1 clients: each
    /// message goes to one member, round robin.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_subscription_round_robin() {
        let s = start_default().await;
        let mut a = Client::v311(s.addr, "a").await;
        a.subscribe("$share/g/sh/t", Q1).await;
        let mut b = Client::v311(s.addr, "b").await;
        b.subscribe("$share/g/sh/t", Q1).await;
        let mut other_group = Client::v311(s.addr, "c").await;
        other_group.subscribe("$share/h/sh/+", Q0).await;
        let mut p = Client::v311(s.addr, "pub").await;
        for i in 0..4u8 {
            p.publish("sh/t", Q1, &[i]).await;
        }
        let mut got_a = Vec::new();
        let mut got_b = Vec::new();
        for _ in 0..2 {
            got_a.push(a.recv_publish_acked().await.payload[0]);
            got_b.push(b.recv_publish_acked().await.payload[0]);
        }
        a.expect_nothing().await;
        b.expect_nothing().await;
        assert_eq!(got_a, [0, 2]);
        assert_eq!(got_b, [1, 3]);
        for i in 0..4u8 {
            assert_eq!(other_group.recv_publish().await.payload[0], i, "group h");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3.3.1.3 RETAIN
// ---------------------------------------------------------------------------------------------
mod retain {
    use super::*;

    /// [MQTT-3.3.1-5..12] Retained messages: stored per topic, delivered on subscribe with
    /// RETAIN=1, sent to existing subscribers with RETAIN=0, replaced by a newer one, deleted
    /// by an empty payload (which is still forwarded).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn store_replace_delete() {
        let s = start_default().await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish_flow(retained("ret/a", Q1, 1, b"v1")).await;
        p.publish_flow(retained("ret/b", Q0, 0, b"b1")).await;
        eventually("two retained", || s.server.broker.retained_count() == 2).await;

        let mut c = Client::v311(s.addr, "sub").await;
        c.subscribe("ret/a", Q1).await;
        let first = c.recv_publish_acked().await;
        assert!(
            first.retain,
            "RETAIN=1 for a message sent because of a new subscription"
        );
        assert_eq!((&first.payload[..], first.qos.qos()), (&b"v1"[..], Q1));

        p.publish_flow(retained("ret/a", Q1, 2, b"v2")).await;
        let live = c.recv_publish_acked().await;
        assert!(!live.retain, "RETAIN=0 for an established subscription");
        assert_eq!(&live.payload[..], b"v2");

        let mut late = Client::v311(s.addr, "late").await;
        late.subscribe("ret/+", Q0).await;
        let mut got: Vec<(String, Vec<u8>)> = Vec::new();
        for _ in 0..2 {
            let m = late.recv_publish().await;
            assert!(m.retain);
            got.push((m.topic.expect("topic").to_string(), m.payload.to_vec()));
        }
        got.sort();
        assert_eq!(
            got,
            [
                ("ret/a".into(), b"v2".to_vec()),
                ("ret/b".into(), b"b1".to_vec())
            ],
            "only the newest retained message per topic"
        );
        late.expect_nothing().await;

        p.publish_flow(retained("ret/a", Q1, 3, b"")).await;
        let empty = c.recv_publish_acked().await;
        assert!(
            empty.payload.is_empty(),
            "the deleting message is forwarded"
        );
        eventually("deleted", || s.server.broker.retained_count() == 1).await;
        let mut later = Client::v311(s.addr, "later").await;
        later.subscribe("ret/a", Q0).await;
        later.expect_nothing().await;
    }

    /// A retained message is delivered at min(its QoS, granted QoS); a non-retained publish
    /// does not touch the stored one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retained_qos_and_non_retained_publish() {
        let s = start_default().await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish_flow(retained("rq/t", Q2, 1, b"stored")).await;
        p.publish("rq/t", Q1, b"not retained").await;
        let mut c = Client::v311(s.addr, "sub").await;
        c.subscribe("rq/#", Q1).await;
        let m = c.recv_publish_acked().await;
        assert!(m.retain);
        assert_eq!((&m.payload[..], m.qos.qos()), (&b"stored"[..], Q1));
        c.expect_nothing().await;
    }
}
