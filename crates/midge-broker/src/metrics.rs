//! Broker counters, updated with relaxed atomics on the hot path and read by the server for
//! logs, `$SYS` and the metrics endpoint. Counters only grow; gauges say so.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use midge_codec::QoS;

use crate::connection::CloseReason;

/// Why connections ended, as counted (the label values of the metrics endpoint).
pub const DISCONNECT_REASONS: [&str; 9] = [
    "client_disconnect",
    "client_disconnect_with_will",
    "protocol_error",
    "keep_alive_timeout",
    "taken_over",
    "kicked",
    "server_shutdown",
    "connection_lost",
    "other",
];

/// Counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    /// CONNECTs accepted.
    pub connections_total: AtomicU64,
    /// Connected clients (gauge).
    pub clients_connected: AtomicI64,
    /// Most clients connected at once (gauge).
    pub clients_maximum: AtomicI64,
    /// PUBLISH received from clients (and wills published), by QoS; `received()` sums them.
    pub messages_received_qos: [AtomicU64; 3],
    /// PUBLISH sent to clients, by QoS; `sent()` sums them.
    pub messages_sent_qos: [AtomicU64; 3],
    /// Payload bytes of the PUBLISH received.
    pub publish_bytes_received: AtomicU64,
    /// Bytes read from client sockets (every packet).
    pub bytes_received: AtomicU64,
    /// Bytes written to client sockets (every packet).
    pub bytes_sent: AtomicU64,
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
    /// Messages refused because the publisher exceeded its publish rate (0x97).
    pub dropped_quota_exceeded: AtomicU64,
    /// Retained messages refused because the store was full.
    pub retained_dropped_full: AtomicU64,
    /// Times a publisher was paused because a subscriber's queue was full (backpressure).
    pub publishers_paused: AtomicU64,
    /// Sessions removed by expiry.
    pub sessions_expired: AtomicU64,
    /// Connection attempts refused for bad credentials.
    pub auth_failures: AtomicU64,
    /// CONNECTs refused for any reason (credentials included).
    pub connects_refused: AtomicU64,
    /// Publishes and deliveries refused by authorization.
    pub dropped_not_authorized: AtomicU64,
    /// Connections ended, by reason (indexes of `DISCONNECT_REASONS`).
    pub disconnects: [AtomicU64; DISCONNECT_REASONS.len()],
}

impl Metrics {
    /// Counts a PUBLISH received.
    pub fn count_received(&self, qos: QoS, payload_len: usize) {
        self.messages_received_qos[qos as usize].fetch_add(1, Ordering::Relaxed);
        self.publish_bytes_received
            .fetch_add(payload_len as u64, Ordering::Relaxed);
    }

    /// Counts a PUBLISH sent.
    pub fn count_sent(&self, qos: QoS) {
        self.messages_sent_qos[qos as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// PUBLISH received, every QoS.
    pub fn received(&self) -> u64 {
        self.messages_received_qos
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// PUBLISH sent, every QoS.
    pub fn sent(&self) -> u64 {
        self.messages_sent_qos
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts the end of an accepted connection.
    pub fn count_disconnect(&self, reason: &CloseReason) {
        use midge_codec::ReasonCode;
        let i = match reason {
            CloseReason::ClientDisconnect(ReasonCode::Success) => 0,
            CloseReason::ClientDisconnect(_) => 1,
            CloseReason::ProtocolViolation(..) => 2,
            CloseReason::KeepAliveTimeout => 3,
            CloseReason::TakenOver => 4,
            CloseReason::Kicked => 5,
            CloseReason::ServerShutdown => 6,
            CloseReason::ConnectionLost(_) => 7,
            CloseReason::ConnectRefused(_) | CloseReason::ConnectTimeout => 8,
        };
        self.disconnects[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A client attached (`delta` 1) or detached (-1).
    pub(crate) fn connected(&self, delta: i64) {
        let now = self.clients_connected.fetch_add(delta, Ordering::Relaxed) + delta;
        self.clients_maximum.fetch_max(now, Ordering::Relaxed);
    }

    /// Every message dropped, whatever the cause.
    pub fn dropped_total(&self) -> u64 {
        [
            &self.dropped_queue_full,
            &self.dropped_offline_qos0,
            &self.dropped_too_large,
            &self.dropped_expired,
            &self.dropped_quota_exceeded,
            &self.dropped_not_authorized,
            &self.retained_dropped_full,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}
