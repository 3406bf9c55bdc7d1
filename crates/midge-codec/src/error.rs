//! Decode and encode errors. Every decode error names the normative statement (or section)
//! of the MQTT 5.0 specification it breaks (of 3.1.1 for a rule only 3.1.1 has), and
//! `DecodeError::reason_code` is the one place that maps an error to the reason code a 5.0
//! CONNACK or DISCONNECT carries. A 3.x peer has no reason codes: its connection is closed
//! instead ([MQTT-4.8.0-1] in 3.1.1).

use crate::packet::PacketType;
use crate::reason::ReasonCode;
use crate::topic::TopicError;
use crate::types::ProtocolVersion;

/// Why bytes received are not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Packet type 0, or 15 (AUTH) before MQTT 5.0.
    #[error("[MQTT-2.1.2] reserved control packet type {0}")]
    ReservedPacketType(u8),
    /// The flag bits of the fixed header are not those table 2-2 lists.
    #[error("[MQTT-2.1.3-1] invalid fixed header flags 0x{flags:X} for {packet}")]
    InvalidFlags {
        /// The packet.
        packet: PacketType,
        /// The low nibble received.
        flags: u8,
    },
    /// More than four bytes of variable byte integer.
    #[error("[MQTT-1.5.5] variable byte integer longer than four bytes")]
    VariableByteIntegerTooLong,
    /// A variable byte integer not encoded in the minimum number of bytes.
    #[error("[MQTT-1.5.5-1] variable byte integer not encoded in the minimum number of bytes")]
    VariableByteIntegerNotMinimal,
    /// The packet is larger than the receiver's Maximum Packet Size; detected from the fixed
    /// header, before the packet is buffered.
    #[error(
        "[MQTT-3.2.2-15] packet of {size} bytes exceeds the maximum packet size of {max} bytes"
    )]
    PacketTooLarge {
        /// Size of the whole packet in bytes.
        size: u64,
        /// The limit.
        max: u32,
    },
    /// The remaining length ends inside a field.
    #[error("[MQTT-2.1.4] malformed packet: it ends inside the {0}")]
    Truncated(&'static str),
    /// Bytes left over after the last field.
    #[error("[MQTT-2.1.4] malformed packet: {0} has trailing bytes")]
    TrailingBytes(PacketType),
    /// A length field that contradicts the packet.
    #[error("[MQTT-1.5] malformed packet: invalid length of {0}")]
    MalformedLength(&'static str),
    /// Ill-formed UTF-8 or an encoded surrogate.
    #[error("[MQTT-1.5.4-1] {0} is not well-formed UTF-8")]
    InvalidUtf8(&'static str),
    /// U+0000 in a UTF-8 string.
    #[error("[MQTT-1.5.4-2] UTF-8 string contains U+0000")]
    NullCharacter,
    /// Protocol name neither `MQTT` nor `MQIsdp`, or not matching the level.
    #[error("[MQTT-3.1.2-1] unsupported protocol name {0:?}")]
    InvalidProtocolName(String),
    /// A protocol level this codec does not speak.
    #[error("[MQTT-3.1.2-2] unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// The reserved bit of the CONNECT flags is set.
    #[error("[MQTT-3.1.2-3] reserved CONNECT flag bit 0 is set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag.
    #[error(
        "[MQTT-3.1.2-11] [MQTT-3.1.2-13] will QoS and will retain must be 0 when the will flag is 0"
    )]
    WillFlagsWithoutWill,
    /// Will QoS 3.
    #[error("[MQTT-3.1.2-12] will QoS must be 0, 1 or 2")]
    InvalidWillQoS,
    /// 3.1.1: Password Flag set without the User Name Flag (allowed in 5.0).
    #[error("MQTT 3.1.1 [MQTT-3.1.2-22] password flag set without the user name flag")]
    PasswordWithoutUsername,
    /// Authentication Data without an Authentication Method.
    #[error("[MQTT-3.1.2.11.10] authentication data without an authentication method")]
    AuthDataWithoutMethod,
    /// The reserved CONNACK acknowledge flag bits are set.
    #[error("[MQTT-3.2.2-1] reserved CONNACK flag bits are set")]
    ConnAckReservedFlags,
    /// PUBLISH with both QoS bits set.
    #[error("[MQTT-3.3.1-4] PUBLISH with QoS 3")]
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH.
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupAtQoS0,
    /// A packet identifier of zero.
    #[error("[MQTT-2.2.1-3] packet identifier must be non-zero")]
    ZeroPacketId,
    /// The PUBLISH topic name or the will topic is invalid (wildcards, empty).
    #[error("invalid topic name: {0}")]
    TopicName(TopicError),
    /// 5.0: a zero-length topic name without a Topic Alias.
    #[error("[MQTT-3.3.2.1] PUBLISH with a zero-length topic name and no topic alias")]
    EmptyTopicWithoutAlias,
    /// Topic Alias 0.
    #[error("[MQTT-3.3.2-8] topic alias 0 is not permitted")]
    TopicAliasZero,
    /// An identifier that is not a known property.
    #[error("[MQTT-2.2.2.2] unknown property identifier 0x{0:02X}")]
    UnknownProperty(u32),
    /// A known property that this packet may not carry.
    #[error("[MQTT-2.2.2.2] property 0x{id:02X} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet.
        packet: &'static str,
    },
    /// A property that may appear once appears again.
    #[error("[MQTT-2.2.2] property 0x{0:02X} included more than once")]
    DuplicateProperty(u8),
    /// A property value the specification forbids (0 for Receive Maximum, 2 for a flag, ...).
    #[error("[MQTT-2.2.2] invalid value of property 0x{0:02X}")]
    InvalidPropertyValue(u8),
    /// A reason code not in the packet's table.
    #[error("[MQTT-2.4] reason code 0x{code:02X} is not valid in {packet}")]
    InvalidReasonCode {
        /// The packet.
        packet: PacketType,
        /// The byte received.
        code: u8,
    },
    /// SUBSCRIBE or UNSUBSCRIBE without a topic filter.
    #[error("[{}] {} must contain at least one topic filter", no_filters_statement(.0), .0)]
    NoTopicFilters(PacketType),
    /// Reserved bits of the subscription options are set.
    #[error("[MQTT-3.8.3-5] reserved bits of the subscription options are set")]
    SubscriptionOptionsReserved,
    /// Subscription QoS 3.
    #[error("[MQTT-3.8.3.1] subscription QoS must be 0, 1 or 2")]
    InvalidSubscriptionQoS,
    /// Retain Handling 3.
    #[error("[MQTT-3.8.3.1] retain handling 3 is a protocol error")]
    InvalidRetainHandling,
    /// No Local on a shared subscription.
    #[error("[MQTT-3.8.3-4] no local must not be set on a shared subscription")]
    NoLocalOnSharedSubscription,
}

