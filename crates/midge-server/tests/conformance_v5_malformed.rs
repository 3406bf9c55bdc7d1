//! Black-box conformance of midge to MQTT 5.0 over real TCP: malformed and hostile input
//! (sections 1.5, 2, 4.13 of the 5.0 specification). After CONNECT, the broker answers a
//! malformed packet or protocol error with DISCONNECT carrying the reason code the codec
//! maps the error to (0x81 Malformed Packet, 0x82 Protocol Error, or a more specific one),
//! then closes the connection and publishes the will. Every case checks that a well-behaved
//! client connected before it still receives messages.

mod common;

use common::*;
use midge_codec::ReasonCode;

/// A 5.0 PUBLISH QoS 0 to `t` with a raw property block.
fn publish_with_props(t: &[u8], props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(t.len() as u16).to_be_bytes());
    body.extend_from_slice(t);
    push_vbi(&mut body, props.len());
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

/// A 5.0 SUBSCRIBE (packet id 1, no properties) of one filter with raw options.
fn subscribe_raw(first: u8, f: &[u8], options: u8) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0x00];
    body.extend_from_slice(&(f.len() as u16).to_be_bytes());
    body.extend_from_slice(f);
    body.push(options);
    frame(first, &body)
}

/// [MQTT-4.13.1-1] Malformed packets and protocol errors after CONNECT: DISCONNECT with the
/// reason code, close, will published, other clients unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_connect_disconnect_with_reason_code() {
    let mut cfg = config();
    cfg.broker.max_packet_size = 1024;
    let s = start(cfg).await;
    let mut by = Bystander::new(s.addr).await;
    let mut w = Client::v5(s.addr, "will-watcher").await;
    w.subscribe("mal/will/#", Q0).await;
    use ReasonCode::{MalformedPacket as M, ProtocolError as P};
    let cases: Vec<(&str, Vec<u8>, ReasonCode)> = vec![
        ("garbage", vec![0xFF, 0xFF, 0xFF, 0xFF, 0xFF], M),
        ("reserved type 0", vec![0x00, 0x00], M),
        (
            "PUBLISH QoS 3",
            frame(0x36, &[0x00, 0x01, b't', 0x00, 0x01, 0x00]),
            M,
        ),
        ("DUP at QoS 0", frame(0x38, &[0x00, 0x01, b't', 0x00]), M),
        (
            "invalid UTF-8 topic",
            publish_with_props(b"a\xFFb", &[], b""),
            M,
        ),
        ("U+0000 in topic", publish_with_props(b"a\0b", &[], b""), M),
        (
            "wildcard in topic",
            publish_with_props(b"a/+", &[], b""),
            ReasonCode::TopicNameInvalid,
        ),
        (
            "empty topic without alias",
            publish_with_props(b"", &[], b"x"),
            P,
        ),
        (
            "topic alias 0",
            publish_with_props(b"t", &[0x23, 0x00, 0x00], b""),
            ReasonCode::TopicAliasInvalid,
        ),
        (
            "packet id 0",
            frame(0x32, &[0x00, 0x01, b't', 0x00, 0x00, 0x00]),
            M,
        ),
        (
            "unknown property",
            publish_with_props(b"t", &[0x7F, 0x00], b""),
            M,
        ),
        (
            "property not allowed in PUBLISH",
            publish_with_props(b"t", &[0x11, 0, 0, 0, 1], b""),
            M,
        ),
        (
            "duplicate content type",
            publish_with_props(b"t", &[0x03, 0, 1, b'a', 0x03, 0, 1, b'b'], b""),
            P,
        ),
        (
            "payload format indicator 2",
            publish_with_props(b"t", &[0x01, 0x02], b""),
            P,
        ),
        (
            "property length beyond packet",
            frame(0x30, &[0x00, 0x01, b't', 0x09]),
            M,
        ),
        (
            "5-byte remaining length",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
            M,
        ),
        ("non-minimal remaining length", vec![0xC0, 0x80, 0x00], M),
        (
            "larger than maximum packet size",
            vec![0x30, 0x80, 0x10, 0x00],
            ReasonCode::PacketTooLarge,
        ),
        ("truncated string", frame(0x30, &[0x00, 0x09, b't']), M),
        ("PUBREL flags 0000", frame(0x60, &[0x00, 0x01]), M),
        ("SUBSCRIBE flags 0000", subscribe_raw(0x80, b"t", 0x00), M),
        (
            "SUBSCRIBE reserved option bits",
            subscribe_raw(0x82, b"t", 0xC0),
            M,
        ),
        ("SUBSCRIBE QoS 3", subscribe_raw(0x82, b"t", 0x03), P),
        ("retain handling 3", subscribe_raw(0x82, b"t", 0x30), P),
        (
            "no local on a shared subscription",
            subscribe_raw(0x82, b"$share/g/t", 0x04),
            P,
        ),
        (
            "SUBSCRIBE without filters",
            frame(0x82, &[0x00, 0x01, 0x00]),
            P,
        ),
        (
            "subscription identifier 0",
            frame(
                0x82,
                &[0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b't', 0x00],
            ),
            P,
        ),
        (
            "UNSUBSCRIBE without filters",
            frame(0xA2, &[0x00, 0x01, 0x00]),
            P,
        ),
        ("DISCONNECT reason 0x03", vec![0xE0, 0x01, 0x03], P),
        ("PUBACK reason 0x02", frame(0x40, &[0x00, 0x01, 0x02]), P),
        (
            "CONNACK from a client",
            vec![0x20, 0x03, 0x00, 0x00, 0x00],
            P,
        ),
        ("PINGRESP from a client", vec![0xD0, 0x00], P),
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            M,
        ),
    ];
    for (i, (what, bytes, code)) in cases.into_iter().enumerate() {
        let will_topic = format!("mal/will/{i}");
        let cp = connect_v5_with(&format!("mal-{i}"), |c| {
            c.will = Some(will(&will_topic, what.as_bytes(), Q0, false))
        });
        let (mut c, _) = Client::connect_ok(s.addr, cp).await;
        c.name = what.to_owned();
        c.send_raw(&bytes).await;
        c.expect_disconnect(code).await;
        let m = w.recv_publish().await;
        assert_eq!(m.topic, Some(topic(&will_topic)), "will of {what}");
        by.check().await;
    }
}

