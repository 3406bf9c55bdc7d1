//! Black-box conformance of midge to MQTT 3.1.1 (and 3.1) over real TCP: CONNECT/CONNACK,
//! keep-alive, wills and session state (chapters 3.1, 3.2, 3.12 to 3.14 and 4.1 of the 3.1.1
//! specification). PUBLISH, SUBSCRIBE and retained messages are in
//! `conformance_v311_publish.rs`, malformed input in `conformance_v311_malformed.rs`. Each
//! test talks raw MQTT to a broker on 127.0.0.1:0 and asserts exact bytes or codes;
//! misbehaving clients are followed by a check that a well-behaved client was not disturbed.

mod common;

use std::time::Duration;

use common::*;
use midge_codec::{Packet, ReasonCode};

// ---------------------------------------------------------------------------------------------
// 3.1 CONNECT / 3.2 CONNACK
// ---------------------------------------------------------------------------------------------
mod connect {
    use super::*;

    /// [MQTT-3.2.2-1..3] A clean session is accepted with session present 0, return code 0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accepted_connack_bytes() {
        let s = start_default().await;
        let mut c = Client::open(s.addr, V311).await;
        c.send_raw(&raw_connect(b"MQTT", 4, 0x02, "bytes")).await;
        assert_eq!(c.recv_frame().await, [0x20, 0x02, 0x00, 0x00]);
        c.ping().await;
    }

    /// MQTT 3.1: protocol name `MQIsdp`, level 3, is accepted and routes messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mqtt_3_1_mqisdp_accepted() {
        let s = start_default().await;
        let mut c = Client::open(s.addr, midge_codec::ProtocolVersion::V31).await;
        c.send_raw(&raw_connect(b"MQIsdp", 3, 0x02, "old-client"))
            .await;
        assert_eq!(c.recv_frame().await, [0x20, 0x02, 0x00, 0x00]);
        c.subscribe("v31/t", Q1).await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("v31/t", Q1, b"hello 3.1").await;
        let got = c.recv_publish_acked().await;
        assert_eq!(&got.payload[..], b"hello 3.1");
        assert_eq!(got.qos.qos(), Q1);
    }

    /// MQTT 3.1 requires a client id of 1 to 23 characters: an empty one is rejected with
    /// return code 0x02 even with clean session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mqtt_3_1_empty_client_id_rejected() {
        let s = start_default().await;
        let mut c = Client::open(s.addr, midge_codec::ProtocolVersion::V31).await;
        c.send_raw(&raw_connect(b"MQIsdp", 3, 0x02, "")).await;
        assert_eq!(c.recv_frame().await, [0x20, 0x02, 0x00, 0x02]);
        c.expect_closed().await;
    }

    /// [MQTT-3.1.2-2] An unsupported protocol level gets return code 0x01 and the connection
    /// is closed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsupported_protocol_level() {
        let s = start_default().await;
        for (name, level) in [(&b"MQTT"[..], 3u8), (b"MQTT", 2), (b"MQIsdp", 4)] {
            let mut c = Client::open(s.addr, V311).await;
            c.send_raw(&raw_connect(name, level, 0x02, "lvl")).await;
            assert_eq!(
                c.recv_frame().await,
                [0x20, 0x02, 0x00, 0x01],
                "level {level} with name {:?}",
                String::from_utf8_lossy(name)
            );
            c.expect_closed().await;
        }
    }

    /// [MQTT-3.1.2-1] A protocol name other than `MQTT` (or 3.1's `MQIsdp`): the connection
    /// is closed without CONNACK.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_protocol_name_closes() {
        let s = start_default().await;
        let mut by = Bystander::new(s.addr).await;
        for name in [&b"MQTX"[..], b"mqtt", b"MQTT\0", b""] {
            let mut c = Client::open(s.addr, V311).await;
            c.send_raw(&raw_connect(name, 4, 0x02, "name")).await;
            c.expect_closed().await;
        }
        by.check().await;
    }

    /// [MQTT-3.1.2-3] The reserved flag of CONNECT must be 0, else the connection closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reserved_connect_flag_closes() {
        let s = start_default().await;
        let mut c = Client::open(s.addr, V311).await;
        c.send_raw(&raw_connect(b"MQTT", 4, 0x03, "reserved")).await;
        c.expect_closed().await;
    }

    /// [MQTT-3.1.3-7] [MQTT-3.1.3-6] A zero-length client id with clean session is accepted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_client_id_with_clean_session_accepted() {
        let s = start_default().await;
        let mut c = Client::open(s.addr, V311).await;
        c.send_raw(&raw_connect(b"MQTT", 4, 0x02, "")).await;
        assert_eq!(c.recv_frame().await, [0x20, 0x02, 0x00, 0x00]);
        c.subscribe("anon/t", Q0).await;
        c.publish("anon/t", Q0, b"self").await;
        assert_eq!(&c.recv_publish().await.payload[..], b"self");
    }

    /// [MQTT-3.1.3-8] A zero-length client id without clean session: return code 0x02, then
    /// the connection closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_client_id_without_clean_session_rejected() {
        let s = start_default().await;
        let mut c = Client::open(s.addr, V311).await;
        c.send_raw(&raw_connect(b"MQTT", 4, 0x00, "")).await;
        assert_eq!(c.recv_frame().await, [0x20, 0x02, 0x00, 0x02]);
        c.expect_closed().await;
        assert_eq!(s.server.broker.session_count(), 0);
    }

    /// [MQTT-3.1.3-5] A client id longer than the broker accepts: return code 0x02.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn too_long_client_id_rejected() {
        let mut cfg = config();
        cfg.broker.max_client_id_len = 8;
        let s = start(cfg).await;
        let (mut c, ack) = Client::connect_with(s.addr, connect_packet(V311, "123456789")).await;
        assert_eq!(ack.code, ReasonCode::ClientIdentifierNotValid);
        c.expect_closed().await;
        Client::v311(s.addr, "12345678").await.ping().await;
    }

    /// [MQTT-3.2.2-1..3] Session present is 0 for a new or clean session and 1 when a
    /// persistent session is resumed; clean session discards the stored session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn session_present_is_truthful() {
        let s = start_default().await;
        let persistent = || {
            let mut c = connect_packet(V311, "sp");
            c.clean_start = false;
            c
        };
        let (c, ack) = Client::connect_ok(s.addr, persistent()).await;
        assert!(!ack.session_present, "new session");
        c.disconnect().await;
        let mut c = Client::open(s.addr, V311).await;
        c.send(&Packet::Connect(Box::new(persistent()))).await;
        assert_eq!(c.recv_frame().await, [0x20, 0x02, 0x01, 0x00], "resumed");
        c.disconnect().await;
        let (c, ack) = Client::connect_ok(s.addr, connect_packet(V311, "sp")).await;
        assert!(!ack.session_present, "clean session never has a session");
        c.disconnect().await;
        let (c, ack) = Client::connect_ok(s.addr, persistent()).await;
        assert!(!ack.session_present, "clean session discarded the old one");
        c.disconnect().await;
    }

    /// [MQTT-3.1.4-2] A second connection with the same client id takes over: the first
    /// connection is closed (3.1.1 has no DISCONNECT from the server) and its will is
    /// published; the new one works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn takeover_closes_old_connection() {
        let s = start_default().await;
        let mut w = Client::v311(s.addr, "watcher").await;
        w.subscribe("takeover/will", Q1).await;
        let mut first = connect_packet(V311, "same");
        first.will = Some(will("takeover/will", b"first gone", Q1, false));
        let (mut old, _) = Client::connect_ok(s.addr, first).await;
        let (mut new, ack) = Client::connect_ok(s.addr, connect_packet(V311, "same")).await;
        assert!(!ack.session_present);
        old.expect_closed().await;
        assert_eq!(&w.recv_publish_acked().await.payload[..], b"first gone");
        new.ping().await;
        new.subscribe("takeover/t", Q0).await;
        w.publish("takeover/t", Q0, b"to new").await;
        assert_eq!(&new.recv_publish().await.payload[..], b"to new");
    }

    /// [MQTT-3.1.0-1] The first packet must be CONNECT: anything else closes the connection
    /// without an answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_packet_not_connect_closes() {
        let s = start_default().await;
        let mut by = Bystander::new(s.addr).await;
        let firsts = [
            bytes_of(&Packet::PingReq, V311),
            bytes_of(&Packet::Publish(publish("x", Q0, 0, b"early")), V311),
            bytes_of(
                &subscribe_packet(1, vec![subscription("#", opts(Q0))]),
                V311,
            ),
            bytes_of(&disconnect(ReasonCode::Success), V311),
        ];
        for first in firsts {
            let mut c = Client::open(s.addr, V311).await;
            c.send_raw(&first).await;
            c.expect_closed().await;
        }
        by.check().await;
    }

    /// [MQTT-3.1.0-2] A second CONNECT is a protocol violation: the connection closes and the
    /// will is published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_connect_closes_and_publishes_will() {
        let s = start_default().await;
        let mut w = Client::v311(s.addr, "watcher").await;
        w.subscribe("second/will", Q0).await;
        let mut cp = connect_packet(V311, "twice");
        cp.will = Some(will("second/will", b"bye", Q0, false));
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.send(&Packet::Connect(Box::new(connect_packet(V311, "twice"))))
            .await;
        c.expect_closed().await;
        assert_eq!(&w.recv_publish().await.payload[..], b"bye");
    }

    /// A CONNECT that does not arrive within the configured connect timeout closes the
    /// socket, also when only part of it arrived.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_timeout_closes_socket() {
        let mut cfg = config();
        cfg.connect_timeout = Duration::from_secs(1);
        let s = start(cfg).await;
        let mut silent = Client::open(s.addr, V311).await;
        let mut partial = Client::open(s.addr, V311).await;
        partial
            .send_raw(&raw_connect(b"MQTT", 4, 0x02, "slow")[..5])
            .await;
        let started = std::time::Instant::now();
        silent.expect_closed().await;
        partial.expect_closed().await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(800),
            "closed too early: {waited:?}"
        );
        // A client that connects in time is not affected.
        Client::v311(s.addr, "in-time").await.ping().await;
    }

    /// [MQTT-3.1.2-22] (3.1.1) A password without a user name is malformed: close.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_without_username_closes() {
        let s = start_default().await;
        let mut body = raw_connect(b"MQTT", 4, 0x42, "pw");
        // Append the password field and fix the remaining length (one byte here).
        body.extend_from_slice(&[0x00, 0x02, b'p', b'w']);
        body[1] += 4;
        let mut c = Client::open(s.addr, V311).await;
        c.send_raw(&body).await;
        c.expect_closed().await;
    }

    /// User name and password are accepted when no authentication is configured.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn username_and_password_accepted() {
        let s = start_default().await;
        let mut cp = connect_packet(V311, "user");
        cp.username = Some(mstr("alice"));
        cp.password = Some(bytes::Bytes::from_static(b"secret"));
        let (mut c, ack) = Client::connect_ok(s.addr, cp).await;
        assert!(!ack.session_present);
        c.ping().await;
    }

    /// Graceful shutdown closes 3.1.1 connections (which have no DISCONNECT from the
    /// server) and stops accepting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_closes_connections() {
        let s = start_default().await;
        let mut c = Client::v311(s.addr, "bye").await;
        let addr = s.addr;
        let stopping = tokio::spawn(s.server.shutdown(Duration::from_secs(2)));
        c.expect_closed().await;
        stopping.await.expect("shutdown task");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer accepting"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3.12 PINGREQ / 3.13 PINGRESP and keep-alive (3.1.2.10)
