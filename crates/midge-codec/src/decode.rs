//! `decode`: bytes in, packets out. Sans-IO: the caller appends what it reads to a `BytesMut`
//! and calls `decode` until it returns `Ok(None)` ("need more bytes").
//!
//! Invariants: a prefix of a valid packet is never an error; a packet larger than the limit
//! is rejected as soon as its fixed header is complete, before it is buffered; payloads and
//! strings share the input buffer (no copy).

use bytes::{Buf, BytesMut};

use crate::error::DecodeError;
use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, FilterEntry, Packet, PacketType, PubAck, Publish,
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
    Will,
};
use crate::properties::{
    AuthProperties, ConnectProperties, DisconnectProperties, PropertySet, PublishProperties,
    ReasonProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
use crate::reason::{ReasonCode, ReasonPacket};
use crate::topic::TopicName;
use crate::types::{ClientId, PacketId, ProtocolVersion, QoS, QosPid};
use crate::wire::{read_vbi, Reader, VbiRead, MAX_VARIABLE_BYTE_INTEGER};

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest whole packet (fixed header included) accepted, in bytes. Default: the largest
    /// packet MQTT can express, 268,435,460 bytes; a broker sets its own (and advertises it
    /// in CONNACK as Maximum Packet Size).
    pub max_packet_size: u32,
}

impl DecodeLimits {
    /// The largest packet the protocol can express: 1 + 4 + 268,435,455 bytes.
    pub const PROTOCOL_MAX_PACKET_SIZE: u32 = 1 + 4 + MAX_VARIABLE_BYTE_INTEGER;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_packet_size: Self::PROTOCOL_MAX_PACKET_SIZE,
        }
    }
}

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet (nothing is consumed), and
/// `Ok(Some(packet))` after removing exactly that packet's bytes. `version` is the protocol
/// of the connection; a CONNECT is decoded by its own protocol name and level whatever
/// `version` says. On error the connection must be closed: the buffer state is unspecified.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    limits: &DecodeLimits,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = packet_type(first >> 4, version)?;
    let flags = first & 0x0F;
    check_flags(packet_type, flags)?;
    let (remaining, len_bytes) = match read_vbi(&buf[1..])? {
        VbiRead::Done(v, n) => (v as usize, n),
        VbiRead::Incomplete => return Ok(None),
    };
    let total = 1 + len_bytes + remaining;
    if total as u64 > u64::from(limits.max_packet_size) {
        return Err(DecodeError::PacketTooLarge {
            size: total as u64,
            max: limits.max_packet_size,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut body = buf.split_to(total).freeze();
    body.advance(1 + len_bytes);
    let mut r = Reader::new(body);
    let packet = decode_body(packet_type, flags, &mut r, version)?;
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes(packet_type));
    }
    Ok(Some(packet))
}

fn packet_type(v: u8, version: ProtocolVersion) -> Result<PacketType, DecodeError> {
    Ok(match v {
        1 => PacketType::Connect,
        2 => PacketType::ConnAck,
        3 => PacketType::Publish,
        4 => PacketType::PubAck,
        5 => PacketType::PubRec,
        6 => PacketType::PubRel,
        7 => PacketType::PubComp,
        8 => PacketType::Subscribe,
        9 => PacketType::SubAck,
        10 => PacketType::Unsubscribe,
        11 => PacketType::UnsubAck,
        12 => PacketType::PingReq,
        13 => PacketType::PingResp,
        14 => PacketType::Disconnect,
        15 if version.is_v5() => PacketType::Auth,
        other => return Err(DecodeError::ReservedPacketType(other)),
    })
}

