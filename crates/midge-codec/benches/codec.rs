//! Micro-benchmarks of the codec: `decode` and `encode` of the packets a broker handles most
//! (3.1.1 PUBLISH QoS 1 with 16 B, 256 B and 4 KiB payloads, a 5.0 PUBLISH with properties)
//! and of the largest common control packet (a 5.0 CONNECT with a will and properties).
//!
//! Each case is measured twice: with `Throughput::Bytes` (the encoded packet size, so
//! criterion reports bytes per second) and with `Throughput::Elements(1)` (packets per
//! second). Decoding starts from a fresh `BytesMut` holding one packet, built outside the
//! timed part; encoding appends to a cleared, already-allocated `BytesMut`, as a connection's
//! write buffer would be.
//!
//! Run: `cargo bench -p midge-codec --bench codec -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use midge_codec::{
    decode, encode, encoded_len, Connect, ConnectProperties, DecodeLimits, MqttString, Packet,
    PacketId, ProtocolVersion, Publish, PublishProperties, QoS, QosPid, TopicName, Will,
    WillProperties,
};

struct Case {
    name: &'static str,
    version: ProtocolVersion,
    packet: Packet,
}

fn s(v: &str) -> MqttString {
    v.parse().expect("valid string literal")
}

fn topic(v: &str) -> TopicName {
    v.parse().expect("valid topic literal")
}

fn payload(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

fn publish_v311(len: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QosPid::AtLeastOnce(PacketId::new(4242).expect("non-zero")),
        retain: false,
        topic: Some(topic("devices/0042/telemetry")),
        properties: PublishProperties::default(),
        payload: payload(len),
    })
}

fn publish_v5_properties() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QosPid::AtLeastOnce(PacketId::new(4242).expect("non-zero")),
        retain: false,
        topic: Some(topic("devices/0042/telemetry")),
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(3600),
            response_topic: Some(topic("devices/0042/replies")),
            correlation_data: Some(Bytes::from_static(b"\x00\x00\x10\x92")),
            user_properties: vec![(s("trace-id"), s("4bf92f3577b34da6")), (s("unit"), s("C"))],
            content_type: Some(s("application/json")),
            ..Default::default()
        },
        payload: payload(256),
    })
}

fn connect_v5_will() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 60,
        properties: ConnectProperties {
            session_expiry_interval: Some(86_400),
            receive_maximum: NonZeroU16::new(64),
            maximum_packet_size: NonZeroU32::new(1 << 20),
            topic_alias_maximum: Some(16),
            request_problem_information: Some(true),
            user_properties: vec![(s("fw"), s("2.4.1"))],
            ..Default::default()
        },
        client_id: "device-0042-7f3a9c".parse().expect("valid client id"),
        will: Some(Will {
            topic: topic("devices/0042/status"),
            payload: Bytes::from_static(b"{\"online\":false}"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(30),
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(86_400),
                content_type: Some(s("application/json")),
                ..Default::default()
            },
        }),
        username: Some(s("device-0042")),
        password: Some(Bytes::from_static(b"correct horse battery staple")),
    }))
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "v311_publish_qos1_16B",
            version: ProtocolVersion::V311,
            packet: publish_v311(16),
        },
        Case {
            name: "v311_publish_qos1_256B",
            version: ProtocolVersion::V311,
            packet: publish_v311(256),
        },
        Case {
            name: "v311_publish_qos1_4KiB",
            version: ProtocolVersion::V311,
            packet: publish_v311(4096),
        },
        Case {
            name: "v5_publish_qos1_props_256B",
            version: ProtocolVersion::V5,
            packet: publish_v5_properties(),
        },
        Case {
            name: "v5_connect_will_props",
            version: ProtocolVersion::V5,
            packet: connect_v5_will(),
        },
    ]
}

fn wire(case: &Case) -> Bytes {
    let mut buf = BytesMut::new();
    encode(&case.packet, case.version, &mut buf).expect("bench packets encode");
    let mut check = buf.clone();
    let decoded =
        decode(&mut check, case.version, &DecodeLimits::default()).expect("bench packets decode");
    assert_eq!(
        decoded.as_ref(),
        Some(&case.packet),
        "{} round trip",
        case.name
    );
    buf.freeze()
}

fn throughputs(len: usize) -> [(&'static str, Throughput); 2] {
    [
        ("bytes", Throughput::Bytes(len as u64)),
        ("packets", Throughput::Elements(1)),
    ]
}

fn bench_decode(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("decode");
    for case in cases() {
        let bytes = wire(&case);
        for (unit, throughput) in throughputs(bytes.len()) {
            group.throughput(throughput);
            group.bench_function(format!("{}/{unit}", case.name), |b| {
                b.iter_batched_ref(
                    || BytesMut::from(&bytes[..]),
                    |buf| decode(black_box(buf), case.version, &limits),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for case in cases() {
        let len = encoded_len(&case.packet, case.version);
        for (unit, throughput) in throughputs(len) {
            group.throughput(throughput);
            let mut buf = BytesMut::with_capacity(len);
            group.bench_function(format!("{}/{unit}", case.name), |b| {
                b.iter(|| {
                    buf.clear();
                    encode(black_box(&case.packet), case.version, &mut buf)
                        .expect("bench packets encode");
                    black_box(&buf);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
