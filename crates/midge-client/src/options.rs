//! Connection options of the client: where the broker is, over which transport, and the
//! CONNECT fields.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use midge_codec::{ConnectProperties, ProtocolVersion, Will};

use crate::error::ClientError;

/// How the bytes reach the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// MQTT over TCP: `mqtt://`, default port 1883.
    #[default]
    Tcp,
    /// MQTT over TLS: `mqtts://`, default port 8883.
    Tls,
    /// MQTT over WebSocket (binary frames, subprotocol `mqtt`): `ws://`, default port 8080.
    Ws,
    /// MQTT over WebSocket over TLS: `wss://`, default port 8081.
    Wss,
}

impl Transport {
    /// The transport of a URL scheme (`mqtt`, `tcp`, `mqtts`, `ssl`, `tls`, `ws`, `wss`).
    pub fn from_scheme(scheme: &str) -> Option<Transport> {
        match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Some(Transport::Tcp),
            "mqtts" | "ssl" | "tls" => Some(Transport::Tls),
            "ws" => Some(Transport::Ws),
            "wss" => Some(Transport::Wss),
            _ => None,
        }
    }

    /// The URL scheme: `mqtt`, `mqtts`, `ws` or `wss`.
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Tcp => "mqtt",
            Transport::Tls => "mqtts",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// The port used when the address names none: 1883, 8883, 8080 and 8081 (the ports of
    /// mosquitto's public test broker).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tcp => 1883,
            Transport::Tls => 8883,
            Transport::Ws => 8080,
            Transport::Wss => 8081,
        }
    }

    /// Whether the transport runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether the transport is WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The same transport with TLS on or off.
    pub fn with_tls(self, tls: bool) -> Transport {
        match (self.is_websocket(), tls) {
            (false, false) => Transport::Tcp,
            (false, true) => Transport::Tls,
            (true, false) => Transport::Ws,
            (true, true) => Transport::Wss,
        }
    }
}

/// TLS settings, used when the transport is `Tls` or `Wss`. The files are read when the
/// client connects. There is no built-in set of public CAs: give `ca_file` (a system bundle
/// such as `/etc/ssl/certs/ca-certificates.crt` works) or set `insecure`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM CA certificates the broker's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for brokers that ask for one (mutual TLS); needs
    /// `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Do not verify the broker: with `ca_file`, the chain is still verified but not the
    /// host name (as mosquitto's `--insecure`); without it, nothing is. Testing only.
    pub insecure: bool,
}

/// How to connect. `ClientOptions::new("127.0.0.1:1883", "my-id")` gives MQTT 3.1.1 over
/// TCP, clean session, keep-alive 60 s, no automatic reconnect;
/// `ClientOptions::from_url("wss://broker.example/mqtt", "my-id")` picks the transport too.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` of the broker (`[v6addr]:port` for IPv6). Without a port, the default
    /// port of the transport.
    pub addr: String,
    /// Transport. Default TCP.
    pub transport: Transport,
    /// HTTP path of the WebSocket endpoint. Default `/mqtt`.
    pub ws_path: String,
    /// TLS settings for `Tls` and `Wss`.
    pub tls: TlsOptions,
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
    /// Time allowed for connecting (TCP, TLS and WebSocket handshakes) plus CONNACK.
    /// Default 10 s.
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
    /// Options with the defaults above, over TCP to `addr` (`host:port`).
    pub fn new(addr: impl Into<String>, client_id: impl Into<String>) -> Self {
        ClientOptions {
            addr: addr.into(),
            transport: Transport::Tcp,
            ws_path: DEFAULT_WS_PATH.to_owned(),
            tls: TlsOptions::default(),
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

    /// Options for a broker URL: `scheme://[user[:password]@]host[:port][/path]` with scheme
    /// `mqtt`, `mqtts`, `ws` or `wss` (see [`Transport`] for the default ports). The path is
    /// the WebSocket path (default `/mqtt`) and only allowed for `ws` and `wss`.
    pub fn from_url(url: &str, client_id: impl Into<String>) -> Result<Self, ClientError> {
        let bad = |problem| ClientError::Address {
            addr: url.to_owned(),
            problem,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(bad("not a URL: scheme://host[:port]"))?;
        let transport = Transport::from_scheme(scheme)
            .ok_or(bad("unknown scheme; use mqtt, mqtts, ws or wss"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (creds, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (host, _) = split_host_port(hostport).map_err(&bad)?;
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let mut opts = ClientOptions::new(hostport, client_id).transport(transport);
        if let Some(c) = creds {
            let (user, password) = c.split_once(':').unwrap_or((c, ""));
            opts.username = Some(user.to_owned());
            opts.password = c.contains(':').then(|| Bytes::from(password.to_owned()));
        }
        if !path.is_empty() && path != "/" {
            if !transport.is_websocket() {
                return Err(bad("a path is only meaningful for ws:// and wss://"));
            }
            opts.ws_path = path.to_owned();
        }
        Ok(opts)
    }

    /// Sets the transport.
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// Sets the TLS settings (used by `Tls` and `Wss`).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the WebSocket path.
    pub fn ws_path(mut self, path: impl Into<String>) -> Self {
        self.ws_path = path.into();
        self
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

/// Default HTTP path of MQTT over WebSocket.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// Splits `host[:port]`, `[v6]:port` or a bare IPv6 address into the host (without
/// brackets) and the port, if any.
pub(crate) fn split_host_port(addr: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("missing `]` after an IPv6 address")?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("expected `:port` after `]`")?),
            ),
        }
    } else {
        match addr.rsplit_once(':') {
            // More than one colon without brackets: a bare IPv6 address.
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (addr, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| "the port is not a number from 0 to 65535")
        })
        .transpose()?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_forms() {
        assert_eq!(split_host_port("h:1"), Ok(("h", Some(1))));
        assert_eq!(split_host_port("h"), Ok(("h", None)));
        assert_eq!(split_host_port("[::1]:8883"), Ok(("::1", Some(8883))));
        assert_eq!(split_host_port("[::1]"), Ok(("::1", None)));
        assert_eq!(split_host_port("::1"), Ok(("::1", None)));
        assert!(split_host_port("h:x").is_err());
        assert!(split_host_port("[::1").is_err());
    }

    #[test]
    fn urls_choose_the_transport() {
        let o = ClientOptions::from_url("wss://u:p@example.org/ws", "id").expect("valid");
        assert_eq!(o.transport, Transport::Wss);
        assert_eq!(o.addr, "example.org");
        assert_eq!(o.ws_path, "/ws");
        assert_eq!(o.username.as_deref(), Some("u"));
        assert_eq!(o.password, Some(Bytes::from("p")));
        let o = ClientOptions::from_url("mqtts://[::1]:8884", "id").expect("valid");
        assert_eq!(
            (o.transport, o.addr.as_str()),
            (Transport::Tls, "[::1]:8884")
        );
        let o = ClientOptions::from_url("ws://h:9001", "id").expect("valid");
        assert_eq!(o.ws_path, DEFAULT_WS_PATH);
        assert!(ClientOptions::from_url("mqtt://h/topic", "id").is_err());
        assert!(ClientOptions::from_url("http://h", "id").is_err());
        assert!(ClientOptions::from_url("h:1883", "id").is_err());
    }
}
