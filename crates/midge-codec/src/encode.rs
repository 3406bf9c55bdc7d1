//! `encode`: packets out as bytes, exactly as the specification lays them out, and
//! `encoded_len` without encoding.
//!
//! A PUBLISH can be written as a small per-subscriber header (`encode_publish_header`) followed
//! by the payload `Bytes` shared by every subscriber, so a broker sends one payload to many
//! connections without copying it (e.g. with vectored writes).

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketType, PubAck, Publish, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};
use crate::properties::PropertySet;
use crate::reason::{ReasonCode, ReasonPacket};
use crate::types::ProtocolVersion;
use crate::wire::{self, prefixed_len, put_binary, put_str, MAX_VARIABLE_BYTE_INTEGER};

/// Appends the encoding of `packet` for a connection speaking `version` to `buf`.
///
/// 5.0-only content (properties, reason codes other than success) is left out for 3.x, except
/// where 3.x has an equivalent (CONNACK return codes, SUBACK failure 0x80). On error nothing
/// is written.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    check(packet, version)?;
    let remaining = remaining_len(packet, version);
    if remaining > MAX_VARIABLE_BYTE_INTEGER as usize {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    buf.reserve(1 + wire::vbi_len(remaining as u32) + remaining);
    buf.put_u8(first_byte(packet));
    wire::put_vbi(buf, remaining as u32);
    write_body(packet, version, buf);
    Ok(())
}

/// Number of bytes `encode` writes for `packet`, fixed header included.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let remaining = remaining_len(packet, version);
    1 + wire::vbi_len(u32::try_from(remaining).unwrap_or(u32::MAX)) + remaining
}

/// Appends everything of `publish` except its payload: fixed header (whose remaining length
/// counts the payload), topic, packet id and properties. Send `publish.payload` right after.
pub fn encode_publish_header(
    publish: &Publish,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    check_publish(publish, version)?;
    let header = publish_header_len(publish, version);
    let remaining = header + publish.payload.len();
    if remaining > MAX_VARIABLE_BYTE_INTEGER as usize {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    buf.reserve(1 + 4 + header);
    buf.put_u8(publish_first_byte(publish));
    wire::put_vbi(buf, remaining as u32);
    write_publish_header(publish, version, buf);
    Ok(())
}

fn first_byte(packet: &Packet) -> u8 {
    let ty = packet.packet_type() as u8;
    match packet {
        Packet::Publish(p) => publish_first_byte(p),
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => (ty << 4) | 0b0010,
        _ => ty << 4,
    }
}

fn publish_first_byte(p: &Publish) -> u8 {
    (PacketType::Publish as u8) << 4
        | (u8::from(p.dup) << 3)
        | (p.qos.qos().as_u8() << 1)
        | u8::from(p.retain)
}

fn check(packet: &Packet, version: ProtocolVersion) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => check_connect(c),
        Packet::ConnAck(c) => {
            check_code(v5, c.code, ReasonPacket::ConnAck, PacketType::ConnAck)?;
            props(v5, &c.properties)
        }
        Packet::Publish(p) => check_publish(p, version),
        Packet::PubAck(a) => check_ack(v5, a, ReasonPacket::PubAck, PacketType::PubAck),
        Packet::PubRec(a) => check_ack(v5, a, ReasonPacket::PubRec, PacketType::PubRec),
        Packet::PubRel(a) => check_ack(v5, a, ReasonPacket::PubRel, PacketType::PubRel),
        Packet::PubComp(a) => check_ack(v5, a, ReasonPacket::PubComp, PacketType::PubComp),
        Packet::Subscribe(s) => {
            if s.subscriptions.is_empty() {
                return Err(EncodeError::NoTopicFilters(PacketType::Subscribe));
            }
            props(v5, &s.properties)
        }
        Packet::SubAck(s) => {
            for &c in &s.codes {
                check_code(v5, c, ReasonPacket::SubAck, PacketType::SubAck)?;
                // 3.x return codes are 0, 1, 2 and 0x80, which every failure code becomes.
                if !v5 && !c.is_error() && !c.allowed_in(ReasonPacket::SubAck) {
                    return Err(EncodeError::InvalidReasonCode {
                        packet: PacketType::SubAck,
                        code: c,
                    });
                }
            }
            props(v5, &s.properties)
        }
        Packet::Unsubscribe(u) => {
            if u.filters.is_empty() {
                return Err(EncodeError::NoTopicFilters(PacketType::Unsubscribe));
            }
            props(v5, &u.properties)
        }
        Packet::UnsubAck(u) => {
            for &c in &u.codes {
                check_code(v5, c, ReasonPacket::UnsubAck, PacketType::UnsubAck)?;
            }
            props(v5, &u.properties)
        }
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => {
            check_code(v5, d.code, ReasonPacket::Disconnect, PacketType::Disconnect)?;
            props(v5, &d.properties)
        }
        Packet::Auth(a) => {
            if !v5 {
                return Err(EncodeError::NotInVersion {
                    packet: PacketType::Auth,
                    version,
                });
            }
            check_code(v5, a.code, ReasonPacket::Auth, PacketType::Auth)?;
            a.properties.check()
        }
    }
}

