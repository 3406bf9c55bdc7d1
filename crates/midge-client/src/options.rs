//! Connection options of the client.

use std::time::Duration;

use bytes::Bytes;
use midge_codec::{ConnectProperties, ProtocolVersion, Will};

/// How to connect. `ClientOptions::new("127.0.0.1:1883", "my-id")` gives MQTT 3.1.1, clean
/// session, keep-alive 60 s, no automatic reconnect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` of the broker.
    pub addr: String,
    /// Client identifier; empty asks the broker to assign one (5.0, or 3.1.1 with clean
    /// session).
    pub client_id: String,
    /// Protocol version. Default 3.1.1.
    pub protocol: ProtocolVersion,
    /// Keep-alive; zero turns it off. Default 60 s.
    pub keep_alive: Duration,
    /// Clean Session (3.x) / Clean Start (5.0) of the first connection. Reconnects always
    /// resume the session. Default true.
    pub clean_start: bool,
    /// 5.0 Session Expiry Interval in seconds. Default none (0).
    pub session_expiry_secs: Option<u32>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Will message.
    pub will: Option<Will>,
    /// Time allowed for TCP connect plus CONNACK. Default 10 s.
    pub connect_timeout: Duration,
    /// Reconnect automatically (with backoff, resuming the session) when the connection is
    /// lost. Default false.
    pub reconnect: bool,
    /// Outgoing QoS 1/2 messages in flight at once (also capped by the broker's Receive
    /// Maximum). Default 64.
    pub max_inflight: u16,
    /// Received messages buffered before the client stops reading from the socket. Default
    /// 1024.
    pub event_capacity: usize,
    /// Further 5.0 CONNECT properties (Receive Maximum, Maximum Packet Size, user
    /// properties, Request Response Information, ...). Session expiry is taken from
    /// `session_expiry_secs`.
    pub properties: ConnectProperties,
}

impl ClientOptions {
    /// Options with the defaults above.
    pub fn new(addr: impl Into<String>, client_id: impl Into<String>) -> Self {
        ClientOptions {
            addr: addr.into(),
            client_id: client_id.into(),
            protocol: ProtocolVersion::V311,
            keep_alive: Duration::from_secs(60),
            clean_start: true,
            session_expiry_secs: None,
            username: None,
            password: None,
            will: None,
            connect_timeout: Duration::from_secs(10),
            reconnect: false,
            max_inflight: 64,
            event_capacity: 1024,
            properties: ConnectProperties::default(),
        }
    }

    /// Sets the protocol version.
    pub fn protocol(mut self, v: ProtocolVersion) -> Self {
        self.protocol = v;
        self
    }

    /// Sets clean start.
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    /// Sets the keep-alive.
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }

    /// Sets the 5.0 session expiry interval.
    pub fn session_expiry(mut self, secs: u32) -> Self {
        self.session_expiry_secs = Some(secs);
        self
    }

    /// Sets user name and password.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.username = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Sets the will.
    pub fn will(mut self, will: Will) -> Self {
        self.will = Some(will);
        self
    }

    /// Turns automatic reconnect on or off.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = on;
        self
    }
}