// ---------------------------------------------------------------------------------------------
mod keep_alive {
    use super::*;

    /// [MQTT-3.12.4-1] PINGREQ is answered with PINGRESP, exactly `D0 00`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pingresp_bytes() {
        let s = start_default().await;
        let mut c = Client::v311(s.addr, "pinger").await;
        c.send_raw(&[0xC0, 0x00]).await;
        assert_eq!(c.recv_frame().await, [0xD0, 0x00]);
    }

    /// [MQTT-3.1.2-24] A client silent for 1.5 x its keep-alive is disconnected and its will
    /// is published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silence_closes_after_one_and_a_half_keep_alive() {
        let s = start_default().await;
        let mut w = Client::v311(s.addr, "watcher").await;
        w.subscribe("ka/will", Q1).await;
        let mut cp = connect_packet(V311, "sleepy");
        cp.keep_alive = 1;
        cp.will = Some(will("ka/will", b"timed out", Q1, false));
        let started = std::time::Instant::now();
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.expect_nothing_for(Duration::from_millis(1200)).await;
        c.expect_closed().await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400) && waited < Duration::from_millis(2500),
            "closed after {waited:?}, expected about 1.5 s"
        );
        assert_eq!(&w.recv_publish_acked().await.payload[..], b"timed out");
    }

    /// Packets (here PINGREQ) within the keep-alive keep the connection open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pings_keep_the_connection_alive() {
        let s = start_default().await;
        let mut cp = connect_packet(V311, "pinging");
        cp.keep_alive = 1;
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.ping().await;
        }
    }

    /// Keep-alive 0 turns the mechanism off.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_zero_never_times_out() {
        let s = start_default().await;
        let mut cp = connect_packet(V311, "forever");
        cp.keep_alive = 0;
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.expect_nothing_for(Duration::from_millis(1600)).await;
        c.ping().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3.1.2.5 Will
