//! Black-box conformance of midge to MQTT 5.0 over real TCP: CONNECT/CONNACK, keep-alive,
//! wills and session state (chapters 3.1, 3.2, 3.12 to 3.15 and 4.1 of the 5.0
//! specification). PUBLISH, SUBSCRIBE and the 5.0 flow-control features are in
//! `conformance_v5_publish.rs`, malformed input in `conformance_v5_malformed.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use midge_codec::{Connect, Disconnect, DisconnectProperties, Packet, ReasonCode, WillProperties};

/// A 5.0 CONNECT that resumes (clean start 0) with a session expiry interval.
fn persistent(id: &str, expiry: u32) -> Connect {
    connect_v5_with(id, |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(expiry);
    })
}

// ---------------------------------------------------------------------------------------------
// 3.1 CONNECT / 3.2 CONNACK
// ---------------------------------------------------------------------------------------------
mod connect {
    use super::*;

    /// Section 3.2.2.3: CONNACK advertises what the broker supports, from its configuration.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connack_advertises_capabilities() {
        let mut cfg = config();
        cfg.broker.receive_maximum = 10;
        cfg.broker.max_packet_size = 4096;
        cfg.broker.topic_alias_maximum = 5;
        cfg.broker.max_qos = Q1;
        let s = start(cfg).await;
        let (_c, ack) = Client::connect_ok(s.addr, connect_packet(V5, "caps")).await;
        let p = &ack.properties;
        assert!(!ack.session_present);
        assert_eq!(p.receive_maximum, Some(nz16(10)), "Receive Maximum");
        assert_eq!(
            p.maximum_packet_size,
            Some(nz32(4096)),
            "Maximum Packet Size"
        );
        assert_eq!(p.topic_alias_maximum, Some(5), "Topic Alias Maximum");
        assert_eq!(p.maximum_qos, Some(Q1), "Maximum QoS");
        assert_eq!(p.retain_available, Some(true), "Retain Available");
        assert_eq!(p.wildcard_subscription_available, Some(true));
        assert_eq!(p.subscription_identifiers_available, Some(true));
        assert_eq!(p.shared_subscription_available, Some(true));
        assert_eq!(
            p.assigned_client_identifier, None,
            "the client chose its id"
        );
        assert_eq!(p.server_keep_alive, None, "keep-alive not capped");
        assert_eq!(p.session_expiry_interval, None, "expiry granted as asked");
        assert_eq!(p.response_information, None, "not requested");
        assert_eq!(p.reason_string, None);

        // Defaults: QoS 2 supported, so Maximum QoS is absent ([MQTT-3.2.2-9]).
        let s = start_default().await;
        let (_c, ack) = Client::connect_ok(s.addr, connect_packet(V5, "defaults")).await;
        assert_eq!(ack.properties.maximum_qos, None);
        assert_eq!(ack.properties.receive_maximum, Some(nz16(64)));

