//! Byte-exact conformance tests of the codec against the OASIS MQTT 3.1.1 and 5.0
//! specifications. Every packet is written out by hand, byte by byte, as the specification
//! lays it out; nothing here is produced by the encoder under test.
//!
//! - A valid packet must decode to exactly the expected value, consume exactly its bytes, and
//!   encode back to exactly the same bytes (`exact`). Forms the encoder never writes (e.g. a
//!   5.0 PUBACK with an explicit success code) are checked by decoding only (`decodes_to`).
//! - A malformed packet or protocol error must give exactly the expected `DecodeError` and
//!   exactly the expected reason code (`rejects`).
//!
//! Sections are those of MQTT 5.0 unless marked 3.1.1.

#![allow(clippy::unwrap_used)]

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use midge_codec::*;

const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Concatenates hand-written pieces (so that ASCII fields can be written as `b"..."`).
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn s(v: &str) -> MqttString {
    MqttString::try_from(v).unwrap()
}

fn topic(v: &str) -> TopicName {
    v.parse().unwrap()
}

fn filter(v: &str) -> FilterEntry {
    FilterEntry::Valid(v.parse().unwrap())
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn user(k: &str, v: &str) -> UserProperty {
    (s(k), s(v))
}

fn decode_all(bytes: &[u8], version: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let res = decode(&mut buf, version, &DecodeLimits::default());
    if let Ok(Some(_)) = res {
        assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    }
    res
}

/// `bytes` decodes to `expected`, consuming all of it, and `expected` encodes to `bytes`.
#[track_caller]
fn exact(bytes: &[u8], version: ProtocolVersion, expected: Packet) {
    assert_eq!(
        decode_all(bytes, version),
        Ok(Some(expected.clone())),
        "decoding {bytes:02X?}"
    );
    let mut out = BytesMut::new();
    encode(&expected, version, &mut out).unwrap();
    assert_eq!(&out[..], bytes, "encoding {expected:?}");
    assert_eq!(encoded_len(&expected, version), bytes.len());
}

/// `bytes` decodes to `expected`, consuming all of it (a valid form the encoder does not use).
#[track_caller]
fn decodes_to(bytes: &[u8], version: ProtocolVersion, expected: Packet) {
    assert_eq!(
        decode_all(bytes, version),
        Ok(Some(expected)),
        "decoding {bytes:02X?}"
    );
}

/// `bytes` is rejected with exactly `error`, which maps to exactly `reason`.
#[track_caller]
fn rejects(bytes: &[u8], version: ProtocolVersion, error: DecodeError, reason: ReasonCode) {
    assert_eq!(
        decode_all(bytes, version),
        Err(error.clone()),
        "decoding {bytes:02X?}"
    );
    assert_eq!(error.reason_code(), reason, "reason code of {error}");
}

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: ClientId::try_from("abcd").unwrap(),
        will: None,
        username: None,
        password: None,
    }
}

fn publish(qos: QosPid, t: &str, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: Some(topic(t)),
        properties: PublishProperties::default(),
        payload: Bytes::from_static(payload),
    }
}

fn ack(id: u16, code: ReasonCode) -> PubAck {
    PubAck {
        code,
        ..PubAck::new(pid(id))
    }
}

fn sub(f: FilterEntry, options: SubscriptionOptions) -> Subscription {
    Subscription { filter: f, options }
}

fn qos_opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// 2.1 Fixed header
// ---------------------------------------------------------------------------------------------

/// 2.1.2: packet type 0 is reserved.
#[test]
fn fixed_header_type_0_is_reserved() {
    for v in [V31, V311, V5] {
        rejects(
            &[0x00, 0x00],
            v,
            DecodeError::ReservedPacketType(0),
            ReasonCode::MalformedPacket,
        );
    }
}

/// 2.1.2: type 15 is AUTH in 5.0 and reserved before (3.1.1 section 2.2.1).
#[test]
fn fixed_header_type_15_is_reserved_before_v5() {
    for v in [V31, V311] {
        rejects(
            &[0xF0, 0x00],
            v,
            DecodeError::ReservedPacketType(15),
            ReasonCode::MalformedPacket,
        );
    }
    exact(&[0xF0, 0x00], V5, Packet::Auth(Auth::default()));
}

/// 2.1.3, [MQTT-2.1.3-1], [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]: every flag nibble
/// other than the one table 2-2 lists is malformed, detected from the first byte alone.
#[test]
fn fixed_header_flags_table() {
    use PacketType::*;
    let table: &[(u8, PacketType, u8)] = &[
        (0x11, Connect, 0x1),
        (0x12, Connect, 0x2),
        (0x18, Connect, 0x8),
        (0x21, ConnAck, 0x1),
        (0x2F, ConnAck, 0xF),
        (0x41, PubAck, 0x1),
        (0x48, PubAck, 0x8),
        (0x52, PubRec, 0x2),
        (0x60, PubRel, 0x0), // PUBREL without 0b0010
        (0x63, PubRel, 0x3),
        (0x6A, PubRel, 0xA),
        (0x72, PubComp, 0x2),
        (0x80, Subscribe, 0x0), // SUBSCRIBE without 0b0010
        (0x83, Subscribe, 0x3),
        (0x8A, Subscribe, 0xA),
        (0x92, SubAck, 0x2),
        (0xA0, Unsubscribe, 0x0), // UNSUBSCRIBE without 0b0010
        (0xA6, Unsubscribe, 0x6),
        (0xB2, UnsubAck, 0x2),
        (0xC2, PingReq, 0x2),
        (0xD1, PingResp, 0x1),
        (0xE4, Disconnect, 0x4),
        (0xF2, Auth, 0x2),
        (0xF8, Auth, 0x8),
    ];
    for &(first, packet, flags) in table {
        let versions: &[ProtocolVersion] = if packet == Auth { &[V5] } else { &[V311, V5] };
        for &v in versions {
            let err = DecodeError::InvalidFlags { packet, flags };
            rejects(&[first, 0x00], v, err.clone(), ReasonCode::MalformedPacket);
            // The first byte alone is enough.
            let mut one = BytesMut::from(&[first][..]);
            assert_eq!(decode(&mut one, v, &DecodeLimits::default()), Err(err));
        }
    }
}

