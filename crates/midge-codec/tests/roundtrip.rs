//! Property tests of the codec: strategies for arbitrary valid packets of all fifteen types in
//! MQTT 3.1, 3.1.1 and 5.0, and the properties every codec must keep:
//!
//! - `decode(encode(p)) == Some(p)`, the buffer fully consumed, `encoded_len` exact;
//! - every strict prefix of an encoding is "need more bytes" and consumes nothing;
//! - packets written back to back decode one after the other;
//! - `encode_publish_header` followed by the payload is `encode`;
//! - no input makes `decode` panic, and whatever it accepts re-encodes to the same packet;
//! - a packet over the size limit is rejected as soon as its fixed header is complete.
//!
//! Strategies only build what the protocol version can carry: 3.x packets have no properties,
//! only the reason codes 3.x can express, no AUTH and no topic alias in place of a topic.
//!
//! One file on purpose: the strategies are shared by every property, and most of its length
//! is one strategy per field of every packet and property struct.

#![allow(clippy::unwrap_used)]

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};
use midge_codec::{
    decode, encode, encode_publish_header, encoded_len, Auth, AuthProperties, ConnAck,
    ConnAckProperties, Connect, ConnectProperties, DecodeError, DecodeLimits, Disconnect,
    DisconnectProperties, FilterEntry, MqttString, Packet, PacketId, ProtocolVersion, PubAck,
    Publish, PublishProperties, QoS, QosPid, ReasonCode, ReasonPacket, ReasonProperties,
    RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionId,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties,
    UserProperty, Will, WillProperties, MAX_VARIABLE_BYTE_INTEGER,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::{Union, ValueTree};
use proptest::string::string_regex;
use proptest::test_runner::{TestCaseError, TestRunner};

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Primitive strategies
// ---------------------------------------------------------------------------------------------

fn regex(re: &str) -> BoxedStrategy<String> {
    string_regex(re).unwrap().boxed()
}

fn any_version() -> impl Strategy<Value = ProtocolVersion> {
    select(VERSIONS.to_vec())
}

/// Unicode text without U+0000: mostly plain ASCII, often any scalar value (multi-byte UTF-8,
/// the BOM, noncharacters, control characters other than NUL).
fn text(max_chars: usize) -> BoxedStrategy<String> {
    prop_oneof![
        regex(&format!("[a-zA-Z0-9 /$_.-]{{0,{max_chars}}}")),
        regex(&format!("[^\\x00]{{0,{max_chars}}}")),
    ]
    .boxed()
}

fn mqtt_string(max_chars: usize) -> impl Strategy<Value = MqttString> {
    text(max_chars).prop_map(|s| MqttString::try_from(s).unwrap())
}

fn binary(max_len: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max_len).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    prop_oneof![Just(1u16), Just(u16::MAX), 1..=u16::MAX].prop_map(|v| PacketId::new(v).unwrap())
}

fn qos_pid() -> impl Strategy<Value = QosPid> {
    prop_oneof![
        Just(QosPid::AtMostOnce),
        packet_id().prop_map(QosPid::AtLeastOnce),
        packet_id().prop_map(QosPid::ExactlyOnce),
    ]
}

fn u32_value() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()]
}

fn subscription_id() -> impl Strategy<Value = SubscriptionId> {
    prop_oneof![
        1u32..=127,
        128u32..=SubscriptionId::MAX,
        Just(SubscriptionId::MAX)
    ]
    .prop_map(|v| SubscriptionId::new(v).unwrap())
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((mqtt_string(8), mqtt_string(8)), 0..3)
}

/// Every code `packet` may carry in MQTT 5.0.
fn reason_code(packet: ReasonPacket) -> impl Strategy<Value = ReasonCode> {
    let allowed: Vec<ReasonCode> = ReasonCode::ALL
        .iter()
        .copied()
        .filter(|c| c.allowed_in(packet))
        .collect();
    select(allowed)
}

/// A reason code of `packet` in 5.0; `Success`, the only one 3.x can carry, otherwise.
fn versioned_code(version: ProtocolVersion, packet: ReasonPacket) -> BoxedStrategy<ReasonCode> {
    if version.is_v5() {
        reason_code(packet).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    }
}

