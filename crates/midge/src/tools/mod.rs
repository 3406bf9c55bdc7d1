//! The client tools `midge pub`, `midge sub` and `midge rr`: mosquitto-compatible flags on top
//! of `midge-client`.
//!
//! Exit codes: 0 success; 1 connection or protocol error (the broker's reason is printed);
//! 2 bad usage; 27 `-W` timeout (as mosquitto_sub).

pub mod format;
pub mod props;
pub mod publish;
pub mod rr;
pub mod subscribe;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use midge_client::{
    ClientError, ClientOptions, FileProblem, TlsFile, TlsOptions, TlsSetupError, Transport,
    DEFAULT_WS_PATH,
};
use midge_codec::{ProtocolVersion, QoS, Will, WillProperties};

/// Exit code for a `-W` timeout.
pub const EXIT_TIMEOUT: i32 = 27;

/// A failure that ends a tool with an exit code and a message.
#[derive(Debug)]
pub struct ToolError {
    /// Process exit code.
    pub code: i32,
    /// What to print on stderr.
    pub message: String,
}

impl ToolError {
    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        ToolError {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<ClientError> for ToolError {
    fn from(e: ClientError) -> Self {
        let message = match &e {
            ClientError::Refused { .. } => format!("Connection error: {e}"),
            ClientError::TlsSetup(s) => return tls_setup_error(s),
            _ => format!("Error: {e}"),
        };
        ToolError { code: 1, message }
    }
}

/// TLS settings errors in the words of the flags (exit 2, like other bad arguments).
fn tls_setup_error(e: &TlsSetupError) -> ToolError {
    let message = match e {
        TlsSetupError::File {
            file,
            path,
            problem,
        } => {
            let flag = match file {
                TlsFile::Ca => "--cafile",
                TlsFile::Cert => "--cert",
                TlsFile::Key => "--key",
            };
            match problem {
                FileProblem::Read(io) => {
                    format!("Error: cannot read {flag} {}: {io}", path.display())
                }
                other => format!("Error: {flag} {}: {other}", path.display()),
            }
        }
        TlsSetupError::NoTrustAnchors => "Error: TLS needs --cafile FILE to verify the broker \
            (no CA store is built in; the system's bundle is often \
            /etc/ssl/certs/ca-certificates.crt), or --insecure to skip verification"
            .to_owned(),
        other => format!("Error: {other}"),
    };
    ToolError::usage(message)
}

/// TLS and WebSocket flags, shared by the client tools and `midge bench` (mosquitto's names
/// where mosquitto has them). TLS is on with an `mqtts://` or `wss://` URL, or with --cafile,
/// --cert or --insecure; WebSocket with a `ws://` or `wss://` URL, or with --ws. Default
/// ports: 1883 (mqtt), 8883 (mqtts), 8080 (ws), 8081 (wss).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransportArgs {
    /// PEM CA certificates to verify the broker with; turns TLS on (default port 8883).
    #[arg(long = "cafile", value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// PEM client certificate for brokers that require one (mutual TLS); needs --key.
    #[arg(long = "cert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long = "key", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Do not verify the broker's host name (with --cafile) or its certificate at all
    /// (without); turns TLS on. For testing only.
    #[arg(long = "insecure")]
    pub insecure: bool,
    /// MQTT over WebSocket (wss with TLS); default port 8080 (8081 with TLS).
    #[arg(long = "ws")]
    pub ws: bool,
    /// HTTP path of the WebSocket endpoint [default: /mqtt].
    #[arg(long = "ws-path", value_name = "PATH")]
    pub ws_path: Option<String>,
}

impl TransportArgs {
    /// The transport and its settings; `scheme` is the transport of a `-L` URL. Warns on
    /// stderr about --insecure.
    pub fn choose(
        &self,
        scheme: Option<Transport>,
    ) -> Result<(Transport, TlsOptions, String), ToolError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(ToolError::usage("--cert needs --key")),
            (None, Some(_)) => return Err(ToolError::usage("--key needs --cert")),
            _ => {}
        }
        let tls = scheme.is_some_and(Transport::is_tls)
            || self.cafile.is_some()
            || self.cert.is_some()
            || self.insecure;
        let ws = scheme.is_some_and(Transport::is_websocket) || self.ws;
        if self.ws_path.is_some() && !ws {
            return Err(ToolError::usage(
                "--ws-path needs --ws or a ws:// or wss:// URL",
            ));
        }
        let transport = if ws { Transport::Ws } else { Transport::Tcp }.with_tls(tls);
        if self.insecure {
            eprintln!(
                "Warning: --insecure: the broker's {} is not verified",
                if self.cafile.is_some() {
                    "host name"
                } else {
                    "certificate"
                }
            );
        }
        let options = TlsOptions {
            ca_file: self.cafile.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            insecure: self.insecure,
        };
        let path = self
            .ws_path
            .clone()
            .unwrap_or_else(|| DEFAULT_WS_PATH.to_owned());
        Ok((transport, options, path))
    }
}