/// 2.1.4, 1.5.5: the remaining length is at most four bytes.
#[test]
fn remaining_length_of_five_bytes() {
    rejects(
        &[0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
        V311,
        DecodeError::VariableByteIntegerTooLong,
        ReasonCode::MalformedPacket,
    );
    // Four continuation bytes already make it too long, before a fifth byte arrives.
    rejects(
        &[0xC0, 0xFF, 0xFF, 0xFF, 0xFF],
        V5,
        DecodeError::VariableByteIntegerTooLong,
        ReasonCode::MalformedPacket,
    );
}

/// [MQTT-1.5.5-1]: a variable byte integer uses the minimum number of bytes.
#[test]
fn remaining_length_not_minimal() {
    for bytes in [
        &[0xC0, 0x80, 0x00][..],             // 0 in two bytes
        &[0xC0, 0x80, 0x80, 0x00][..],       // 0 in three bytes
        &[0x30, 0x85, 0x00, 0, 3, b'a'][..], // 5 in two bytes
        &[0x30, 0xFF, 0x80, 0x00][..],       // 127 in three bytes
    ] {
        rejects(
            bytes,
            V311,
            DecodeError::VariableByteIntegerNotMinimal,
            ReasonCode::MalformedPacket,
        );
    }
}

/// 1.5.5 table 1-1: the one- and two-byte boundaries of the remaining length.
#[test]
fn remaining_length_boundaries() {
    // Topic "t" (3 bytes) + payload: remaining length 127 -> 0x7F.
    let p127 = publish(QosPid::AtMostOnce, "t", &[b'x'; 124]);
    let bytes = cat(&[&[0x30, 0x7F, 0x00, 0x01, b't'], &[b'x'; 124]]);
    exact(&bytes, V311, Packet::Publish(p127));
    // Remaining length 128 -> 0x80 0x01.
    let p128 = publish(QosPid::AtMostOnce, "t", &[b'x'; 125]);
    let bytes = cat(&[&[0x30, 0x80, 0x01, 0x00, 0x01, b't'], &[b'x'; 125]]);
    exact(&bytes, V311, Packet::Publish(p128));
    // Remaining length 16,383 -> 0xFF 0x7F and 16,384 -> 0x80 0x80 0x01.
    static BIG: [u8; 16_381] = [b'y'; 16_381];
    let bytes = cat(&[&[0x30, 0xFF, 0x7F, 0x00, 0x01, b't'], &BIG[..16_380]]);
    let p = publish(QosPid::AtMostOnce, "t", &BIG[..16_380]);
    exact(&bytes, V311, Packet::Publish(p));
    let bytes = cat(&[&[0x30, 0x80, 0x80, 0x01, 0x00, 0x01, b't'], &BIG[..]]);
    let p = publish(QosPid::AtMostOnce, "t", &BIG[..]);
    exact(&bytes, V311, Packet::Publish(p));
}

/// [MQTT-3.2.2-15], 3.1.2.11.4: a packet larger than the receiver's maximum is rejected from
/// its fixed header, before the body is buffered.
#[test]
fn packet_too_large_from_header_bytes() {
    let limits = DecodeLimits {
        max_packet_size: 16,
    };
    // 1 + 1 + 15 = 17 bytes > 16, with no body bytes received.
    let mut buf = BytesMut::from(&[0x30, 0x0F][..]);
    let err = DecodeError::PacketTooLarge { size: 17, max: 16 };
    assert_eq!(decode(&mut buf, V311, &limits), Err(err.clone()));
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
    // Exactly at the limit: just "need more bytes".
    let mut buf = BytesMut::from(&[0x30, 0x0E][..]);
    assert_eq!(decode(&mut buf, V311, &limits), Ok(None));
    assert_eq!(buf.len(), 2);
    // A multi-byte remaining length: 1 + 2 + 1000 bytes.
    let limits = DecodeLimits {
        max_packet_size: 1000,
    };
    let mut buf = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
    assert_eq!(
        decode(&mut buf, V5, &limits),
        Err(DecodeError::PacketTooLarge {
            size: 1003,
            max: 1000
        })
    );
    // The largest packet the protocol can express is within the default limit.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(decode(&mut buf, V5, &DecodeLimits::default()), Ok(None));
    assert_eq!(buf.len(), 5);
}

// ---------------------------------------------------------------------------------------------
// 1.5.4 UTF-8 encoded strings
// ---------------------------------------------------------------------------------------------

/// [MQTT-1.5.4-1]: ill-formed UTF-8 in a topic name, a client id, a filter, a user property.
#[test]
fn utf8_ill_formed() {
    // PUBLISH topic "a\xFFb".
    rejects(
        &[0x30, 0x05, 0x00, 0x03, b'a', 0xFF, b'b'],
        V311,
        DecodeError::InvalidUtf8("topic name"),
        ReasonCode::MalformedPacket,
    );
    // Overlong encoding of U+0000 (C0 80).
    rejects(
        &[0x30, 0x04, 0x00, 0x02, 0xC0, 0x80],
        V311,
        DecodeError::InvalidUtf8("topic name"),
        ReasonCode::MalformedPacket,
    );
    // CONNECT client id C3 28 (a lead byte followed by ASCII).
    let bytes = cat(&[
        &[0x10, 0x0E, 0x00, 0x04],
        b"MQTT",
        &[0x04, 0x02, 0x00, 0x00, 0x00, 0x02, 0xC3, 0x28],
    ]);
    rejects(
        &bytes,
        V311,
        DecodeError::InvalidUtf8("client identifier"),
        ReasonCode::MalformedPacket,
    );
    // 5.0 PUBLISH with a user property whose name is "\xFF".
    let bytes = cat(&[
        &[0x30, 0x0D, 0x00, 0x03],
        b"a/b",
        &[0x07, 0x26, 0x00, 0x01, 0xFF, 0x00, 0x01, b'v'],
    ]);
    rejects(
        &bytes,
        V5,
        DecodeError::InvalidUtf8("user property name"),
        ReasonCode::MalformedPacket,
    );
    // ... and whose value is "\xFF".
    let bytes = cat(&[
        &[0x30, 0x0D, 0x00, 0x03],
        b"a/b",
        &[0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, 0xFF],
    ]);
    rejects(
        &bytes,
        V5,
        DecodeError::InvalidUtf8("user property value"),
        ReasonCode::MalformedPacket,
    );
}

/// [MQTT-1.5.4-1]: an encoded surrogate (U+D800 as ED A0 80) is not UTF-8.
#[test]
fn utf8_encoded_surrogate() {
    rejects(
        &[0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80],
        V311,
        DecodeError::InvalidUtf8("topic name"),
        ReasonCode::MalformedPacket,
    );
    // In a SUBSCRIBE topic filter the string rule still makes the packet malformed.
    rejects(
        &[0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 0xED, 0xA0, 0x80, 0x00],
        V311,
        DecodeError::InvalidUtf8("topic filter"),
        ReasonCode::MalformedPacket,
    );
}

/// [MQTT-1.5.4-2]: U+0000 in any string.
#[test]
fn utf8_null_character() {
    rejects(
        &[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'],
        V311,
        DecodeError::NullCharacter,
        ReasonCode::MalformedPacket,
    );
    let bytes = cat(&[
        &[0x10, 0x0E, 0x00, 0x04],
        b"MQTT",
        &[0x04, 0x02, 0x00, 0x00, 0x00, 0x02, b'a', 0x00],
    ]);
    rejects(
        &bytes,
        V311,
        DecodeError::NullCharacter,
        ReasonCode::MalformedPacket,
    );
}

/// [MQTT-1.5.4-3]: a BOM (EF BB BF) is kept, not skipped or stripped; 4-byte sequences are
/// valid.
#[test]
fn utf8_bom_is_kept_and_supplementary_characters_are_valid() {
    let bytes = [0x30, 0x06, 0x00, 0x04, 0xEF, 0xBB, 0xBF, b'a'];
    let p = publish(QosPid::AtMostOnce, "\u{FEFF}a", b"");
    exact(&bytes, V311, Packet::Publish(p));
    // The same in a 5.0 CONNECT client identifier.
    let bytes = cat(&[
        &[0x10, 0x11, 0x00, 0x04],
        b"MQTT",
        &[
            0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x04, 0xEF, 0xBB, 0xBF, b'x',
        ],
    ]);
    let c = Connect {
        client_id: ClientId::try_from("\u{FEFF}x").unwrap(),
        ..connect(V5)
    };
    exact(&bytes, V5, Packet::Connect(Box::new(c)));
    // U+1F600 as F0 9F 98 80.
    let bytes = [0x30, 0x06, 0x00, 0x04, 0xF0, 0x9F, 0x98, 0x80];
    let p = publish(QosPid::AtMostOnce, "\u{1F600}", b"");
    exact(&bytes, V311, Packet::Publish(p));
}

// ---------------------------------------------------------------------------------------------
// 2.2.2 Properties
// ---------------------------------------------------------------------------------------------

/// [MQTT-1.5.5-1] holds for the variable byte integers inside a packet too.
#[test]
fn properties_non_minimal_variable_byte_integers() {
    let cases: [Vec<u8>; 3] = [
        // PUBLISH with property length 0 written as 80 00.
        cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", &[0x80, 0x00]]),
        // PUBLISH with subscription identifier 1 written as 81 00.
        cat(&[&[0x30, 0x09, 0x00, 0x03], b"a/b", &[0x03, 0x0B, 0x81, 0x00]]),
        // PUBACK with reason code 0 and property length 0 written as 80 00.
        vec![0x40, 0x05, 0x00, 0x01, 0x00, 0x80, 0x00],
    ];
    for bytes in cases {
        rejects(
            &bytes,
            V5,
            DecodeError::VariableByteIntegerNotMinimal,
            ReasonCode::MalformedPacket,
        );
    }
}

/// "It is a Protocol Error to include the X more than once" (every property but User
/// Property and, in PUBLISH, Subscription Identifier).
#[test]
fn properties_duplicate_where_forbidden() {
    let publish_expiry_twice = cat(&[
        &[0x30, 0x10, 0x00, 0x03],
        b"a/b",
        &[0x0A, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2],
    ]);
    rejects(
        &publish_expiry_twice,
        V5,
        DecodeError::DuplicateProperty(0x02),
        ReasonCode::ProtocolError,
    );
    let connect_session_expiry_twice = cat(&[
        &[0x10, 0x17, 0x00, 0x04],
        b"MQTT",
        &[0x05, 0x02, 0x00, 0x00],
        &[0x0A, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2],
        &[0x00, 0x00],
    ]);
    rejects(
        &connect_session_expiry_twice,
        V5,
        DecodeError::DuplicateProperty(0x11),
        ReasonCode::ProtocolError,
    );
    // Two subscription identifiers in SUBSCRIBE (3.8.2.1.2).
    let subscribe_two_ids = cat(&[
        &[
            0x82, 0x0D, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x03,
        ],
        b"a/b",
        &[0x00],
    ]);
    rejects(
        &subscribe_two_ids,
        V5,
        DecodeError::DuplicateProperty(0x0B),
        ReasonCode::ProtocolError,
    );
    let auth_reason_string_twice = [
        0xF0, 0x0A, 0x18, 0x08, 0x1F, 0x00, 0x01, b'a', 0x1F, 0x00, 0x01, b'b',
    ];
    rejects(
        &auth_reason_string_twice,
        V5,
        DecodeError::DuplicateProperty(0x1F),
        ReasonCode::ProtocolError,
    );
}

/// 2.2.2.2: an identifier not valid for the packet type is malformed.
#[test]
fn properties_not_allowed_in_packet() {
    let not_allowed = |id, packet| DecodeError::PropertyNotAllowed { id, packet };
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        // Topic Alias in CONNECT.
        (
            cat(&[
                &[0x10, 0x10, 0x00, 0x04],
                b"MQTT",
                &[0x05, 0x02, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, 0x00, 0x00],
            ]),
            not_allowed(0x23, "CONNECT"),
        ),
        // Session Expiry Interval in PUBLISH.
        (
            cat(&[
                &[0x30, 0x0B, 0x00, 0x03],
                b"a/b",
                &[0x05, 0x11, 0, 0, 0, 10],
            ]),
            not_allowed(0x11, "PUBLISH"),
        ),
        // Will Delay Interval in PUBLISH.
        (
            cat(&[&[0x30, 0x0B, 0x00, 0x03], b"a/b", &[0x05, 0x18, 0, 0, 0, 1]]),
            not_allowed(0x18, "PUBLISH"),
        ),
        // Session Expiry Interval in the will properties of CONNECT.
        (
            cat(&[
                &[0x10, 0x18, 0x00, 0x04],
                b"MQTT",
                &[0x05, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00],
                &[0x05, 0x11, 0, 0, 0, 1],
                &[0x00, 0x01, b't', 0x00, 0x00],
            ]),
            not_allowed(0x11, "CONNECT will"),
        ),
        // Subscription Identifier in CONNACK.
        (
            vec![0x20, 0x05, 0x00, 0x00, 0x02, 0x0B, 0x01],
            not_allowed(0x0B, "CONNACK"),
        ),
        // Session Expiry Interval in PUBACK.
        (
            vec![0x40, 0x09, 0x00, 0x01, 0x00, 0x05, 0x11, 0, 0, 0, 1],
            not_allowed(0x11, "acknowledgement"),
        ),
        // Reason String in SUBSCRIBE.
        (
            cat(&[
                &[
                    0x82, 0x0E, 0x00, 0x01, 0x05, 0x1F, 0x00, 0x02, b'h', b'i', 0x00, 0x03,
                ],
                b"a/b",
                &[0x00],
            ]),
            not_allowed(0x1F, "SUBSCRIBE"),
        ),
        // Subscription Identifier in UNSUBSCRIBE.
        (
            cat(&[
                &[0xA2, 0x0A, 0x00, 0x02, 0x02, 0x0B, 0x01, 0x00, 0x03],
                b"a/b",
            ]),
            not_allowed(0x0B, "UNSUBSCRIBE"),
        ),
        // Session Expiry Interval in AUTH.
        (
            vec![0xF0, 0x07, 0x18, 0x05, 0x11, 0, 0, 0, 1],
            not_allowed(0x11, "AUTH"),
        ),
        // Server Reference in AUTH.
        (
            cat(&[&[0xF0, 0x08, 0x18, 0x06, 0x1C, 0x00, 0x03], b"srv"]),
            not_allowed(0x1C, "AUTH"),
        ),
    ];
    for (bytes, err) in cases {
        rejects(&bytes, V5, err, ReasonCode::MalformedPacket);
    }
}

/// 2.2.2.2: an unknown identifier is malformed (identifiers are variable byte integers).
#[test]
fn properties_unknown_identifier() {
    let cases: [(Vec<u8>, u32); 4] = [
        (
            cat(&[&[0x30, 0x08, 0x00, 0x03], b"a/b", &[0x02, 0x00, 0x00]]),
            0x00,
        ),
        (vec![0x40, 0x06, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00], 0x04),
        (vec![0x40, 0x06, 0x00, 0x01, 0x00, 0x02, 0x7F, 0x00], 0x7F),
        // Identifier 128, written 80 01.
        (vec![0xE0, 0x05, 0x00, 0x03, 0x80, 0x01, 0x00], 128),
    ];
    for (bytes, id) in cases {
        rejects(
            &bytes,
            V5,
            DecodeError::UnknownProperty(id),
            ReasonCode::MalformedPacket,
        );
    }
}

/// Values the property definitions forbid: Receive Maximum 0 (3.1.2.11.3, 3.2.2.3.3),
/// Maximum Packet Size 0 (3.1.2.11.4, 3.2.2.3.6), Topic Alias 0 ([MQTT-3.3.2-8]),
/// Subscription Identifier 0 (3.3.2.3.8, 3.8.2.1.2), a Payload Format Indicator or other
/// flag other than 0 or 1, Maximum QoS 2 (3.2.2.3.4), a Response Topic with wildcards
/// ([MQTT-3.3.2-14]).
#[test]
fn properties_forbidden_values() {
    let invalid = DecodeError::InvalidPropertyValue;
    let connect_with = |props: &[u8]| {
        let remaining = 10 + 1 + props.len() as u8 + 2;
        cat(&[
            &[0x10, remaining, 0x00, 0x04],
            b"MQTT",
            &[0x05, 0x02, 0x00, 0x00, props.len() as u8],
            props,
            &[0x00, 0x00],
        ])
    };
    let publish_with = |props: &[u8]| {
        cat(&[
            &[0x30, 5 + 1 + props.len() as u8, 0x00, 0x03],
            b"a/b",
            &[props.len() as u8],
            props,
        ])
    };
    let connack_with = |props: &[u8]| {
        cat(&[
            &[0x20, 3 + props.len() as u8, 0x00, 0x00, props.len() as u8],
            props,
        ])
    };
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (connect_with(&[0x21, 0x00, 0x00]), invalid(0x21)),
        (connect_with(&[0x27, 0, 0, 0, 0]), invalid(0x27)),
        (connect_with(&[0x17, 0x02]), invalid(0x17)),
        (connect_with(&[0x19, 0x02]), invalid(0x19)),
        (connack_with(&[0x21, 0x00, 0x00]), invalid(0x21)),
        (connack_with(&[0x27, 0, 0, 0, 0]), invalid(0x27)),
        (connack_with(&[0x24, 0x02]), invalid(0x24)),
        (connack_with(&[0x25, 0x02]), invalid(0x25)),
        (connack_with(&[0x2A, 0x03]), invalid(0x2A)),
        (publish_with(&[0x01, 0x02]), invalid(0x01)),
        (publish_with(&[0x0B, 0x00]), invalid(0x0B)),
        (
            publish_with(&[0x08, 0x00, 0x03, b'a', b'/', b'+']),
            invalid(0x08),
        ),
        (
            cat(&[
                &[0x82, 0x0B, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x03],
                b"a/b",
                &[0x00],
            ]),
            invalid(0x0B),
        ),
    ];
    for (bytes, err) in cases {
        rejects(&bytes, V5, err, ReasonCode::ProtocolError);
    }
    // Topic Alias 0 has its own reason code (0x94, Topic Alias invalid).
    rejects(
        &publish_with(&[0x23, 0x00, 0x00]),
        V5,
        DecodeError::TopicAliasZero,
        ReasonCode::TopicAliasInvalid,
    );
}