/// `strategy` in 5.0, the empty default (no properties) in 3.x.
fn v5_only<S>(version: ProtocolVersion, strategy: S) -> BoxedStrategy<S::Value>
where
    S: Strategy + 'static,
    S::Value: Default + Clone + std::fmt::Debug,
{
    if version.is_v5() {
        strategy.boxed()
    } else {
        Just(S::Value::default()).boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// Topics and filters
// ---------------------------------------------------------------------------------------------

/// One level of a topic name: possibly empty, never `/`, `+`, `#` or NUL.
fn topic_level() -> BoxedStrategy<String> {
    prop_oneof![
        3 => regex("[a-z0-9$ ]{0,6}"),
        1 => regex("[^\\x00+#/]{0,6}"),
        1 => Just("$SYS".to_owned()),
    ]
    .boxed()
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    vec(topic_level(), 1..=4).prop_filter_map("a topic name is never empty", |levels| {
        TopicName::try_from(levels.join("/")).ok()
    })
}

fn share_group() -> BoxedStrategy<String> {
    prop_oneof![regex("[a-z0-9]{1,6}"), regex("[^\\x00+#/]{1,6}")].boxed()
}

/// Valid filters: literal levels, `+` levels, `#` last, optionally `$share/{group}/`.
fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![3 => topic_level(), 1 => Just("+".to_owned())];
    (
        option::weighted(0.25, share_group()),
        vec(level, 1..=4),
        prop::bool::weighted(0.3),
    )
        .prop_filter_map(
            "a filter is non-empty and a share has a filter",
            |(group, mut levels, hash)| {
                if hash {
                    *levels.last_mut().unwrap() = "#".to_owned();
                }
                let mut s = String::new();
                if let Some(g) = group {
                    s.push_str("$share/");
                    s.push_str(&g);
                    s.push('/');
                }
                s.push_str(&levels.join("/"));
                TopicFilter::try_from(s).ok()
            },
        )
}

/// Filters that are valid UTF-8 but break the wildcard or share-name rules.
fn invalid_filter() -> impl Strategy<Value = FilterEntry> {
    let raw = prop_oneof![
        Just(String::new()),
        regex("[a+#/$]{1,8}"),
        (topic_level(), topic_level()).prop_map(|(a, b)| format!("{a}x+{b}")),
        (topic_level(), topic_level()).prop_map(|(a, b)| format!("{a}#/{b}")),
        (topic_level(), topic_level()).prop_map(|(a, b)| format!("{a}/b#{b}")),
        Just("$share".to_owned()),
        share_group().prop_map(|g| format!("$share/{g}")),
        share_group().prop_map(|g| format!("$share/{g}/")),
        topic_level().prop_map(|f| format!("$share//{f}x")),
        share_group().prop_map(|g| format!("$share/{g}+/a")),
        share_group().prop_map(|g| format!("$share/{g}/a#")),
    ];
    raw.prop_filter_map(
        "only filters that break a rule",
        |s| match FilterEntry::parse(MqttString::try_from(s).ok()?) {
            invalid @ FilterEntry::Invalid(..) => Some(invalid),
            FilterEntry::Valid(_) => None,
        },
    )
}

fn filter_entry() -> impl Strategy<Value = FilterEntry> {
    prop_oneof![
        3 => topic_filter().prop_map(FilterEntry::Valid),
        1 => invalid_filter(),
    ]
}

// ---------------------------------------------------------------------------------------------
// MQTT 5.0 properties: every field of every struct
// ---------------------------------------------------------------------------------------------

prop_compose! {
    fn connect_properties()(
        session_expiry_interval in option::of(u32_value()),
        receive_maximum in option::of(any::<NonZeroU16>()),
        maximum_packet_size in option::of(any::<NonZeroU32>()),
        topic_alias_maximum in option::of(any::<u16>()),
        request_response_information in option::of(any::<bool>()),
        request_problem_information in option::of(any::<bool>()),
        user_properties in user_properties(),
        authentication_method in option::of(mqtt_string(10)),
        authentication_data in option::of(binary(16)),
    ) -> ConnectProperties {
        ConnectProperties {
            session_expiry_interval,
            receive_maximum,
            maximum_packet_size,
            topic_alias_maximum,
            request_response_information,
            request_problem_information,
            user_properties,
            // [MQTT-3.1.2] Authentication Data only with an Authentication Method.
            authentication_data: authentication_data.filter(|_| authentication_method.is_some()),
            authentication_method,
        }
    }
}

prop_compose! {
    fn will_properties()(
        will_delay_interval in option::of(u32_value()),
        payload_format_indicator in option::of(any::<bool>()),
        message_expiry_interval in option::of(u32_value()),
        content_type in option::of(mqtt_string(10)),
        response_topic in option::of(topic_name()),
        correlation_data in option::of(binary(16)),
        user_properties in user_properties(),
    ) -> WillProperties {
        WillProperties {
            will_delay_interval,
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            user_properties,
        }
    }
}

prop_compose! {
    fn connack_properties()(
        session_expiry_interval in option::of(u32_value()),
        receive_maximum in option::of(any::<NonZeroU16>()),
        maximum_qos in option::of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
        retain_available in option::of(any::<bool>()),
        maximum_packet_size in option::of(any::<NonZeroU32>()),
        assigned_client_identifier in option::of(mqtt_string(23)),
        topic_alias_maximum in option::of(any::<u16>()),
        reason_string in option::of(mqtt_string(16)),
        user_properties in user_properties(),
        wildcard_subscription_available in option::of(any::<bool>()),
        subscription_identifiers_available in option::of(any::<bool>()),
        shared_subscription_available in option::of(any::<bool>()),
        server_keep_alive in option::of(any::<u16>()),
        response_information in option::of(mqtt_string(10)),
        server_reference in option::of(mqtt_string(10)),
        authentication_method in option::of(mqtt_string(10)),
        authentication_data in option::of(binary(16)),
    ) -> ConnAckProperties {
        ConnAckProperties {
            session_expiry_interval,
            receive_maximum,
            maximum_qos,
            retain_available,
            maximum_packet_size,
            assigned_client_identifier,
            topic_alias_maximum,
            reason_string,
            user_properties,
            wildcard_subscription_available,
            subscription_identifiers_available,
            shared_subscription_available,
            server_keep_alive,
            response_information,
            server_reference,
            authentication_method,
            authentication_data,
        }
    }
}

prop_compose! {
    fn publish_properties()(
        payload_format_indicator in option::of(any::<bool>()),
        message_expiry_interval in option::of(u32_value()),
        topic_alias in option::of(any::<NonZeroU16>()),
        response_topic in option::of(topic_name()),
        correlation_data in option::of(binary(16)),
        user_properties in user_properties(),
        subscription_identifiers in vec(subscription_id(), 0..4),
        content_type in option::of(mqtt_string(10)),
    ) -> PublishProperties {
        PublishProperties {
            payload_format_indicator,
            message_expiry_interval,
            topic_alias,
            response_topic,
            correlation_data,
            user_properties,
            subscription_identifiers,
            content_type,
        }
    }
}

prop_compose! {
    fn reason_properties()(
        reason_string in option::of(mqtt_string(16)),
        user_properties in user_properties(),
    ) -> ReasonProperties {
        ReasonProperties { reason_string, user_properties }
    }
}

prop_compose! {
    fn subscribe_properties()(
        subscription_identifier in option::of(subscription_id()),
        user_properties in user_properties(),
    ) -> SubscribeProperties {
        SubscribeProperties { subscription_identifier, user_properties }
    }
}

prop_compose! {
    fn unsubscribe_properties()(user_properties in user_properties()) -> UnsubscribeProperties {
        UnsubscribeProperties { user_properties }
    }
}

prop_compose! {
    fn disconnect_properties()(
        session_expiry_interval in option::of(u32_value()),
        reason_string in option::of(mqtt_string(16)),
        user_properties in user_properties(),
        server_reference in option::of(mqtt_string(10)),
    ) -> DisconnectProperties {
        DisconnectProperties { session_expiry_interval, reason_string, user_properties, server_reference }
    }
}

prop_compose! {
    fn auth_properties()(
        authentication_method in option::of(mqtt_string(10)),
        authentication_data in option::of(binary(16)),
        reason_string in option::of(mqtt_string(16)),
        user_properties in user_properties(),
    ) -> AuthProperties {
        AuthProperties {
            // [MQTT-3.15.2] Authentication Data only with an Authentication Method.
            authentication_data: authentication_data.filter(|_| authentication_method.is_some()),
            authentication_method,
            reason_string,
            user_properties,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

fn will(version: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(32),
        qos(),
        any::<bool>(),
        v5_only(version, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Connect> {
    (
        any::<bool>(),
        any::<u16>(),
        v5_only(version, connect_properties()),
        mqtt_string(23),
        option::of(will(version)),
        option::of(mqtt_string(12)),
        option::of(binary(16)),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // [MQTT-3.1.2-22] in 3.x a password needs a user name; 5.0 lifts that rule.
                let password = password.filter(|_| version.is_v5() || username.is_some());
                Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id: client_id.into(),
                    will,
                    username,
                    password,
                }
            },
        )
}

fn connack(version: ProtocolVersion) -> BoxedStrategy<ConnAck> {
    let code: BoxedStrategy<ReasonCode> = if version.is_v5() {
        reason_code(ReasonPacket::ConnAck).boxed()
    } else {
        (0u8..=5)
            .prop_map(|v| ReasonCode::from_v3_connack(v).unwrap())
            .boxed()
    };
    (any::<bool>(), code, v5_only(version, connack_properties()))
        .prop_map(|(session_present, code, properties)| ConnAck {
            // [MQTT-3.2.2-6] Session Present is 0 with a failure code.
            session_present: session_present && code == ReasonCode::Success,
            code,
            properties,
        })
        .boxed()
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos_pid(),
        any::<bool>(),
        topic_name(),
        prop::bool::weighted(0.25),
        v5_only(version, publish_properties()),
        binary(64),
        any::<NonZeroU16>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, alias_only, mut properties, payload, alias)| {
                // 5.0 only: a Topic Alias may stand for the topic (zero-length topic name).
                let topic = if version.is_v5() && alias_only {
                    properties.topic_alias.get_or_insert(alias);
                    None
                } else {
                    Some(topic)
                };
                Publish {
                    // [MQTT-3.3.1-2] DUP is 0 at QoS 0.
                    dup: dup && qos != QosPid::AtMostOnce,
                    qos,
                    retain,
                    topic,
                    properties,
                    payload,
                }
            },
        )
}

fn puback(version: ProtocolVersion, kind: ReasonPacket) -> impl Strategy<Value = PubAck> {
    (
        packet_id(),
        versioned_code(version, kind),
        v5_only(version, reason_properties()),
    )
        .prop_map(|(packet_id, code, properties)| PubAck {
            packet_id,
            code,
            properties,
        })
}

fn retain_handling() -> impl Strategy<Value = RetainHandling> {
    select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendIfNew,
        RetainHandling::DoNotSend,
    ])
}

