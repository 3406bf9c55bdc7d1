//! MQTT 5.0 properties (section 2.2.2): identifiers, typed values, and one struct per packet
//! kind holding exactly the properties that packet may carry.
//!
//! Decoding rejects an identifier not allowed in the packet (malformed, section 2.2.2.2), a
//! property given twice where only one is allowed, and values the specification forbids
//! (protocol errors). Encoding writes the properties in identifier order.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::topic::TopicName;
use crate::types::{MqttString, QoS};
use crate::wire::{self, Reader, MAX_VARIABLE_BYTE_INTEGER};

/// Property identifiers.
#[allow(missing_docs)]
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// A subscription identifier: 1 to 268,435,455.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(NonZeroU32);

impl SubscriptionId {
    /// The largest subscription identifier.
    pub const MAX: u32 = MAX_VARIABLE_BYTE_INTEGER;

    /// Builds one; `None` for 0 or values above `MAX`.
    pub fn new(v: u32) -> Option<Self> {
        if v > Self::MAX {
            return None;
        }
        NonZeroU32::new(v).map(SubscriptionId)
    }

    /// The value.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// A user property: a name/value pair of UTF-8 strings; the same name may appear many times.
pub type UserProperty = (MqttString, MqttString);

/// One decoded property with its typed value.
#[derive(Debug, Clone)]
pub(crate) enum Property {
    Byte(u8, u8),
    TwoByte(u8, u16),
    FourByte(u8, u32),
    Vbi(u8, u32),
    String(u8, MqttString),
    Binary(u8, Bytes),
    Pair(MqttString, MqttString),
}

/// A property by reference, for encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PropRef<'a> {
    Byte(u8, u8),
    TwoByte(u8, u16),
    FourByte(u8, u32),
    Vbi(u8, u32),
    String(u8, &'a str),
    Binary(u8, &'a [u8]),
    Pair(&'a str, &'a str),
}

impl PropRef<'_> {
    fn wire_len(self) -> usize {
        1 + match self {
            PropRef::Byte(..) => 1,
            PropRef::TwoByte(..) => 2,
            PropRef::FourByte(..) => 4,
            PropRef::Vbi(_, v) => wire::vbi_len(v),
            PropRef::String(_, s) => wire::prefixed_len(s.len()),
            PropRef::Binary(_, b) => wire::prefixed_len(b.len()),
            PropRef::Pair(k, v) => wire::prefixed_len(k.len()) + wire::prefixed_len(v.len()),
        }
    }

    fn check(self) -> Result<(), EncodeError> {
        match self {
            PropRef::Binary(id, b) if b.len() > usize::from(u16::MAX) => {
                Err(EncodeError::binary_property(id))
            }
            _ => Ok(()),
        }
    }

    fn write(self, buf: &mut BytesMut) {
        match self {
            PropRef::Byte(id, v) => {
                buf.put_u8(id);
                buf.put_u8(v);
            }
            PropRef::TwoByte(id, v) => {
                buf.put_u8(id);
                buf.put_u16(v);
            }
            PropRef::FourByte(id, v) => {
                buf.put_u8(id);
                buf.put_u32(v);
            }
            PropRef::Vbi(id, v) => {
                buf.put_u8(id);
                wire::put_vbi(buf, v);
            }
            PropRef::String(id, s) => {
                buf.put_u8(id);
                wire::put_str(buf, s);
            }
            PropRef::Binary(id, b) => {
                buf.put_u8(id);
                wire::put_binary(buf, b);
            }
            PropRef::Pair(k, v) => {
                buf.put_u8(id::USER_PROPERTY);
                wire::put_str(buf, k);
                wire::put_str(buf, v);
            }
        }
    }
}

/// The wire type of each known identifier; `None` for unknown identifiers.
fn read_property(r: &mut Reader) -> Result<Property, DecodeError> {
    let raw_id = r.vbi("property identifier")?;
    let pid = u8::try_from(raw_id).map_err(|_| DecodeError::UnknownProperty(raw_id))?;
    Ok(match pid {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::REQUEST_PROBLEM_INFORMATION
        | id::REQUEST_RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => Property::Byte(pid, r.u8("property value")?),
        id::SERVER_KEEP_ALIVE | id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::TOPIC_ALIAS => {
            Property::TwoByte(pid, r.u16("property value")?)
        }
        id::MESSAGE_EXPIRY_INTERVAL
        | id::SESSION_EXPIRY_INTERVAL
        | id::WILL_DELAY_INTERVAL
        | id::MAXIMUM_PACKET_SIZE => Property::FourByte(pid, r.u32("property value")?),
        id::SUBSCRIPTION_IDENTIFIER => Property::Vbi(pid, r.vbi("subscription identifier")?),
        id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::ASSIGNED_CLIENT_IDENTIFIER
        | id::AUTHENTICATION_METHOD
        | id::RESPONSE_INFORMATION
        | id::SERVER_REFERENCE
        | id::REASON_STRING => Property::String(pid, r.string("property value")?),
        id::CORRELATION_DATA | id::AUTHENTICATION_DATA => {
            Property::Binary(pid, r.binary("property value")?)
        }
        id::USER_PROPERTY => Property::Pair(
            r.string("user property name")?,
            r.string("user property value")?,
        ),
        _ => return Err(DecodeError::UnknownProperty(raw_id)),
    })
}

/// The set of properties one packet kind may carry.
pub(crate) trait PropertySet: Default {
    /// Packet name for error messages.
    const PACKET: &'static str;