        let mut cfg = config();
        cfg.broker.retain_available = false;
        let s = start(cfg).await;
        let (_c, ack) = Client::connect_ok(s.addr, connect_packet(V5, "noretain")).await;
        assert_eq!(ack.properties.retain_available, Some(false));
    }

    /// [MQTT-3.1.2-2] An unsupported protocol level above 5 gets the 5.0 CONNACK 0x84 and the
    /// connection closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsupported_protocol_level() {
        let s = start_default().await;
        for level in [6u8, 7, 255] {
            let mut c = Client::open(s.addr, V5).await;
            c.send_raw(&raw_connect(b"MQTT", level, 0x02, "future"))
                .await;
            assert_eq!(
                c.recv_frame().await,
                [0x20, 0x03, 0x00, 0x84, 0x00],
                "level {level}"
            );
            c.expect_closed().await;
        }
    }

    /// [MQTT-3.1.3-6] [MQTT-3.2.2-16] A zero-length client id gets a unique Assigned Client
    /// Identifier, under which the session can be resumed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_client_id_is_assigned() {
        let s = start_default().await;
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("", 60)).await;
        let id = ack
            .properties
            .assigned_client_identifier
            .expect("Assigned Client Identifier");
        assert!(!id.is_empty());
        let (_other, ack2) = Client::connect_ok(s.addr, connect_packet(V5, "")).await;
        let id2 = ack2
            .properties
            .assigned_client_identifier
            .expect("Assigned Client Identifier");
        assert_ne!(id, id2, "assigned ids are unique");
        c.subscribe("assigned/t", Q1).await;
        c.disconnect().await;
        let (mut c, ack) = Client::connect_ok(s.addr, persistent(&id, 60)).await;
        assert!(ack.session_present, "session kept under the assigned id");
        assert_eq!(ack.properties.assigned_client_identifier, None);
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("assigned/t", Q1, b"found").await;
        assert_eq!(&c.recv_publish_acked().await.payload[..], b"found");
    }

    /// [MQTT-3.1.2-4..6] [MQTT-3.2.2-2..3] Clean Start and Session Expiry Interval decide
    /// whether a session is resumed, and Session Present says so truthfully.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn session_present_is_truthful() {
        let s = start_default().await;
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("sp", 60)).await;
        assert!(!ack.session_present, "new session");
        c.subscribe("sp/t", Q1).await;
        c.disconnect().await;
        let (c, ack) = Client::connect_ok(s.addr, persistent("sp", 60)).await;
        assert!(ack.session_present, "resumed");
        c.disconnect().await;
        let clean = connect_v5_with("sp", |c| {
            c.properties.session_expiry_interval = Some(60);
        });
        let (c, ack) = Client::connect_ok(s.addr, clean).await;
        assert!(!ack.session_present, "clean start discards the session");
        c.disconnect().await;
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("sp", 60)).await;
        assert!(ack.session_present, "the clean session had expiry 60");
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("sp/t", Q1, b"x").await;
        c.expect_nothing().await;
    }

    /// [MQTT-3.1.2-23] Session Expiry Interval 0 (or absent): the session ends with the
    /// connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn session_expiry_zero_ends_session() {
        let s = start_default().await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("zero", 0)).await;
        c.subscribe("zero/t", Q1).await;
        c.drop_connection();
        eventually("session removed", || s.server.broker.session_count() == 0).await;
        let (c, ack) = Client::connect_ok(s.addr, persistent("zero", 0)).await;
        assert!(!ack.session_present);
        c.disconnect().await;
        assert_eq!(s.server.broker.subscription_count(), 0);
    }

    /// A session expires Session Expiry Interval seconds after its connection closed, not
    /// before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn session_expires_after_interval() {
        let s = start_default().await;
        let (mut a, _) = Client::connect_ok(s.addr, persistent("expiring", 1)).await;
        a.subscribe("exp/t", Q1).await;
        a.disconnect().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(s.server.broker.session("expiring").is_some(), "not yet");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(s.server.broker.session("expiring").is_none(), "expired");
        let (a, ack) = Client::connect_ok(s.addr, persistent("expiring", 1)).await;
        assert!(!ack.session_present);
        a.disconnect().await;
    }

    /// Section 3.14.2.2.2: DISCONNECT may change the Session Expiry Interval, but not from 0 to
    /// non-zero (a protocol error answered with DISCONNECT 0x82).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disconnect_session_expiry() {
        let s = start_default().await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("dse", 60)).await;
        c.send(&Packet::Disconnect(Disconnect {
            code: ReasonCode::Success,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                ..Default::default()
            },
        }))
        .await;
        c.expect_closed().await;
        eventually("session ended", || s.server.broker.session("dse").is_none()).await;

        let (mut c, _) = Client::connect_ok(s.addr, persistent("dse0", 0)).await;
        c.send(&Packet::Disconnect(Disconnect {
            code: ReasonCode::Success,
            properties: DisconnectProperties {
                session_expiry_interval: Some(60),
                ..Default::default()
            },
        }))
        .await;
        c.expect_disconnect(ReasonCode::ProtocolError).await;
    }

    /// The broker caps the Session Expiry Interval and says so in CONNACK.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn session_expiry_capped() {
        let mut cfg = config();
        cfg.broker.max_session_expiry_secs = 10;
        let s = start(cfg).await;
        let (_c, ack) = Client::connect_ok(s.addr, persistent("cap", 100)).await;
        assert_eq!(ack.properties.session_expiry_interval, Some(10));
    }

    /// [MQTT-3.1.4-3] A second connection with the same client id takes over: the old one
    /// gets DISCONNECT 0x8E and is closed; the session (subscriptions) moves to the new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn takeover_sends_session_taken_over() {
        let s = start_default().await;
        let (mut old, _) = Client::connect_ok(s.addr, persistent("same", 60)).await;
        old.subscribe("take/t", Q1).await;
        let (mut new, ack) = Client::connect_ok(s.addr, persistent("same", 60)).await;
        assert!(ack.session_present);
        old.expect_disconnect(ReasonCode::SessionTakenOver).await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("take/t", Q1, b"to the new one").await;
        assert_eq!(
            &new.recv_publish_acked().await.payload[..],
            b"to the new one"
        );
        assert_eq!(s.server.broker.session_count(), 2);
    }

    /// [MQTT-3.1.0-1] The first packet must be CONNECT: closed without an answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_packet_not_connect_closes() {
        let s = start_default().await;
        let mut by = Bystander::new(s.addr).await;
        for first in [
            bytes_of(&Packet::PingReq, V5),
            bytes_of(&Packet::Auth(Default::default()), V5),
            bytes_of(&disconnect(ReasonCode::Success), V5),
        ] {
            let mut c = Client::open(s.addr, V5).await;
            c.send_raw(&first).await;
            c.expect_closed().await;
        }
        by.check().await;
    }

    /// [MQTT-3.1.0-2] A second CONNECT is a protocol error: DISCONNECT 0x82.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_connect_is_protocol_error() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "twice").await;
        c.send(&Packet::Connect(Box::new(connect_packet(V5, "twice"))))
            .await;
        let d = c.expect_disconnect(ReasonCode::ProtocolError).await;
        assert!(
            d.properties.reason_string.is_some(),
            "reason string explains"
        );
    }

    /// A 5.0 CONNECT that does not complete within the connect timeout: closed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_timeout_closes_socket() {
        let mut cfg = config();
        cfg.connect_timeout = Duration::from_secs(1);
        let s = start(cfg).await;
        let mut c = Client::open(s.addr, V5).await;
        let bytes = bytes_of(&Packet::Connect(Box::new(connect_packet(V5, "slow"))), V5);
        c.send_raw(&bytes[..bytes.len() - 2]).await;
        let started = Instant::now();
        c.expect_closed().await;
        assert!(started.elapsed() >= Duration::from_millis(800));
    }

    /// [MQTT-4.12.0-1] An authentication method the broker does not
    /// support: CONNACK 0x8C, then close; no session is created.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsupported_auth_method() {
        let s = start_default().await;
        let mut existing = Client::v5(s.addr, "auth").await;
        let cp = connect_v5_with("auth", |c| {
            c.properties.authentication_method = Some(mstr("SCRAM-SHA-1"));
            c.properties.authentication_data = Some(bytes::Bytes::from_static(b"client-first"));
        });
        let (mut c, ack) = Client::connect_with(s.addr, cp).await;
        assert_eq!(ack.code, ReasonCode::BadAuthenticationMethod);
        assert!(!ack.session_present);
        c.expect_closed().await;
        // The refused CONNECT did not take over the connection with the same client id.
        existing.ping().await;
        assert_eq!(s.server.broker.session_count(), 1);
    }

    /// Section 4.12: AUTH without an authentication method in CONNECT is a protocol
    /// error: DISCONNECT 0x82.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auth_packet_without_method_is_protocol_error() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "auth-later").await;
        c.send(&Packet::Auth(midge_codec::Auth {
            code: ReasonCode::ReAuthenticate,
            properties: midge_codec::AuthProperties {
                authentication_method: Some(mstr("PLAIN")),
                ..Default::default()
            },
        }))
        .await;
        c.expect_disconnect(ReasonCode::ProtocolError).await;
    }

    /// [MQTT-3.1.3-5] A client id the broker does not accept (too long here): CONNACK 0x85.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_id_not_valid() {
        let mut cfg = config();
        cfg.broker.max_client_id_len = 4;
        let s = start(cfg).await;
        let (mut c, ack) = Client::connect_with(s.addr, connect_packet(V5, "toolong")).await;
        assert_eq!(ack.code, ReasonCode::ClientIdentifierNotValid);
        c.expect_closed().await;
    }

    /// [MQTT-3.1.2-28] Request Response Information 1 returns Response Information; without
    /// the request none is sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn response_information() {
        let s = start_default().await;
        let cp = connect_v5_with("asker", |c| {
            c.properties.request_response_information = Some(true);
        });
        let (_c, ack) = Client::connect_ok(s.addr, cp).await;
        let info = ack
            .properties
            .response_information
            .expect("Response Information");
        assert_eq!(info.as_str(), "midge/response/asker");
        let cp = connect_v5_with("quiet", |c| {
            c.properties.request_response_information = Some(false);
        });
        let (_c, ack) = Client::connect_ok(s.addr, cp).await;
        assert_eq!(ack.properties.response_information, None);
    }

    /// [MQTT-3.2.2-12] [MQTT-3.2.2-13] A will QoS above the maximum gets CONNACK 0x9B; a
    /// retained will when retain is unavailable gets 0x9A.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn will_beyond_capabilities_refused() {
        let mut cfg = config();
        cfg.broker.max_qos = Q1;
        cfg.broker.retain_available = false;
        let s = start(cfg).await;
        let cp = connect_v5_with("w2", |c| c.will = Some(will("w/t", b"x", Q2, false)));
        let (mut c, ack) = Client::connect_with(s.addr, cp).await;
        assert_eq!(ack.code, ReasonCode::QoSNotSupported);
        c.expect_closed().await;
        let cp = connect_v5_with("wr", |c| c.will = Some(will("w/t", b"x", Q1, true)));
        let (mut c, ack) = Client::connect_with(s.addr, cp).await;
        assert_eq!(ack.code, ReasonCode::RetainNotSupported);
        c.expect_closed().await;
    }

    /// 5.0 allows a password without a user name (unlike 3.1.1).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_without_username_accepted() {
        let s = start_default().await;
        let cp = connect_v5_with("pw", |c| {
            c.password = Some(bytes::Bytes::from_static(b"pw"))
        });
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.ping().await;
    }

    /// Malformed 5.0 CONNECT packets are answered with CONNACK carrying the reason code of
    /// the error, then the connection closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_connect_gets_connack_reason() {
        let s = start_default().await;
        let mut by = Bystander::new(s.addr).await;
        // Property blocks spliced into a minimal 5.0 CONNECT.
        let with_props = |props: &[u8]| {
            let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C];
            let mut len = Vec::new();
            push_vbi(&mut len, props.len());
            body.extend_from_slice(&len);
            body.extend_from_slice(props);
            body.extend_from_slice(&[0x00, 0x01, b'c']);
            frame(0x10, &body)
        };
        let cases: Vec<(&str, Vec<u8>, ReasonCode)> = vec![
            (
                "reserved flag",
                raw_connect(b"MQTT", 5, 0x03, "r"),
                ReasonCode::MalformedPacket,
            ),
            (
                "duplicate session expiry",
                with_props(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]),
                ReasonCode::ProtocolError,
            ),
            (
                "receive maximum 0",
                with_props(&[0x21, 0, 0]),
                ReasonCode::ProtocolError,
            ),
            (
                "maximum packet size 0",
                with_props(&[0x27, 0, 0, 0, 0]),
                ReasonCode::ProtocolError,
            ),
            (
                "unknown property",
                with_props(&[0x7F, 0]),
                ReasonCode::MalformedPacket,
            ),
            (
                "property not allowed in CONNECT",
                with_props(&[0x23, 0, 1]),
                ReasonCode::MalformedPacket,
            ),
            (
                "request problem information 2",
                with_props(&[0x17, 2]),
                ReasonCode::ProtocolError,
            ),
            (
                "authentication data without method",
                with_props(&[0x16, 0, 1, b'x']),
                ReasonCode::ProtocolError,
            ),
            (
                "will QoS without will flag",
                raw_connect(b"MQTT", 5, 0x02 | 0x10, "w"),
                ReasonCode::MalformedPacket,
            ),
        ];
        for (what, bytes, code) in cases {
            let mut c = Client::open(s.addr, V5).await;
            c.name = what.to_owned();
            c.send_raw(&bytes).await;
            let ack = c.recv_connack().await;
            assert_eq!(ack.code, code, "{what}");
            assert!(!ack.session_present, "{what}");
            c.expect_closed().await;
            by.check().await;
        }
    }

    /// Graceful shutdown sends DISCONNECT 0x8B to 5.0 clients, then closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_sends_server_shutting_down() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "bye").await;
        let stopping = tokio::spawn(s.server.shutdown(Duration::from_secs(2)));
        c.expect_disconnect(ReasonCode::ServerShuttingDown).await;
        stopping.await.expect("shutdown task");
    }

    /// A will topic that is not a valid topic name: CONNACK 0x90 (wildcard) or 0x82
    /// (empty), then close.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_will_topic() {
        let s = start_default().await;
        for (t, code) in [
            (&b"will/+"[..], ReasonCode::TopicNameInvalid),
            (b"will/#", ReasonCode::TopicNameInvalid),
            (b"", ReasonCode::ProtocolError),
        ] {
            // CONNECT with the will flag: will properties (empty), topic, payload "x".
            let mut bytes = raw_connect(b"MQTT", 5, 0x02 | 0x04, "w");
            let mut tail = vec![0x00];
            tail.extend_from_slice(&(t.len() as u16).to_be_bytes());
            tail.extend_from_slice(t);
            tail.extend_from_slice(&[0x00, 0x01, b'x']);
            bytes[1] += tail.len() as u8;
            bytes.extend_from_slice(&tail);
            let mut c = Client::open(s.addr, V5).await;
            c.send_raw(&bytes).await;
            assert_eq!(c.recv_connack().await.code, code, "will topic {t:?}");
            c.expect_closed().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3.1.2.10 Keep Alive, 3.12 PINGREQ, 3.13 PINGRESP
// ---------------------------------------------------------------------------------------------
mod keep_alive {
    use super::*;

    /// PINGREQ gets PINGRESP `D0 00`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pingresp() {
        let s = start_default().await;
        let mut c = Client::v5(s.addr, "ping").await;
        c.send_raw(&[0xC0, 0x00]).await;
        assert_eq!(c.recv_frame().await, [0xD0, 0x00]);
    }

    /// [MQTT-3.1.2-22] Silence for 1.5 x keep-alive: DISCONNECT 0x8D, close, and the will is
    /// published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silence_disconnects_with_keep_alive_timeout() {
        let s = start_default().await;
        let mut w = Client::v5(s.addr, "watcher").await;
        w.subscribe("ka/will", Q0).await;
        let cp = connect_v5_with("sleepy", |c| {
            c.keep_alive = 1;
            c.will = Some(will("ka/will", b"timed out", Q0, false));
        });
        let started = Instant::now();
        let (mut c, ack) = Client::connect_ok(s.addr, cp).await;
        assert_eq!(ack.properties.server_keep_alive, None);
        c.expect_nothing_for(Duration::from_millis(1200)).await;
        c.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400) && waited < Duration::from_millis(2500),
            "closed after {waited:?}"
        );
        assert_eq!(&w.recv_publish().await.payload[..], b"timed out");
    }

    /// [MQTT-3.2.2-21] With a configured maximum keep-alive the broker answers Server Keep
    /// Alive to a client asking for more (or for 0) and enforces it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_keep_alive_caps_and_imposes() {
        let mut cfg = config();
        cfg.broker.max_keep_alive_secs = 1;
        let s = start(cfg).await;
        let (mut within, ack) =
            Client::connect_ok(s.addr, connect_v5_with("within", |c| c.keep_alive = 1)).await;
        assert_eq!(
            ack.properties.server_keep_alive, None,
            "1 s is within the cap"
        );
        let started = Instant::now();
        let (mut long, ack) =
            Client::connect_ok(s.addr, connect_v5_with("long", |c| c.keep_alive = 60)).await;
        assert_eq!(ack.properties.server_keep_alive, Some(1));
        let (mut zero, ack) =
            Client::connect_ok(s.addr, connect_v5_with("zero", |c| c.keep_alive = 0)).await;
        assert_eq!(
            ack.properties.server_keep_alive,
            Some(1),
            "0 would mean none"
        );
        long.expect_nothing_for(Duration::from_millis(1200)).await;
        long.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
        zero.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
        within.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
        assert!(started.elapsed() < Duration::from_millis(2500));
    }
}