/// Fixed header flags (table 2-2): PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, PUBLISH
/// its DUP/QoS/RETAIN bits (QoS 3 excluded), every other packet 0.
fn check_flags(packet: PacketType, flags: u8) -> Result<(), DecodeError> {
    match packet {
        PacketType::Publish => {
            if flags & 0b0110 == 0b0110 {
                return Err(DecodeError::InvalidQoS);
            }
            if flags & 0b1110 == 0b1000 {
                return Err(DecodeError::DupAtQoS0);
            }
            Ok(())
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe if flags == 0b0010 => {
            Ok(())
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            Err(DecodeError::InvalidFlags { packet, flags })
        }
        _ if flags == 0 => Ok(()),
        _ => Err(DecodeError::InvalidFlags { packet, flags }),
    }
}

fn decode_body(
    packet: PacketType,
    flags: u8,
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    Ok(match packet {
        PacketType::Connect => Packet::Connect(Box::new(decode_connect(r)?)),
        PacketType::ConnAck => Packet::ConnAck(decode_connack(r, version)?),
        PacketType::Publish => Packet::Publish(decode_publish(flags, r, version)?),
        PacketType::PubAck => Packet::PubAck(decode_puback(r, version, ReasonPacket::PubAck)?),
        PacketType::PubRec => Packet::PubRec(decode_puback(r, version, ReasonPacket::PubRec)?),
        PacketType::PubRel => Packet::PubRel(decode_puback(r, version, ReasonPacket::PubRel)?),
        PacketType::PubComp => Packet::PubComp(decode_puback(r, version, ReasonPacket::PubComp)?),
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(r, version)?),
        PacketType::SubAck => Packet::SubAck(decode_suback(r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(decode_unsubscribe(r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(decode_unsuback(r, version)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(decode_disconnect(r, version)?),
        PacketType::Auth => Packet::Auth(decode_auth(r)?),
    })
}

fn packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    PacketId::new(r.u16("packet identifier")?).ok_or(DecodeError::ZeroPacketId)
}

fn reason(r: &mut Reader, packet: ReasonPacket, ty: PacketType) -> Result<ReasonCode, DecodeError> {
    let code = r.u8("reason code")?;
    ReasonCode::from_u8(code)
        .filter(|c| c.allowed_in(packet))
        .ok_or(DecodeError::InvalidReasonCode { packet: ty, code })
}

fn read_props<P: PropertySet>(r: &mut Reader, version: ProtocolVersion) -> Result<P, DecodeError> {
    if version.is_v5() {
        P::decode(r)
    } else {
        Ok(P::default())
    }
}

fn decode_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.string("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = match (name.as_str(), level) {
        ("MQTT", 4) => ProtocolVersion::V311,
        ("MQTT", 5) => ProtocolVersion::V5,
        ("MQIsdp", 3) => ProtocolVersion::V31,
        ("MQTT" | "MQIsdp", other) => return Err(DecodeError::UnsupportedProtocolVersion(other)),
        (other, _) => return Err(DecodeError::InvalidProtocolName(other.to_owned())),
    };
    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos_bits = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !will_flag && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    let will_qos = QoS::try_from(will_qos_bits).map_err(|_| DecodeError::InvalidWillQoS)?;
    if has_password && !has_username && !protocol.is_v5() {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16("keep alive")?;
    let properties: ConnectProperties = read_props(r, protocol)?;
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    let client_id = ClientId::from(r.string("client identifier")?);
    let will = if will_flag {
        let properties: WillProperties = read_props(r, protocol)?;
        let topic =
            TopicName::from_mqtt_str(r.string("will topic")?).map_err(DecodeError::TopicName)?;
        let payload = r.binary("will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary("password")?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

fn decode_connack(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("connect acknowledge flags")?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::ConnAckReservedFlags);
    }
    let raw = r.u8("connect reason code")?;
    let code = if version.is_v5() {
        ReasonCode::from_u8(raw).filter(|c| c.allowed_in(ReasonPacket::ConnAck))
    } else {
        ReasonCode::from_v3_connack(raw)
    }
    .ok_or(DecodeError::InvalidReasonCode {
        packet: PacketType::ConnAck,
        code: raw,
    })?;
    let properties = read_props(r, version)?;
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        code,
        properties,
    })
}

fn decode_publish(
    flags: u8,
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Publish, DecodeError> {
    let qos = QoS::try_from((flags >> 1) & 0x03).map_err(|_| DecodeError::InvalidQoS)?;
    let raw_topic = r.string("topic name")?;
    let topic = if raw_topic.is_empty() && version.is_v5() {
        None
    } else {
        Some(TopicName::from_mqtt_str(raw_topic).map_err(DecodeError::TopicName)?)
    };
    let pid = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r)?)
    };
    let qos = QosPid::from_parts(qos, pid).ok_or(DecodeError::ZeroPacketId)?;
    let properties: PublishProperties = read_props(r, version)?;
    if topic.is_none() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicWithoutAlias);
    }
    Ok(Publish {
        dup: flags & 0x08 != 0,
        qos,
        retain: flags & 0x01 != 0,
        topic,
        properties,
        payload: r.rest(),
    })
}

