//! The on-disk encoding of each record, independent of the storage engine. Every value
//! starts with a format byte ([`FORMAT`]); a future version reads older formats by that
//! byte. Messages are stored as MQTT 5.0 PUBLISH packets (topic, QoS, retain, properties,
//! payload), so the codec that is fuzzed and tested against the specification also reads
//! them back.
//!
//! Keys sort so that one session's queue is one contiguous range: `client id, 0x00,
//! sequence number (big-endian u64)`. MQTT strings cannot contain U+0000
//! ([MQTT-1.5.4-2]), so the separator never occurs inside a client id.
//!
//! Nothing here panics on bad bytes: a value that does not decode is a [`FormatError`].

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use midge_broker::session::StoredSubscription;
use midge_broker::store::{InflightRecord, QueuedRecord, SessionRecord};
use midge_broker::{Message, Timestamp};
use midge_codec::{
    decode, encode, DecodeLimits, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid,
    RetainHandling, SubscriptionId, SubscriptionOptions, TopicFilter,
};

/// The format byte written at the start of every value by this version.
pub const FORMAT: u8 = 1;

/// A value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Written by a newer midge.
    #[error("record format {0} is newer than this midge understands ({FORMAT})")]
    TooNew(u8),
    /// Shorter than its fields say.
    #[error("record truncated")]
    Truncated,
    /// A field out of range.
    #[error("invalid record: {0}")]
    Invalid(&'static str),
}

