//! The fifteen MQTT control packets as typed values. One set of types serves MQTT 3.1, 3.1.1
//! and 5.0: the protocol version is data (on `Connect`, or passed to `decode`/`encode`), and
//! the 5.0-only fields (properties, most reason codes) are empty or `Success` for 3.x.

use std::fmt;

use bytes::Bytes;

use crate::properties::{
    AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties, PublishProperties,
    ReasonProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
use crate::reason::ReasonCode;
use crate::topic::{TopicError, TopicFilter, TopicName};
use crate::types::{ClientId, MqttString, PacketId, ProtocolVersion, QoS, QosPid};

/// Control packet type numbers (the high nibble of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The packet's name as the specification writes it.
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubAck),
    PubRel(PubAck),
    PubComp(PubAck),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT (section 3.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep-alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// 5.0 properties; empty for 3.x.
    pub properties: ConnectProperties,
    /// The client identifier, possibly empty.
    pub client_id: ClientId,
    /// The will message, if the Will Flag is set.
    pub will: Option<Will>,
    /// User name, if the User Name Flag is set.
    pub username: Option<MqttString>,
    /// Password, if the Password Flag is set (binary data).
    pub password: Option<Bytes>,
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("properties", &self.properties)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The will message of CONNECT (section 3.1.3.2 to 3.1.3.4).
#[derive(Clone, PartialEq, Eq)]
pub struct Will {
    /// Where the will is published.
    pub topic: TopicName,
    /// Will payload (binary data, at most 65535 bytes).
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// 5.0 will properties; empty for 3.x.
    pub properties: WillProperties,
}

impl fmt::Debug for Will {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Will")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("properties", &self.properties)
            .finish()
    }
}

/// CONNACK (section 3.2). In 3.x the reason code is carried as a return code 0 to 5, see
/// `ReasonCode::to_v3_connack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// Connect reason code.
    pub code: ReasonCode,
    /// 5.0 properties; empty for 3.x.
    pub properties: ConnAckProperties,
}

/// PUBLISH (section 3.3).
#[derive(Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag; always false at QoS 0 ([MQTT-3.3.1-2]).
    pub dup: bool,
    /// QoS with the packet identifier it needs.
    pub qos: QosPid,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name. `None` only in 5.0 when a Topic Alias stands for the topic (a zero-length
    /// topic name on the wire).
    pub topic: Option<TopicName>,
    /// 5.0 properties; empty for 3.x.
    pub properties: PublishProperties,
    /// The application message, shared, never copied.
    pub payload: Bytes,
}

impl fmt::Debug for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("properties", &self.properties)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4 to 3.7): a packet id, and in 5.0 a
/// reason code and properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    /// The packet identifier being acknowledged.
    pub packet_id: PacketId,
    /// Reason code; always `Success` in 3.x.
    pub code: ReasonCode,
    /// 5.0 properties.
    pub properties: ReasonProperties,
}

impl PubAck {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        PubAck {
            packet_id,
            code: ReasonCode::Success,
            properties: ReasonProperties::default(),
        }
    }
}

/// Retain handling option of a subscription (MQTT 5.0 section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send retained messages only if the subscription did not exist.
    SendIfNew = 1,
    /// Do not send retained messages.
    DoNotSend = 2,
}

/// Subscription options (MQTT 5.0 section 3.8.3.1; only `qos` exists in 3.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// Do not deliver messages published by this same client id.
    pub no_local: bool,
    /// Keep the RETAIN flag as published when forwarding.
    pub retain_as_published: bool,
    /// When to send retained messages.
    pub retain_handling: RetainHandling,
}

/// A topic filter as received in SUBSCRIBE or UNSUBSCRIBE. A filter that is valid UTF-8 but
/// breaks the wildcard or share-name rules does not make the packet malformed: the broker
/// answers it with a failure code (0x80 / 0x8F) and keeps the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterEntry {
    /// A valid topic filter.
    Valid(TopicFilter),
    /// An invalid filter, kept as received, with the rule it breaks.
    Invalid(MqttString, TopicError),
}

impl FilterEntry {
    /// The filter as received.
    pub fn as_str(&self) -> &str {
        match self {
            FilterEntry::Valid(f) => f.as_str(),
            FilterEntry::Invalid(s, _) => s.as_str(),
        }
    }

    /// Classifies a received string.
    pub fn parse(s: MqttString) -> Self {
        match TopicFilter::from_mqtt_str(s.clone()) {
            Ok(f) => FilterEntry::Valid(f),
            Err(e) => FilterEntry::Invalid(s, e),
        }
    }
}

impl From<TopicFilter> for FilterEntry {
    fn from(f: TopicFilter) -> Self {
        FilterEntry::Valid(f)
    }
}

/// One filter of SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter.
    pub filter: FilterEntry,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (section 3.8). Never empty ([MQTT-3.8.3-2]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// 5.0 properties.
    pub properties: SubscribeProperties,
    /// The subscriptions requested, at least one.
    pub subscriptions: Vec<Subscription>,
}

/// SUBACK (section 3.9): one reason code per requested filter. In 3.x the codes are
/// `Success`/`GrantedQoS1`/`GrantedQoS2` or any failure (sent as 0x80).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// 5.0 properties.
    pub properties: ReasonProperties,
    /// One code per filter, in order.
    pub codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE (section 3.10). Never empty ([MQTT-3.10.3-2]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// 5.0 properties.
    pub properties: UnsubscribeProperties,
    /// The filters, at least one.
    pub filters: Vec<FilterEntry>,
}

/// UNSUBACK (section 3.11). In 3.x it carries no codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// 5.0 properties.
    pub properties: ReasonProperties,
    /// 5.0: one code per filter; empty in 3.x.
    pub codes: Vec<ReasonCode>,
}

/// DISCONNECT (section 3.14). In 3.x it carries nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code; `Success` is "Normal disconnection".
    pub code: ReasonCode,
    /// 5.0 properties.
    pub properties: DisconnectProperties,
}

/// AUTH (section 3.15), MQTT 5.0 only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// `Success`, `ContinueAuthentication` or `ReAuthenticate`.
    pub code: ReasonCode,
    /// Properties.
    pub properties: AuthProperties,
}