fn props<P: PropertySet>(v5: bool, p: &P) -> Result<(), EncodeError> {
    if v5 {
        p.check()
    } else {
        Ok(())
    }
}

fn check_code(
    v5: bool,
    code: ReasonCode,
    kind: ReasonPacket,
    packet: PacketType,
) -> Result<(), EncodeError> {
    // 3.x maps or drops codes (see `encode`); only 5.0 must carry a code from the table.
    if v5 && !code.allowed_in(kind) {
        return Err(EncodeError::InvalidReasonCode { packet, code });
    }
    Ok(())
}

fn check_ack(
    v5: bool,
    a: &PubAck,
    kind: ReasonPacket,
    packet: PacketType,
) -> Result<(), EncodeError> {
    check_code(v5, a.code, kind, packet)?;
    props(v5, &a.properties)
}

fn check_connect(c: &Connect) -> Result<(), EncodeError> {
    let v5 = c.protocol.is_v5();
    props(v5, &c.properties)?;
    if let Some(w) = &c.will {
        props(v5, &w.properties)?;
        if w.payload.len() > usize::from(u16::MAX) {
            return Err(EncodeError::BinaryTooLong {
                field: "will payload",
            });
        }
    }
    if c.password
        .as_ref()
        .is_some_and(|p| p.len() > usize::from(u16::MAX))
    {
        return Err(EncodeError::BinaryTooLong { field: "password" });
    }
    Ok(())
}

fn check_publish(p: &Publish, version: ProtocolVersion) -> Result<(), EncodeError> {
    if p.topic.is_none() && !(version.is_v5() && p.properties.topic_alias.is_some()) {
        return Err(EncodeError::MissingTopic);
    }
    props(version.is_v5(), &p.properties)
}

fn props_len<P: PropertySet>(v5: bool, p: &P) -> usize {
    if v5 {
        p.wire_len()
    } else {
        0
    }
}

/// Length of a 5.0 acknowledgement tail (reason code and properties), which is shortened
/// when the code is success and there are no properties (sections 3.4.2.1, 3.14.2.1).
fn reason_tail_len<P: PropertySet>(v5: bool, code: ReasonCode, p: &P) -> usize {
    if !v5 {
        return 0;
    }
    if !p.is_empty() {
        1 + p.wire_len()
    } else if code != ReasonCode::Success {
        1
    } else {
        0
    }
}

fn write_reason_tail<P: PropertySet>(v5: bool, code: ReasonCode, p: &P, buf: &mut BytesMut) {
    if !v5 {
        return;
    }
    if !p.is_empty() {
        buf.put_u8(code.as_u8());
        p.write(buf);
    } else if code != ReasonCode::Success {
        buf.put_u8(code.as_u8());
    }
}

fn publish_header_len(p: &Publish, version: ProtocolVersion) -> usize {
    let topic = p.topic.as_ref().map_or(0, |t| t.len());
    prefixed_len(topic)
        + if p.qos.packet_id().is_some() { 2 } else { 0 }
        + props_len(version.is_v5(), &p.properties)
}

fn write_publish_header(p: &Publish, version: ProtocolVersion, buf: &mut BytesMut) {
    put_str(buf, p.topic.as_ref().map_or("", |t| t.as_str()));
    if let Some(pid) = p.qos.packet_id() {
        buf.put_u16(pid.get());
    }
    if version.is_v5() {
        p.properties.write(buf);
    }
}

fn remaining_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => connect_len(c),
        Packet::ConnAck(c) => 2 + props_len(v5, &c.properties),
        Packet::Publish(p) => publish_header_len(p, version) + p.payload.len(),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            2 + reason_tail_len(v5, a.code, &a.properties)
        }
        Packet::Subscribe(s) => {
            2 + props_len(v5, &s.properties)
                + s.subscriptions
                    .iter()
                    .map(|sub| prefixed_len(sub.filter.as_str().len()) + 1)
                    .sum::<usize>()
        }
        Packet::SubAck(s) => 2 + props_len(v5, &s.properties) + s.codes.len(),
        Packet::Unsubscribe(u) => {
            2 + props_len(v5, &u.properties)
                + u.filters
                    .iter()
                    .map(|f| prefixed_len(f.as_str().len()))
                    .sum::<usize>()
        }
        Packet::UnsubAck(u) => {
            2 + if v5 {
                u.properties.wire_len() + u.codes.len()
            } else {
                0
            }
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => disconnect_len(d, v5),
        Packet::Auth(a) => auth_tail_len(a),
    }
}