/// 3.1.2.11.10, 3.15.2.2: Authentication Data without an Authentication Method.
#[test]
fn properties_authentication_data_without_method() {
    let connect = cat(&[
        &[0x10, 0x11, 0x00, 0x04],
        b"MQTT",
        &[
            0x05, 0x02, 0x00, 0x00, 0x04, 0x16, 0x00, 0x01, 0xAA, 0x00, 0x00,
        ],
    ]);
    let auth = [0xF0, 0x07, 0x18, 0x05, 0x16, 0x00, 0x02, 0x01, 0x02];
    for bytes in [&connect[..], &auth[..]] {
        rejects(
            bytes,
            V5,
            DecodeError::AuthDataWithoutMethod,
            ReasonCode::ProtocolError,
        );
    }
}

/// 2.2.2.1: a property length beyond the remaining length, or missing where required.
#[test]
fn properties_length_beyond_packet_or_missing() {
    rejects(
        &cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", &[0x05, 0x01]]),
        V5,
        DecodeError::Truncated("properties"),
        ReasonCode::MalformedPacket,
    );
    rejects(
        &cat(&[&[0x30, 0x05, 0x00, 0x03], b"a/b"]),
        V5,
        DecodeError::Truncated("property length"),
        ReasonCode::MalformedPacket,
    );
    rejects(
        &[0x20, 0x02, 0x00, 0x00],
        V5,
        DecodeError::Truncated("property length"),
        ReasonCode::MalformedPacket,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.1 CONNECT
// ---------------------------------------------------------------------------------------------

/// The classic 3.1.1 CONNECT: "MQTT" level 4, clean session, keep alive 60, client id "abcd".
fn v311_connect() -> (Vec<u8>, Packet) {
    let bytes = cat(&[
        &[0x10, 0x10], // CONNECT, remaining length 16
        &[0x00, 0x04], // protocol name length
        b"MQTT",       // protocol name
        &[0x04],       // protocol level 4
        &[0x02],       // clean session
        &[0x00, 0x3C], // keep alive 60 s
        &[0x00, 0x04], // client id length
        b"abcd",       // client id
    ]);
    (bytes, Packet::Connect(Box::new(connect(V311))))
}

/// A 5.0 CONNECT with every CONNECT property, every will property, user name and password.
fn v5_connect() -> (Vec<u8>, Packet) {
    let bytes = cat(&[
        &[0x10, 0x77, 0x00, 0x04],
        b"MQTT",
        &[0x05],                         // level 5
        &[0xD6],                         // user name, password, will QoS 2, will flag, clean start
        &[0x00, 0x1E],                   // keep alive 30 s
        &[0x28],                         // property length 40
        &[0x11, 0x00, 0x00, 0x00, 0x78], // session expiry interval 120 s
        &[0x15, 0x00, 0x05],             // authentication method
        b"SCRAM",
        &[0x16, 0x00, 0x02, 0x01, 0x02], // authentication data
        &[0x17, 0x00],                   // request problem information 0
        &[0x19, 0x01],                   // request response information 1
        &[0x21, 0x00, 0x0A],             // receive maximum 10
        &[0x22, 0x00, 0x05],             // topic alias maximum 5
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'], // user property k=v
        &[0x27, 0x00, 0x00, 0x10, 0x00], // maximum packet size 4096
        &[0x00, 0x03],
        b"cid",                          // client id
        &[0x27],                         // will property length 39
        &[0x01, 0x01],                   // payload format indicator 1
        &[0x02, 0x00, 0x00, 0x00, 0x3C], // message expiry interval 60 s
        &[0x03, 0x00, 0x04],             // content type
        b"text",
        &[0x08, 0x00, 0x05], // response topic
        b"reply",
        &[0x09, 0x00, 0x02, 0xAB, 0xCD], // correlation data
        &[0x18, 0x00, 0x00, 0x00, 0x05], // will delay interval 5 s
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b'], // user property a=b
        &[0x00, 0x04],
        b"will", // will topic
        &[0x00, 0x04],
        b"gone", // will payload
        &[0x00, 0x04],
        b"user", // user name
        &[0x00, 0x03],
        b"pwd", // password
    ]);
    let c = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 30,
        properties: ConnectProperties {
            session_expiry_interval: Some(120),
            receive_maximum: NonZeroU16::new(10),
            maximum_packet_size: NonZeroU32::new(4096),
            topic_alias_maximum: Some(5),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: vec![user("k", "v")],
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[0x01, 0x02])),
        },
        client_id: ClientId::try_from("cid").unwrap(),
        will: Some(Will {
            topic: topic("will"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(60),
                content_type: Some(s("text")),
                response_topic: Some(topic("reply")),
                correlation_data: Some(Bytes::from_static(&[0xAB, 0xCD])),
                user_properties: vec![user("a", "b")],
            },
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"pwd")),
    };
    (bytes, Packet::Connect(Box::new(c)))
}

/// 3.1.1 section 3.1: the classic CONNECT, decoded by its own name and level whatever
/// version the connection was assumed to speak.
#[test]
fn connect_v311_classic() {
    let (bytes, packet) = v311_connect();
    exact(&bytes, V311, packet.clone());
    decodes_to(&bytes, V5, packet.clone());
    decodes_to(&bytes, V31, packet);
}

/// MQTT 3.1: protocol name "MQIsdp", level 3.
#[test]
fn connect_v31_mqisdp() {
    let bytes = cat(&[
        &[0x10, 0x12, 0x00, 0x06],
        b"MQIsdp",
        &[0x03, 0x02, 0x00, 0x3C, 0x00, 0x04],
        b"abcd",
    ]);
    exact(&bytes, V31, Packet::Connect(Box::new(connect(V31))));
}

