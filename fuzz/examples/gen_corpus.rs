//! Writes the seed corpus of the `decode` fuzz target: one file per packet type, variant and
//! protocol version, each the encoding midge-codec itself produces, plus a few files with
//! several packets back to back. Run from `fuzz/`: `cargo run --example gen_corpus`.
//! Existing files of the same name are overwritten; nothing else in the directory is touched.

use std::num::{NonZeroU16, NonZeroU32};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use midge_codec::*;

fn s(v: &str) -> MqttString {
    v.parse().expect("valid string literal")
}

fn topic(v: &str) -> TopicName {
    v.parse().expect("valid topic literal")
}

fn filter(v: &str) -> FilterEntry {
    FilterEntry::Valid(v.parse().expect("valid filter literal"))
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero literal")
}

fn users() -> Vec<UserProperty> {
    vec![(s("k"), s("v")), (s("trace"), s("4bf92f35"))]
}

fn connect(version: ProtocolVersion, full: bool) -> Packet {
    let v5 = version.is_v5();
    let mut c = Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: "fuzz-seed".parse().expect("valid client id"),
        will: None,
        username: None,
        password: None,
    };
    if full {
        c.clean_start = false;
        c.will = Some(Will {
            topic: topic("clients/fuzz-seed/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: if v5 {
                WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(true),
                    message_expiry_interval: Some(3600),
                    content_type: Some(s("text/plain")),
                    response_topic: Some(topic("replies/fuzz")),
                    correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                    user_properties: users(),
                }
            } else {
                WillProperties::default()
            },
        });
        c.username = Some(s("alice"));
        c.password = Some(Bytes::from_static(b"s3cr3t"));
        if v5 {
            c.properties = ConnectProperties {
                session_expiry_interval: Some(600),
                receive_maximum: NonZeroU16::new(20),
                maximum_packet_size: NonZeroU32::new(65_536),
                topic_alias_maximum: Some(8),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: users(),
                authentication_method: Some(s("SCRAM-SHA-256")),
                authentication_data: Some(Bytes::from_static(b"client-first")),
            };
        }
    }
    Packet::Connect(Box::new(c))
}

fn publish(qos: QosPid, retain: bool, dup: bool, props: bool, payload: usize) -> Packet {
    let mut properties = PublishProperties::default();
    if props {
        properties = PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(30),
            topic_alias: NonZeroU16::new(3),
            response_topic: Some(topic("rpc/replies/1")),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: users(),
            subscription_identifiers: vec![
                SubscriptionId::new(1).expect("in range"),
                SubscriptionId::new(268_435_455).expect("in range"),
            ],
            content_type: Some(s("application/json")),
        };
    }
    Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic: Some(topic("sensors/kitchen/temperature")),
        properties,
        payload: Bytes::from((0..payload).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
    })
}

fn reason_props() -> ReasonProperties {
    ReasonProperties {
        reason_string: Some(s("because")),
        user_properties: users(),
    }
}

