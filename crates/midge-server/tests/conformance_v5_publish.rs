//! Black-box conformance of midge to MQTT 5.0 over real TCP: PUBLISH and its QoS flows,
//! properties and request/response, SUBSCRIBE/UNSUBSCRIBE with the 5.0 subscription options
//! and retained messages, and shared subscriptions (chapters 3.3 to 3.11, 4.3, 4.4, 4.7 and
//! 4.8 of the 5.0 specification). Topic aliases, flow control and message expiry are in
//! `conformance_v5_flow.rs`.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::*;
use midge_codec::{
    Packet, PubAck, Publish, PublishProperties, ReasonCode, RetainHandling, Subscribe,
    SubscribeProperties, SubscriptionOptions,
};

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

/// SUBSCRIBE with a subscription identifier.
fn subscribe_with_id(id: u16, sid: u32, subs: Vec<midge_codec::Subscription>) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: SubscribeProperties {
            subscription_identifier: Some(sub_id(sid)),
            user_properties: Vec::new(),
        },
        subscriptions: subs,
    })
}

// ---------------------------------------------------------------------------------------------
// 3.3 - 3.7 PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP (4.3)
// ---------------------------------------------------------------------------------------------
mod publish {
    use super::*;

    /// Section 3.4.2.1: PUBACK/PUBREC say 0x10 No matching subscribers when nobody
    /// subscribed, 0x00 otherwise.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ack_reason_codes() {
        let s = start_default().await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.send_publish(publish("nobody", Q1, 1, b"x")).await;
        assert_eq!(p.recv_frame().await, [0x40, 0x03, 0x00, 0x01, 0x10]);
        let rec = p
            .publish_flow(publish("nobody", Q2, 2, b"x"))
            .await
            .expect("PUBREC");
        assert_eq!(rec.code, ReasonCode::NoMatchingSubscribers);
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("somebody", Q2).await;
        p.send_publish(publish("somebody", Q1, 3, b"x")).await;
        assert_eq!(p.recv_frame().await, [0x40, 0x02, 0x00, 0x03]);
        let rec = p
            .publish_flow(publish("somebody", Q2, 4, b"x"))
            .await
            .expect("PUBREC");
        assert_eq!(rec.code, ReasonCode::Success);
    }

    /// Sections 4.3.1 to 4.3.3: QoS 0, 1 and 2 in both directions with full flows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_qos_both_directions() {
        let s = start_default().await;
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("flow/#", Q2).await;
        let mut p = Client::v5(s.addr, "pub").await;
        for qos in [Q0, Q1, Q2] {
            p.publish(&format!("flow/{}", qos.as_u8()), qos, &[qos.as_u8()])
                .await;
            let m = sub.recv_publish_acked().await;
            assert_eq!(m.qos.qos(), qos);
            assert_eq!(m.payload[0], qos.as_u8());
        }
        sub.expect_nothing().await;
    }

    /// [MQTT-4.3.3-10] QoS 2 exactly once inbound: a duplicate before PUBREL is not delivered
    /// again; PUBREL for an unknown id gets PUBCOMP 0x92.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos2_duplicate_and_unknown_pubrel() {
        let s = start_default().await;
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("dup", Q2).await;
        let mut p = Client::v5(s.addr, "pub").await;
        let m = publish("dup", Q2, 9, b"once");
        p.send_publish(m.clone()).await;
        p.send_publish(Publish { dup: true, ..m }).await;
        for _ in 0..2 {
            match p.recv().await {
                Packet::PubRec(a) => {
                    assert_eq!((a.packet_id, a.code), (pid(9), ReasonCode::Success))
                }
                other => panic!("expected PUBREC, got {other:?}"),
            }
        }
        sub.recv_publish_acked().await;
        sub.expect_nothing().await;
        p.send(&Packet::PubRel(ack(9))).await;
        match p.recv().await {
            Packet::PubComp(c) => assert_eq!((c.packet_id, c.code), (pid(9), ReasonCode::Success)),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
        p.send(&Packet::PubRel(ack(9))).await;
        match p.recv().await {
            Packet::PubComp(c) => assert_eq!(c.code, ReasonCode::PacketIdentifierNotFound),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
    }

    /// [MQTT-4.3.3-4] A PUBREC with a failure code ends the QoS 2 flow: no PUBREL, and the
    /// message no longer counts against Receive Maximum.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pubrec_failure_ends_flow() {
        let s = start_default().await;
        let cp = connect_v5_with("refuser", |c| c.properties.receive_maximum = Some(nz16(1)));
        let (mut sub, _) = Client::connect_ok(s.addr, cp).await;
        sub.subscribe("refuse", Q2).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("refuse", Q2, b"first").await;
        p.publish("refuse", Q2, b"second").await;
        let m = sub.recv_publish().await;
        assert_eq!(&m.payload[..], b"first");
        sub.send(&Packet::PubRec(PubAck {
            packet_id: m.qos.packet_id().expect("QoS 2"),
            code: ReasonCode::UnspecifiedError,
            properties: Default::default(),
        }))
        .await;
        let next = sub.recv_publish_acked().await;
        assert_eq!(
            &next.payload[..],
            b"second",
            "no PUBREL for the refused one"
        );
        sub.expect_nothing().await;
    }

    /// [MQTT-4.4.0-1] After reconnecting, unacknowledged messages are re-sent with DUP=1 and
    /// their original ids.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redelivery_with_dup_after_reconnect() {
        let s = start_default().await;
        let (mut sub, _) = Client::connect_ok(s.addr, persistent("re", 60)).await;
        sub.subscribe("re/t", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("re/t", Q1, b"unacked").await;
        let first = sub.recv_publish().await;
        assert!(!first.dup);
        sub.drop_connection();
        let (mut sub, ack) = Client::connect_ok(s.addr, persistent("re", 60)).await;
        assert!(ack.session_present);
        let again = sub.recv_publish_acked().await;
        assert!(again.dup);
        assert_eq!(again.qos, first.qos, "same packet id");
        assert_eq!(&again.payload[..], b"unacked");
        sub.expect_nothing().await;
    }

    /// Section 3.2.2.3.4: Maximum QoS: SUBSCRIBE is granted at most the maximum,
    /// and a PUBLISH above it is answered with DISCONNECT 0x9B.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn maximum_qos() {
        let mut cfg = config();
        cfg.broker.max_qos = Q1;
        let s = start(cfg).await;
        let mut by = Bystander::new(s.addr).await;
        let mut sub = Client::v5(s.addr, "sub").await;
        let a = sub
            .subscribe_with(1, vec![subscription("mq", opts(Q2))])
            .await;
        assert_eq!(a.codes, [ReasonCode::GrantedQoS1]);
        let mut p = Client::v5(s.addr, "pub").await;
        p.send_publish(publish("mq", Q2, 1, b"x")).await;
        p.expect_disconnect(ReasonCode::QoSNotSupported).await;
        sub.expect_nothing().await;
        by.check().await;
    }

    /// Section 3.2.2.3.5: Retain not available: a retained PUBLISH gets DISCONNECT 0x9A.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retain_not_supported() {
        let mut cfg = config();
        cfg.broker.retain_available = false;
        let s = start(cfg).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.send_publish(retained("r", Q0, 0, b"x")).await;
        p.expect_disconnect(ReasonCode::RetainNotSupported).await;
        assert_eq!(s.server.broker.retained_count(), 0);
    }

    /// Section 3.3.2.3.2: Payload Format Indicator 1 with a payload that is not UTF-8: PUBACK
    /// 0x99 and the message is not delivered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payload_format_invalid() {
        let s = start_default().await;
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("pf", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        let bad = with_props(publish("pf", Q1, 1, b"\xFF\xFE"), |pp| {
            pp.payload_format_indicator = Some(true)
        });
        let a = p.publish_flow(bad).await.expect("PUBACK");
        assert_eq!(a.code, ReasonCode::PayloadFormatInvalid);
        sub.expect_nothing().await;
        let good = with_props(publish("pf", Q1, 2, "ok ✓".as_bytes()), |pp| {
            pp.payload_format_indicator = Some(true)
        });
        assert_eq!(
            p.publish_flow(good).await.expect("PUBACK").code,
            ReasonCode::Success
        );
        assert_eq!(
            sub.recv_publish_acked()
                .await
                .properties
                .payload_format_indicator,
            Some(true)
        );
    }

    /// [MQTT-3.3.4-6] A PUBLISH from a client must not carry a Subscription Identifier:
    /// DISCONNECT 0x82.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscription_identifier_from_client_is_protocol_error() {
        let s = start_default().await;
        let mut p = Client::v5(s.addr, "pub").await;
        let m = with_props(publish("sid", Q0, 0, b"x"), |pp| {
            pp.subscription_identifiers = vec![sub_id(1)]
        });
        p.send_publish(m).await;
        p.expect_disconnect(ReasonCode::ProtocolError).await;
    }

    /// User properties, Payload Format Indicator, Content Type, Response Topic and
    /// Correlation Data are forwarded unchanged ([MQTT-3.3.2-15..20]); user property order
    /// is kept ([MQTT-3.3.2-18]).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn properties_forwarded_unchanged() {
        let s = start_default().await;
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("props", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        let sent = PublishProperties {
            payload_format_indicator: Some(true),
            content_type: Some(mstr("application/json; charset=utf-8")),
            response_topic: Some(topic("props/reply")),
            correlation_data: Some(Bytes::from_static(b"\x00\xFFid-42")),
            user_properties: vec![
                (mstr("b"), mstr("2")),
                (mstr("a"), mstr("1")),
                (mstr("b"), mstr("3")),
                (mstr(""), mstr("")),
            ],
            ..Default::default()
        };
        p.publish_flow(with_props(publish("props", Q1, 1, b"{}"), |pp| {
            *pp = sent.clone()
        }))
        .await;
        let m = sub.recv_publish_acked().await;
        assert_eq!(m.properties, sent, "properties as sent, nothing added");
    }

    /// Request/response: the responder gets Response Topic and Correlation Data and the
    /// requester gets the response with its Correlation Data back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_response() {
        let s = start_default().await;
        let cp = connect_v5_with("requester", |c| {
            c.properties.request_response_information = Some(true)
        });
        let (mut requester, ack) = Client::connect_ok(s.addr, cp).await;
        let prefix = ack
            .properties
            .response_information
            .expect("Response Information");
        let reply_to = format!("{prefix}/calc");
        requester.subscribe(&reply_to, Q1).await;
        let mut responder = Client::v5(s.addr, "responder").await;
        responder.subscribe("svc/calc", Q1).await;
        requester
            .publish_flow(with_props(publish("svc/calc", Q1, 1, b"1+1"), |pp| {
                pp.response_topic = Some(topic(&reply_to));
                pp.correlation_data = Some(Bytes::from_static(b"req-7"));
            }))
            .await;
        let req = responder.recv_publish_acked().await;
        let rt = req
            .properties
            .response_topic
            .clone()
            .expect("Response Topic");
        let corr = req
            .properties
            .correlation_data
            .clone()
            .expect("Correlation Data");
        responder
            .publish_flow(with_props(publish(rt.as_str(), Q1, 1, b"2"), |pp| {
                pp.correlation_data = Some(corr)
            }))
            .await;
        let resp = requester.recv_publish_acked().await;
        assert_eq!(&resp.payload[..], b"2");
        assert_eq!(
            resp.properties.correlation_data,
            Some(Bytes::from_static(b"req-7"))
        );
    }

    /// [MQTT-4.3.3-10] The inbound QoS 2 state survives a reconnect of a persistent session:
    /// the re-sent PUBLISH is not delivered twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inbound_qos2_state_survives_reconnect() {
        let s = start_default().await;
        let mut sub = Client::v5(s.addr, "sub").await;
        sub.subscribe("x2", Q2).await;
        let (mut p, _) = Client::connect_ok(s.addr, persistent("qos2-pub", 60)).await;
        let m = publish("x2", Q2, 5, b"exactly once");
        p.send_publish(m.clone()).await;
        assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id == pid(5)));
        p.drop_connection();
        let (mut p, connack) = Client::connect_ok(s.addr, persistent("qos2-pub", 60)).await;
        assert!(connack.session_present);
        p.send_publish(Publish { dup: true, ..m }).await;
        assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id == pid(5)));
        p.send(&Packet::PubRel(ack(5))).await;
        match p.recv().await {
            Packet::PubComp(c) => assert_eq!((c.packet_id, c.code), (pid(5), ReasonCode::Success)),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
        assert_eq!(&sub.recv_publish_acked().await.payload[..], b"exactly once");
        sub.expect_nothing().await;
    }

    /// [MQTT-3.1.2-29] With Request Problem Information 0 no reason string or user property
    /// is sent on acknowledgements.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_problem_information_zero() {
        let s = start_default().await;
        let cp = connect_v5_with("terse", |c| {
            c.properties.request_problem_information = Some(false)
        });
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        let a = c
            .publish_flow(publish("nobody", Q1, 1, b"x"))
            .await
            .expect("PUBACK");
        assert_eq!(a.code, ReasonCode::NoMatchingSubscribers);
        assert_eq!(a.properties, Default::default());
        let sa = c
            .subscribe_with(2, vec![subscription("bad/#/x", opts(Q0))])
            .await;
        assert_eq!(sa.codes, [ReasonCode::TopicFilterInvalid]);
        assert_eq!(sa.properties, Default::default());
    }
}