/// The key of a queued message: client id, 0x00, sequence number.
pub fn queue_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(client_id.len() + 9);
    k.extend_from_slice(client_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The prefix of every queue key of a session.
pub fn queue_prefix(client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(client_id.len() + 1);
    k.extend_from_slice(client_id.as_bytes());
    k.push(0);
    k
}

/// Splits a key of `client id, 0x00, n` where `n` has `width` bytes (8 for the queue, 2 for
/// inbound QoS 2 ids) into the client id and `n`.
pub fn split_key(key: &[u8], width: usize) -> Result<(&str, u64), FormatError> {
    if key.len() < width + 1 || key[key.len() - width - 1] != 0 {
        return Err(FormatError::Invalid("key"));
    }
    let (id, tail) = key.split_at(key.len() - width);
    let id =
        std::str::from_utf8(&id[..id.len() - 1]).map_err(|_| FormatError::Invalid("client id"))?;
    let n = tail.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
    Ok((id, n))
}

/// The key of an inbound QoS 2 packet id: client id, 0x00, packet id (big-endian u16).
pub fn qos2_key(client_id: &str, pid: PacketId) -> Vec<u8> {
    let mut k = queue_prefix(client_id);
    k.extend_from_slice(&pid.get().to_be_bytes());
    k
}

fn header(buf: &mut &[u8]) -> Result<(), FormatError> {
    let v = take_u8(buf)?;
    match v {
        FORMAT => Ok(()),
        0 => Err(FormatError::Invalid("format 0")),
        newer => Err(FormatError::TooNew(newer)),
    }
}

fn take_u8(buf: &mut &[u8]) -> Result<u8, FormatError> {
    if buf.remaining() < 1 {
        return Err(FormatError::Truncated);
    }
    Ok(buf.get_u8())
}

fn take_u16(buf: &mut &[u8]) -> Result<u16, FormatError> {
    if buf.remaining() < 2 {
        return Err(FormatError::Truncated);
    }
    Ok(buf.get_u16())
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, FormatError> {
    if buf.remaining() < 4 {
        return Err(FormatError::Truncated);
    }
    Ok(buf.get_u32())
}

fn take_u64(buf: &mut &[u8]) -> Result<u64, FormatError> {
    if buf.remaining() < 8 {
        return Err(FormatError::Truncated);
    }
    Ok(buf.get_u64())
}

fn take_bytes<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], FormatError> {
    if buf.len() < n {
        return Err(FormatError::Truncated);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn take_str<'a>(buf: &mut &'a [u8]) -> Result<&'a str, FormatError> {
    let n = usize::from(take_u16(buf)?);
    std::str::from_utf8(take_bytes(buf, n)?).map_err(|_| FormatError::Invalid("string"))
}

fn put_str(out: &mut BytesMut, s: &str) {
    // Topic filters and client ids are MQTT strings: at most 65,535 bytes.
    let s = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

fn protocol_byte(p: ProtocolVersion) -> u8 {
    p.level()
}

fn protocol_of(b: u8) -> Result<ProtocolVersion, FormatError> {
    match b {
        3 => Ok(ProtocolVersion::V31),
        4 => Ok(ProtocolVersion::V311),
        5 => Ok(ProtocolVersion::V5),
        _ => Err(FormatError::Invalid("protocol level")),
    }
}

fn qos_of(b: u8) -> Result<QoS, FormatError> {
    QoS::try_from(b).map_err(|_| FormatError::Invalid("QoS"))
}

fn options_byte(o: SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn options_of(b: u8) -> Result<SubscriptionOptions, FormatError> {
    Ok(SubscriptionOptions {
        qos: qos_of(b & 0b11)?,
        no_local: b & 0b100 != 0,
        retain_as_published: b & 0b1000 != 0,
        retain_handling: match (b >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(FormatError::Invalid("retain handling")),
        },
    })
}

/// Encodes a session record.
pub fn encode_session(r: &SessionRecord) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(32 + r.subscriptions.len() * 32);
    out.put_u8(FORMAT);
    out.put_u8(protocol_byte(r.protocol));
    out.put_u32(r.expiry_secs);
    out.put_u64(r.offline_since.map_or(0, |t| t.0));
    out.put_u32(r.subscriptions.len() as u32);
    for s in &r.subscriptions {
        put_str(&mut out, s.filter.as_str());
        out.put_u8(options_byte(s.options));
        out.put_u32(s.sub_id.map_or(0, SubscriptionId::get));
    }
    out.to_vec()
}

/// Decodes a session record.
pub fn decode_session(mut buf: &[u8]) -> Result<SessionRecord, FormatError> {
    let buf = &mut buf;
    header(buf)?;
    let protocol = protocol_of(take_u8(buf)?)?;
    let expiry_secs = take_u32(buf)?;
    let offline = take_u64(buf)?;
    let n = take_u32(buf)? as usize;
    let mut subscriptions = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let filter =
            TopicFilter::try_from(take_str(buf)?).map_err(|_| FormatError::Invalid("filter"))?;
        let options = options_of(take_u8(buf)?)?;
        let sub_id = SubscriptionId::new(take_u32(buf)?);
        subscriptions.push(StoredSubscription {
            filter,
            options,
            sub_id,
        });
    }
    Ok(SessionRecord {
        protocol,
        expiry_secs,
        offline_since: (offline != 0).then_some(Timestamp(offline)),
        subscriptions,
    })
}

/// Appends a message as an MQTT 5.0 PUBLISH packet.
fn put_message(out: &mut BytesMut, m: &Message) -> Result<(), FormatError> {
    // The packet id is not part of the message: any valid one will do.
    let any = PacketId::new(1).ok_or(FormatError::Invalid("packet id"))?;
    let qos = match m.qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(any),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(any),
    };
    let p = Packet::Publish(Publish {
        dup: false,
        qos,
        retain: m.retain,
        topic: Some(m.topic.clone()),
        properties: m.properties.clone(),
        payload: m.payload.clone(),
    });
    out.put_u64(m.expires_at.map_or(0, |t| t.0));
    encode(&p, ProtocolVersion::V5, out).map_err(|_| FormatError::Invalid("message"))
}

