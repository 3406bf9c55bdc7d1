//! Broker counters, updated with relaxed atomics on the hot path and read by the server for
//! logs, `$SYS` and metrics endpoints.

use std::sync::atomic::AtomicU64;

/// Counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    /// CONNECTs accepted.
    pub connections_total: AtomicU64,
    /// PUBLISH received from clients (and wills published).
    pub messages_received: AtomicU64,
    /// PUBLISH sent to clients.
    pub messages_sent: AtomicU64,
    /// Messages that matched no subscription.
    pub messages_unrouted: AtomicU64,
    /// Messages dropped because a session queue was full.
    pub dropped_queue_full: AtomicU64,
    /// QoS 0 messages not queued for offline sessions.
    pub dropped_offline_qos0: AtomicU64,
    /// Messages not sent because they exceed the client's Maximum Packet Size.
    pub dropped_too_large: AtomicU64,
    /// Messages that expired before they could be sent.
    pub dropped_expired: AtomicU64,
    /// Retained messages refused because the store was full.
    pub retained_dropped_full: AtomicU64,
    /// Times a publisher was paused because a subscriber's queue was full (backpressure).
    pub publishers_paused: AtomicU64,
    /// Sessions removed by expiry.
    pub sessions_expired: AtomicU64,
    /// Connection attempts refused for bad credentials.
    pub auth_failures: AtomicU64,
    /// Publishes and deliveries refused by authorization.
    pub dropped_not_authorized: AtomicU64,
}