/// 3.1.1 sections 3.1.2.3 to 3.1.3.5: every flag and every payload field.
#[test]
fn connect_v311_will_user_name_password() {
    let bytes = cat(&[
        &[0x10, 0x1F, 0x00, 0x04],
        b"MQTT",
        &[0x04],       // level 4
        &[0xEE],       // user name, password, will retain, will QoS 1, will flag, clean session
        &[0x00, 0x0A], // keep alive 10 s
        &[0x00, 0x02],
        b"c1",
        &[0x00, 0x03],
        b"w/t",
        &[0x00, 0x03],
        b"bye",
        &[0x00, 0x01],
        b"u",
        &[0x00, 0x02, 0x00, 0xFF], // password: binary data
    ]);
    let c = Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 10,
        properties: ConnectProperties::default(),
        client_id: ClientId::try_from("c1").unwrap(),
        will: Some(Will {
            topic: topic("w/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        username: Some(s("u")),
        password: Some(Bytes::from_static(&[0x00, 0xFF])),
    };
    exact(&bytes, V311, Packet::Connect(Box::new(c)));
    // Clean session 0, keep alive 0 and a zero-length client id.
    let bytes = cat(&[
        &[0x10, 0x0C, 0x00, 0x04],
        b"MQTT",
        &[0x04, 0x00, 0x00, 0x00, 0x00, 0x00],
    ]);
    let c = Connect {
        clean_start: false,
        keep_alive: 0,
        client_id: ClientId::default(),
        ..connect(V311)
    };
    exact(&bytes, V311, Packet::Connect(Box::new(c)));
}

/// 3.1.2.11 and 3.1.3.2: CONNECT and will properties.
#[test]
fn connect_v5_properties_and_will_properties() {
    let (bytes, packet) = v5_connect();
    exact(&bytes, V5, packet);
}

/// 3.1.2.9: 5.0 allows a password without a user name.
#[test]
fn connect_v5_password_without_user_name() {
    let bytes = cat(&[
        &[0x10, 0x10, 0x00, 0x04],
        b"MQTT",
        &[0x05, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, b'p'],
    ]);
    let c = Connect {
        keep_alive: 0,
        client_id: ClientId::default(),
        password: Some(Bytes::from_static(b"p")),
        ..connect(V5)
    };
    exact(&bytes, V5, Packet::Connect(Box::new(c)));
}

/// A 3.1.1 CONNECT with an empty client id and the given connect flags.
fn v311_connect_flags(flags: u8) -> Vec<u8> {
    cat(&[
        &[0x10, 0x0C, 0x00, 0x04],
        b"MQTT",
        &[0x04, flags, 0x00, 0x00, 0x00, 0x00],
    ])
}

/// A 5.0 CONNECT with no properties, an empty client id and the given connect flags.
fn v5_connect_flags(flags: u8) -> Vec<u8> {
    cat(&[
        &[0x10, 0x0D, 0x00, 0x04],
        b"MQTT",
        &[0x05, flags, 0x00, 0x00, 0x00, 0x00, 0x00],
    ])
}

/// [MQTT-3.1.2-3], [MQTT-3.1.2-11], [MQTT-3.1.2-12], [MQTT-3.1.2-13] and 3.1.1
/// [MQTT-3.1.2-22]: the connect flags.
#[test]
fn connect_flag_errors() {
    let malformed = ReasonCode::MalformedPacket;
    rejects(
        &v311_connect_flags(0x03),
        V311,
        DecodeError::ConnectReservedFlag,
        malformed,
    );
    rejects(
        &v5_connect_flags(0x01),
        V5,
        DecodeError::ConnectReservedFlag,
        malformed,
    );
    // Will QoS 1, will QoS 2, will retain, each without the will flag.
    for flags in [0x0A, 0x12, 0x22] {
        rejects(
            &v311_connect_flags(flags),
            V311,
            DecodeError::WillFlagsWithoutWill,
            malformed,
        );
        rejects(
            &v5_connect_flags(flags),
            V5,
            DecodeError::WillFlagsWithoutWill,
            malformed,
        );
    }
    // Will QoS 3 with the will flag.
    rejects(
        &v311_connect_flags(0x1E),
        V311,
        DecodeError::InvalidWillQoS,
        malformed,
    );
    rejects(
        &v5_connect_flags(0x1E),
        V5,
        DecodeError::InvalidWillQoS,
        malformed,
    );
    // 3.1.1: password flag without the user name flag.
    rejects(
        &v311_connect_flags(0x42),
        V311,
        DecodeError::PasswordWithoutUsername,
        malformed,
    );
}

/// [MQTT-3.1.2-1], [MQTT-3.1.2-2]: protocol name and level.
#[test]
fn connect_protocol_name_and_level() {
    let with = |name: &[u8], level: u8| {
        cat(&[
            &[0x10, 8 + name.len() as u8, 0x00, name.len() as u8],
            name,
            &[level, 0x02, 0x00, 0x00, 0x00, 0x00],
        ])
    };
    let unsupported = ReasonCode::UnsupportedProtocolVersion;
    for name in ["MQTX", "mqtt", "MQIsdP", "HTTP"] {
        rejects(
            &with(name.as_bytes(), 4),
            V311,
            DecodeError::InvalidProtocolName(name.to_owned()),
            unsupported,
        );
    }
    for level in [0, 1, 2, 3, 6, 0x84] {
        rejects(
            &with(b"MQTT", level),
            V5,
            DecodeError::UnsupportedProtocolVersion(level),
            unsupported,
        );
    }
    for level in [4, 5] {
        rejects(
            &with(b"MQIsdp", level),
            V311,
            DecodeError::UnsupportedProtocolVersion(level),
            unsupported,
        );
    }
}

/// 3.1.3 and 2.1.4: the payload ends with the last field the flags announce.
#[test]
fn connect_trailing_and_truncated() {
    let malformed = ReasonCode::MalformedPacket;
    // One byte after the client id.
    let trailing = cat(&[
        &[0x10, 0x0D, 0x00, 0x04],
        b"MQTT",
        &[0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0xFF],
    ]);
    rejects(
        &trailing,
        V311,
        DecodeError::TrailingBytes(PacketType::Connect),
        malformed,
    );
    let trailing_v5 = cat(&[
        &[0x10, 0x0E, 0x00, 0x04],
        b"MQTT",
        &[0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF],
    ]);
    rejects(
        &trailing_v5,
        V5,
        DecodeError::TrailingBytes(PacketType::Connect),
        malformed,
    );
    let truncated: [(Vec<u8>, &str); 7] = [
        (vec![0x10, 0x03, 0x00, 0x04, b'M'], "protocol name"),
        (cat(&[&[0x10, 0x06, 0x00, 0x04], b"MQTT"]), "protocol level"),
        (
            cat(&[&[0x10, 0x07, 0x00, 0x04], b"MQTT", &[0x04]]),
            "connect flags",
        ),
        (
            cat(&[&[0x10, 0x09, 0x00, 0x04], b"MQTT", &[0x04, 0x02, 0x00]]),
            "keep alive",
        ),
        (
            cat(&[
                &[0x10, 0x0B, 0x00, 0x04],
                b"MQTT",
                &[0x04, 0x02, 0x00, 0x00, 0x00],
            ]),
            "client identifier",
        ),
        (
            cat(&[
                &[0x10, 0x0E, 0x00, 0x04],
                b"MQTT",
                &[0x04, 0x02, 0x00, 0x00, 0x00, 0x04, b'a', b'b'],
            ]),
            "client identifier",
        ),
        // The will flag announces a will topic that is not there.
        (v311_connect_flags(0x06), "will topic"),
    ];
    for (bytes, field) in truncated {
        rejects(&bytes, V311, DecodeError::Truncated(field), malformed);
    }
    // User name flag, no user name; user name and password flags, no password.
    rejects(
        &v311_connect_flags(0x82),
        V311,
        DecodeError::Truncated("user name"),
        malformed,
    );
    let no_password = cat(&[
        &[0x10, 0x0F, 0x00, 0x04],
        b"MQTT",
        &[0x04, 0xC2, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, b'u'],
    ]);
    rejects(
        &no_password,
        V311,
        DecodeError::Truncated("password"),
        malformed,
    );
}

/// [MQTT-3.1.3-11], 3.1.3.3: the will topic is a topic name.
#[test]
fn connect_will_topic_rules() {
    let wildcard = cat(&[
        &[0x10, 0x13, 0x00, 0x04],
        b"MQTT",
        &[0x04, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03],
        b"a/#",
        &[0x00, 0x00],
    ]);
    rejects(
        &wildcard,
        V311,
        DecodeError::TopicName(TopicError::WildcardInName),
        ReasonCode::TopicNameInvalid,
    );
    let empty = cat(&[
        &[0x10, 0x10, 0x00, 0x04],
        b"MQTT",
        &[0x04, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    ]);
    rejects(
        &empty,
        V311,
        DecodeError::TopicName(TopicError::Empty),
        ReasonCode::ProtocolError,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.2 CONNACK
// ---------------------------------------------------------------------------------------------

fn connack(session_present: bool, code: ReasonCode) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        code,
        properties: ConnAckProperties::default(),
    })
}

/// 3.1.1 section 3.2.2.3: return codes 0 to 5.
#[test]
fn connack_v311_return_codes() {
    use ReasonCode::*;
    let table = [
        (0x00, Success),
        (0x01, UnsupportedProtocolVersion),
        (0x02, ClientIdentifierNotValid),
        (0x03, ServerUnavailable),
        (0x04, BadUserNameOrPassword),
        (0x05, NotAuthorized),
    ];
    for (rc, code) in table {
        exact(&[0x20, 0x02, 0x00, rc], V311, connack(false, code));
        exact(&[0x20, 0x02, 0x00, rc], V31, connack(false, code));
    }
    exact(&[0x20, 0x02, 0x01, 0x00], V311, connack(true, Success));
}

/// 3.1.1 section 3.2.2.3, [MQTT-3.2.2-1] and 2.1.4.
#[test]
fn connack_errors() {
    for rc in [0x06, 0x80, 0xFF] {
        rejects(
            &[0x20, 0x02, 0x00, rc],
            V311,
            DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code: rc,
            },
            ReasonCode::ProtocolError,
        );
    }
    for flags in [0x02, 0x80, 0xFE] {
        rejects(
            &[0x20, 0x02, flags, 0x00],
            V311,
            DecodeError::ConnAckReservedFlags,
            ReasonCode::MalformedPacket,
        );
        rejects(
            &[0x20, 0x03, flags, 0x00, 0x00],
            V5,
            DecodeError::ConnAckReservedFlags,
            ReasonCode::MalformedPacket,
        );
    }
    rejects(
        &[0x20, 0x03, 0x00, 0x00, 0x00],
        V311,
        DecodeError::TrailingBytes(PacketType::ConnAck),
        ReasonCode::MalformedPacket,
    );
    rejects(
        &[0x20, 0x01, 0x00],
        V311,
        DecodeError::Truncated("connect reason code"),
        ReasonCode::MalformedPacket,
    );
}

/// 3.2.2.3: every CONNACK property the server usually sends.
#[test]
fn connack_v5_properties() {
    let bytes = cat(&[
        &[0x20, 0x33, 0x01, 0x00],       // session present, success
        &[0x30],                         // property length 48
        &[0x11, 0x00, 0x00, 0x01, 0x2C], // session expiry interval 300 s
        &[0x12, 0x00, 0x04],             // assigned client identifier
        b"auto",
        &[0x13, 0x00, 0x3C], // server keep alive 60 s
        &[0x1F, 0x00, 0x02], // reason string
        b"ok",
        &[0x21, 0x00, 0x14],                         // receive maximum 20
        &[0x22, 0x00, 0x0A],                         // topic alias maximum 10
        &[0x24, 0x01],                               // maximum QoS 1
        &[0x25, 0x00],                               // retain available 0
        &[0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y'], // user property
        &[0x27, 0x00, 0x01, 0x00, 0x00],             // maximum packet size 65536
        &[0x28, 0x01],                               // wildcard subscription available
        &[0x29, 0x00],                               // subscription identifiers available
        &[0x2A, 0x01],                               // shared subscription available
    ]);
    let properties = ConnAckProperties {
        session_expiry_interval: Some(300),
        receive_maximum: NonZeroU16::new(20),
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        maximum_packet_size: NonZeroU32::new(65_536),
        assigned_client_identifier: Some(s("auto")),
        topic_alias_maximum: Some(10),
        reason_string: Some(s("ok")),
        user_properties: vec![user("x", "y")],
        wildcard_subscription_available: Some(true),
        subscription_identifiers_available: Some(false),
        shared_subscription_available: Some(true),
        server_keep_alive: Some(60),
        ..ConnAckProperties::default()
    };
    let packet = Packet::ConnAck(ConnAck {
        session_present: true,
        code: ReasonCode::Success,
        properties,
    });
    exact(&bytes, V5, packet);
    // Authentication and response information.
    let bytes = cat(&[
        &[0x20, 0x15, 0x00, 0x00, 0x12],
        &[0x15, 0x00, 0x05],
        b"SCRAM",
        &[0x16, 0x00, 0x01, 0x07],
        &[0x1A, 0x00, 0x03],
        b"r/i",
    ]);
    let properties = ConnAckProperties {
        authentication_method: Some(s("SCRAM")),
        authentication_data: Some(Bytes::from_static(&[0x07])),
        response_information: Some(s("r/i")),
        ..ConnAckProperties::default()
    };
    let packet = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ReasonCode::Success,
        properties,
    });
    exact(&bytes, V5, packet);
}