fn packets(version: ProtocolVersion) -> Vec<(&'static str, Packet)> {
    let v5 = version.is_v5();
    let mut out = vec![
        ("connect-minimal", connect(version, false)),
        ("connect-will-credentials", connect(version, true)),
        (
            "connack-accepted",
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: ReasonCode::Success,
                properties: ConnAckProperties::default(),
            }),
        ),
        (
            "connack-refused",
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ReasonCode::NotAuthorized,
                properties: ConnAckProperties::default(),
            }),
        ),
        (
            "publish-qos0",
            publish(QosPid::AtMostOnce, false, false, false, 5),
        ),
        (
            "publish-qos0-retain-empty",
            publish(QosPid::AtMostOnce, true, false, false, 0),
        ),
        (
            "publish-qos1-dup",
            publish(QosPid::AtLeastOnce(pid(1)), false, true, false, 16),
        ),
        (
            "publish-qos2-retain",
            publish(QosPid::ExactlyOnce(pid(65_535)), true, false, false, 300),
        ),
        ("puback", Packet::PubAck(PubAck::new(pid(1)))),
        ("pubrec", Packet::PubRec(PubAck::new(pid(2)))),
        ("pubrel", Packet::PubRel(PubAck::new(pid(3)))),
        ("pubcomp", Packet::PubComp(PubAck::new(pid(4)))),
        (
            "subscribe-filters",
            Packet::Subscribe(Subscribe {
                packet_id: pid(10),
                properties: SubscribeProperties::default(),
                subscriptions: vec![
                    Subscription {
                        filter: filter("sensors/+/temperature"),
                        options: SubscriptionOptions::default(),
                    },
                    Subscription {
                        filter: filter("alerts/#"),
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            ..Default::default()
                        },
                    },
                    Subscription {
                        filter: filter("$share/workers/jobs/+"),
                        options: SubscriptionOptions {
                            qos: QoS::ExactlyOnce,
                            ..Default::default()
                        },
                    },
                ],
            }),
        ),
        (
            "subscribe-invalid-filter",
            Packet::Subscribe(Subscribe {
                packet_id: pid(11),
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: FilterEntry::parse(s("bad/#/filter")),
                    options: SubscriptionOptions::default(),
                }],
            }),
        ),
        (
            "suback-granted-and-failure",
            Packet::SubAck(SubAck {
                packet_id: pid(10),
                properties: ReasonProperties::default(),
                codes: vec![
                    ReasonCode::Success,
                    ReasonCode::GrantedQoS1,
                    ReasonCode::GrantedQoS2,
                    ReasonCode::UnspecifiedError,
                ],
            }),
        ),
        (
            "unsubscribe",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(12),
                properties: UnsubscribeProperties::default(),
                filters: vec![filter("sensors/+/temperature"), filter("alerts/#")],
            }),
        ),
        (
            "unsuback",
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(12),
                properties: ReasonProperties::default(),
                codes: if v5 {
                    vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
                } else {
                    vec![]
                },
            }),
        ),
        ("pingreq", Packet::PingReq),
        ("pingresp", Packet::PingResp),
        ("disconnect", Packet::Disconnect(Disconnect::default())),
    ];
    if v5 {
        out.extend([
            (
                "connack-every-property",
                Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: ReasonCode::Success,
                    properties: ConnAckProperties {
                        session_expiry_interval: Some(7200),
                        receive_maximum: NonZeroU16::new(100),
                        maximum_qos: Some(QoS::AtLeastOnce),
                        retain_available: Some(false),
                        maximum_packet_size: NonZeroU32::new(262_144),
                        assigned_client_identifier: Some(s("auto-7f3a")),
                        topic_alias_maximum: Some(16),
                        reason_string: Some(s("welcome")),
                        user_properties: users(),
                        wildcard_subscription_available: Some(true),
                        subscription_identifiers_available: Some(false),
                        shared_subscription_available: Some(true),
                        server_keep_alive: Some(45),
                        response_information: Some(s("responses/")),
                        server_reference: Some(s("other:1883")),
                        authentication_method: Some(s("SCRAM-SHA-256")),
                        authentication_data: Some(Bytes::from_static(b"server-first")),
                    },
                }),
            ),
            (
                "publish-qos1-properties",
                publish(QosPid::AtLeastOnce(pid(7)), false, false, true, 64),
            ),
            (
                "publish-topic-alias-only",
                Packet::Publish(Publish {
                    dup: false,
                    qos: QosPid::AtMostOnce,
                    retain: false,
                    topic: None,
                    properties: PublishProperties {
                        topic_alias: NonZeroU16::new(3),
                        ..Default::default()
                    },
                    payload: Bytes::from_static(b"aliased"),
                }),
            ),
            (
                "puback-reason-only",
                Packet::PubAck(PubAck {
                    packet_id: pid(1),
                    code: ReasonCode::NoMatchingSubscribers,
                    properties: ReasonProperties::default(),
                }),
            ),
            (
                "pubrec-reason-properties",
                Packet::PubRec(PubAck {
                    packet_id: pid(2),
                    code: ReasonCode::QuotaExceeded,
                    properties: reason_props(),
                }),
            ),
            (
                "pubrel-not-found",
                Packet::PubRel(PubAck {
                    packet_id: pid(3),
                    code: ReasonCode::PacketIdentifierNotFound,
                    properties: reason_props(),
                }),
            ),
            (
                "pubcomp-properties",
                Packet::PubComp(PubAck {
                    packet_id: pid(4),
                    code: ReasonCode::Success,
                    properties: reason_props(),
                }),
            ),
            (
                "subscribe-options-properties",
                Packet::Subscribe(Subscribe {
                    packet_id: pid(13),
                    properties: SubscribeProperties {
                        subscription_identifier: SubscriptionId::new(42),
                        user_properties: users(),
                    },
                    subscriptions: vec![
                        Subscription {
                            filter: filter("a/+"),
                            options: SubscriptionOptions {
                                qos: QoS::AtLeastOnce,
                                no_local: true,
                                retain_as_published: true,
                                retain_handling: RetainHandling::SendIfNew,
                            },
                        },
                        Subscription {
                            filter: filter("b/#"),
                            options: SubscriptionOptions {
                                qos: QoS::ExactlyOnce,
                                no_local: false,
                                retain_as_published: false,
                                retain_handling: RetainHandling::DoNotSend,
                            },
                        },
                    ],
                }),
            ),
            (
                "suback-reasons-properties",
                Packet::SubAck(SubAck {
                    packet_id: pid(13),
                    properties: reason_props(),
                    codes: vec![
                        ReasonCode::GrantedQoS1,
                        ReasonCode::NotAuthorized,
                        ReasonCode::SharedSubscriptionsNotSupported,
                        ReasonCode::WildcardSubscriptionsNotSupported,
                    ],
                }),
            ),
            (
                "unsubscribe-properties",
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: pid(14),
                    properties: UnsubscribeProperties {
                        user_properties: users(),
                    },
                    filters: vec![filter("a/+")],
                }),
            ),
            (
                "unsuback-properties",
                Packet::UnsubAck(UnsubAck {
                    packet_id: pid(14),
                    properties: reason_props(),
                    codes: vec![ReasonCode::NotAuthorized],
                }),
            ),
            (
                "disconnect-reason-only",
                Packet::Disconnect(Disconnect {
                    code: ReasonCode::DisconnectWithWillMessage,
                    properties: DisconnectProperties::default(),
                }),
            ),
            (
                "disconnect-properties",
                Packet::Disconnect(Disconnect {
                    code: ReasonCode::ServerShuttingDown,
                    properties: DisconnectProperties {
                        session_expiry_interval: Some(0),
                        reason_string: Some(s("bye")),
                        user_properties: users(),
                        server_reference: Some(s("backup:1883")),
                    },
                }),
            ),
            ("auth-success-empty", Packet::Auth(Auth::default())),
            (
                "auth-continue-properties",
                Packet::Auth(Auth {
                    code: ReasonCode::ContinueAuthentication,
                    properties: AuthProperties {
                        authentication_method: Some(s("SCRAM-SHA-256")),
                        authentication_data: Some(Bytes::from_static(b"client-final")),
                        reason_string: Some(s("step 2")),
                        user_properties: users(),
                    },
                }),
            ),
        ]);
    }
    out
}

