//! Client errors.

use midge_codec::{DecodeError, EncodeError, ReasonCode, StringError, TopicError};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network error.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The broker refused the connection.
    #[error("connection refused by the broker: {code}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Refused {
        /// CONNACK reason code (3.x return codes are mapped to their 5.0 equivalents).
        code: ReasonCode,
        /// Reason String sent by a 5.0 broker.
        reason: Option<String>,
    },
    /// The broker sent something that is not valid MQTT.
    #[error("the broker sent an invalid packet: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded.
    #[error("cannot encode packet: {0}")]
    Encode(#[from] EncodeError),
    /// The broker broke the protocol.
    #[error("protocol error from the broker: {0}")]
    Protocol(String),
    /// A timeout passed.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The broker closed the connection (with DISCONNECT and its reason code in 5.0).
    #[error("disconnected by the broker{}", code.map(|c| format!(": {c}")).unwrap_or_default())]
    Disconnected {
        /// DISCONNECT reason code (5.0).
        code: Option<ReasonCode>,
        /// Reason String.
        reason: Option<String>,
    },
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// A topic or filter given to the client is invalid.
    #[error("invalid topic: {0}")]
    Topic(#[from] TopicError),
    /// A string given to the client is invalid.
    #[error("invalid string: {0}")]
    String(#[from] StringError),
}
