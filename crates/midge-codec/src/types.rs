//! Small validated value types shared by every packet: protocol version, QoS, packet
//! identifiers, client identifiers and MQTT UTF-8 strings.
//!
//! Invariant: a value of any type here is valid on the wire for every protocol version
//! that can carry it; constructors are the only way in.

use std::fmt;
use std::num::NonZeroU16;

use bytestring::ByteString;

use crate::error::DecodeError;

/// The MQTT protocol revision spoken on a connection. Decided by CONNECT; every other packet
/// is decoded and encoded with the version of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name of CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "MQIsdp",
            ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// True for MQTT 5.0, the only version with properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V31 => "3.1",
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        })
    }
}

/// Quality of service of a message or subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The two-bit wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The wire value is not 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid QoS value {0}; expected 0, 1 or 2")]
pub struct InvalidQoS(pub u8);

impl TryFrom<u8> for QoS {
    type Error = InvalidQoS;
    fn try_from(v: u8) -> Result<Self, InvalidQoS> {
        match v {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            other => Err(InvalidQoS(other)),
        }
    }
}

/// A packet identifier: never zero ([MQTT-2.2.1-3]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// Builds a packet id; `None` for zero.
    pub fn new(v: u16) -> Option<Self> {
        NonZeroU16::new(v).map(PacketId)
    }

    /// The wire value.
    pub fn get(self) -> u16 {
        self.0.get()
    }
}

/// A packet identifier of zero, which no packet may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("[MQTT-2.2.1-3] packet identifier must be non-zero")]
pub struct ZeroPacketId;

impl TryFrom<u16> for PacketId {
    type Error = ZeroPacketId;
    fn try_from(v: u16) -> Result<Self, ZeroPacketId> {
        PacketId::new(v).ok_or(ZeroPacketId)
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The QoS of a PUBLISH together with its packet identifier: a QoS 0 PUBLISH cannot carry a
/// packet identifier ([MQTT-2.2.1-2]) and a QoS 1 or 2 PUBLISH always has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosPid {
    /// QoS 0, no packet identifier.
    AtMostOnce,
    /// QoS 1 with its packet identifier.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet identifier.
    ExactlyOnce(PacketId),
}

impl QosPid {
    /// The QoS level.
    pub fn qos(self) -> QoS {
        match self {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
            QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet identifier, if QoS > 0.
    pub fn packet_id(self) -> Option<PacketId> {
        match self {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(p) | QosPid::ExactlyOnce(p) => Some(p),
        }
    }

    /// Combines a QoS with a packet id; `None` if they do not fit together.
    pub fn from_parts(qos: QoS, pid: Option<PacketId>) -> Option<Self> {
        match (qos, pid) {
            (QoS::AtMostOnce, None) => Some(QosPid::AtMostOnce),
            (QoS::AtLeastOnce, Some(p)) => Some(QosPid::AtLeastOnce(p)),
            (QoS::ExactlyOnce, Some(p)) => Some(QosPid::ExactlyOnce(p)),
            _ => None,
        }
    }
}

/// Why a string is not a valid MQTT UTF-8 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StringError {
    /// Longer than the two-byte length prefix can express.
    #[error("string is {0} bytes long; the maximum is 65535")]
    TooLong(usize),
    /// Contains U+0000.
    #[error("[MQTT-1.5.4-2] string contains the null character U+0000")]
    NullCharacter,
}

/// Checks the rules that Rust's `str` does not already guarantee (well-formed UTF-8 without
/// surrogates is guaranteed by `str`).
pub(crate) fn check_mqtt_str(s: &str) -> Result<(), StringError> {
    if s.len() > usize::from(u16::MAX) {
        return Err(StringError::TooLong(s.len()));
    }
    if s.as_bytes().contains(&0) {
        return Err(StringError::NullCharacter);
    }
    Ok(())
}

/// An MQTT UTF-8 encoded string: at most 65535 bytes, no U+0000, no surrogates. Shares its
/// bytes with the packet it was decoded from.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MqttString(ByteString);

impl MqttString {
    /// The empty string.
    pub const fn empty() -> Self {
        MqttString(ByteString::from_static(""))
    }