fn subscription(version: ProtocolVersion) -> impl Strategy<Value = Subscription> {
    (
        filter_entry(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling(),
    )
        .prop_map(
            move |(filter, qos, no_local, retain_as_published, retain_handling)| {
                let shared = matches!(&filter, FilterEntry::Valid(f) if f.is_shared());
                let options = if version.is_v5() {
                    SubscriptionOptions {
                        qos,
                        // [MQTT-3.8.3-4] No Local is never set on a shared subscription.
                        no_local: no_local && !shared,
                        retain_as_published,
                        retain_handling,
                    }
                } else {
                    SubscriptionOptions {
                        qos,
                        ..SubscriptionOptions::default()
                    }
                };
                Subscription { filter, options }
            },
        )
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    (
        packet_id(),
        v5_only(version, subscribe_properties()),
        vec(subscription(version), 1..4),
    )
        .prop_map(|(packet_id, properties, subscriptions)| Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    let code: BoxedStrategy<ReasonCode> = if version.is_v5() {
        reason_code(ReasonPacket::SubAck).boxed()
    } else {
        select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed()
    };
    (
        packet_id(),
        v5_only(version, reason_properties()),
        vec(code, 1..5),
    )
        .prop_map(|(packet_id, properties, codes)| SubAck {
            packet_id,
            properties,
            codes,
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    (
        packet_id(),
        v5_only(version, unsubscribe_properties()),
        vec(filter_entry(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    let codes: BoxedStrategy<Vec<ReasonCode>> = if version.is_v5() {
        vec(reason_code(ReasonPacket::UnsubAck), 1..5).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), v5_only(version, reason_properties()), codes).prop_map(
        |(packet_id, properties, codes)| UnsubAck {
            packet_id,
            properties,
            codes,
        },
    )
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Disconnect> {
    (
        versioned_code(version, ReasonPacket::Disconnect),
        v5_only(version, disconnect_properties()),
    )
        .prop_map(|(code, properties)| Disconnect { code, properties })
}

/// AUTH exists in 5.0 only.
fn auth() -> impl Strategy<Value = Auth> {
    (reason_code(ReasonPacket::Auth), auth_properties())
        .prop_map(|(code, properties)| Auth { code, properties })
}

/// Any packet `version` can carry, all types equally likely.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v = version;
    let ack = |kind, wrap: fn(PubAck) -> Packet| puback(v, kind).prop_map(wrap).boxed();
    let mut arms: Vec<BoxedStrategy<Packet>> = vec![
        connect(v)
            .prop_map(|c| Packet::Connect(Box::new(c)))
            .boxed(),
        connack(v).prop_map(Packet::ConnAck).boxed(),
        publish(v).prop_map(Packet::Publish).boxed(),
        ack(ReasonPacket::PubAck, Packet::PubAck),
        ack(ReasonPacket::PubRec, Packet::PubRec),
        ack(ReasonPacket::PubRel, Packet::PubRel),
        ack(ReasonPacket::PubComp, Packet::PubComp),
        subscribe(v).prop_map(Packet::Subscribe).boxed(),
        suback(v).prop_map(Packet::SubAck).boxed(),
        unsubscribe(v).prop_map(Packet::Unsubscribe).boxed(),
        unsuback(v).prop_map(Packet::UnsubAck).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(v).prop_map(Packet::Disconnect).boxed(),
    ];
    if version.is_v5() {
        arms.push(auth().prop_map(Packet::Auth).boxed());
    }
    Union::new(arms).boxed()
}

/// A version and a value of that version built by `f`.
fn per_version<T, S>(
    f: impl Fn(ProtocolVersion) -> S,
) -> impl Strategy<Value = (ProtocolVersion, T)>
where
    T: std::fmt::Debug + 'static,
    S: Strategy<Value = T> + 'static,
{
    Union::new(VERSIONS.map(|v| f(v).prop_map(move |x| (v, x)).boxed()))
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    per_version(packet)
}

fn versioned_pair() -> impl Strategy<Value = (ProtocolVersion, (Packet, Packet))> {
    per_version(|v| (packet(v), packet(v)))
}

fn versioned_publish() -> impl Strategy<Value = (ProtocolVersion, Publish)> {
    per_version(publish)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encoded(packet: &Packet, version: ProtocolVersion) -> Result<BytesMut, TestCaseError> {
    let mut buf = BytesMut::new();
    let res = encode(packet, version, &mut buf);
    prop_assert!(res.is_ok(), "encode failed: {:?} for {:?}", res, packet);
    Ok(buf)
}

/// Length of the fixed header at the start of a valid encoding: the type byte and the
/// variable byte integer of the remaining length.
fn fixed_header_len(bytes: &[u8]) -> usize {
    1 + bytes[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1
}

/// Feeds `bytes` to `decode` until it needs more bytes or fails. It must not panic, must make
/// progress on every packet, must consume nothing when it needs more bytes, and every packet
/// it accepts must survive an encode/decode round trip.
fn decode_all(
    bytes: &[u8],
    version: ProtocolVersion,
    limits: &DecodeLimits,
) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.clone();
        match decode(&mut buf, version, limits) {
            Ok(Some(p)) => {
                prop_assert!(buf.len() < before.len(), "decoded {:?} from no bytes", p);
                let again = encoded(&p, version)?;
                prop_assert_eq!(again.len(), encoded_len(&p, version));
                let mut again = again;
                let back = decode(&mut again, version, &DecodeLimits::default());
                prop_assert_eq!(back, Ok(Some(p)), "accepted packet does not round-trip");
                prop_assert!(again.is_empty());
            }
            Ok(None) => {
                prop_assert_eq!(&buf[..], &before[..], "Ok(None) consumed bytes");
                return Ok(());
            }
            // After an error the buffer state is unspecified and the connection is closed.
            Err(_) => return Ok(()),
        }
    }
}

/// Overwrites bytes of `bytes` at the given positions.
fn mutate(bytes: &mut [u8], edits: &[(Index, u8)]) {
    for (at, value) in edits {
        let i = at.index(bytes.len());
        bytes[i] = *value;
    }
}

/// A fixed header with a valid type and flags for `version`, then a random body of exactly
/// the announced remaining length: garbage that reaches the body decoders.
fn framed_garbage() -> impl Strategy<Value = (ProtocolVersion, Vec<u8>)> {
    (
        any_version(),
        1u8..=15,
        0u8..16,
        prop::bool::weighted(0.9),
        vec(any::<u8>(), 0..200),
    )
        .prop_map(|(version, ty, random_flags, proper_flags, body)| {
            let flags = match (proper_flags, ty) {
                (false, _) => random_flags,
                (true, 3) => random_flags & 0b0111,
                (true, 6 | 8 | 10) => 0b0010,
                (true, _) => 0,
            };
            let mut bytes = vec![(ty << 4) | flags];
            put_vbi(&mut bytes, body.len() as u32);
            bytes.extend_from_slice(&body);
            (version, bytes)
        })
}

fn put_vbi(buf: &mut impl BufMut, mut v: u32) {
    loop {
        let byte = (v % 128) as u8;
        v /= 128;
        buf.put_u8(if v > 0 { byte | 0x80 } else { byte });
        if v == 0 {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// (a) `decode(encode(p)) == Some(p)`, all bytes consumed, `encoded_len` exact, and
    /// `encode` appends without touching what the buffer already held.
    #[test]
    fn decode_inverts_encode((version, packet) in versioned_packet()) {
        let mut buf = BytesMut::from(&b"xyz"[..]);
        let res = encode(&packet, version, &mut buf);
        prop_assert!(res.is_ok(), "encode failed: {:?}", res);
        prop_assert_eq!(&buf[..3], b"xyz");
        let mut buf = buf.split_off(3);
        prop_assert_eq!(buf.len(), encoded_len(&packet, version));
        let decoded = decode(&mut buf, version, &DecodeLimits::default());
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    }

    /// (b) Every strict prefix of an encoding is "need more bytes" and consumes nothing, also
    /// with a size limit equal to the packet's size.
    #[test]
    fn strict_prefixes_need_more_bytes((version, packet) in versioned_packet()) {
        let full = encoded(&packet, version)?;
        let exact = DecodeLimits { max_packet_size: full.len() as u32 };
        for limits in [DecodeLimits::default(), exact] {
            for k in 0..full.len() {
                let mut buf = BytesMut::from(&full[..k]);
                let res = decode(&mut buf, version, &limits);
                prop_assert_eq!(res, Ok(None), "prefix of {} of {} bytes", k, full.len());
                prop_assert_eq!(&buf[..], &full[..k], "prefix of {} bytes was consumed", k);
            }
        }
    }

    /// (c) Two packets written back to back decode one after the other.
    #[test]
    fn concatenated_packets_decode_in_order((version, (first, second)) in versioned_pair()) {
        let mut buf = encoded(&first, version)?;
        buf.extend_from_slice(&encoded(&second, version)?);
        let limits = DecodeLimits::default();
        prop_assert_eq!(decode(&mut buf, version, &limits), Ok(Some(first)));
        prop_assert_eq!(buf.len(), encoded_len(&second, version));
        prop_assert_eq!(decode(&mut buf, version, &limits), Ok(Some(second)));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode(&mut buf, version, &limits), Ok(None));
    }

    /// (d) The PUBLISH header followed by the payload is the whole PUBLISH.
    #[test]
    fn publish_header_plus_payload_is_publish((version, publish) in versioned_publish()) {
        let mut header = BytesMut::new();
        let res = encode_publish_header(&publish, version, &mut header);
        prop_assert!(res.is_ok(), "encode_publish_header failed: {:?}", res);
        header.extend_from_slice(&publish.payload);
        let whole = encoded(&Packet::Publish(publish), version)?;
        prop_assert_eq!(&header[..], &whole[..]);
    }

    /// (e) Random bytes never make `decode` panic; whatever it accepts round-trips.
    #[test]
    fn random_bytes_never_panic(
        version in any_version(),
        bytes in vec(any::<u8>(), 0..300),
        limit in prop_oneof![Just(DecodeLimits::PROTOCOL_MAX_PACKET_SIZE), 0u32..400],
    ) {
        decode_all(&bytes, version, &DecodeLimits { max_packet_size: limit })?;
    }

    /// (e) Random bodies behind a well-formed fixed header never make `decode` panic.
    #[test]
    fn framed_garbage_never_panics((version, bytes) in framed_garbage()) {
        decode_all(&bytes, version, &DecodeLimits::default())?;
    }

    /// (e) Valid encodings with a few bytes overwritten, or decoded under the wrong version,
    /// never make `decode` panic; whatever it accepts round-trips.
    #[test]
    fn mutated_encodings_never_panic(
        (version, packet) in versioned_packet(),
        edits in vec((any::<Index>(), prop_oneof![
            any::<u8>(),
            select(vec![0x00u8, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xC0, 0xFF]),
        ]), 1..4),
        other_version in any_version(),
    ) {
        let full = encoded(&packet, version)?;
        decode_all(&full, other_version, &DecodeLimits::default())?;
        let mut bytes = full.to_vec();
        mutate(&mut bytes, &edits);
        decode_all(&bytes, version, &DecodeLimits::default())?;
    }

    /// (f) A packet larger than the limit is rejected as soon as its fixed header is complete,
    /// whatever follows; up to then the decoder waits. At exactly the limit it is accepted.
    #[test]
    fn oversized_packet_rejected_at_fixed_header(
        (version, packet) in versioned_packet(),
        below in any::<Index>(),
    ) {
        let full = encoded(&packet, version)?;
        let size = full.len();
        let limit = below.index(size) as u32;
        let limits = DecodeLimits { max_packet_size: limit };
        let header = fixed_header_len(&full);
        for k in 0..header {
            let mut buf = BytesMut::from(&full[..k]);
            prop_assert_eq!(decode(&mut buf, version, &limits), Ok(None), "{} bytes", k);
        }
        let expected = Err(DecodeError::PacketTooLarge { size: size as u64, max: limit });
        for k in header..=size {
            let mut buf = BytesMut::from(&full[..k]);
            prop_assert_eq!(decode(&mut buf, version, &limits), expected.clone(), "{} bytes", k);
        }
        let mut buf = full.clone();
        let at_limit = DecodeLimits { max_packet_size: size as u32 };
        prop_assert_eq!(decode(&mut buf, version, &at_limit), Ok(Some(packet)));
    }

    /// (f) The same for bare fixed headers announcing any remaining length, 1- to 4-byte
    /// variable byte integers included: only the fixed header is ever supplied.
    #[test]
    fn oversized_fixed_header_alone_is_rejected(
        version in any_version(),
        first in select(vec![0x10u8, 0x20, 0x30, 0x3B, 0x35, 0x40, 0x50, 0x62, 0x70, 0x82,
                             0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0]),
        remaining in prop_oneof![
            0u32..128,
            128u32..16_384,
            16_384u32..2_097_152,
            2_097_152u32..=MAX_VARIABLE_BYTE_INTEGER,
        ],
        below in any::<Index>(),
    ) {
        let mut bytes = vec![first];
        put_vbi(&mut bytes, remaining);
        let total = bytes.len() + remaining as usize;
        let limit = below.index(total) as u32;
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(
            decode(&mut buf, version, &DecodeLimits { max_packet_size: limit }),
            Err(DecodeError::PacketTooLarge { size: total as u64, max: limit })
        );
        if remaining > 0 {
            let mut buf = BytesMut::from(&bytes[..]);
            let at_limit = DecodeLimits { max_packet_size: total as u32 };
            prop_assert_eq!(decode(&mut buf, version, &at_limit), Ok(None));
            prop_assert_eq!(buf.len(), bytes.len());
        }
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// (a), (b), (d) and (f) for PUBLISH packets whose remaining length takes 1 to 3 bytes.
    #[test]
    fn large_publish_round_trips(
        (version, mut publish) in versioned_publish(),
        len in prop_oneof![0usize..200, 16_000usize..17_000, 60_000usize..70_000],
        seed in any::<u8>(),
        prefixes in vec(any::<Index>(), 16),
        below in any::<Index>(),
    ) {
        publish.payload = (0..len).map(|i| (i as u8) ^ seed).collect::<Vec<u8>>().into();
        let packet = Packet::Publish(publish.clone());
        let full = encoded(&packet, version)?;
        prop_assert_eq!(full.len(), encoded_len(&packet, version));

        let mut header = BytesMut::new();
        encode_publish_header(&publish, version, &mut header).unwrap();
        prop_assert_eq!(&header[..], &full[..full.len() - len]);

        let limits = DecodeLimits::default();
        let mut buf = full.clone();
        prop_assert_eq!(decode(&mut buf, version, &limits), Ok(Some(packet.clone())));
        prop_assert!(buf.is_empty());

        let mut cuts: Vec<usize> = (0..full.len().min(8)).collect();
        cuts.push(full.len() - 1);
        cuts.extend(prefixes.iter().map(|i| i.index(full.len())));
        for k in cuts {
            let mut buf = BytesMut::from(&full[..k]);
            prop_assert_eq!(decode(&mut buf, version, &limits), Ok(None), "{} bytes", k);
            prop_assert_eq!(buf.len(), k);
        }

        let limit = below.index(full.len()) as u32;
        let header_len = fixed_header_len(&full);
        let mut buf = BytesMut::from(&full[..header_len]);
        prop_assert_eq!(
            decode(&mut buf, version, &DecodeLimits { max_packet_size: limit }),
            Err(DecodeError::PacketTooLarge { size: full.len() as u64, max: limit })
        );
    }
}

/// (f) with a four-byte remaining length: the first five bytes of a 2 MiB PUBLISH are its
/// whole fixed header, and they are enough to reject it.
#[test]
fn four_byte_remaining_length_rejected_from_first_five_bytes() {
    for version in VERSIONS {
        let publish = Publish {
            dup: false,
            qos: QosPid::AtLeastOnce(PacketId::new(9).unwrap()),
            retain: true,
            topic: Some("big/topic".parse().unwrap()),
            properties: PublishProperties::default(),
            payload: Bytes::from(vec![0xA5u8; 2_097_152]),
        };
        let mut header = BytesMut::new();
        encode_publish_header(&publish, version, &mut header).unwrap();
        let size = encoded_len(&Packet::Publish(publish.clone()), version);
        assert_eq!(fixed_header_len(&header), 5);
        assert_eq!(size, header.len() + publish.payload.len());

        let limits = DecodeLimits {
            max_packet_size: 1_000_000,
        };
        for k in 0..5 {
            let mut buf = BytesMut::from(&header[..k]);
            assert_eq!(decode(&mut buf, version, &limits), Ok(None), "{k} bytes");
        }
        let mut buf = BytesMut::from(&header[..5]);
        assert_eq!(
            decode(&mut buf, version, &limits),
            Err(DecodeError::PacketTooLarge {
                size: size as u64,
                max: 1_000_000
            })
        );

        // Within the limit, the same header and a partial body are just "need more bytes";
        // the whole packet decodes.
        let mut buf = header.clone();
        buf.extend_from_slice(&publish.payload[..1000]);
        let before = buf.len();
        assert_eq!(
            decode(&mut buf, version, &DecodeLimits::default()),
            Ok(None)
        );
        assert_eq!(buf.len(), before);
        let mut buf = header;
        buf.extend_from_slice(&publish.payload);
        assert_eq!(
            decode(&mut buf, version, &DecodeLimits::default()),
            Ok(Some(Packet::Publish(publish)))
        );
        assert!(buf.is_empty());
    }
}

/// The strategies cover what they promise: every packet type in every version it exists in,
/// and the 5.0-only shapes (alias without topic, invalid and shared filters, several
/// subscription identifiers, will, user name and password).
#[test]
fn strategies_cover_every_packet_type_and_shape() {
    let mut runner = TestRunner::deterministic();
    for version in VERSIONS {
        let strategy = packet(version);
        let mut seen = std::collections::HashSet::new();
        let (mut alias_only, mut invalid, mut shared, mut sub_ids, mut will, mut login) =
            (false, false, false, false, false, false);
        for _ in 0..3000 {
            let p = strategy.new_tree(&mut runner).unwrap().current();
            seen.insert(p.packet_type());
            match &p {
                Packet::Publish(p) => {
                    alias_only |= p.topic.is_none();
                    sub_ids |= p.properties.subscription_identifiers.len() > 1;
                }
                Packet::Subscribe(s) => {
                    for sub in &s.subscriptions {
                        invalid |= matches!(sub.filter, FilterEntry::Invalid(..));
                        shared |= matches!(&sub.filter, FilterEntry::Valid(f) if f.is_shared());
                    }
                }
                Packet::Connect(c) => {
                    will |= c.will.is_some();
                    login |= c.username.is_some() && c.password.is_some();
                }
                _ => {}
            }
        }
        let expected = if version.is_v5() { 15 } else { 14 };
        assert_eq!(seen.len(), expected, "{version}: {seen:?}");
        assert_eq!(
            alias_only,
            version.is_v5(),
            "{version}: alias without topic"
        );
        assert_eq!(
            sub_ids,
            version.is_v5(),
            "{version}: subscription identifiers"
        );
        assert!(invalid && shared && will && login, "{version}");
    }
}