fn decode_puback(
    r: &mut Reader,
    version: ProtocolVersion,
    kind: ReasonPacket,
) -> Result<PubAck, DecodeError> {
    let ty = match kind {
        ReasonPacket::PubAck => PacketType::PubAck,
        ReasonPacket::PubRec => PacketType::PubRec,
        ReasonPacket::PubRel => PacketType::PubRel,
        _ => PacketType::PubComp,
    };
    let packet_id = packet_id(r)?;
    let mut ack = PubAck::new(packet_id);
    if version.is_v5() && !r.is_empty() {
        ack.code = reason(r, kind, ty)?;
        if !r.is_empty() {
            ack.properties = ReasonProperties::decode(r)?;
        }
    }
    Ok(ack)
}

fn decode_subscribe(r: &mut Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties: SubscribeProperties = read_props(r, version)?;
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        let filter = FilterEntry::parse(r.string("topic filter")?);
        let opts = r.u8("subscription options")?;
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if opts & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved);
        }
        let qos = QoS::try_from(opts & 0x03).map_err(|_| DecodeError::InvalidSubscriptionQoS)?;
        let retain_handling = match (opts >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        let options = SubscriptionOptions {
            qos,
            no_local: opts & 0x04 != 0,
            retain_as_published: opts & 0x08 != 0,
            retain_handling,
        };
        if options.no_local {
            if let FilterEntry::Valid(f) = &filter {
                if f.is_shared() {
                    return Err(DecodeError::NoLocalOnSharedSubscription);
                }
            }
        }
        subscriptions.push(Subscription { filter, options });
    }
    if subscriptions.is_empty() {
        return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        subscriptions,
    })
}

fn decode_suback(r: &mut Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = read_props(r, version)?;
    let mut codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = if version.is_v5() {
            reason(r, ReasonPacket::SubAck, PacketType::SubAck)?
        } else {
            let raw = r.u8("return code")?;
            match raw {
                0x00 => ReasonCode::Success,
                0x01 => ReasonCode::GrantedQoS1,
                0x02 => ReasonCode::GrantedQoS2,
                0x80 => ReasonCode::UnspecifiedError,
                code => {
                    return Err(DecodeError::InvalidReasonCode {
                        packet: PacketType::SubAck,
                        code,
                    })
                }
            }
        };
        codes.push(code);
    }
    Ok(SubAck {
        packet_id,
        properties,
        codes,
    })
}

fn decode_unsubscribe(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties: UnsubscribeProperties = read_props(r, version)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(FilterEntry::parse(r.string("topic filter")?));
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn decode_unsuback(r: &mut Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = read_props(r, version)?;
    let mut codes = Vec::new();
    if version.is_v5() {
        while !r.is_empty() {
            codes.push(reason(r, ReasonPacket::UnsubAck, PacketType::UnsubAck)?);
        }
    }
    Ok(UnsubAck {
        packet_id,
        properties,
        codes,
    })
}

fn decode_disconnect(r: &mut Reader, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
    let mut d = Disconnect::default();
    if version.is_v5() && !r.is_empty() {
        d.code = reason(r, ReasonPacket::Disconnect, PacketType::Disconnect)?;
        if !r.is_empty() {
            d.properties = DisconnectProperties::decode(r)?;
        }
    }
    Ok(d)
}

fn decode_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut a = Auth::default();
    if !r.is_empty() {
        a.code = reason(r, ReasonPacket::Auth, PacketType::Auth)?;
        // Unlike PUBACK and DISCONNECT, AUTH omits the property length only together with
        // the reason code (remaining length 0, section 3.15.2): a lone reason code is malformed.
        a.properties = AuthProperties::decode(r)?;
    }
    if a.properties.authentication_data.is_some() && a.properties.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(a)
}