/// Connection flags shared by every tool (mosquitto's names).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    pub host: String,
    /// Broker port [default: 1883; 8883 with TLS; 8080 for --ws, 8081 with TLS].
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// URL: mqtt|mqtts|ws|wss://[user[:password]@]host[:port]/topic (sets the transport,
    /// host, port, credentials and topic).
    #[arg(short = 'L', long = "url")]
    pub url: Option<String>,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// User name.
    #[arg(short = 'u', long = "username")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw")]
    pub password: Option<String>,
    /// Client id (default: the tool name and the process id).
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// Client id prefix; the process id is appended.
    #[arg(short = 'I', long = "id-prefix")]
    pub id_prefix: Option<String>,
    /// Keep-alive in seconds.
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    pub keepalive: u16,
    /// MQTT version: 31, 311 or 5 (also mqttv31, mqttv311, mqttv5).
    #[arg(short = 'V', long = "protocol-version", default_value = "311")]
    pub protocol: String,
    /// QoS 0, 1 or 2.
    #[arg(short = 'q', long = "qos", default_value_t = 0)]
    pub qos: u8,
    /// Print debug messages about the packets sent and received.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Will topic.
    #[arg(long = "will-topic")]
    pub will_topic: Option<String>,
    /// Will payload.
    #[arg(long = "will-payload")]
    pub will_payload: Option<String>,
    /// Will QoS.
    #[arg(long = "will-qos", default_value_t = 0)]
    pub will_qos: u8,
    /// Will retain.
    #[arg(long = "will-retain")]
    pub will_retain: bool,
    /// MQTT 5 property: -D COMMAND NAME VALUE [VALUE], e.g. `-D publish user-property k v`,
    /// `-D connect session-expiry-interval 60`. Repeatable.
    #[arg(short = 'D', long = "property", num_args = 3..=4, value_names = ["COMMAND", "NAME", "VALUE"], action = clap::ArgAction::Append)]
    pub property: Vec<String>,
    /// Session expiry interval in seconds (MQTT 5).
    #[arg(short = 'x', long = "session-expiry-interval")]
    pub session_expiry: Option<u32>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Values parsed from `-L`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Url {
    /// Transport of the scheme.
    pub transport: Transport,
    /// Host.
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Topic (the path without its leading slash).
    pub topic: Option<String>,
}

/// Parses scheme://[user[:password]@]host[:port][/topic] with scheme mqtt, mqtts, ws or wss.
pub fn parse_url(s: &str) -> Result<Url, ToolError> {
    let bad_scheme = || {
        ToolError::usage(format!(
            "-L {s}: the URL must start with mqtt://, mqtts://, ws:// or wss://"
        ))
    };
    let (scheme, rest) = s.split_once("://").ok_or_else(bad_scheme)?;
    let transport = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" => Transport::Tcp,
        "mqtts" => Transport::Tls,
        "ws" => Transport::Ws,
        "wss" => Transport::Wss,
        _ => return Err(bad_scheme()),
    };
    let (authority, topic) = match rest.split_once('/') {
        Some((a, t)) => (a, Some(t.to_owned()).filter(|t| !t.is_empty())),
        None => (rest, None),
    };
    let (creds, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let (user, password) = match creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(c.to_owned()), None),
        },
        None => (None, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p
                .parse()
                .map_err(|_| ToolError::usage(format!("-L {s}: bad port `{p}`")))?;
            (h.to_owned(), Some(port))
        }
        _ => (hostport.to_owned(), None),
    };
    if host.is_empty() {
        return Err(ToolError::usage(format!("-L {s}: missing host")));
    }
    Ok(Url {
        transport,
        host,
        port,
        user,
        password,
        topic,
    })
}

/// Parses `-V`.
pub fn parse_protocol(s: &str) -> Result<ProtocolVersion, ToolError> {
    match s {
        "31" | "mqttv31" => Ok(ProtocolVersion::V31),
        "311" | "mqttv311" => Ok(ProtocolVersion::V311),
        "5" | "mqttv5" => Ok(ProtocolVersion::V5),
        other => Err(ToolError::usage(format!(
            "-V {other}: unknown protocol version; use 31, 311 or 5"
        ))),
    }
}

/// Parses a QoS flag value.
pub fn parse_qos(flag: &str, v: u8) -> Result<QoS, ToolError> {
    QoS::try_from(v).map_err(|_| ToolError::usage(format!("{flag} {v}: QoS must be 0, 1 or 2")))
}

impl ConnArgs {
    /// The QoS flag.
    pub fn qos(&self) -> Result<QoS, ToolError> {
        parse_qos("-q", self.qos)
    }

    /// The protocol flag.
    pub fn protocol(&self) -> Result<ProtocolVersion, ToolError> {
        parse_protocol(&self.protocol)
    }