// ---------------------------------------------------------------------------------------------
// 3.1.3.2 Will properties, 3.14 DISCONNECT and wills
// ---------------------------------------------------------------------------------------------
mod will {
    use super::*;

    async fn watcher(s: &TestServer) -> Client {
        let mut w = Client::v5(s.addr, &unique_id("watcher")).await;
        w.subscribe("will/#", Q1).await;
        w
    }

    /// [MQTT-3.14.4-3] DISCONNECT 0x00 discards the will; section 3.14.2.1: 0x04 "Disconnect
    /// with Will Message" publishes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disconnect_reason_decides_will() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let cp = connect_v5_with("normal", |c| {
            c.will = Some(will("will/normal", b"no", Q1, false))
        });
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.send(&disconnect(ReasonCode::Success)).await;
        c.expect_closed().await;
        w.expect_nothing().await;

        let cp = connect_v5_with("with-will", |c| {
            c.will = Some(will("will/with", b"yes", Q1, false))
        });
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.send(&disconnect(ReasonCode::DisconnectWithWillMessage))
            .await;
        c.expect_closed().await;
        let m = w.recv_publish_acked().await;
        assert_eq!((&m.payload[..], m.qos.qos()), (&b"yes"[..], Q1));
    }

    /// [MQTT-3.1.2-8] A connection lost without DISCONNECT publishes the will.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abnormal_close_publishes_will() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let cp = connect_v5_with("dying", |c| {
            c.will = Some(will("will/dying", b"bye", Q1, false))
        });
        let (c, _) = Client::connect_ok(s.addr, cp).await;
        c.drop_connection();
        assert_eq!(&w.recv_publish_acked().await.payload[..], b"bye");
    }

    /// [MQTT-3.1.3-9] Will Delay Interval delays the will after an abnormal close.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn will_delay_interval() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let mut cp = persistent("delayed", 60);
        cp.will = Some(will("will/delayed", b"late", Q0, false));
        cp.will
            .as_mut()
            .expect("will")
            .properties
            .will_delay_interval = Some(1);
        let (c, _) = Client::connect_ok(s.addr, cp).await;
        let dropped = Instant::now();
        c.drop_connection();
        w.expect_nothing_for(Duration::from_millis(700)).await;
        assert_eq!(&w.recv_publish().await.payload[..], b"late");
        let waited = dropped.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_millis(2000),
            "will after {waited:?}, expected about 1 s"
        );
    }

    /// [MQTT-3.1.3-9] A reconnect within the Will Delay Interval cancels the will.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconnect_within_delay_cancels_will() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let mut cp = persistent("phoenix", 60);
        cp.will = Some(will("will/phoenix", b"must not appear", Q0, false));
        cp.will
            .as_mut()
            .expect("will")
            .properties
            .will_delay_interval = Some(1);
        let (c, _) = Client::connect_ok(s.addr, cp).await;
        c.drop_connection();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("phoenix", 60)).await;
        assert!(ack.session_present);
        w.expect_nothing_for(Duration::from_millis(1500)).await;
        assert_eq!(s.server.broker.pending_wills(), 0);
        c.ping().await;
    }

    /// The will is published when the session ends, if that is before the will delay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn will_published_when_session_ends_before_delay() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let mut cp = persistent("short-session", 1);
        cp.will = Some(will("will/short", b"session over", Q0, false));
        cp.will
            .as_mut()
            .expect("will")
            .properties
            .will_delay_interval = Some(30);
        let (c, _) = Client::connect_ok(s.addr, cp).await;
        let dropped = Instant::now();
        c.drop_connection();
        assert_eq!(&w.recv_publish().await.payload[..], b"session over");
        assert!(dropped.elapsed() < Duration::from_millis(2000));
    }

    /// [MQTT-3.1.3-10] Will properties are carried to the subscribers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn will_properties_carried() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let props = WillProperties {
            will_delay_interval: None,
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(300),
            content_type: Some(mstr("text/plain")),
            response_topic: Some(topic("reply/here")),
            correlation_data: Some(bytes::Bytes::from_static(b"\x00\x01corr")),
            user_properties: vec![(mstr("k"), mstr("v1")), (mstr("k"), mstr("v2"))],
        };
        let cp = connect_v5_with("propwill", |c| {
            let mut wm = will("will/props", "é".as_bytes(), Q1, false);
            wm.properties = props.clone();
            c.will = Some(wm);
        });
        let (c, _) = Client::connect_ok(s.addr, cp).await;
        c.drop_connection();
        let m = w.recv_publish_acked().await;
        let p = &m.properties;
        assert_eq!(p.payload_format_indicator, Some(true));
        assert_eq!(p.content_type, props.content_type);
        assert_eq!(p.response_topic, props.response_topic);
        assert_eq!(p.correlation_data, props.correlation_data);
        assert_eq!(p.user_properties, props.user_properties, "order kept");
        let left = p.message_expiry_interval.expect("expiry forwarded");
        assert!((299..=300).contains(&left), "expiry {left}");
        assert_eq!(&m.payload[..], "é".as_bytes());
    }

    /// [MQTT-3.1.4-3] On takeover the old connection's will is published (no delay).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn takeover_publishes_will() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let cp = connect_v5_with("taken", |c| {
            c.will = Some(will("will/taken", b"replaced", Q0, false))
        });
        let (mut old, _) = Client::connect_ok(s.addr, cp).await;
        let (_new, _) = Client::connect_ok(s.addr, connect_packet(V5, "taken")).await;
        old.expect_disconnect(ReasonCode::SessionTakenOver).await;
        assert_eq!(&w.recv_publish().await.payload[..], b"replaced");
    }

    /// [MQTT-3.1.2-10] Only DISCONNECT 0x00 removes the will: a DISCONNECT with an error
    /// code publishes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disconnect_with_error_code_publishes_will() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let cp = connect_v5_with("erring", |c| {
            c.will = Some(will("will/erring", b"error exit", Q0, false))
        });
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.send(&disconnect(ReasonCode::UnspecifiedError)).await;
        c.expect_closed().await;
        assert_eq!(&w.recv_publish().await.payload[..], b"error exit");
    }

    /// Section 3.1.3.2.2: a takeover by a connection with Clean Start 0 and a
    /// will delay does not publish the old will (the session continues); with Clean Start 1
    /// it does (the session ends).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn takeover_and_will_delay() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let delayed = |id: &str| {
            let mut cp = persistent(id, 60);
            let mut wm = will(&format!("will/{id}"), id.as_bytes(), Q0, false);
            wm.properties.will_delay_interval = Some(5);
            cp.will = Some(wm);
            cp
        };
        let (mut old, _) = Client::connect_ok(s.addr, delayed("resumed")).await;
        let (_new, ack) = Client::connect_ok(s.addr, persistent("resumed", 60)).await;
        assert!(ack.session_present);
        old.expect_disconnect(ReasonCode::SessionTakenOver).await;
        w.expect_nothing().await;

        let (mut old, _) = Client::connect_ok(s.addr, delayed("restarted")).await;
        let (_new, ack) = Client::connect_ok(s.addr, connect_packet(V5, "restarted")).await;
        assert!(!ack.session_present);
        old.expect_disconnect(ReasonCode::SessionTakenOver).await;
        assert_eq!(&w.recv_publish().await.payload[..], b"restarted");
    }

    /// With Session Expiry 0 the session ends at once, so a delayed will is published at
    /// once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn will_delay_with_session_expiry_zero() {
        let s = start_default().await;
        let mut w = watcher(&s).await;
        let cp = connect_v5_with("brief", |c| {
            let mut wm = will("will/brief", b"now", Q0, false);
            wm.properties.will_delay_interval = Some(30);
            c.will = Some(wm);
        });
        let (c, _) = Client::connect_ok(s.addr, cp).await;
        c.drop_connection();
        let m = tokio::time::timeout(Duration::from_millis(500), w.recv_publish())
            .await
            .expect("will published without waiting for the delay");
        assert_eq!(&m.payload[..], b"now");
    }
}