// ---------------------------------------------------------------------------------------------
mod will {
    use super::*;

    async fn watcher(s: &TestServer, f: &str) -> Client {
        let mut w = Client::v311(s.addr, &unique_id("watcher")).await;
        w.subscribe(f, Q2).await;
        w
    }

    /// [MQTT-3.1.2-8] [MQTT-3.1.2-17] A connection closed without DISCONNECT publishes the
    /// will with its QoS, and stores it when Will Retain is set.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abnormal_close_publishes_will() {
        let s = start_default().await;
        let mut w = watcher(&s, "w/#").await;
        let mut cp = connect_packet(V311, "dying");
        cp.will = Some(will("w/dying", b"gone", Q1, true));
        let (c, _) = Client::connect_ok(s.addr, cp).await;
        w.expect_nothing().await;
        c.drop_connection();
        let m = w.recv_publish_acked().await;
        assert_eq!(m.topic, Some(topic("w/dying")));
        assert_eq!((&m.payload[..], m.qos.qos()), (&b"gone"[..], Q1));
        let mut late = Client::v311(s.addr, "late").await;
        late.subscribe("w/dying", Q0).await;
        let r = late.recv_publish().await;
        assert!(r.retain, "will retain stored the will");
        assert_eq!(&r.payload[..], b"gone");
    }

    /// [MQTT-3.14.4-3] After DISCONNECT the will is discarded, not published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disconnect_discards_will() {
        let s = start_default().await;
        let mut w = watcher(&s, "w/#").await;
        let mut cp = connect_packet(V311, "polite");
        cp.will = Some(will("w/polite", b"should not appear", Q0, false));
        let (c, _) = Client::connect_ok(s.addr, cp).await;
        c.disconnect().await;
        w.expect_nothing_for(Duration::from_millis(500)).await;
    }

    /// The will is published when the broker closes the connection for a protocol error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn protocol_error_publishes_will() {
        let s = start_default().await;
        let mut w = watcher(&s, "w/#").await;
        let mut cp = connect_packet(V311, "rude");
        cp.will = Some(will("w/rude", b"malformed", Q2, false));
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.send_raw(&[0x00, 0x00]).await;
        c.expect_closed().await;
        let m = w.recv_publish_acked().await;
        assert_eq!((&m.payload[..], m.qos.qos()), (&b"malformed"[..], Q2));
    }
}