/// 3.2.2.2: failure reason codes, and codes that are not CONNACK codes.
#[test]
fn connack_v5_reason_codes() {
    exact(
        &[0x20, 0x03, 0x00, 0x87, 0x00],
        V5,
        connack(false, ReasonCode::NotAuthorized),
    );
    let bytes = cat(&[&[0x20, 0x0B, 0x00, 0x9C, 0x08, 0x1C, 0x00, 0x05], b"other"]);
    let packet = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ReasonCode::UseAnotherServer,
        properties: ConnAckProperties {
            server_reference: Some(s("other")),
            ..ConnAckProperties::default()
        },
    });
    exact(&bytes, V5, packet);
    for rc in [0x01, 0x03, 0x04, 0x18, 0x8E, 0x92, 0xA3] {
        rejects(
            &[0x20, 0x03, 0x00, rc, 0x00],
            V5,
            DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code: rc,
            },
            ReasonCode::ProtocolError,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3.3 PUBLISH
// ---------------------------------------------------------------------------------------------

/// 3.3.1 to 3.3.3 (3.1.1): QoS 0, 1 and 2 with DUP and RETAIN, and an empty payload.
#[test]
fn publish_v311_qos_0_1_2() {
    let bytes = cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]);
    let p = publish(QosPid::AtMostOnce, "a/b", b"hi");
    exact(&bytes, V311, Packet::Publish(p.clone()));
    exact(&bytes, V31, Packet::Publish(p));
    // QoS 1, RETAIN, packet id 10.
    let bytes = cat(&[&[0x33, 0x09, 0x00, 0x03], b"a/b", &[0x00, 0x0A], b"hi"]);
    let p = Publish {
        retain: true,
        ..publish(QosPid::AtLeastOnce(pid(10)), "a/b", b"hi")
    };
    exact(&bytes, V311, Packet::Publish(p));
    // QoS 2, DUP, packet id 0x1234.
    let bytes = cat(&[&[0x3C, 0x0A, 0x00, 0x03], b"a/b", &[0x12, 0x34], b"ok!"]);
    let p = Publish {
        dup: true,
        ..publish(QosPid::ExactlyOnce(pid(0x1234)), "a/b", b"ok!")
    };
    exact(&bytes, V311, Packet::Publish(p));
    // QoS 1 with DUP and RETAIN.
    let bytes = cat(&[&[0x3B, 0x07, 0x00, 0x03], b"a/b", &[0xFF, 0xFF]]);
    let p = Publish {
        dup: true,
        retain: true,
        ..publish(QosPid::AtLeastOnce(pid(0xFFFF)), "a/b", b"")
    };
    exact(&bytes, V311, Packet::Publish(p));
    // RETAIN with a zero-length payload (clears the retained message, [MQTT-3.3.1-6]).
    let bytes = cat(&[&[0x31, 0x05, 0x00, 0x03], b"a/b"]);
    let p = Publish {
        retain: true,
        ..publish(QosPid::AtMostOnce, "a/b", b"")
    };
    exact(&bytes, V311, Packet::Publish(p));
}

/// A 5.0 PUBLISH with every PUBLISH property, two subscription identifiers and two user
/// properties with the same name (order kept, [MQTT-3.3.2-18]).
fn v5_publish() -> (Vec<u8>, Packet) {
    let bytes = cat(&[
        &[0x3D, 0x47], // PUBLISH DUP, QoS 2, RETAIN; remaining length 71
        &[0x00, 0x03],
        b"a/b",
        &[0x12, 0x34],                   // packet id
        &[0x3A],                         // property length 58
        &[0x01, 0x01],                   // payload format indicator 1
        &[0x02, 0x00, 0x00, 0x0E, 0x10], // message expiry interval 3600 s
        &[0x03, 0x00, 0x0A],             // content type
        b"text/plain",
        &[0x08, 0x00, 0x05], // response topic
        b"reply",
        &[0x09, 0x00, 0x03, 0x01, 0x02, 0x03], // correlation data
        &[0x23, 0x00, 0x07],                   // topic alias 7
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x02, b'v', b'1'],
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x02, b'v', b'2'],
        // Subscription identifiers last, as the encoder writes them (for rumqttc).
        &[0x0B, 0x05],       // subscription identifier 5
        &[0x0B, 0x80, 0x01], // subscription identifier 128
        b"hello",
    ]);
    let p = Publish {
        dup: true,
        qos: QosPid::ExactlyOnce(pid(0x1234)),
        retain: true,
        topic: Some(topic("a/b")),
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(3600),
            topic_alias: NonZeroU16::new(7),
            response_topic: Some(topic("reply")),
            correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
            user_properties: vec![user("k", "v1"), user("k", "v2")],
            subscription_identifiers: vec![
                SubscriptionId::new(5).unwrap(),
                SubscriptionId::new(128).unwrap(),
            ],
            content_type: Some(s("text/plain")),
        },
        payload: Bytes::from_static(b"hello"),
    };
    (bytes, Packet::Publish(p))
}

/// 3.3.2.3: PUBLISH properties.
#[test]
fn publish_v5_properties() {
    let (bytes, packet) = v5_publish();
    exact(&bytes, V5, packet);
    // No properties: property length 0.
    let bytes = cat(&[&[0x32, 0x08, 0x00, 0x03], b"a/b", &[0x00, 0x01, 0x00]]);
    let p = publish(QosPid::AtLeastOnce(pid(1)), "a/b", b"");
    exact(&bytes, V5, Packet::Publish(p));
}

/// 3.3.2.3.4: a zero-length topic name with a topic alias.
#[test]
fn publish_v5_topic_alias_without_topic_name() {
    let bytes = [0x30, 0x08, 0x00, 0x00, 0x03, 0x23, 0x00, 0x07, b'h', b'i'];
    let p = Publish {
        topic: None,
        properties: PublishProperties {
            topic_alias: NonZeroU16::new(7),
            ..PublishProperties::default()
        },
        ..publish(QosPid::AtMostOnce, "x", b"hi")
    };
    exact(&bytes, V5, Packet::Publish(p));
}

/// [MQTT-3.3.1-4], [MQTT-3.3.1-2], [MQTT-2.2.1-3]: QoS 3, DUP at QoS 0, packet id 0.
#[test]
fn publish_header_errors() {
    let malformed = ReasonCode::MalformedPacket;
    for v in [V311, V5] {
        for first in [0x36, 0x37, 0x3E, 0x3F] {
            let bytes = cat(&[&[first, 0x07, 0x00, 0x03], b"a/b", &[0x00, 0x01]]);
            rejects(&bytes, v, DecodeError::InvalidQoS, malformed);
        }
        for first in [0x38, 0x39] {
            let bytes = cat(&[&[first, 0x05, 0x00, 0x03], b"a/b"]);
            rejects(&bytes, v, DecodeError::DupAtQoS0, malformed);
        }
        for first in [0x32, 0x34, 0x3A] {
            let bytes = cat(&[&[first, 0x08, 0x00, 0x03], b"a/b", &[0x00, 0x00, 0x00]]);
            rejects(&bytes, v, DecodeError::ZeroPacketId, malformed);
        }
    }
}