impl DecodeError {
    /// The reason code a 5.0 CONNACK (for CONNECT) or DISCONNECT carries for this error. This
    /// is the only mapping from decode errors to reason codes.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnsupportedProtocolVersion(_) | InvalidProtocolName(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            TopicName(TopicError::WildcardInName) => ReasonCode::TopicNameInvalid,
            TopicAliasZero => ReasonCode::TopicAliasInvalid,
            EmptyTopicWithoutAlias
            | TopicName(_)
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod
            | InvalidReasonCode { .. }
            | NoTopicFilters(_)
            | InvalidSubscriptionQoS
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription => ReasonCode::ProtocolError,
            ReservedPacketType(_)
            | InvalidFlags { .. }
            | VariableByteIntegerTooLong
            | VariableByteIntegerNotMinimal
            | Truncated(_)
            | TrailingBytes(_)
            | MalformedLength(_)
            | InvalidUtf8(_)
            | NullCharacter
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | InvalidWillQoS
            | PasswordWithoutUsername
            | ConnAckReservedFlags
            | InvalidQoS
            | DupAtQoS0
            | ZeroPacketId
            | UnknownProperty(_)
            | PropertyNotAllowed { .. }
            | SubscriptionOptionsReserved => ReasonCode::MalformedPacket,
        }
    }

    /// What to send before closing: a reason code for 5.0, nothing for 3.x (whose
    /// specification says to close the network connection).
    pub fn disconnect_reason(&self, version: ProtocolVersion) -> Option<ReasonCode> {
        version.is_v5().then(|| self.reason_code())
    }
}