    /// Builds from a static string; panics at first use if it breaks the rules, so only for
    /// literals known to be valid.
    pub fn from_static(s: &'static str) -> Self {
        check_mqtt_str(s).expect("invariant: static MQTT string literal is valid");
        MqttString(ByteString::from_static(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if zero-length.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The shared byte string.
    pub fn into_inner(self) -> ByteString {
        self.0
    }

    pub(crate) fn from_checked(s: ByteString) -> Self {
        MqttString(s)
    }
}

impl std::ops::Deref for MqttString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;
    fn try_from(s: &str) -> Result<Self, StringError> {
        check_mqtt_str(s)?;
        Ok(MqttString(ByteString::from(s)))
    }
}

impl TryFrom<String> for MqttString {
    type Error = StringError;
    fn try_from(s: String) -> Result<Self, StringError> {
        check_mqtt_str(&s)?;
        Ok(MqttString(ByteString::from(s)))
    }
}

impl TryFrom<ByteString> for MqttString {
    type Error = StringError;
    fn try_from(s: ByteString) -> Result<Self, StringError> {
        check_mqtt_str(&s)?;
        Ok(MqttString(s))
    }
}

impl std::str::FromStr for MqttString {
    type Err = StringError;
    fn from_str(s: &str) -> Result<Self, StringError> {
        MqttString::try_from(s)
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A client identifier as carried by CONNECT: any MQTT string, including the empty one
/// (whether an empty or long id is accepted is the broker's decision, [MQTT-3.1.3-6]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientId(MqttString);

impl ClientId {
    /// The identifier.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// True for the zero-length identifier.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying string.
    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }
}

impl From<MqttString> for ClientId {
    fn from(s: MqttString) -> Self {
        ClientId(s)
    }
}

impl TryFrom<&str> for ClientId {
    type Error = StringError;
    fn try_from(s: &str) -> Result<Self, StringError> {
        MqttString::try_from(s).map(ClientId)
    }
}

impl TryFrom<String> for ClientId {
    type Error = StringError;
    fn try_from(s: String) -> Result<Self, StringError> {
        MqttString::try_from(s).map(ClientId)
    }
}

impl std::str::FromStr for ClientId {
    type Err = StringError;
    fn from_str(s: &str) -> Result<Self, StringError> {
        ClientId::try_from(s)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Maps a string rule violation found while decoding to its decode error.
impl From<StringError> for DecodeError {
    fn from(e: StringError) -> Self {
        match e {
            StringError::TooLong(_) => DecodeError::MalformedLength("string"),
            StringError::NullCharacter => DecodeError::NullCharacter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_from_wire() {
        assert_eq!(QoS::try_from(0), Ok(QoS::AtMostOnce));
        assert_eq!(QoS::try_from(2), Ok(QoS::ExactlyOnce));
        assert_eq!(QoS::try_from(3), Err(InvalidQoS(3)));
    }

    #[test]
    fn packet_id_is_never_zero() {
        assert_eq!(PacketId::try_from(0), Err(ZeroPacketId));
        assert_eq!(PacketId::try_from(7).map(PacketId::get), Ok(7));
    }

    #[test]
    fn qos_pid_pairs() {
        let p = PacketId::new(1);
        assert_eq!(QosPid::from_parts(QoS::AtMostOnce, p), None);
        assert_eq!(QosPid::from_parts(QoS::AtLeastOnce, None), None);
        assert!(QosPid::from_parts(QoS::ExactlyOnce, p).is_some());
    }

    #[test]
    fn mqtt_string_rules() {
        assert!(MqttString::try_from("a\0b").is_err());
        assert!(MqttString::try_from("x".repeat(65_536)).is_err());
        assert!(MqttString::try_from("x".repeat(65_535)).is_ok());
        assert!(MqttString::try_from("\u{feff}bom").is_ok());
    }
}