/// [MQTT-3.3.2-2], [MQTT-4.7.3-1] and 3.3.2.1: the topic name.
#[test]
fn publish_topic_name_errors() {
    for name in [&b"a/#"[..], b"#", b"+", b"a/+/b", b"sport+"] {
        let bytes = cat(&[&[0x30, 2 + name.len() as u8, 0x00, name.len() as u8], name]);
        rejects(
            &bytes,
            V311,
            DecodeError::TopicName(TopicError::WildcardInName),
            ReasonCode::TopicNameInvalid,
        );
        let bytes = cat(&[
            &[0x30, 3 + name.len() as u8, 0x00, name.len() as u8],
            name,
            &[0x00],
        ]);
        rejects(
            &bytes,
            V5,
            DecodeError::TopicName(TopicError::WildcardInName),
            ReasonCode::TopicNameInvalid,
        );
    }
    // 3.1.1: a topic name is never empty.
    rejects(
        &[0x30, 0x02, 0x00, 0x00],
        V311,
        DecodeError::TopicName(TopicError::Empty),
        ReasonCode::ProtocolError,
    );
    rejects(
        &[0x30, 0x04, 0x00, 0x00, b'h', b'i'],
        V31,
        DecodeError::TopicName(TopicError::Empty),
        ReasonCode::ProtocolError,
    );
    // 5.0: only with a topic alias.
    rejects(
        &[0x30, 0x03, 0x00, 0x00, 0x00],
        V5,
        DecodeError::EmptyTopicWithoutAlias,
        ReasonCode::ProtocolError,
    );
    rejects(
        &[0x30, 0x0A, 0x00, 0x00, 0x05, 0x02, 0, 0, 0, 9, b'h', b'i'],
        V5,
        DecodeError::EmptyTopicWithoutAlias,
        ReasonCode::ProtocolError,
    );
}

/// 2.1.4: the remaining length ends inside a PUBLISH field.
#[test]
fn publish_truncated() {
    let malformed = ReasonCode::MalformedPacket;
    rejects(
        &[0x30, 0x03, 0x00, 0x03, b'a'],
        V311,
        DecodeError::Truncated("topic name"),
        malformed,
    );
    rejects(
        &[0x30, 0x01, 0x00],
        V311,
        DecodeError::Truncated("topic name"),
        malformed,
    );
    rejects(
        &cat(&[&[0x32, 0x06, 0x00, 0x03], b"a/b", &[0x00]]),
        V311,
        DecodeError::Truncated("packet identifier"),
        malformed,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.4 PUBACK, 3.5 PUBREC, 3.6 PUBREL, 3.7 PUBCOMP
// ---------------------------------------------------------------------------------------------

/// 3.1.1: packet id only, remaining length 2; PUBREL with flags 0b0010.
#[test]
fn acks_v311() {
    use ReasonCode::Success;
    exact(
        &[0x40, 0x02, 0x00, 0x01],
        V311,
        Packet::PubAck(ack(1, Success)),
    );
    exact(
        &[0x50, 0x02, 0x00, 0x02],
        V311,
        Packet::PubRec(ack(2, Success)),
    );
    exact(
        &[0x62, 0x02, 0x00, 0x03],
        V311,
        Packet::PubRel(ack(3, Success)),
    );
    exact(
        &[0x70, 0x02, 0xFF, 0xFF],
        V311,
        Packet::PubComp(ack(0xFFFF, Success)),
    );
    exact(
        &[0x62, 0x02, 0x00, 0x03],
        V31,
        Packet::PubRel(ack(3, Success)),
    );
}

/// 3.1.1: nothing may follow the packet id; the packet id is never 0 or missing.
#[test]
fn acks_v311_errors() {
    let malformed = ReasonCode::MalformedPacket;
    let kinds = [
        (0x40, PacketType::PubAck),
        (0x50, PacketType::PubRec),
        (0x62, PacketType::PubRel),
        (0x70, PacketType::PubComp),
    ];
    for (first, packet) in kinds {
        rejects(
            &[first, 0x03, 0x00, 0x01, 0x00],
            V311,
            DecodeError::TrailingBytes(packet),
            malformed,
        );
        for v in [V311, V5] {
            rejects(
                &[first, 0x02, 0x00, 0x00],
                v,
                DecodeError::ZeroPacketId,
                malformed,
            );
            rejects(
                &[first, 0x01, 0x00],
                v,
                DecodeError::Truncated("packet identifier"),
                malformed,
            );
            rejects(
                &[first, 0x00],
                v,
                DecodeError::Truncated("packet identifier"),
                malformed,
            );
        }
    }
}

/// 3.4.2.1, 3.4.2.2.1: the shortened 5.0 forms. Remaining length 2 means success without
/// properties; 3 is a reason code without property length.
#[test]
fn acks_v5_shortened_forms() {
    use ReasonCode::*;
    exact(
        &[0x40, 0x02, 0x00, 0x01],
        V5,
        Packet::PubAck(ack(1, Success)),
    );
    exact(
        &[0x40, 0x03, 0x00, 0x01, 0x10],
        V5,
        Packet::PubAck(ack(1, NoMatchingSubscribers)),
    );
    exact(
        &[0x50, 0x03, 0x00, 0x02, 0x97],
        V5,
        Packet::PubRec(ack(2, QuotaExceeded)),
    );
    exact(
        &[0x62, 0x03, 0x00, 0x03, 0x92],
        V5,
        Packet::PubRel(ack(3, PacketIdentifierNotFound)),
    );
    exact(
        &[0x70, 0x03, 0x00, 0x04, 0x92],
        V5,
        Packet::PubComp(ack(4, PacketIdentifierNotFound)),
    );
    // Valid longer forms of the same values, which the encoder shortens.
    decodes_to(
        &[0x40, 0x03, 0x00, 0x01, 0x00],
        V5,
        Packet::PubAck(ack(1, Success)),
    );
    decodes_to(
        &[0x40, 0x04, 0x00, 0x01, 0x00, 0x00],
        V5,
        Packet::PubAck(ack(1, Success)),
    );
    decodes_to(
        &[0x50, 0x04, 0x00, 0x01, 0x97, 0x00],
        V5,
        Packet::PubRec(ack(1, QuotaExceeded)),
    );
}

/// 3.4.2.2: reason string and user properties.
#[test]
fn acks_v5_properties() {
    let bytes = cat(&[
        &[0x50, 0x0A, 0x00, 0x05, 0x80, 0x06, 0x1F, 0x00, 0x03],
        b"bad",
    ]);
    let a = PubAck {
        packet_id: pid(5),
        code: ReasonCode::UnspecifiedError,
        properties: ReasonProperties {
            reason_string: Some(s("bad")),
            user_properties: vec![],
        },
    };
    exact(&bytes, V5, Packet::PubRec(a));
    let bytes = [
        0x70, 0x0B, 0x00, 0x06, 0x92, 0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
    ];
    let a = PubAck {
        packet_id: pid(6),
        code: ReasonCode::PacketIdentifierNotFound,
        properties: ReasonProperties {
            reason_string: None,
            user_properties: vec![user("k", "v")],
        },
    };
    exact(&bytes, V5, Packet::PubComp(a));
    // A success code with properties must carry the code byte.
    let bytes = cat(&[
        &[0x40, 0x09, 0x00, 0x07, 0x00, 0x05, 0x1F, 0x00, 0x02],
        b"ok",
    ]);
    let a = PubAck {
        packet_id: pid(7),
        code: ReasonCode::Success,
        properties: ReasonProperties {
            reason_string: Some(s("ok")),
            user_properties: vec![],
        },
    };
    exact(&bytes, V5, Packet::PubAck(a));
}

/// [MQTT-3.4.2-1], [MQTT-3.5.2-1], [MQTT-3.6.2-1], [MQTT-3.7.2-1]: codes outside each table.
#[test]
fn acks_v5_invalid_reason_codes() {
    let cases = [
        (0x40, PacketType::PubAck, 0x92),
        (0x40, PacketType::PubAck, 0x03),
        (0x40, PacketType::PubAck, 0x02),
        (0x50, PacketType::PubRec, 0x18),
        (0x50, PacketType::PubRec, 0x8F),
        (0x62, PacketType::PubRel, 0x10),
        (0x62, PacketType::PubRel, 0x80),
        (0x70, PacketType::PubComp, 0x80),
        (0x70, PacketType::PubComp, 0x91),
    ];
    for (first, packet, code) in cases {
        rejects(
            &[first, 0x03, 0x00, 0x01, code],
            V5,
            DecodeError::InvalidReasonCode { packet, code },
            ReasonCode::ProtocolError,
        );
    }
    // Trailing bytes after the properties.
    rejects(
        &[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF],
        V5,
        DecodeError::TrailingBytes(PacketType::PubAck),
        ReasonCode::MalformedPacket,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.8 SUBSCRIBE
// ---------------------------------------------------------------------------------------------

/// 3.1.1 section 3.8: two filters with requested QoS 0 and 2.
#[test]
fn subscribe_v311() {
    let bytes = cat(&[
        &[0x82, 0x0E, 0x00, 0x01],
        &[0x00, 0x03],
        b"a/b",
        &[0x00],
        &[0x00, 0x03],
        b"c/#",
        &[0x02],
    ]);
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        subscriptions: vec![
            sub(filter("a/b"), qos_opts(QoS::AtMostOnce)),
            sub(filter("c/#"), qos_opts(QoS::ExactlyOnce)),
        ],
    };
    exact(&bytes, V311, Packet::Subscribe(s.clone()));
    exact(&bytes, V31, Packet::Subscribe(s));
}

/// A 5.0 SUBSCRIBE with a subscription identifier, a user property and every option.
fn v5_subscribe() -> (Vec<u8>, Packet) {
    let bytes = cat(&[
        &[0x82, 0x1F, 0x00, 0x02],
        &[0x09, 0x0B, 0x2A], // property length 9; subscription identifier 42
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
        &[0x00, 0x03],
        b"a/+",
        &[0x2D], // retain handling 2, retain as published, no local, QoS 1
        &[0x00, 0x0A],
        b"$share/g/x",
        &[0x12], // retain handling 1, QoS 2
    ]);
    let s = Subscribe {
        packet_id: pid(2),
        properties: SubscribeProperties {
            subscription_identifier: SubscriptionId::new(42),
            user_properties: vec![user("k", "v")],
        },
        subscriptions: vec![
            sub(
                filter("a/+"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            ),
            sub(
                filter("$share/g/x"),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendIfNew,
                },
            ),
        ],
    };
    (bytes, Packet::Subscribe(s))
}

/// 3.8.2.1 and 3.8.3.1: properties and subscription options.
#[test]
fn subscribe_v5_options_and_properties() {
    let (bytes, packet) = v5_subscribe();
    exact(&bytes, V5, packet);
}

/// [MQTT-3.8.3-1] is about UTF-8 only: a filter that is valid UTF-8 but breaks the wildcard or
/// share rules is not a malformed packet; the broker answers it in SUBACK (0x80 / 0x8F).
#[test]
fn subscribe_invalid_filters_decode() {
    let bytes = cat(&[
        &[0x82, 0x1D, 0x00, 0x01],
        &[0x00, 0x05],
        b"a/#/b",
        &[0x00],
        &[0x00, 0x02],
        b"a+",
        &[0x01],
        &[0x00, 0x00], // zero-length filter
        &[0x00],
        &[0x00, 0x08],
        b"$share/g",
        &[0x00],
    ]);
    let invalid = |f: &str, e| FilterEntry::Invalid(s(f), e);
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        subscriptions: vec![
            sub(
                invalid("a/#/b", TopicError::MultiLevelWildcard),
                qos_opts(QoS::AtMostOnce),
            ),
            sub(
                invalid("a+", TopicError::SingleLevelWildcard),
                qos_opts(QoS::AtLeastOnce),
            ),
            sub(invalid("", TopicError::Empty), qos_opts(QoS::AtMostOnce)),
            sub(
                invalid("$share/g", TopicError::InvalidShare),
                qos_opts(QoS::AtMostOnce),
            ),
        ],
    });
    exact(&bytes, V311, packet);
}

/// [MQTT-3.8.3-5] (5.0 bits 6-7) and 3.1.1 [MQTT-3-8.3-4] (bits 2-7): reserved bits.
#[test]
fn subscribe_reserved_option_bits() {
    let malformed = ReasonCode::MalformedPacket;
    for opts in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFC] {
        let bytes = cat(&[&[0x82, 0x08, 0x00, 0x01, 0x00, 0x03], b"a/b", &[opts]]);
        rejects(
            &bytes,
            V311,
            DecodeError::SubscriptionOptionsReserved,
            malformed,
        );
    }
    for opts in [0x40, 0x80, 0xC0] {
        let bytes = cat(&[&[0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03], b"a/b", &[opts]]);
        rejects(
            &bytes,
            V5,
            DecodeError::SubscriptionOptionsReserved,
            malformed,
        );
    }
}