// ---------------------------------------------------------------------------------------------
// 4.1 Session state: offline queues
// ---------------------------------------------------------------------------------------------
mod session {
    use super::*;

    /// Offline QoS 1/2 messages are queued and delivered in order on reconnect; QoS 0 is
    /// not queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offline_queue_in_order() {
        let s = start_default().await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("off", 60)).await;
        c.subscribe("off/#", Q2).await;
        c.disconnect().await;
        let mut p = Client::v5(s.addr, "pub").await;
        for (i, qos) in [Q1, Q0, Q2, Q1, Q2].into_iter().enumerate() {
            p.publish(&format!("off/{i}"), qos, &[i as u8]).await;
        }
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("off", 60)).await;
        assert!(ack.session_present);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(c.recv_publish_acked().await.payload[0]);
        }
        assert_eq!(got, [0, 2, 3, 4]);
        c.expect_nothing().await;
    }

    /// Messages queued for an offline session that expires are gone with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_session_loses_queue() {
        let s = start_default().await;
        let (mut c, _) = Client::connect_ok(s.addr, persistent("gone", 1)).await;
        c.subscribe("gone/t", Q1).await;
        c.disconnect().await;
        let mut p = Client::v5(s.addr, "pub").await;
        p.publish("gone/t", Q1, b"lost").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (mut c, ack) = Client::connect_ok(s.addr, persistent("gone", 1)).await;
        assert!(!ack.session_present);
        c.expect_nothing().await;
    }
}