fn connect_len(c: &Connect) -> usize {
    let v5 = c.protocol.is_v5();
    let mut n = prefixed_len(c.protocol.protocol_name().len()) + 1 + 1 + 2;
    n += props_len(v5, &c.properties);
    n += prefixed_len(c.client_id.as_str().len());
    if let Some(w) = &c.will {
        n += props_len(v5, &w.properties);
        n += prefixed_len(w.topic.len()) + prefixed_len(w.payload.len());
    }
    if let Some(u) = &c.username {
        n += prefixed_len(u.len());
    }
    if let Some(p) = &c.password {
        n += prefixed_len(p.len());
    }
    n
}

fn write_body(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => write_connect(c, buf),
        Packet::ConnAck(c) => write_connack(c, v5, buf),
        Packet::Publish(p) => {
            write_publish_header(p, version, buf);
            buf.put_slice(&p.payload);
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            buf.put_u16(a.packet_id.get());
            write_reason_tail(v5, a.code, &a.properties, buf);
        }
        Packet::Subscribe(s) => write_subscribe(s, v5, buf),
        Packet::SubAck(s) => write_suback(s, v5, buf),
        Packet::Unsubscribe(u) => write_unsubscribe(u, v5, buf),
        Packet::UnsubAck(u) => write_unsuback(u, v5, buf),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => write_disconnect(d, v5, buf),
        Packet::Auth(a) => write_auth(a, buf),
    }
}

fn write_connect(c: &Connect, buf: &mut BytesMut) {
    let v5 = c.protocol.is_v5();
    put_str(buf, c.protocol.protocol_name());
    buf.put_u8(c.protocol.level());
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos.as_u8() << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if v5 {
        c.properties.write(buf);
    }
    put_str(buf, c.client_id.as_str());
    if let Some(w) = &c.will {
        if v5 {
            w.properties.write(buf);
        }
        put_str(buf, w.topic.as_str());
        put_binary(buf, &w.payload);
    }
    if let Some(u) = &c.username {
        put_str(buf, u);
    }
    if let Some(p) = &c.password {
        put_binary(buf, p);
    }
}

fn write_connack(c: &ConnAck, v5: bool, buf: &mut BytesMut) {
    buf.put_u8(u8::from(c.session_present));
    if v5 {
        buf.put_u8(c.code.as_u8());
        c.properties.write(buf);
    } else {
        buf.put_u8(c.code.to_v3_connack());
    }
}

fn write_subscribe(s: &Subscribe, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(s.packet_id.get());
    if v5 {
        s.properties.write(buf);
    }
    for sub in &s.subscriptions {
        put_str(buf, sub.filter.as_str());
        let o = &sub.options;
        let mut byte = o.qos.as_u8();
        if v5 {
            byte |= u8::from(o.no_local) << 2
                | u8::from(o.retain_as_published) << 3
                | (o.retain_handling as u8) << 4;
        }
        buf.put_u8(byte);
    }
}

fn write_suback(s: &SubAck, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(s.packet_id.get());
    if v5 {
        s.properties.write(buf);
    }
    for &c in &s.codes {
        buf.put_u8(if v5 || !c.is_error() { c.as_u8() } else { 0x80 });
    }
}

fn write_unsubscribe(u: &Unsubscribe, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(u.packet_id.get());
    if v5 {
        u.properties.write(buf);
    }
    for f in &u.filters {
        put_str(buf, f.as_str());
    }
}

fn write_unsuback(u: &UnsubAck, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(u.packet_id.get());
    if v5 {
        u.properties.write(buf);
        for &c in &u.codes {
            buf.put_u8(c.as_u8());
        }
    }
}

/// A 5.0 DISCONNECT with a reason code always carries its property length, even when it is
/// zero: the shorter form (3.14.2.2.1) is valid, but some clients (rumqttc 0.25) cannot read
/// it, and a broker's DISCONNECT is the one packet a client must understand.
fn write_disconnect(d: &Disconnect, v5: bool, buf: &mut BytesMut) {
    if v5 && d.code != ReasonCode::Success {
        buf.put_u8(d.code.as_u8());
        d.properties.write(buf);
    } else {
        write_reason_tail(v5, d.code, &d.properties, buf);
    }
}

fn disconnect_len(d: &Disconnect, v5: bool) -> usize {
    if v5 && d.code != ReasonCode::Success {
        1 + d.properties.wire_len()
    } else {
        reason_tail_len(v5, d.code, &d.properties)
    }
}

/// AUTH has no form with a reason code but no property length: it is either empty (success
/// without properties) or both (section 3.15.2).
fn auth_tail_len(a: &Auth) -> usize {
    if a.code == ReasonCode::Success && a.properties.is_empty() {
        0
    } else {
        1 + a.properties.wire_len()
    }
}

fn write_auth(a: &Auth, buf: &mut BytesMut) {
    if auth_tail_len(a) > 0 {
        buf.put_u8(a.code.as_u8());
        a.properties.write(buf);
    }
}