/// 3.8.3.1: QoS 3 and retain handling 3 are protocol errors; [MQTT-3.8.3-4]: no local on a
/// shared subscription.
#[test]
fn subscribe_option_values() {
    let v5_with = |f: &[u8], opts: u8| {
        cat(&[
            &[
                0x82,
                6 + f.len() as u8,
                0x00,
                0x01,
                0x00,
                0x00,
                f.len() as u8,
            ],
            f,
            &[opts],
        ])
    };
    rejects(
        &v5_with(b"a/b", 0x03),
        V5,
        DecodeError::InvalidSubscriptionQoS,
        ReasonCode::ProtocolError,
    );
    rejects(
        &cat(&[&[0x82, 0x08, 0x00, 0x01, 0x00, 0x03], b"a/b", &[0x03]]),
        V311,
        DecodeError::InvalidSubscriptionQoS,
        ReasonCode::ProtocolError,
    );
    rejects(
        &v5_with(b"a/b", 0x30),
        V5,
        DecodeError::InvalidRetainHandling,
        ReasonCode::ProtocolError,
    );
    rejects(
        &v5_with(b"$share/g/a", 0x04),
        V5,
        DecodeError::NoLocalOnSharedSubscription,
        ReasonCode::ProtocolError,
    );
    // No local on a filter that merely looks like a share is fine.
    let bytes = v5_with(b"$shared/a", 0x04);
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        subscriptions: vec![sub(
            filter("$shared/a"),
            SubscriptionOptions {
                no_local: true,
                ..SubscriptionOptions::default()
            },
        )],
    });
    exact(&bytes, V5, packet);
}