    /// Stores one property, rejecting those not allowed here and forbidden duplicates.
    fn accept(&mut self, p: Property) -> Result<(), DecodeError>;

    /// Calls `f` for every property present, in identifier order.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>));

    /// Decodes the property length and the properties that follow.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let len = r.vbi("property length")?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated("properties"))?;
        let mut inner = Reader::new(r.take(len, "properties")?);
        let mut set = Self::default();
        while !inner.is_empty() {
            let p = read_property(&mut inner)?;
            set.accept(p)?;
        }
        Ok(set)
    }

    /// Bytes of the properties, without the property-length prefix.
    fn body_len(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |p| n += p.wire_len());
        n
    }

    /// Bytes of the properties including the property-length prefix.
    fn wire_len(&self) -> usize {
        let body = self.body_len();
        wire::vbi_len(u32::try_from(body).unwrap_or(u32::MAX)) + body
    }

    /// Checks that every value can be encoded.
    fn check(&self) -> Result<(), EncodeError> {
        let mut res = Ok(());
        self.visit(&mut |p| {
            if res.is_ok() {
                res = p.check();
            }
        });
        res
    }

    /// Writes the property length and the properties.
    fn write(&self, buf: &mut BytesMut) {
        let body = self.body_len();
        wire::put_vbi(buf, u32::try_from(body).unwrap_or(u32::MAX));
        self.visit(&mut |p| p.write(buf));
    }

    /// True if no property is present.
    fn is_empty(&self) -> bool {
        self.body_len() == 0
    }
}

fn not_allowed(packet: &'static str, id: u8) -> DecodeError {
    DecodeError::PropertyNotAllowed { id, packet }
}

fn once<T>(slot: &mut Option<T>, v: T, id: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(v);
    Ok(())
}

fn bool_value(id: u8, v: u8) -> Result<bool, DecodeError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

fn nonzero16(id: u8, v: u16) -> Result<NonZeroU16, DecodeError> {
    NonZeroU16::new(v).ok_or(DecodeError::InvalidPropertyValue(id))
}

fn nonzero32(id: u8, v: u32) -> Result<NonZeroU32, DecodeError> {
    NonZeroU32::new(v).ok_or(DecodeError::InvalidPropertyValue(id))
}

fn response_topic(s: MqttString) -> Result<TopicName, DecodeError> {
    TopicName::from_mqtt_str(s).map_err(|_| DecodeError::InvalidPropertyValue(id::RESPONSE_TOPIC))
}

fn push_opt_bool<'a>(f: &mut dyn FnMut(PropRef<'a>), id: u8, v: Option<bool>) {
    if let Some(v) = v {
        f(PropRef::Byte(id, u8::from(v)));
    }
}

fn push_opt_u32<'a>(f: &mut dyn FnMut(PropRef<'a>), id: u8, v: Option<u32>) {
    if let Some(v) = v {
        f(PropRef::FourByte(id, v));
    }
}

fn push_opt_u16<'a>(f: &mut dyn FnMut(PropRef<'a>), id: u8, v: Option<u16>) {
    if let Some(v) = v {
        f(PropRef::TwoByte(id, v));
    }
}

