//! The MQTT codec of midge: every control packet of MQTT 3.1, 3.1.1 and 5.0 as typed values,
//! with a strict sans-IO decoder and an encoder.
//!
//! - [`decode`] takes bytes from a `BytesMut` and returns `Ok(None)` until a whole packet is
//!   there; it never copies payloads and rejects everything the specification calls
//!   malformed or a protocol error with a [`DecodeError`] that names the normative statement
//!   and maps to a [`ReasonCode`] in one place ([`DecodeError::reason_code`]).
//! - [`encode`] writes a packet; [`encoded_len`] tells its size without writing it;
//!   [`encode_publish_header`] writes a PUBLISH without its payload so that one payload can
//!   be shared by many subscribers.
//! - Validated newtypes ([`TopicName`], [`TopicFilter`], [`ClientId`], [`PacketId`], [`QoS`],
//!   [`MqttString`]) can only be built through `TryFrom`/`FromStr`; topic matching is
//!   [`TopicFilter::matches`].
//!
//! No I/O, no clock, no async runtime.
//!
//! ```
//! use bytes::BytesMut;
//! use midge_codec::*;
//!
//! let publish = Publish {
//!     dup: false,
//!     qos: QosPid::AtLeastOnce(PacketId::new(7).unwrap()),
//!     retain: false,
//!     topic: Some("home/bedroom/light".parse().unwrap()),
//!     properties: PublishProperties::default(),
//!     payload: bytes::Bytes::from_static(b"on"),
//! };
//! let mut buf = BytesMut::new();
//! encode(&Packet::Publish(publish.clone()), ProtocolVersion::V311, &mut buf).unwrap();
//! let decoded = decode(&mut buf, ProtocolVersion::V311, &DecodeLimits::default()).unwrap();
//! assert_eq!(decoded, Some(Packet::Publish(publish)));
//! ```

#![warn(missing_docs)]

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod reason;
mod topic;
mod types;
mod wire;

pub use decode::{decode, DecodeLimits};
pub use encode::{encode, encode_publish_header, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, FilterEntry, Packet, PacketType, PubAck, Publish,
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
    Will,
};
pub use properties::{
    id as property_id, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, ReasonProperties, SubscribeProperties, SubscriptionId,
    UnsubscribeProperties, UserProperty, WillProperties,
};
pub use reason::{ReasonCode, ReasonPacket};
pub use topic::{matches, TopicError, TopicFilter, TopicName};
pub use types::{
    ClientId, InvalidQoS, MqttString, PacketId, ProtocolVersion, QoS, QosPid, StringError,
    ZeroPacketId,
};
pub use wire::MAX_VARIABLE_BYTE_INTEGER;
