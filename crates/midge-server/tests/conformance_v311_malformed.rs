//! Black-box conformance of midge to MQTT 3.1.1 over real TCP: malformed and hostile input
//! (sections 1.5, 2 and 4.8 of the 3.1.1 specification). A 3.1.1 broker answers a malformed
//! packet by closing the connection without a word ([MQTT-4.8.0-1]); every case also checks
//! that a well-behaved client connected before it still receives messages.

mod common;

use common::*;

// ---------------------------------------------------------------------------------------------
// 1.5 / 2 / 4.8: malformed and hostile input
// ---------------------------------------------------------------------------------------------
mod malformed {
    use super::*;

    /// [MQTT-4.8.0-1] Malformed packets after CONNECT: the broker closes the connection
    /// without sending anything, publishes the will, and every other client keeps working.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_connect_closes_cleanly() {
        let mut cfg = config();
        cfg.broker.max_packet_size = 1024;
        let s = start(cfg).await;
        let mut by = Bystander::new(s.addr).await;
        let mut w = Client::v311(s.addr, "will-watcher").await;
        w.subscribe("mal/will/#", Q0).await;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", vec![0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            ("reserved type 0", vec![0x00, 0x00]),
            ("AUTH in 3.1.1", vec![0xF0, 0x00]),
            (
                "PUBLISH QoS 3",
                frame(0x36, &[0x00, 0x01, b't', 0x00, 0x01]),
            ),
            ("DUP at QoS 0", frame(0x38, &[0x00, 0x01, b't'])),
            (
                "invalid UTF-8 topic",
                frame(0x30, &[0x00, 0x03, b'a', 0xFF, b'b']),
            ),
            (
                "surrogate in topic",
                frame(0x30, &[0x00, 0x03, 0xED, 0xA0, 0x80]),
            ),
            (
                "U+0000 in topic",
                frame(0x30, &[0x00, 0x03, b'a', 0x00, b'b']),
            ),
            ("empty topic", frame(0x30, &[0x00, 0x00, b'x'])),
            ("packet id 0", frame(0x32, &[0x00, 0x01, b't', 0x00, 0x00])),
            (
                "5-byte remaining length",
                vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
            ),
            ("non-minimal remaining length", vec![0xC0, 0x80, 0x00]),
            (
                "larger than maximum packet size",
                vec![0x30, 0x80, 0x80, 0x01, 0x00],
            ),
            ("truncated string", frame(0x30, &[0x00, 0x09, b't'])),
            ("PUBREL flags 0000", frame(0x60, &[0x00, 0x01])),
            ("PUBACK flags 0010", frame(0x42, &[0x00, 0x01])),
            ("PINGREQ flags", vec![0xC1, 0x00]),
            ("PINGREQ with body", vec![0xC0, 0x01, 0x00]),
            ("DISCONNECT with body", vec![0xE0, 0x01, 0x00]),
            ("CONNACK from a client", vec![0x20, 0x02, 0x00, 0x00]),
            ("SUBACK from a client", vec![0x90, 0x03, 0x00, 0x01, 0x00]),
            ("PINGRESP from a client", vec![0xD0, 0x00]),
            (
                "HTTP request",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
        ];
        for (i, (what, bytes)) in cases.into_iter().enumerate() {
            let will_topic = format!("mal/will/{i}");
            let mut cp = connect_packet(V311, &format!("mal-{i}"));
            cp.will = Some(will(&will_topic, what.as_bytes(), Q0, false));
            let (mut c, _) = Client::connect_ok(s.addr, cp).await;
            c.name = what.to_owned();
            c.send_raw(&bytes).await;
            c.expect_closed().await;
            let m = w.recv_publish().await;
            assert_eq!(m.topic, Some(topic(&will_topic)), "will of {what}");
            by.check().await;
        }
    }

    /// Malformed CONNECT packets and garbage before CONNECT: closed without an answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn before_connect_closes_cleanly() {
        let s = start_default().await;
        let mut by = Bystander::new(s.addr).await;
        let will_flags = raw_connect(b"MQTT", 4, 0x02 | 0x08, "wq");
        let mut will_qos3 = raw_connect(b"MQTT", 4, 0x02 | 0x04 | 0x18, "w3");
        will_qos3.extend_from_slice(&[0x00, 0x01, b't', 0x00, 0x00]);
        will_qos3[1] += 5;
        let trailing = {
            let mut b = raw_connect(b"MQTT", 4, 0x02, "tr");
            b.push(0x00);
            b[1] += 1;
            b
        };
        let mut invalid_id = raw_connect(b"MQTT", 4, 0x02, "ab");
        let n = invalid_id.len();
        invalid_id[n - 1] = 0xFF;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", vec![0x13, 0x37, 0xDE, 0xAD, 0xBE, 0xEF]),
            (
                "TLS client hello",
                vec![0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00],
            ),
            ("HTTP", b"GET /mqtt HTTP/1.1\r\n\r\n".to_vec()),
            (
                "CONNECT flags 0001",
                frame(0x11, &raw_connect(b"MQTT", 4, 2, "f")[2..]),
            ),
            ("will QoS without will flag", will_flags),
            ("will QoS 3", will_qos3),
            ("trailing bytes", trailing),
            ("invalid UTF-8 client id", invalid_id),
            (
                "5-byte remaining length",
                vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ),
        ];
        for (what, bytes) in cases {
            let mut c = Client::open(s.addr, V311).await;
            c.name = what.to_owned();
            c.send_raw(&bytes).await;
            c.expect_closed().await;
            by.check().await;
        }
    }

    /// A client that floods garbage at high volume is closed and does not disturb others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flood_of_garbage() {
        let s = start_default().await;
        let mut by = Bystander::new(s.addr).await;
        let mut c = Client::v311(s.addr, "flood").await;
        let junk: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
        c.send_raw(&junk).await;
        match c.read(TIMEOUT).await {
            Read::Closed => {}
            other => panic!("expected close, got {other:?}"),
        }
        by.check().await;
    }
}