/// Garbage before CONNECT (no protocol version known yet): closed without an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_connect_closes() {
    let s = start_default().await;
    let mut by = Bystander::new(s.addr).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", vec![0x13, 0x37, 0xDE, 0xAD, 0xBE, 0xEF]),
        (
            "TLS client hello",
            vec![0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00],
        ),
        ("AUTH first", vec![0xF0, 0x00]),
        (
            "5-byte remaining length",
            vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
    ];
    for (what, bytes) in cases {
        let mut c = Client::open(s.addr, V5).await;
        c.name = what.to_owned();
        c.send_raw(&bytes).await;
        c.expect_closed().await;
        by.check().await;
    }
}

/// A CONNECT declaring a size above the broker's maximum: CONNACK 0x95, close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_connect() {
    let mut cfg = config();
    cfg.broker.max_packet_size = 256;
    let s = start(cfg).await;
    let mut by = Bystander::new(s.addr).await;
    let mut c = Client::open(s.addr, V5).await;
    let mut bytes = vec![0x10];
    push_vbi(&mut bytes, 1000);
    bytes.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05]);
    c.send_raw(&bytes).await;
    let ack = c.recv_connack().await;
    assert_eq!(ack.code, ReasonCode::PacketTooLarge);
    c.expect_closed().await;
    by.check().await;
}

/// A flood of garbage from a connected client: closed, others unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_garbage() {
    let s = start_default().await;
    let mut by = Bystander::new(s.addr).await;
    let mut c = Client::v5(s.addr, "flood").await;
    let junk: Vec<u8> = (0..64 * 1024).map(|i| (i * 13 % 251) as u8).collect();
    c.send_raw(&junk).await;
    // The DISCONNECT may be lost to a reset, as the broker stops reading mid-flood.
    loop {
        match c.read(TIMEOUT).await {
            Read::Closed => break,
            Read::Packet(midge_codec::Packet::Disconnect(d)) => {
                assert_eq!(d.code, ReasonCode::MalformedPacket)
            }
            other => panic!("expected DISCONNECT and close, got {other:?}"),
        }
    }
    by.check().await;
}
