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

use std::time::Duration;

use bytes::Bytes;
use midge_client::{ClientError, ClientOptions};
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
            _ => format!("Error: {e}"),
        };
        ToolError { code: 1, message }
    }
}

/// Connection flags shared by every tool (mosquitto's names).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long = "port", default_value_t = 1883)]
    pub port: u16,
    /// URL: mqtt://[user[:password]@]host[:port]/topic (sets host, port, credentials, topic).
    #[arg(short = 'L', long = "url")]
    pub url: Option<String>,
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

/// Parses mqtt://[user[:password]@]host[:port][/topic].
pub fn parse_url(s: &str) -> Result<Url, ToolError> {
    let rest = s
        .strip_prefix("mqtt://")
        .ok_or_else(|| ToolError::usage(format!("-L {s}: only mqtt:// URLs are supported")))?;
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
        if let Some(u) = &self.url {
            let url = parse_url(u)?;
            host = url.host;
            port = url.port.unwrap_or(port);
            user = url.user.or(user);
            password = url.password.or(password);
            url_topic = url.topic;
        }
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
        assert!(parse_url("mqtt://h:notaport/t").is_err());
    }

    #[test]
    fn protocol_names() {
        assert_eq!(parse_protocol("5").ok(), Some(ProtocolVersion::V5));
        assert_eq!(parse_protocol("mqttv311").ok(), Some(ProtocolVersion::V311));
        assert!(parse_protocol("4").is_err());
    }
}