    /// Builds client options; `tool` names the default client id. Returns the topic from
    /// `-L` if it had one.
    pub fn options(&self, tool: &str) -> Result<(ClientOptions, Option<String>), ToolError> {
        let mut host = self.host.clone();
        let mut port = self.port;
        let mut user = self.username.clone();
        let mut password = self.password.clone();
        let mut url_topic = None;
        let mut scheme = None;
        if let Some(u) = &self.url {
            let url = parse_url(u)?;
            host = url.host;
            port = url.port.or(port);
            user = url.user.or(user);
            password = url.password.or(password);
            url_topic = url.topic;
            scheme = Some(url.transport);
        }
        let (transport, tls, ws_path) = self.transport.choose(scheme)?;
        let port = port.unwrap_or_else(|| transport.default_port());
        let protocol = self.protocol()?;
        let id = match (&self.id, &self.id_prefix) {
            (Some(id), _) => id.clone(),
            (None, Some(prefix)) => format!("{prefix}{}", std::process::id()),
            (None, None) => format!("midge-{tool}-{}", std::process::id()),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut opts = ClientOptions::new(addr, id)
            .transport(transport)
            .tls(tls)
            .ws_path(ws_path)
            .protocol(protocol)
            .keep_alive(Duration::from_secs(u64::from(self.keepalive)));
        opts.username = user;
        opts.password = password.map(Bytes::from);
        opts.session_expiry_secs = self.session_expiry;
        let props = props::parse(&self.property, protocol)?;
        if !props.connect_is_empty() {
            let mut c = props.connect.clone();
            if c.session_expiry_interval.is_some() {
                opts.session_expiry_secs = c.session_expiry_interval.take();
            }
            opts.properties = c;
        }
        if let Some(topic) = &self.will_topic {
            let will_props: WillProperties = props.will.clone();
            opts.will = Some(Will {
                topic: topic
                    .parse()
                    .map_err(|e| ToolError::usage(format!("--will-topic {topic}: {e}")))?,
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default()),
                qos: parse_qos("--will-qos", self.will_qos)?,
                retain: self.will_retain,
                properties: will_props,
            });
        } else if self.will_payload.is_some() {
            return Err(ToolError::usage("--will-payload needs --will-topic"));
        }
        Ok((opts, url_topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let u = parse_url("mqtt://alice:s3cret@example.org:1884/home/light").expect("valid");
        assert_eq!(
            u,
            Url {
                transport: Transport::Tcp,
                host: "example.org".into(),
                port: Some(1884),
                user: Some("alice".into()),
                password: Some("s3cret".into()),
                topic: Some("home/light".into()),
            }
        );
        let u = parse_url("mqtt://localhost").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.port, u.topic),
            ("localhost", None, None)
        );
        assert!(parse_url("http://x").is_err());
        let u = parse_url("wss://u:p@[::1]:8081/a/b").expect("valid");
        assert_eq!(
            (u.transport, u.host.as_str(), u.port, u.topic.as_deref()),
            (Transport::Wss, "[::1]", Some(8081), Some("a/b"))
        );
        assert_eq!(
            parse_url("MQTTS://h").expect("valid").transport,
            Transport::Tls
        );
        assert!(parse_url("mqtt://h:notaport/t").is_err());
    }

    #[test]
    fn tls_and_websocket_flags_choose_the_transport() {
        let flags = |cafile: bool, ws: bool| TransportArgs {
            cafile: cafile.then(|| "ca.pem".into()),
            ws,
            ..TransportArgs::default()
        };
        let t = |a: TransportArgs, scheme| a.choose(scheme).map(|(t, _, _)| t).ok();
        assert_eq!(t(flags(false, false), None), Some(Transport::Tcp));
        assert_eq!(t(flags(true, false), None), Some(Transport::Tls));
        assert_eq!(t(flags(false, true), None), Some(Transport::Ws));
        assert_eq!(t(flags(true, true), None), Some(Transport::Wss));
        assert_eq!(
            t(flags(true, false), Some(Transport::Ws)),
            Some(Transport::Wss)
        );
        assert_eq!(
            t(flags(false, false), Some(Transport::Tls)),
            Some(Transport::Tls)
        );
        let half = TransportArgs {
            cert: Some("c.pem".into()),
            ..TransportArgs::default()
        };
        assert!(half.choose(None).is_err());
        let path_without_ws = TransportArgs {
            ws_path: Some("/x".into()),
            ..TransportArgs::default()
        };
        assert!(path_without_ws.choose(None).is_err());
    }

    #[test]
    fn protocol_names() {
        assert_eq!(parse_protocol("5").ok(), Some(ProtocolVersion::V5));
        assert_eq!(parse_protocol("mqttv311").ok(), Some(ProtocolVersion::V311));
        assert!(parse_protocol("4").is_err());
    }
}