fn push_opt_str<'a>(f: &mut dyn FnMut(PropRef<'a>), id: u8, v: &'a Option<MqttString>) {
    if let Some(v) = v {
        f(PropRef::String(id, v.as_str()));
    }
}

fn push_opt_bin<'a>(f: &mut dyn FnMut(PropRef<'a>), id: u8, v: &'a Option<Bytes>) {
    if let Some(v) = v {
        f(PropRef::Binary(id, v));
    }
}

fn push_users<'a>(f: &mut dyn FnMut(PropRef<'a>), v: &'a [UserProperty]) {
    for (k, val) in v {
        f(PropRef::Pair(k.as_str(), val.as_str()));
    }
}

/// Properties of CONNECT (section 3.1.2.11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: Vec<UserProperty>,
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
}

impl PropertySet for ConnectProperties {
    const PACKET: &'static str = "CONNECT";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::FourByte(i @ id::SESSION_EXPIRY_INTERVAL, v) => {
                once(&mut self.session_expiry_interval, v, i)
            }
            Property::TwoByte(i @ id::RECEIVE_MAXIMUM, v) => {
                once(&mut self.receive_maximum, nonzero16(i, v)?, i)
            }
            Property::FourByte(i @ id::MAXIMUM_PACKET_SIZE, v) => {
                once(&mut self.maximum_packet_size, nonzero32(i, v)?, i)
            }
            Property::TwoByte(i @ id::TOPIC_ALIAS_MAXIMUM, v) => {
                once(&mut self.topic_alias_maximum, v, i)
            }
            Property::Byte(i @ id::REQUEST_RESPONSE_INFORMATION, v) => {
                once(&mut self.request_response_information, bool_value(i, v)?, i)
            }
            Property::Byte(i @ id::REQUEST_PROBLEM_INFORMATION, v) => {
                once(&mut self.request_problem_information, bool_value(i, v)?, i)
            }
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            Property::String(i @ id::AUTHENTICATION_METHOD, v) => {
                once(&mut self.authentication_method, v, i)
            }
            Property::Binary(i @ id::AUTHENTICATION_DATA, v) => {
                once(&mut self.authentication_data, v, i)
            }
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        push_opt_u32(f, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        push_opt_str(f, id::AUTHENTICATION_METHOD, &self.authentication_method);
        push_opt_bin(f, id::AUTHENTICATION_DATA, &self.authentication_data);
        push_opt_bool(
            f,
            id::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        push_opt_bool(
            f,
            id::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        push_opt_u16(
            f,
            id::RECEIVE_MAXIMUM,
            self.receive_maximum.map(NonZeroU16::get),
        );
        push_opt_u16(f, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        push_users(f, &self.user_properties);
        push_opt_u32(
            f,
            id::MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
    }
}

/// Properties of the will message in CONNECT (section 3.1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<MqttString>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for WillProperties {
    const PACKET: &'static str = "CONNECT will";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::FourByte(i @ id::WILL_DELAY_INTERVAL, v) => {
                once(&mut self.will_delay_interval, v, i)
            }
            Property::Byte(i @ id::PAYLOAD_FORMAT_INDICATOR, v) => {
                once(&mut self.payload_format_indicator, bool_value(i, v)?, i)
            }
            Property::FourByte(i @ id::MESSAGE_EXPIRY_INTERVAL, v) => {
                once(&mut self.message_expiry_interval, v, i)
            }
            Property::String(i @ id::CONTENT_TYPE, v) => once(&mut self.content_type, v, i),
            Property::String(i @ id::RESPONSE_TOPIC, v) => {
                once(&mut self.response_topic, response_topic(v)?, i)
            }
            Property::Binary(i @ id::CORRELATION_DATA, v) => once(&mut self.correlation_data, v, i),
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        push_opt_bool(
            f,
            id::PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        push_opt_u32(f, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        push_opt_str(f, id::CONTENT_TYPE, &self.content_type);
        if let Some(t) = &self.response_topic {
            f(PropRef::String(id::RESPONSE_TOPIC, t.as_str()));
        }
        push_opt_bin(f, id::CORRELATION_DATA, &self.correlation_data);
        push_opt_u32(f, id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        push_users(f, &self.user_properties);
    }
}

/// Properties of CONNACK (section 3.2.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    /// Only `AtMostOnce` or `AtLeastOnce` may be sent; 2 is a protocol error.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub assigned_client_identifier: Option<MqttString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<MqttString>,
    pub server_reference: Option<MqttString>,
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
}

impl PropertySet for ConnAckProperties {
    const PACKET: &'static str = "CONNACK";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::FourByte(i @ id::SESSION_EXPIRY_INTERVAL, v) => {
                once(&mut self.session_expiry_interval, v, i)
            }
            Property::TwoByte(i @ id::RECEIVE_MAXIMUM, v) => {
                once(&mut self.receive_maximum, nonzero16(i, v)?, i)
            }
            Property::Byte(i @ id::MAXIMUM_QOS, v) => {
                let q = match v {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(DecodeError::InvalidPropertyValue(i)),
                };
                once(&mut self.maximum_qos, q, i)
            }
            Property::Byte(i @ id::RETAIN_AVAILABLE, v) => {
                once(&mut self.retain_available, bool_value(i, v)?, i)
            }
            Property::FourByte(i @ id::MAXIMUM_PACKET_SIZE, v) => {
                once(&mut self.maximum_packet_size, nonzero32(i, v)?, i)
            }
            Property::String(i @ id::ASSIGNED_CLIENT_IDENTIFIER, v) => {
                once(&mut self.assigned_client_identifier, v, i)
            }
            Property::TwoByte(i @ id::TOPIC_ALIAS_MAXIMUM, v) => {
                once(&mut self.topic_alias_maximum, v, i)
            }
            Property::String(i @ id::REASON_STRING, v) => once(&mut self.reason_string, v, i),
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            Property::Byte(i @ id::WILDCARD_SUBSCRIPTION_AVAILABLE, v) => once(
                &mut self.wildcard_subscription_available,
                bool_value(i, v)?,
                i,
            ),
            Property::Byte(i @ id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, v) => once(
                &mut self.subscription_identifiers_available,
                bool_value(i, v)?,
                i,
            ),
            Property::Byte(i @ id::SHARED_SUBSCRIPTION_AVAILABLE, v) => once(
                &mut self.shared_subscription_available,
                bool_value(i, v)?,
                i,
            ),
            Property::TwoByte(i @ id::SERVER_KEEP_ALIVE, v) => {
                once(&mut self.server_keep_alive, v, i)
            }
            Property::String(i @ id::RESPONSE_INFORMATION, v) => {
                once(&mut self.response_information, v, i)
            }
            Property::String(i @ id::SERVER_REFERENCE, v) => once(&mut self.server_reference, v, i),
            Property::String(i @ id::AUTHENTICATION_METHOD, v) => {
                once(&mut self.authentication_method, v, i)
            }
            Property::Binary(i @ id::AUTHENTICATION_DATA, v) => {
                once(&mut self.authentication_data, v, i)
            }
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        push_opt_u32(f, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        push_opt_str(
            f,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        push_opt_u16(f, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        push_opt_str(f, id::AUTHENTICATION_METHOD, &self.authentication_method);
        push_opt_bin(f, id::AUTHENTICATION_DATA, &self.authentication_data);
        push_opt_str(f, id::RESPONSE_INFORMATION, &self.response_information);
        push_opt_str(f, id::SERVER_REFERENCE, &self.server_reference);
        push_opt_str(f, id::REASON_STRING, &self.reason_string);
        push_opt_u16(
            f,
            id::RECEIVE_MAXIMUM,
            self.receive_maximum.map(NonZeroU16::get),
        );
        push_opt_u16(f, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        if let Some(q) = self.maximum_qos {
            f(PropRef::Byte(id::MAXIMUM_QOS, q.as_u8()));
        }
        push_opt_bool(f, id::RETAIN_AVAILABLE, self.retain_available);
        push_users(f, &self.user_properties);
        push_opt_u32(
            f,
            id::MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        push_opt_bool(
            f,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        push_opt_bool(
            f,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        push_opt_bool(
            f,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
    }
}

/// Properties of PUBLISH (section 3.3.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<NonZeroU16>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
    /// Zero or more; only the broker sends them ([MQTT-3.3.4-6]).
    pub subscription_identifiers: Vec<SubscriptionId>,
    pub content_type: Option<MqttString>,
}

impl PropertySet for PublishProperties {
    const PACKET: &'static str = "PUBLISH";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::Byte(i @ id::PAYLOAD_FORMAT_INDICATOR, v) => {
                once(&mut self.payload_format_indicator, bool_value(i, v)?, i)
            }
            Property::FourByte(i @ id::MESSAGE_EXPIRY_INTERVAL, v) => {
                once(&mut self.message_expiry_interval, v, i)
            }
            Property::TwoByte(i @ id::TOPIC_ALIAS, v) => {
                let alias = NonZeroU16::new(v).ok_or(DecodeError::TopicAliasZero)?;
                once(&mut self.topic_alias, alias, i)
            }
            Property::String(i @ id::RESPONSE_TOPIC, v) => {
                once(&mut self.response_topic, response_topic(v)?, i)
            }
            Property::Binary(i @ id::CORRELATION_DATA, v) => once(&mut self.correlation_data, v, i),
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            Property::Vbi(i @ id::SUBSCRIPTION_IDENTIFIER, v) => {
                let sid = SubscriptionId::new(v).ok_or(DecodeError::InvalidPropertyValue(i))?;
                self.subscription_identifiers.push(sid);
                Ok(())
            }
            Property::String(i @ id::CONTENT_TYPE, v) => once(&mut self.content_type, v, i),
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        push_opt_bool(
            f,
            id::PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        push_opt_u32(f, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        push_opt_str(f, id::CONTENT_TYPE, &self.content_type);
        if let Some(t) = &self.response_topic {
            f(PropRef::String(id::RESPONSE_TOPIC, t.as_str()));
        }
        push_opt_bin(f, id::CORRELATION_DATA, &self.correlation_data);
        push_opt_u16(f, id::TOPIC_ALIAS, self.topic_alias.map(NonZeroU16::get));
        push_users(f, &self.user_properties);
        // Last: rumqttc 0.25 misreads the length of a subscription identifier and loses the
        // properties after it (any order is valid, section 2.2.2.2).
        for s in &self.subscription_identifiers {
            f(PropRef::Vbi(id::SUBSCRIPTION_IDENTIFIER, s.get()));
        }
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a reason string and
/// user properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ReasonProperties {
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for ReasonProperties {
    const PACKET: &'static str = "acknowledgement";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::String(i @ id::REASON_STRING, v) => once(&mut self.reason_string, v, i),
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        push_opt_str(f, id::REASON_STRING, &self.reason_string);
        push_users(f, &self.user_properties);
    }
}

/// Properties of SUBSCRIBE (section 3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<SubscriptionId>,
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for SubscribeProperties {
    const PACKET: &'static str = "SUBSCRIBE";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::Vbi(i @ id::SUBSCRIPTION_IDENTIFIER, v) => {
                let sid = SubscriptionId::new(v).ok_or(DecodeError::InvalidPropertyValue(i))?;
                once(&mut self.subscription_identifier, sid, i)
            }
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        if let Some(s) = self.subscription_identifier {
            f(PropRef::Vbi(id::SUBSCRIPTION_IDENTIFIER, s.get()));
        }
        push_users(f, &self.user_properties);
    }
}

/// Properties of UNSUBSCRIBE (section 3.10.2.1): user properties only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UnsubscribeProperties {
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for UnsubscribeProperties {
    const PACKET: &'static str = "UNSUBSCRIBE";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        push_users(f, &self.user_properties);
    }
}

/// Properties of DISCONNECT (section 3.14.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
    pub server_reference: Option<MqttString>,
}

impl PropertySet for DisconnectProperties {
    const PACKET: &'static str = "DISCONNECT";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::FourByte(i @ id::SESSION_EXPIRY_INTERVAL, v) => {
                once(&mut self.session_expiry_interval, v, i)
            }
            Property::String(i @ id::REASON_STRING, v) => once(&mut self.reason_string, v, i),
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            Property::String(i @ id::SERVER_REFERENCE, v) => once(&mut self.server_reference, v, i),
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        push_opt_u32(f, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        push_opt_str(f, id::SERVER_REFERENCE, &self.server_reference);
        push_opt_str(f, id::REASON_STRING, &self.reason_string);
        push_users(f, &self.user_properties);
    }
}

/// Properties of AUTH (section 3.15.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AuthProperties {
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for AuthProperties {
    const PACKET: &'static str = "AUTH";

    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::String(i @ id::AUTHENTICATION_METHOD, v) => {
                once(&mut self.authentication_method, v, i)
            }
            Property::Binary(i @ id::AUTHENTICATION_DATA, v) => {
                once(&mut self.authentication_data, v, i)
            }
            Property::String(i @ id::REASON_STRING, v) => once(&mut self.reason_string, v, i),
            Property::Pair(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            other => Err(not_allowed(Self::PACKET, other.id())),
        }
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(PropRef<'a>)) {
        push_opt_str(f, id::AUTHENTICATION_METHOD, &self.authentication_method);
        push_opt_bin(f, id::AUTHENTICATION_DATA, &self.authentication_data);
        push_opt_str(f, id::REASON_STRING, &self.reason_string);
        push_users(f, &self.user_properties);
    }
}

impl Property {
    fn id(&self) -> u8 {
        match self {
            Property::Byte(i, _)
            | Property::TwoByte(i, _)
            | Property::FourByte(i, _)
            | Property::Vbi(i, _)
            | Property::String(i, _)
            | Property::Binary(i, _) => *i,
            Property::Pair(..) => id::USER_PROPERTY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<P: PropertySet>(bytes: &[u8]) -> Result<P, DecodeError> {
        P::decode(&mut Reader::new(Bytes::copy_from_slice(bytes)))
    }

    #[test]
    fn duplicate_single_property_is_rejected() {
        // Session expiry twice.
        let b = [10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2];
        assert!(matches!(
            decode::<ConnectProperties>(&b),
            Err(DecodeError::DuplicateProperty(0x11))
        ));
    }

    #[test]
    fn repeated_user_properties_and_subscription_ids_are_allowed() {
        let b = [
            12, 0x26, 0, 1, b'a', 0, 1, b'b', 0x0B, 0x05, 0x0B, 0x80, 0x01,
        ];
        let p = decode::<PublishProperties>(&b).expect("valid");
        assert_eq!(p.user_properties.len(), 1);
        let ids: Vec<u32> = p.subscription_identifiers.iter().map(|s| s.get()).collect();
        assert_eq!(ids, vec![5, 128]);
    }

    #[test]
    fn property_not_allowed_in_packet() {
        // Topic alias in CONNECT.
        let b = [3, 0x23, 0, 1];
        assert!(matches!(
            decode::<ConnectProperties>(&b),
            Err(DecodeError::PropertyNotAllowed { id: 0x23, .. })
        ));
    }

    #[test]
    fn unknown_property_is_malformed() {
        let b = [2, 0x7F, 0];
        assert!(matches!(
            decode::<ReasonProperties>(&b),
            Err(DecodeError::UnknownProperty(0x7F))
        ));
    }

    #[test]
    fn forbidden_values() {
        // Receive maximum 0.
        assert!(matches!(
            decode::<ConnectProperties>(&[3, 0x21, 0, 0]),
            Err(DecodeError::InvalidPropertyValue(0x21))
        ));
        // Request problem information 2.
        assert!(matches!(
            decode::<ConnectProperties>(&[2, 0x17, 2]),
            Err(DecodeError::InvalidPropertyValue(0x17))
        ));
        // Maximum QoS 2.
        assert!(matches!(
            decode::<ConnAckProperties>(&[2, 0x24, 2]),
            Err(DecodeError::InvalidPropertyValue(0x24))
        ));
        // Topic alias 0.
        assert!(matches!(
            decode::<PublishProperties>(&[3, 0x23, 0, 0]),
            Err(DecodeError::TopicAliasZero)
        ));
        // Subscription identifier 0.
        assert!(matches!(
            decode::<SubscribeProperties>(&[2, 0x0B, 0]),
            Err(DecodeError::InvalidPropertyValue(0x0B))
        ));
    }

    #[test]
    fn property_length_beyond_packet_is_malformed() {
        assert!(matches!(
            decode::<ReasonProperties>(&[5, 0x1F, 0]),
            Err(DecodeError::Truncated(_))
        ));
    }

    #[test]
    fn encode_then_decode() {
        let p = ConnAckProperties {
            maximum_qos: Some(QoS::AtLeastOnce),
            receive_maximum: NonZeroU16::new(10),
            user_properties: vec![(MqttString::from_static("k"), MqttString::from_static("v"))],
            authentication_data: Some(Bytes::from_static(b"\x00\x01")),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        p.write(&mut buf);
        assert_eq!(buf.len(), p.wire_len());
        assert_eq!(decode::<ConnAckProperties>(&buf).expect("round trip"), p);
    }
}