/// Reads a message written by `put_message` (the rest of the buffer).
fn take_message(buf: &mut &[u8]) -> Result<Message, FormatError> {
    let expires = take_u64(buf)?;
    let mut bytes = BytesMut::from(*buf);
    *buf = &[];
    let limits = DecodeLimits::default();
    match decode(&mut bytes, ProtocolVersion::V5, &limits) {
        Ok(Some(Packet::Publish(p))) if bytes.is_empty() => Ok(Message {
            topic: p
                .topic
                .ok_or(FormatError::Invalid("message without topic"))?,
            payload: Bytes::copy_from_slice(&p.payload),
            qos: p.qos.qos(),
            retain: p.retain,
            properties: p.properties,
            expires_at: (expires != 0).then_some(Timestamp(expires)),
        }),
        Ok(None) => Err(FormatError::Truncated),
        _ => Err(FormatError::Invalid("message")),
    }
}

/// Encodes a queued message.
pub fn encode_queued(r: &QueuedRecord) -> Result<Vec<u8>, FormatError> {
    let mut out = BytesMut::with_capacity(64 + r.msg.payload.len() + r.msg.topic.len());
    out.put_u8(FORMAT);
    out.put_u8(r.qos as u8);
    out.put_u8(u8::from(r.retain));
    out.put_u16(r.sub_ids.len() as u16);
    for id in &r.sub_ids {
        out.put_u32(id.get());
    }
    match &r.share {
        Some(s) => {
            out.put_u8(1);
            put_str(&mut out, s);
        }
        None => out.put_u8(0),
    }
    put_message(&mut out, &r.msg)?;
    Ok(out.to_vec())
}

/// Decodes a queued message.
pub fn decode_queued(mut buf: &[u8]) -> Result<QueuedRecord, FormatError> {
    let buf = &mut buf;
    header(buf)?;
    let qos = qos_of(take_u8(buf)?)?;
    let retain = take_u8(buf)? != 0;
    let n = usize::from(take_u16(buf)?);
    let mut sub_ids = Vec::with_capacity(n);
    for _ in 0..n {
        sub_ids.push(
            SubscriptionId::new(take_u32(buf)?).ok_or(FormatError::Invalid("subscription id"))?,
        );
    }
    let share = match take_u8(buf)? {
        0 => None,
        _ => Some(Arc::from(take_str(buf)?)),
    };
    let msg = Arc::new(take_message(buf)?);
    Ok(QueuedRecord {
        msg,
        qos,
        retain,
        sub_ids,
        share,
    })
}

/// Encodes the state of a message in flight.
pub fn encode_inflight(s: InflightRecord) -> Vec<u8> {
    let (kind, pid) = match s {
        InflightRecord::Published(p) => (1u8, p),
        InflightRecord::Released(p) => (2u8, p),
    };
    let mut v = vec![FORMAT, kind];
    v.extend_from_slice(&pid.get().to_be_bytes());
    v
}

/// Decodes the state of a message in flight.
pub fn decode_inflight(mut buf: &[u8]) -> Result<InflightRecord, FormatError> {
    let buf = &mut buf;
    header(buf)?;
    let kind = take_u8(buf)?;
    let pid = PacketId::new(take_u16(buf)?).ok_or(FormatError::Invalid("packet id 0"))?;
    match kind {
        1 => Ok(InflightRecord::Published(pid)),
        2 => Ok(InflightRecord::Released(pid)),
        _ => Err(FormatError::Invalid("inflight state")),
    }
}

/// Encodes a retained message.
pub fn encode_retained(m: &Message) -> Result<Vec<u8>, FormatError> {
    let mut out = BytesMut::with_capacity(32 + m.payload.len() + m.topic.len());
    out.put_u8(FORMAT);
    put_message(&mut out, m)?;
    Ok(out.to_vec())
}

/// Decodes a retained message.
pub fn decode_retained(mut buf: &[u8]) -> Result<Message, FormatError> {
    let buf = &mut buf;
    header(buf)?;
    take_message(buf)
}

/// Encodes a delayed will and when it is due.
pub fn encode_will(m: &Message, at: Timestamp) -> Result<Vec<u8>, FormatError> {
    let mut out = BytesMut::with_capacity(40 + m.payload.len() + m.topic.len());
    out.put_u8(FORMAT);
    out.put_u64(at.0);
    put_message(&mut out, m)?;
    Ok(out.to_vec())
}