// ---------------------------------------------------------------------------------------------
// 3.1.2.4 Clean Session and 4.1 session state
// ---------------------------------------------------------------------------------------------
mod session {
    use super::*;

    fn persistent(id: &str) -> midge_codec::Connect {
        let mut c = connect_packet(V311, id);
        c.clean_start = false;
        c
    }

    /// [MQTT-3.1.2-5] QoS 1 and 2 messages for an offline persistent session
    /// are queued and delivered in order on reconnect; QoS 0 ones are not queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offline_queue_in_order_without_qos0() {
        let s = start_default().await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("offline")).await;
        c.subscribe("q/#", Q2).await;
        c.disconnect().await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("q/0", Q0, b"qos0").await;
        p.publish("q/1", Q1, b"qos1").await;
        p.publish("q/2", Q2, b"qos2").await;
        p.publish("q/3", Q1, b"qos1 again").await;
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("offline")).await;
        assert!(ack.session_present);
        let mut got = Vec::new();
        for _ in 0..3 {
            let m = c.recv_publish_acked().await;
            got.push((m.topic.expect("topic").to_string(), m.qos.qos()));
        }
        assert_eq!(
            got,
            [("q/1".into(), Q1), ("q/2".into(), Q2), ("q/3".into(), Q1)]
        );
        c.expect_nothing().await;
    }

    /// QoS 0 is queued for offline sessions when `queue_qos0_offline` is configured.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qos0_queued_offline_when_configured() {
        let mut cfg = config();
        cfg.broker.queue_qos0_offline = true;
        let s = start(cfg).await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("q0")).await;
        c.subscribe("q0/t", Q0).await;
        c.disconnect().await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("q0/t", Q0, b"kept").await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("q0")).await;
        assert_eq!(&c.recv_publish().await.payload[..], b"kept");
    }

    async fn queue_limit(policy: midge_broker::QueueFullPolicy) -> Vec<u8> {
        let mut cfg = config();
        cfg.broker.max_queued_messages = 3;
        cfg.broker.queue_full_policy = policy;
        let s = start(cfg).await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("limited")).await;
        c.subscribe("lim", Q1).await;
        c.disconnect().await;
        let mut p = Client::v311(s.addr, "pub").await;
        for i in 1..=5u8 {
            p.publish("lim", Q1, &[i]).await;
        }
        let (mut c, _) = Client::connect_ok(s.addr, persistent("limited")).await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(c.recv_publish_acked().await.payload[0]);
        }
        c.expect_nothing().await;
        let dropped = s
            .server
            .broker
            .metrics
            .dropped_queue_full
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(dropped, 2, "drops are counted in a metric");
        got
    }

    /// A full session queue drops the oldest message by default...
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_limit_drop_oldest() {
        assert_eq!(
            queue_limit(midge_broker::QueueFullPolicy::DropOldest).await,
            [3, 4, 5]
        );
    }

    /// ...or the newest when configured.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_limit_drop_newest() {
        assert_eq!(
            queue_limit(midge_broker::QueueFullPolicy::DropNewest).await,
            [1, 2, 3]
        );
    }

    /// [MQTT-3.1.2-6] Clean session discards the previous session and its subscriptions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clean_session_discards_subscriptions() {
        let s = start_default().await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("cleaner")).await;
        c.subscribe("cs/t", Q1).await;
        c.disconnect().await;
        let (c, ack) = Client::connect_ok(s.addr, connect_packet(V311, "cleaner")).await;
        assert!(!ack.session_present);
        c.disconnect().await;
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("cleaner")).await;
        assert!(!ack.session_present);
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("cs/t", Q1, b"x").await;
        c.expect_nothing().await;
    }

    /// [MQTT-3.1.2-4] Subscriptions of a persistent session survive the connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persistent_subscriptions_survive() {
        let s = start_default().await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("keeper")).await;
        c.subscribe("keep/t", Q1).await;
        c.drop_connection();
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("keeper")).await;
        assert!(ack.session_present);
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("keep/t", Q1, b"still here").await;
        assert_eq!(&c.recv_publish_acked().await.payload[..], b"still here");
    }

    /// [MQTT-4.3.3-2] The inbound QoS 2 state is part of the session: a PUBLISH re-sent
    /// after reconnecting, before PUBREL, is not delivered a second time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inbound_qos2_state_survives_reconnect() {
        let s = start_default().await;
        let mut sub = Client::v311(s.addr, "sub").await;
        sub.subscribe("x2", Q2).await;
        let (mut p, _) = Client::connect_ok(s.addr, persistent("qos2-pub")).await;
        let m = publish("x2", Q2, 5, b"exactly once");
        p.send_publish(m.clone()).await;
        assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id == pid(5)));
        p.drop_connection();
        let (mut p, connack) = Client::connect_ok(s.addr, persistent("qos2-pub")).await;
        assert!(connack.session_present);
        p.send_publish(midge_codec::Publish { dup: true, ..m })
            .await;
        assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id == pid(5)));
        p.send(&Packet::PubRel(ack(5))).await;
        assert!(matches!(p.recv().await, Packet::PubComp(a) if a.packet_id == pid(5)));
        assert_eq!(&sub.recv_publish_acked().await.payload[..], b"exactly once");
        sub.expect_nothing().await;
    }

    /// [MQTT-3.1.4-2] [MQTT-4.4.0-1] A takeover by a persistent connection resumes the
    /// session: unacknowledged messages are re-sent to the new connection with DUP set.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn takeover_resumes_inflight() {
        let s = start_default().await;
        let (mut old, _) = Client::connect_ok(s.addr, persistent("mover")).await;
        old.subscribe("mv", Q1).await;
        let mut p = Client::v311(s.addr, "pub").await;
        p.publish("mv", Q1, b"in flight").await;
        let first = old.recv_publish().await;
        let (mut new, ack) = Client::connect_ok(s.addr, persistent("mover")).await;
        assert!(ack.session_present);
        old.expect_closed().await;
        let again = new.recv_publish_acked().await;
        assert!(again.dup);
        assert_eq!(
            (again.qos, &again.payload[..]),
            (first.qos, &b"in flight"[..])
        );
        new.expect_nothing().await;
    }

    /// The queue of a session is also limited in bytes (payload and topic).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_bytes_limit() {
        let mut cfg = config();
        cfg.broker.max_queued_bytes = 12;
        let s = start(cfg).await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("bytes")).await;
        c.subscribe("b", Q1).await;
        c.disconnect().await;
        let mut p = Client::v311(s.addr, "pub").await;
        for i in 1..=4u8 {
            // 1 byte of topic + 4 of payload: two fit in 12 bytes.
            p.publish("b", Q1, &[i; 4]).await;
        }
        let (mut c, _) = Client::connect_ok(s.addr, persistent("bytes")).await;
        assert_eq!(c.recv_publish_acked().await.payload[0], 3);
        assert_eq!(c.recv_publish_acked().await.payload[0], 4);
        c.expect_nothing().await;
    }
}