/// Frames written by other implementations, in layouts midge's encoder does not produce
/// (property order, explicit zero property lengths): captured from mosquitto_pub and
/// mosquitto_sub 2.0.11 (see crates/midge-codec/tests/interop_rumqttc.rs) and written by
/// rumqttc 0.25.
const FOREIGN: [(&str, &str); 4] = [
    (
        "mosquitto-v5-publish-properties",
        "3247000a746573742f746f7069630001332600036b6579000576616c7565020000001e03000a\
         746578742f706c61696e08000a7265706c792f68657265090004636f727268656c6c6f",
    ),
    (
        "mosquitto-v311-connect-will-credentials",
        "103100044d51545404ee003c000474657374000a77696c6c2f746f7069630004676f6e65\
         0005616c6963650006736563726574",
    ),
    (
        "mosquitto-v5-subscribe-user-property",
        "8213000107260001610001620006746573742f2302",
    ),
    ("rumqttc-v5-puback-reason-zero-properties", "400400011000"),
];

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ASCII hex digits");
            u8::from_str_radix(text, 16).expect("hex digits")
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/decode");
    std::fs::create_dir_all(&dir)?;
    let mut written = 0;
    for (version, prefix) in [
        (ProtocolVersion::V31, "v31"),
        (ProtocolVersion::V311, "v311"),
        (ProtocolVersion::V5, "v5"),
    ] {
        let mut stream = BytesMut::new();
        for (name, packet) in packets(version) {
            let mut buf = BytesMut::new();
            encode(&packet, version, &mut buf)?;
            // Only seeds that decode back to themselves are useful starting points.
            let mut check = buf.clone();
            let decoded = decode(&mut check, version, &DecodeLimits::default())?;
            assert_eq!(decoded.as_ref(), Some(&packet), "{prefix}-{name}");
            std::fs::write(dir.join(format!("{prefix}-{name}.bin")), &buf)?;
            stream.extend_from_slice(&buf);
            written += 1;
        }
        std::fs::write(
            dir.join(format!("{prefix}-stream-all-packets.bin")),
            &stream,
        )?;
        written += 1;
    }
    for (name, frame) in FOREIGN {
        std::fs::write(dir.join(format!("{name}.bin")), hex(frame))?;
        written += 1;
    }
    println!("wrote {written} files to {}", dir.display());
    Ok(())
}