// ---------------------------------------------------------------------------------------------
// 3.8 - 3.11 SUBSCRIBE / UNSUBSCRIBE with 5.0 options
// ---------------------------------------------------------------------------------------------
mod subscribe {
    use super::*;

    /// Section 3.9.3: SUBACK has one code per filter: granted QoS or 0x8F for an invalid
    /// filter; the connection stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suback_codes() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "sub").await;
        c.send(&subscribe_packet(
            5,
            vec![
                subscription("ok/0", opts(Q0)),
                subscription("bad/#/x", opts(Q1)),
                subscription("ok/2", opts(Q2)),
                subscription("bad+", opts(Q1)),
                subscription("$share/g", opts(Q1)),
                subscription("$share/g/ok/#", opts(Q1)),
            ],
        ))
        .await;
        assert_eq!(
            c.recv_frame().await,
            [0x90, 0x09, 0x00, 0x05, 0x00, 0x00, 0x8F, 0x02, 0x8F, 0x8F, 0x01]
        );
        c.ping().await;
    }

    /// [MQTT-4.7.2-1] `$` topics are not matched by a leading wildcard.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dollar_topics() {
        let s = start_default().await;
        let mut all = Client::v5(s.addr, "all").await;
        all.subscribe("#", Q0).await;
        let mut plus = Client::v5(s.addr, "plus").await;
        plus.subscribe("+/x", Q0).await;
        let mut dollar = Client::v5(s.addr, "dollar").await;
        dollar.subscribe("$d/+", Q0).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("$d/x", Q0, b"d").await;
        p.publish("n/x", Q0, b"n").await;
        assert_eq!(&all.recv_publish().await.payload[..], b"n");
        assert_eq!(&plus.recv_publish().await.payload[..], b"n");
        assert_eq!(&dollar.recv_publish().await.payload[..], b"d");
        all.expect_nothing().await;
        plus.expect_nothing().await;
        dollar.expect_nothing().await;
    }

    /// [MQTT-3.3.4-2] [MQTT-3.3.4-4] Overlapping subscriptions: one delivery, at the highest
    /// QoS, carrying every matching Subscription Identifier.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_with_subscription_identifiers() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "sub").await;
        c.send(&subscribe_with_id(
            1,
            1,
            vec![subscription("ov/#", opts(Q0))],
        ))
        .await;
        c.recv_suback().await;
        c.send(&subscribe_with_id(
            2,
            2,
            vec![subscription("ov/+", opts(Q2))],
        ))
        .await;
        c.recv_suback().await;
        c.subscribe("ov/x", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("ov/x", Q2, b"once").await;
        let m = c.recv_publish_acked().await;
        assert_eq!(m.qos.qos(), Q2);
        let ids: BTreeSet<u32> = m
            .properties
            .subscription_identifiers
            .iter()
            .map(|s| s.get())
            .collect();
        assert_eq!(ids, BTreeSet::from([1, 2]));
        c.expect_nothing().await;
    }

    /// [MQTT-3.8.4-3] [MQTT-3.3.4-3] Subscription Identifiers are sent with matching
    /// messages (retained ones too) and replaced by a re-subscribe.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscription_identifiers() {
        let s = start_default().await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish_flow(retained("sid/t", Q0, 0, b"kept")).await;
        let mut c = Client::v5(s.addr, "sub").await;
        c.send(&subscribe_with_id(
            1,
            268_435_455,
            vec![subscription("sid/t", opts(Q0))],
        ))
        .await;
        c.recv_suback().await;
        let r = c.recv_publish().await;
        assert!(r.retain);
        assert_eq!(r.properties.subscription_identifiers, [sub_id(268_435_455)]);
        p.publish("sid/t", Q0, b"live").await;
        let m = c.recv_publish().await;
        assert_eq!(m.properties.subscription_identifiers, [sub_id(268_435_455)]);
        c.send(&subscribe_with_id(
            2,
            7,
            vec![subscription(
                "sid/t",
                SubscriptionOptions {
                    retain_handling: RetainHandling::DoNotSend,
                    ..opts(Q0)
                },
            )],
        ))
        .await;
        c.recv_suback().await;
        p.publish("sid/t", Q0, b"after").await;
        assert_eq!(
            c.recv_publish().await.properties.subscription_identifiers,
            [sub_id(7)]
        );
        c.subscribe("sid/t", Q0).await;
        let r = c.recv_publish().await;
        assert!(r.retain);
        assert!(
            r.properties.subscription_identifiers.is_empty(),
            "identifier removed"
        );
    }

    /// [MQTT-3.8.3-3] No Local: a client's own messages are not sent back to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_local() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "self").await;
        c.subscribe_with(
            1,
            vec![subscription(
                "nl/t",
                SubscriptionOptions {
                    no_local: true,
                    ..opts(Q1)
                },
            )],
        )
        .await;
        c.publish("nl/t", Q1, b"mine").await;
        c.expect_nothing().await;
        let mut other = Client::v5(s.addr, "other").await;
        other.publish("nl/t", Q1, b"theirs").await;
        assert_eq!(&c.recv_publish_acked().await.payload[..], b"theirs");
    }

    /// [MQTT-3.3.1-9..13] Retain Handling 0 sends retained messages on every subscribe,
    /// 1 only for a new subscription, 2 never; Retain As Published keeps the RETAIN flag of
    /// live messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retain_handling_and_retain_as_published() {
        let s = start_default().await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish_flow(retained("rh/t", Q0, 0, b"kept")).await;
        let rh = |h: RetainHandling, rap: bool| SubscriptionOptions {
            retain_handling: h,
            retain_as_published: rap,
            ..opts(Q0)
        };
        let mut always = Client::v5(s.addr, "always").await;
        let mut if_new = Client::v5(s.addr, "if-new").await;
        let mut never = Client::v5(s.addr, "never").await;
        for round in 0..2 {
            always
                .subscribe_with(
                    1,
                    vec![subscription(
                        "rh/t",
                        rh(RetainHandling::SendAtSubscribe, true),
                    )],
                )
                .await;
            assert!(
                always.recv_publish().await.retain,
                "handling 0, round {round}"
            );
            if_new
                .subscribe_with(
                    1,
                    vec![subscription("rh/t", rh(RetainHandling::SendIfNew, false))],
                )
                .await;
            if round == 0 {
                assert!(if_new.recv_publish().await.retain, "handling 1, new");
            } else {
                if_new.expect_nothing().await;
            }
            never
                .subscribe_with(
                    1,
                    vec![subscription("rh/t", rh(RetainHandling::DoNotSend, false))],
                )
                .await;
            never.expect_nothing().await;
        }
        p.publish_flow(retained("rh/t", Q0, 0, b"live")).await;
        assert!(always.recv_publish().await.retain, "retain as published");
        assert!(!if_new.recv_publish().await.retain, "RETAIN cleared");
        assert!(!never.recv_publish().await.retain);
    }

    /// Section 3.11.3: UNSUBACK codes: 0x00 removed, 0x11 no subscription existed, 0x8F
    /// invalid filter.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsuback_codes() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "sub").await;
        c.subscribe("un/t", Q1).await;
        c.send(&unsubscribe_packet(7, &["un/t", "never", "bad/#/x"]))
            .await;
        assert_eq!(
            c.recv_frame().await,
            [0xB0, 0x06, 0x00, 0x07, 0x00, 0x00, 0x11, 0x8F]
        );
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("un/t", Q1, b"x").await;
        c.expect_nothing().await;
        c.ping().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4.8.2 Shared subscriptions