/// [MQTT-3.8.3-2], [MQTT-2.2.1-3], 2.1.4.
#[test]
fn subscribe_structure_errors() {
    rejects(
        &[0x82, 0x02, 0x00, 0x01],
        V311,
        DecodeError::NoTopicFilters(PacketType::Subscribe),
        ReasonCode::ProtocolError,
    );
    rejects(
        &[0x82, 0x03, 0x00, 0x01, 0x00],
        V5,
        DecodeError::NoTopicFilters(PacketType::Subscribe),
        ReasonCode::ProtocolError,
    );
    rejects(
        &cat(&[&[0x82, 0x08, 0x00, 0x00, 0x00, 0x03], b"a/b", &[0x00]]),
        V311,
        DecodeError::ZeroPacketId,
        ReasonCode::MalformedPacket,
    );
    rejects(
        &cat(&[&[0x82, 0x07, 0x00, 0x01, 0x00, 0x03], b"a/b"]),
        V311,
        DecodeError::Truncated("subscription options"),
        ReasonCode::MalformedPacket,
    );
    rejects(
        &[0x82, 0x05, 0x00, 0x01, 0x00, 0x03, b'a'],
        V311,
        DecodeError::Truncated("topic filter"),
        ReasonCode::MalformedPacket,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.9 SUBACK
// ---------------------------------------------------------------------------------------------

fn suback(codes: Vec<ReasonCode>, properties: ReasonProperties) -> Packet {
    Packet::SubAck(SubAck {
        packet_id: pid(1),
        properties,
        codes,
    })
}

/// 3.1.1 section 3.9.3: return codes 0x00, 0x01, 0x02 and 0x80 only.
#[test]
fn suback_v311() {
    use ReasonCode::*;
    let packet = suback(
        vec![Success, GrantedQoS1, GrantedQoS2, UnspecifiedError],
        ReasonProperties::default(),
    );
    exact(
        &[0x90, 0x06, 0x00, 0x01, 0x00, 0x01, 0x02, 0x80],
        V311,
        packet,
    );
    for rc in [0x03, 0x81, 0x87, 0xFF] {
        rejects(
            &[0x90, 0x03, 0x00, 0x01, rc],
            V311,
            DecodeError::InvalidReasonCode {
                packet: PacketType::SubAck,
                code: rc,
            },
            ReasonCode::ProtocolError,
        );
    }
    // 5.0 failure codes are sent to a 3.1.1 client as 0x80.
    let mut out = BytesMut::new();
    let packet = suback(
        vec![NotAuthorized, QuotaExceeded, GrantedQoS1],
        ReasonProperties::default(),
    );
    encode(&packet, V311, &mut out).unwrap();
    assert_eq!(&out[..], &[0x90, 0x05, 0x00, 0x01, 0x80, 0x80, 0x01]);
    // A 5.0 success code that 3.1.1 does not have cannot be sent.
    let packet = suback(vec![NoMatchingSubscribers], ReasonProperties::default());
    assert_eq!(
        encode(&packet, V311, &mut BytesMut::new()),
        Err(EncodeError::InvalidReasonCode {
            packet: PacketType::SubAck,
            code: NoMatchingSubscribers,
        })
    );
}

/// 3.9.2.1 and 3.9.3: properties and the 5.0 SUBACK reason codes.
#[test]
fn suback_v5() {
    use ReasonCode::*;
    let bytes = cat(&[
        &[0x90, 0x12, 0x00, 0x01, 0x07, 0x1F, 0x00, 0x04],
        b"nope",
        &[0x00, 0x01, 0x02, 0x87, 0x8F, 0x9E, 0xA1, 0xA2],
    ]);
    let packet = suback(
        vec![
            Success,
            GrantedQoS1,
            GrantedQoS2,
            NotAuthorized,
            TopicFilterInvalid,
            SharedSubscriptionsNotSupported,
            SubscriptionIdentifiersNotSupported,
            WildcardSubscriptionsNotSupported,
        ],
        ReasonProperties {
            reason_string: Some(s("nope")),
            user_properties: vec![],
        },
    );
    exact(&bytes, V5, packet);
    for rc in [0x03, 0x04, 0x11, 0x81, 0x92] {
        rejects(
            &[0x90, 0x04, 0x00, 0x01, 0x00, rc],
            V5,
            DecodeError::InvalidReasonCode {
                packet: PacketType::SubAck,
                code: rc,
            },
            ReasonCode::ProtocolError,
        );
    }
    rejects(
        &[0x90, 0x02, 0x00, 0x01],
        V5,
        DecodeError::Truncated("property length"),
        ReasonCode::MalformedPacket,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.10 UNSUBSCRIBE
// ---------------------------------------------------------------------------------------------

/// 3.10 in 3.1.1 and 5.0, with an invalid-but-UTF-8 filter kept as received.
#[test]
fn unsubscribe_valid() {
    let bytes = cat(&[&[0xA2, 0x07, 0x00, 0x02, 0x00, 0x03], b"a/b"]);
    let u = Unsubscribe {
        packet_id: pid(2),
        properties: UnsubscribeProperties::default(),
        filters: vec![filter("a/b")],
    };
    exact(&bytes, V311, Packet::Unsubscribe(u));
    let bytes = cat(&[
        &[0xA2, 0x1B, 0x00, 0x02],
        &[0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
        &[0x00, 0x03],
        b"a/b",
        &[0x00, 0x0A],
        b"$share/g/#",
    ]);
    let u = Unsubscribe {
        packet_id: pid(2),
        properties: UnsubscribeProperties {
            user_properties: vec![user("k", "v")],
        },
        filters: vec![filter("a/b"), filter("$share/g/#")],
    };
    exact(&bytes, V5, Packet::Unsubscribe(u));
    let bytes = [0xA2, 0x06, 0x00, 0x02, 0x00, 0x02, b'#', b'a'];
    let u = Unsubscribe {
        packet_id: pid(2),
        properties: UnsubscribeProperties::default(),
        filters: vec![FilterEntry::Invalid(
            s("#a"),
            TopicError::MultiLevelWildcard,
        )],
    };
    exact(&bytes, V311, Packet::Unsubscribe(u));
}

/// [MQTT-3.10.3-2], [MQTT-2.2.1-3], [MQTT-3.10.1-1].
#[test]
fn unsubscribe_errors() {
    rejects(
        &[0xA2, 0x02, 0x00, 0x02],
        V311,
        DecodeError::NoTopicFilters(PacketType::Unsubscribe),
        ReasonCode::ProtocolError,
    );
    rejects(
        &[0xA2, 0x03, 0x00, 0x02, 0x00],
        V5,
        DecodeError::NoTopicFilters(PacketType::Unsubscribe),
        ReasonCode::ProtocolError,
    );
    rejects(
        &cat(&[&[0xA2, 0x07, 0x00, 0x00, 0x00, 0x03], b"a/b"]),
        V311,
        DecodeError::ZeroPacketId,
        ReasonCode::MalformedPacket,
    );
    rejects(
        &cat(&[&[0xA0, 0x07, 0x00, 0x01, 0x00, 0x03], b"a/b"]),
        V311,
        DecodeError::InvalidFlags {
            packet: PacketType::Unsubscribe,
            flags: 0,
        },
        ReasonCode::MalformedPacket,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.11 UNSUBACK
// ---------------------------------------------------------------------------------------------

/// 3.11: packet id only in 3.1.1; properties and one code per filter in 5.0.
#[test]
fn unsuback() {
    let u = |codes| {
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(2),
            properties: ReasonProperties::default(),
            codes,
        })
    };
    exact(&[0xB0, 0x02, 0x00, 0x02], V311, u(vec![]));
    rejects(
        &[0xB0, 0x03, 0x00, 0x02, 0x00],
        V311,
        DecodeError::TrailingBytes(PacketType::UnsubAck),
        ReasonCode::MalformedPacket,
    );
    exact(
        &[0xB0, 0x05, 0x00, 0x02, 0x00, 0x00, 0x11],
        V5,
        u(vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]),
    );
    for rc in [0x01, 0x10, 0x92] {
        rejects(
            &[0xB0, 0x04, 0x00, 0x02, 0x00, rc],
            V5,
            DecodeError::InvalidReasonCode {
                packet: PacketType::UnsubAck,
                code: rc,
            },
            ReasonCode::ProtocolError,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3.12 PINGREQ, 3.13 PINGRESP
// ---------------------------------------------------------------------------------------------

/// 3.12, 3.13: remaining length 0, nothing else.
#[test]
fn ping() {
    for v in [V31, V311, V5] {
        exact(&[0xC0, 0x00], v, Packet::PingReq);
        exact(&[0xD0, 0x00], v, Packet::PingResp);
        rejects(
            &[0xC0, 0x01, 0x00],
            v,
            DecodeError::TrailingBytes(PacketType::PingReq),
            ReasonCode::MalformedPacket,
        );
        rejects(
            &[0xD0, 0x01, 0x00],
            v,
            DecodeError::TrailingBytes(PacketType::PingResp),
            ReasonCode::MalformedPacket,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3.14 DISCONNECT
// ---------------------------------------------------------------------------------------------

fn disconnect(code: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect {
        code,
        properties: DisconnectProperties::default(),
    })
}

/// 3.14.2.1: remaining length 0 is normal disconnection; 1 is a reason code alone.
#[test]
fn disconnect_forms() {
    use ReasonCode::*;
    exact(&[0xE0, 0x00], V311, disconnect(Success));
    rejects(
        &[0xE0, 0x01, 0x00],
        V311,
        DecodeError::TrailingBytes(PacketType::Disconnect),
        ReasonCode::MalformedPacket,
    );
    exact(&[0xE0, 0x00], V5, disconnect(Success));
    // The encoder always writes the property length after a reason code (for rumqttc).
    decodes_to(
        &[0xE0, 0x01, 0x04],
        V5,
        disconnect(DisconnectWithWillMessage),
    );
    exact(
        &[0xE0, 0x02, 0x04, 0x00],
        V5,
        disconnect(DisconnectWithWillMessage),
    );
    decodes_to(&[0xE0, 0x01, 0x8E], V5, disconnect(SessionTakenOver));
    exact(&[0xE0, 0x02, 0x8E, 0x00], V5, disconnect(SessionTakenOver));
    decodes_to(&[0xE0, 0x01, 0x00], V5, disconnect(Success));
    decodes_to(&[0xE0, 0x02, 0x00, 0x00], V5, disconnect(Success));
    decodes_to(
        &[0xE0, 0x02, 0x8B, 0x00],
        V5,
        disconnect(ServerShuttingDown),
    );
    let bytes = cat(&[
        &[0xE0, 0x13, 0x98, 0x11],
        &[0x11, 0x00, 0x00, 0x00, 0x00], // session expiry interval 0
        &[0x1C, 0x00, 0x03],             // server reference
        b"srv",
        &[0x1F, 0x00, 0x03], // reason string
        b"bye",
    ]);
    let packet = Packet::Disconnect(Disconnect {
        code: AdministrativeAction,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            reason_string: Some(s("bye")),
            user_properties: vec![],
            server_reference: Some(s("srv")),
        },
    });
    exact(&bytes, V5, packet);
}

/// [MQTT-3.14.2-1], [MQTT-3.14.1-1], 2.1.4.
#[test]
fn disconnect_errors() {
    for rc in [0x01, 0x18, 0x19, 0x84, 0x86, 0x8C, 0x92, 0xA3] {
        rejects(
            &[0xE0, 0x01, rc],
            V5,
            DecodeError::InvalidReasonCode {
                packet: PacketType::Disconnect,
                code: rc,
            },
            ReasonCode::ProtocolError,
        );
    }
    rejects(
        &[0xE0, 0x03, 0x00, 0x00, 0xFF],
        V5,
        DecodeError::TrailingBytes(PacketType::Disconnect),
        ReasonCode::MalformedPacket,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.15 AUTH
// ---------------------------------------------------------------------------------------------

/// 3.15.2: remaining length 0 (success, no properties), or a reason code followed by the
/// property length.
#[test]
fn auth_forms() {
    exact(&[0xF0, 0x00], V5, Packet::Auth(Auth::default()));
    let bytes = cat(&[
        &[0xF0, 0x10, 0x18, 0x0E],
        &[0x15, 0x00, 0x05],
        b"SCRAM",
        &[0x16, 0x00, 0x03, 0x01, 0x02, 0x03],
    ]);
    let a = Auth {
        code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
            ..AuthProperties::default()
        },
    };
    exact(&bytes, V5, Packet::Auth(a));
    let bytes = cat(&[&[0xF0, 0x0A, 0x19, 0x08, 0x15, 0x00, 0x05], b"SCRAM"]);
    let a = Auth {
        code: ReasonCode::ReAuthenticate,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            ..AuthProperties::default()
        },
    };
    exact(&bytes, V5, Packet::Auth(a));
    // A reason code other than success without properties still carries the property length.
    let a = Auth {
        code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties::default(),
    };
    exact(&[0xF0, 0x02, 0x18, 0x00], V5, Packet::Auth(a));
    decodes_to(&[0xF0, 0x02, 0x00, 0x00], V5, Packet::Auth(Auth::default()));
}

/// [MQTT-3.15.2-1], 3.15.2.
#[test]
fn auth_errors() {
    for rc in [0x01, 0x04, 0x80, 0x87] {
        rejects(
            &[0xF0, 0x02, rc, 0x00],
            V5,
            DecodeError::InvalidReasonCode {
                packet: PacketType::Auth,
                code: rc,
            },
            ReasonCode::ProtocolError,
        );
    }
    // The reason code without the property length that must follow it.
    rejects(
        &[0xF0, 0x01, 0x18],
        V5,
        DecodeError::Truncated("property length"),
        ReasonCode::MalformedPacket,
    );
    rejects(
        &[0xF0, 0x03, 0x18, 0x00, 0x00],
        V5,
        DecodeError::TrailingBytes(PacketType::Auth),
        ReasonCode::MalformedPacket,
    );
}

// ---------------------------------------------------------------------------------------------
// The incremental contract of `decode`
// ---------------------------------------------------------------------------------------------

/// Feeds `bytes` one byte at a time: `Ok(None)` and nothing consumed until the last byte.
#[track_caller]
fn feed_byte_by_byte(bytes: &[u8], version: ProtocolVersion, expected: &Packet) {
    let mut buf = BytesMut::new();
    for (i, &b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        let res = decode(&mut buf, version, &DecodeLimits::default());
        if i + 1 < bytes.len() {
            assert_eq!(res, Ok(None), "after {} of {} bytes", i + 1, bytes.len());
            assert_eq!(
                &buf[..],
                &bytes[..=i],
                "bytes consumed before the packet was whole"
            );
        } else {
            assert_eq!(res, Ok(Some(expected.clone())));
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn incremental_one_byte_at_a_time() {
    assert_eq!(
        decode(&mut BytesMut::new(), V5, &DecodeLimits::default()),
        Ok(None)
    );
    let (bytes, packet) = v311_connect();
    feed_byte_by_byte(&bytes, V311, &packet);
    let (bytes, packet) = v5_connect();
    feed_byte_by_byte(&bytes, V5, &packet);
    let (bytes, packet) = v5_publish();
    feed_byte_by_byte(&bytes, V5, &packet);
    let (bytes, packet) = v5_subscribe();
    feed_byte_by_byte(&bytes, V5, &packet);
    // A two-byte remaining length.
    let bytes = cat(&[&[0x30, 0x80, 0x01, 0x00, 0x01, b't'], &[b'x'; 125]]);
    let packet = Packet::Publish(publish(QosPid::AtMostOnce, "t", &[b'x'; 125]));
    feed_byte_by_byte(&bytes, V311, &packet);
    feed_byte_by_byte(&[0xC0, 0x00], V311, &Packet::PingReq);
    feed_byte_by_byte(
        &[0xE0, 0x01, 0x04],
        V5,
        &disconnect(ReasonCode::DisconnectWithWillMessage),
    );
    feed_byte_by_byte(&[0xF0, 0x00], V5, &Packet::Auth(Auth::default()));
}

/// Back-to-back packets in one buffer come out one per call, and a partial packet after them
/// is left in place.
#[test]
fn incremental_back_to_back_packets() {
    let (connect_bytes, connect_packet) = v311_connect();
    let publish_bytes = cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0xC0, 0x00]);
    buf.extend_from_slice(&publish_bytes);
    buf.extend_from_slice(&connect_bytes[..5]);
    let limits = DecodeLimits::default();
    assert_eq!(decode(&mut buf, V311, &limits), Ok(Some(Packet::PingReq)));
    assert_eq!(
        decode(&mut buf, V311, &limits),
        Ok(Some(Packet::Publish(publish(
            QosPid::AtMostOnce,
            "a/b",
            b"hi"
        ))))
    );
    assert_eq!(decode(&mut buf, V311, &limits), Ok(None));
    assert_eq!(&buf[..], &connect_bytes[..5]);
    buf.extend_from_slice(&connect_bytes[5..]);
    assert_eq!(decode(&mut buf, V311, &limits), Ok(Some(connect_packet)));
    assert!(buf.is_empty());
}
