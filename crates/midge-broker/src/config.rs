//! Runtime limits and switches of the broker core. Validated values: the server builds this
//! from its config file and flags, after checking them.

use midge_codec::QoS;

/// What happens when a message arrives for a session whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueFullPolicy {
    /// Drop the oldest queued message to make room (telemetry keeps the freshest data).
    #[default]
    DropOldest,
    /// Drop the new message (mosquitto's behaviour).
    DropNewest,
}

/// Limits and feature switches of the broker core. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Largest packet accepted from a client, advertised as Maximum Packet Size. Default 1 MiB.
    pub max_packet_size: u32,
    /// Unacknowledged QoS 1/2 messages the broker sends to one client at a time (capped
    /// further by the client's Receive Maximum). Default 64.
    pub max_inflight: u16,
    /// Receive Maximum advertised to clients: unacknowledged QoS 2 PUBLISH a client may have
    /// towards the broker. Default 64.
    pub receive_maximum: u16,
    /// Messages queued per session beyond the inflight window. Default 1000.
    pub max_queued_messages: usize,
    /// Payload bytes queued per session. Default 16 MiB.
    pub max_queued_bytes: usize,
    /// What to drop when a queue is full. Default drop oldest.
    pub queue_full_policy: QueueFullPolicy,
    /// Queue QoS 0 messages for offline persistent sessions. Default false.
    pub queue_qos0_offline: bool,
    /// Largest keep-alive accepted, in seconds; a 5.0 client asking for more (or for 0) is
    /// told the cap as Server Keep Alive. 0 means no cap. Default 0.
    pub max_keep_alive_secs: u16,
    /// Largest session expiry interval granted, in seconds. Default u32::MAX (never expire).
    pub max_session_expiry_secs: u32,
    /// Largest QoS granted. Default 2.
    pub max_qos: QoS,
    /// Whether retained messages are supported. Default true.
    pub retain_available: bool,
    /// Topic aliases a 5.0 client may use towards the broker. Default 64.
    pub topic_alias_maximum: u16,
    /// Largest client identifier accepted, in bytes. Default 256.
    pub max_client_id_len: usize,
    /// Retained messages kept at most. Default 100,000.
    pub max_retained_messages: usize,
    /// Response Information returned when a 5.0 client requests it: the client's prefix is
    /// this string followed by its client id. Default `midge/response/`.
    pub response_information_prefix: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_packet_size: 1024 * 1024,
            max_inflight: 64,
            receive_maximum: 64,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            queue_full_policy: QueueFullPolicy::DropOldest,
            queue_qos0_offline: false,
            max_keep_alive_secs: 0,
            max_session_expiry_secs: u32::MAX,
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
            topic_alias_maximum: 64,
            max_client_id_len: 256,
            max_retained_messages: 100_000,
            response_information_prefix: "midge/response/".to_owned(),
        }
    }
}

/// Limits that change while the broker runs (reload), read on every use.
#[derive(Debug, Default)]
pub struct LiveLimits {
    /// PUBLISH packets per second per client; 0 = no limit.
    pub publish_rate: std::sync::atomic::AtomicU32,
}