// ---------------------------------------------------------------------------------------------
mod shared {
    use super::*;

    /// Section 4.8.2: each message goes to one member of the group, round robin; groups are
    /// independent; retained messages are not sent on a shared subscribe.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_robin() {
        let s = start_default().await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish_flow(retained("job/t", Q0, 0, b"retained")).await;
        let mut members = Vec::new();
        for name in ["m0", "m1", "m2"] {
            let mut c = Client::v5(s.addr, name).await;
            c.subscribe("$share/workers/job/+", Q1).await;
            members.push(c);
        }
        let mut audit = Client::v5(s.addr, "audit").await;
        audit.subscribe("$share/audit/job/#", Q1).await;
        for m in members.iter_mut() {
            m.expect_nothing().await;
        }
        for i in 0..6u8 {
            p.publish("job/t", Q1, &[i]).await;
        }
        for (k, m) in members.iter_mut().enumerate() {
            let a = m.recv_publish_acked().await.payload[0];
            let b = m.recv_publish_acked().await.payload[0];
            assert_eq!((a, b), (k as u8, k as u8 + 3), "member {k}");
            m.expect_nothing().await;
        }
        for i in 0..6u8 {
            assert_eq!(audit.recv_publish_acked().await.payload[0], i);
        }
    }

    /// A message in flight or queued to a member whose session ends goes to another member.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redistributed_when_member_session_ends() {
        let s = start_default().await;
        let cp = connect_v5_with("a", |c| c.properties.receive_maximum = Some(nz16(1)));
        let (mut a, _) = Client::connect_ok(s.addr, cp).await;
        a.subscribe("$share/g/work", Q1).await;
        let mut b = Client::v5(s.addr, "b").await;
        b.subscribe("$share/g/work", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        for i in 0..4u8 {
            p.publish("work", Q1, &[i]).await;
        }
        // a holds 0 unacknowledged with 2 queued behind it; b gets 1 and 3.
        let held = a.recv_publish().await;
        assert_eq!(held.payload[0], 0);
        a.expect_nothing().await;
        let mut got = BTreeSet::new();
        for _ in 0..2 {
            got.insert(b.recv_publish_acked().await.payload[0]);
        }
        assert_eq!(got, BTreeSet::from([1, 3]));
        a.drop_connection();
        for _ in 0..2 {
            got.insert(b.recv_publish_acked().await.payload[0]);
        }
        assert_eq!(got, BTreeSet::from([0, 1, 2, 3]), "nothing lost");
        b.expect_nothing().await;
    }

    /// Section 4.8.2: a client with a shared and a non-shared subscription matching a message
    /// gets it through the non-shared one, and the group delivers its own copy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_and_non_shared_are_independent() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "both").await;
        c.subscribe("$share/g/ind/t", Q1).await;
        c.subscribe("ind/t", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("ind/t", Q1, b"twice").await;
        assert_eq!(&c.recv_publish_acked().await.payload[..], b"twice");
        assert_eq!(&c.recv_publish_acked().await.payload[..], b"twice");
        c.expect_nothing().await;
    }

    /// A message in flight to a member whose session later expires goes to another member
    /// when the session ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redistributed_when_member_session_expires() {
        let s = start_default().await;
        let (mut a, _) = Client::connect_ok(s.addr, persistent("a", 1)).await;
        a.subscribe("$share/g/exp", Q1).await;
        let mut b = Client::v5(s.addr, "b").await;
        b.subscribe("$share/g/exp", Q1).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("exp", Q1, b"held by a").await;
        assert_eq!(&a.recv_publish().await.payload[..], b"held by a");
        a.drop_connection();
        b.expect_nothing_for(std::time::Duration::from_millis(500))
            .await;
        let m = b.recv_publish_acked().await;
        assert_eq!(&m.payload[..], b"held by a");
        b.expect_nothing().await;
    }
}