/// The statement requiring a topic filter in SUBSCRIBE or UNSUBSCRIBE.
fn no_filters_statement(packet: &PacketType) -> &'static str {
    match packet {
        PacketType::Unsubscribe => "MQTT-3.10.3-2",
        _ => "MQTT-3.8.3-2",
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The packet does not exist in this protocol version (AUTH before 5.0).
    #[error("{packet} does not exist in MQTT {version}")]
    NotInVersion {
        /// The packet.
        packet: PacketType,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// Binary data (payload of a will, password, property) longer than 65535 bytes.
    #[error("binary field {field} is longer than 65535 bytes")]
    BinaryTooLong {
        /// Which field.
        field: &'static str,
    },
    /// The remaining length would exceed 268,435,455 bytes.
    #[error("packet remaining length {0} exceeds 268435455 bytes")]
    PacketTooLarge(usize),
    /// SUBSCRIBE or UNSUBSCRIBE with no filters ([MQTT-3.8.3-2], [MQTT-3.10.3-2]).
    #[error("{0} must contain at least one topic filter")]
    NoTopicFilters(PacketType),
    /// A reason code the packet cannot carry in this version.
    #[error("reason code {code} cannot be sent in {packet}")]
    InvalidReasonCode {
        /// The packet.
        packet: PacketType,
        /// The code.
        code: ReasonCode,
    },
    /// A PUBLISH without a topic name needs a topic alias, and 3.x has none.
    #[error("PUBLISH without a topic name needs MQTT 5.0 and a topic alias")]
    MissingTopic,
}

impl EncodeError {
    pub(crate) fn binary_property(id: u8) -> Self {
        EncodeError::BinaryTooLong {
            field: match id {
                crate::properties::id::CORRELATION_DATA => "correlation data",
                _ => "authentication data",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_names_a_statement_or_section() {
        let samples = [
            DecodeError::ReservedPacketType(0),
            DecodeError::VariableByteIntegerNotMinimal,
            DecodeError::PacketTooLarge { size: 10, max: 5 },
            DecodeError::InvalidUtf8("topic"),
            DecodeError::NullCharacter,
            DecodeError::InvalidQoS,
            DecodeError::TopicName(TopicError::WildcardInName),
            DecodeError::NoTopicFilters(PacketType::Subscribe),
        ];
        for e in samples {
            assert!(e.to_string().contains("[MQTT-"), "{e}");
        }
        let unsubscribe = DecodeError::NoTopicFilters(PacketType::Unsubscribe).to_string();
        assert!(unsubscribe.starts_with("[MQTT-3.10.3-2] "), "{unsubscribe}");
    }

    #[test]
    fn mapping_to_reason_codes() {
        assert_eq!(
            DecodeError::PacketTooLarge { size: 1, max: 0 }.reason_code(),
            ReasonCode::PacketTooLarge
        );
        assert_eq!(
            DecodeError::TopicName(TopicError::WildcardInName).reason_code(),
            ReasonCode::TopicNameInvalid
        );
        assert_eq!(
            DecodeError::InvalidQoS.reason_code(),
            ReasonCode::MalformedPacket
        );
        assert_eq!(
            DecodeError::DuplicateProperty(1).reason_code(),
            ReasonCode::ProtocolError
        );
        // 5.0 section 3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3".
        assert_eq!(
            DecodeError::InvalidSubscriptionQoS.reason_code(),
            ReasonCode::ProtocolError
        );
        assert_eq!(
            DecodeError::NullCharacter.disconnect_reason(ProtocolVersion::V311),
            None
        );
    }
}