/// Decodes a delayed will.
pub fn decode_will(mut buf: &[u8]) -> Result<(Message, Timestamp), FormatError> {
    let buf = &mut buf;
    header(buf)?;
    let at = Timestamp(take_u64(buf)?);
    Ok((take_message(buf)?, at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use midge_codec::{MqttString, PublishProperties, TopicName};

    fn message(qos: QoS) -> Message {
        Message {
            topic: TopicName::try_from("home/bedroom/light").unwrap(),
            payload: Bytes::from_static(b"on"),
            qos,
            retain: true,
            properties: PublishProperties {
                content_type: Some(MqttString::try_from("text/plain").unwrap()),
                message_expiry_interval: Some(60),
                user_properties: vec![(
                    MqttString::try_from("k").unwrap(),
                    MqttString::try_from("v").unwrap(),
                )],
                ..Default::default()
            },
            expires_at: Some(Timestamp(1_700_000_000_000)),
        }
    }

    #[test]
    fn records_round_trip() {
        let session = SessionRecord {
            protocol: ProtocolVersion::V5,
            expiry_secs: 3600,
            offline_since: Some(Timestamp(42)),
            subscriptions: vec![StoredSubscription {
                filter: TopicFilter::try_from("$share/g/home/+/light").unwrap(),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
                sub_id: SubscriptionId::new(268_435_455),
            }],
        };
        assert_eq!(decode_session(&encode_session(&session)).unwrap(), session);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let q = QueuedRecord {
                msg: Arc::new(message(qos)),
                qos,
                retain: false,
                sub_ids: vec![SubscriptionId::new(7).unwrap()],
                share: Some(Arc::from("$share/g/home/#")),
            };
            assert_eq!(decode_queued(&encode_queued(&q).unwrap()).unwrap(), q);
            let m = message(qos);
            assert_eq!(decode_retained(&encode_retained(&m).unwrap()).unwrap(), m);
            let w = decode_will(&encode_will(&m, Timestamp(99)).unwrap()).unwrap();
            assert_eq!(w, (m, Timestamp(99)));
        }
        for s in [
            InflightRecord::Published(PacketId::new(65535).unwrap()),
            InflightRecord::Released(PacketId::new(1).unwrap()),
        ] {
            assert_eq!(decode_inflight(&encode_inflight(s)).unwrap(), s);
        }
    }

    #[test]
    fn keys_sort_by_session_then_sequence() {
        let mut keys = [
            queue_key("b", 1),
            queue_key("a", 300),
            queue_key("a", 2),
            queue_key("ab", 1),
        ];
        keys.sort();
        let decoded: Vec<_> = keys.iter().map(|k| split_key(k, 8).unwrap()).collect();
        assert_eq!(decoded, [("a", 2), ("a", 300), ("ab", 1), ("b", 1)]);
        assert!(queue_key("a", u64::MAX).starts_with(&queue_prefix("a")));
        assert!(!queue_key("ab", 1).starts_with(&queue_prefix("a")));
        let k = qos2_key("dev", PacketId::new(0x0100).unwrap());
        assert_eq!(split_key(&k, 2).unwrap(), ("dev", 256));
        assert!(split_key(b"no-separator", 8).is_err());
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let q = QueuedRecord {
            msg: Arc::new(message(QoS::AtLeastOnce)),
            qos: QoS::AtLeastOnce,
            retain: false,
            sub_ids: vec![],
            share: None,
        };
        let good = encode_queued(&q).unwrap();
        for cut in 0..good.len() {
            assert!(decode_queued(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut newer = good.clone();
        newer[0] = FORMAT + 1;
        assert_eq!(decode_queued(&newer), Err(FormatError::TooNew(FORMAT + 1)));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xFF;
            let _ = decode_queued(&bad);
        }
        let session = encode_session(&SessionRecord {
            protocol: ProtocolVersion::V311,
            expiry_secs: 1,
            offline_since: None,
            subscriptions: vec![],
        });
        for cut in 0..session.len() {
            assert!(decode_session(&session[..cut]).is_err());
        }
    }
}
