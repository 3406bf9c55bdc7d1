//! Server configuration in two layers: `FileConfig` is the TOML file shape (serde, defaults,
//! units in key names), `ServerConfig` the validated runtime form. A bad value is reported
//! with the file, the key and how to fix it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use midge_broker::{BrokerConfig, QueueFullPolicy};
use midge_codec::{DecodeLimits, QoS};

use crate::auth::AuthSettings;
use crate::transport::tls::TlsSettings;
use serde::{Deserialize, Serialize};

/// The default listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value is out of range.
    #[error("{origin}: key `{key}`: {problem}; {fix}")]
    Invalid {
        /// The file or "command line".
        origin: String,
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: &'static str,
    },
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// MQTT over TCP (default).
    #[default]
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    /// Whether the listener needs a certificate and key.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Mqtts | ListenerKind::Wss)
    }

    /// Whether the listener speaks WebSocket.
    pub fn is_ws(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }

    /// The URL scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerKind::Mqtt => "mqtt",
            ListenerKind::Mqtts => "mqtts",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

/// One `[[listener]]` table.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// Address and port, e.g. `0.0.0.0:1883`; port 0 picks a free port.
    pub bind: String,
    /// `mqtt` (default), `mqtts`, `ws` or `wss`.
    #[serde(default)]
    pub kind: ListenerKind,
    /// WebSocket path (`ws`, `wss`). Default `/mqtt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// PEM certificate chain (`mqtts`, `wss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key (`mqtts`, `wss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates to verify client certificates against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Refuse TLS clients without a valid certificate. Default false.
    #[serde(default)]
    pub require_certificate: bool,
    /// Use the client certificate's CN (else first SAN) as the username. Default false.
    #[serde(default)]
    pub use_identity_as_username: bool,
    /// Accept clients without credentials. Default: true on loopback addresses without a
    /// password file, otherwise false; a non-loopback listener without any authentication
    /// must set it explicitly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Password file (`user:hash` lines; mosquitto_passwd hashes are read too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// ACL file in mosquitto's `acl_file` format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<PathBuf>,
    /// Connections at once on this listener (default: only the global
    /// `limits.max_connections` applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

/// A validated listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address to bind.
    pub addr: SocketAddr,
    /// What it speaks.
    pub kind: ListenerKind,
    /// WebSocket path.
    pub ws_path: String,
    /// TLS files, for `mqtts` and `wss`.
    pub tls: Option<TlsSettings>,
    /// Whether clients without credentials are accepted.
    pub allow_anonymous: bool,
    /// Password file.
    pub password_file: Option<PathBuf>,
    /// ACL file.
    pub acl_file: Option<PathBuf>,
    /// Connections at once on this listener (`None`: only the global limit).
    pub max_connections: Option<usize>,
}

impl ListenerConfig {
    /// A plain MQTT listener that accepts anyone (tests, embedding).
    pub fn tcp(addr: SocketAddr) -> Self {
        ListenerConfig {
            addr,
            kind: ListenerKind::Mqtt,
            ws_path: crate::transport::ws::DEFAULT_PATH.to_owned(),
            tls: None,
            allow_anonymous: true,
            password_file: None,
            acl_file: None,
            max_connections: None,
        }
    }
}

/// Key names for messages, by where a listener was configured.
struct ListenerKeys {
    bind: &'static str,
    cert: &'static str,
    ca: &'static str,
    path: &'static str,
    anonymous: &'static str,
}

const FILE_KEYS: ListenerKeys = ListenerKeys {
    bind: "listener.bind",
    cert: "listener.cert_file",
    ca: "listener.ca_file",
    path: "listener.path",
    anonymous: "listener.allow_anonymous",
};

const CLI_KEYS: ListenerKeys = ListenerKeys {
    bind: "--listen",
    cert: "--cert",
    ca: "--cafile",
    path: "--ws-path",
    anonymous: "--allow-anonymous",
};

/// Longest TCP keep-alive idle time Linux accepts (TCP_KEEPIDLE).
const MAX_TCP_KEEPALIVE_SECS: u32 = 32_767;

/// The `[limits]` table. Every key has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    /// Connections at once, all listeners together. Default 10,000.
    pub max_connections: usize,
    /// Largest packet accepted. Default 1,048,576.
    pub max_packet_size_bytes: u32,
    /// Outbound QoS 1/2 messages in flight per client. Default 64.
    pub max_inflight_messages: u16,
    /// Receive Maximum advertised to clients. Default 64.
    pub receive_maximum: u16,
    /// Messages queued per session. Default 1000.
    pub max_queued_messages: usize,
    /// Bytes queued per session. Default 16 MiB.
    pub max_queued_bytes: usize,
    /// `drop_oldest` (default) or `drop_newest`.
    pub queue_full_policy: String,
    /// Queue QoS 0 messages for offline sessions. Default false.
    pub queue_qos0_offline: bool,
    /// Largest keep-alive; 0 = no cap. Default 0.
    pub max_keep_alive_secs: u16,
    /// Largest session expiry interval. Default 4294967295 (never expire).
    pub max_session_expiry_secs: u32,
    /// Time allowed between TCP accept and CONNECT. Default 10.
    pub connect_timeout_secs: u32,
    /// TCP keep-alive on client sockets: seconds a connection may be silent before the kernel
    /// probes the peer (every 30 s, or this often if shorter; 4 unanswered probes close it).
    /// Finds dead clients that MQTT keep-alive does not (keep-alive 0). 0 = off. Default 300.
    pub tcp_keepalive_secs: u32,
    /// Largest client identifier. Default 256.
    pub max_client_id_len: usize,
    /// Retained messages kept. Default 100,000.
    pub max_retained_messages: usize,
    /// Topic aliases per client. Default 64.
    pub topic_alias_maximum: u16,
    /// New connections accepted per second, all listeners together; 0 (default) = no limit.
    pub max_connection_rate_per_sec: u32,
    /// PUBLISH packets a client may send per second; 0 (default) = no limit. Beyond it a
    /// 5.0 client's QoS 1/2 messages are refused with 0x97 (quota exceeded) and QoS 0
    /// messages are dropped; a 3.x client is slowed down (its socket is not read).
    pub max_publish_rate_per_client: u32,
    /// Bytes per second a client may send; 0 (default) = no limit. Beyond it the client's
    /// socket is not read until its budget refills.
    pub max_bytes_per_sec_per_client: u64,
    /// Heap the broker may use, MiB, before it stops reading from publishers (and says so
    /// in logs and metrics) until usage falls below 90% of it. 0 (default) = three quarters
    /// of the machine's memory.
    pub memory_budget_mib: u64,
}

impl Default for LimitsFile {
    fn default() -> Self {
        let b = BrokerConfig::default();
        LimitsFile {
            max_connections: 10_000,
            max_packet_size_bytes: b.max_packet_size,
            max_inflight_messages: b.max_inflight,
            receive_maximum: b.receive_maximum,
            max_queued_messages: b.max_queued_messages,
            max_queued_bytes: b.max_queued_bytes,
            queue_full_policy: "drop_oldest".to_owned(),
            queue_qos0_offline: b.queue_qos0_offline,
            max_keep_alive_secs: b.max_keep_alive_secs,
            max_session_expiry_secs: b.max_session_expiry_secs,
            connect_timeout_secs: 10,
            tcp_keepalive_secs: 300,
            max_client_id_len: b.max_client_id_len,
            max_retained_messages: b.max_retained_messages,
            topic_alias_maximum: b.topic_alias_maximum,
            max_connection_rate_per_sec: 0,
            max_publish_rate_per_client: 0,
            max_bytes_per_sec_per_client: 0,
            memory_budget_mib: 0,
        }
    }
}

/// The `[mqtt]` table: protocol features.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttFile {
    /// Largest QoS granted, 0 to 2. Default 2.
    pub max_qos: u8,
    /// Whether retained messages are supported. Default true.
    pub retain_available: bool,
}

impl Default for MqttFile {
    fn default() -> Self {
        MqttFile {
            max_qos: 2,
            retain_available: true,
        }
    }
}

/// The `[server]` table.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServerFile {
    /// Worker threads of the async runtime; 0 (default) = one per CPU core.
    pub worker_threads: usize,
}

/// The `[http]` table: the HTTP listener for `/metrics`, the admin API and the dashboard.
/// Off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFile {
    /// Address of the HTTP listener, e.g. `127.0.0.1:8080`; unset (default) = no HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Bearer token for the admin API. With neither `token` nor `password_file`, midge
    /// creates a random token in `token_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the admin token (default `midge-admin.token`, created with mode 0600
    /// if missing and no `token` is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Password file whose users may use the admin API with HTTP Basic authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Users of `password_file` allowed; empty (default) = every user in it.
    pub users: Vec<String>,
    /// Ask for the token on `/metrics` too (default false: Prometheus scrapes freely).
    pub metrics_require_auth: bool,
}

/// The `[sys]` table: `$SYS` topics.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SysFile {
    /// Seconds between `$SYS` updates; 0 = no `$SYS` topics. Default 10.
    pub interval_secs: u64,
}

impl Default for SysFile {
    fn default() -> Self {
        SysFile { interval_secs: 10 }
    }
}

/// The `[log]` table.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogFile {
    /// `text` (default, human-readable) or `json` (one object per line).
    pub format: String,
    /// Level, or levels per module: `info` (default), `warn,midge_server=debug`.
    /// `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogFile {
    fn default() -> Self {
        LogFile {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// The `[auth]` table: how logins are checked (the files themselves are per listener).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFile {
    /// A refused login is answered after this many milliseconds (default 1000).
    pub failed_login_delay_ms: u64,
    /// Threads that check passwords; 0 (default) = one per CPU core.
    pub password_check_threads: usize,
    /// Logins that may wait for a password check; more are refused as busy (default 1024).
    pub max_pending_password_checks: usize,
}

impl Default for AuthFile {
    fn default() -> Self {
        let d = AuthSettings::default();
        AuthFile {
            failed_login_delay_ms: d.failed_login_delay.as_millis() as u64,
            password_check_threads: d.check_threads,
            max_pending_password_checks: d.max_pending_checks,
        }
    }
}

/// The `[storage]` table: where persistent sessions, queues and retained messages live.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageFile {
    /// Data directory (default `midge-data`, relative to the working directory).
    pub data_dir: PathBuf,
    /// Keep nothing on disk (default false).
    pub in_memory: bool,
    /// `every_commit` (default: a QoS 1/2 message is on disk before it is acknowledged) or
    /// `periodic` (synced every `sync_interval_ms`; a crash loses up to that much).
    pub sync: String,
    /// Interval of `sync = "periodic"`, milliseconds (default 100).
    pub sync_interval_ms: u64,
    /// Block cache of the store, MiB (default 32).
    pub cache_mib: u64,
}

impl Default for StorageFile {
    fn default() -> Self {
        StorageFile {
            data_dir: PathBuf::from("midge-data"),
            in_memory: false,
            sync: "every_commit".into(),
            sync_interval_ms: 100,
            cache_mib: 32,
        }
    }
}

/// The validated storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// When data reaches the disk.
    pub policy: midge_storage::SyncPolicy,
    /// Engine settings.
    pub engine: midge_storage::FjallSettings,
    /// A data directory that cannot be opened is moved aside and the broker starts empty
    /// (otherwise it refuses to start).
    pub recover_empty: bool,
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Persistence.
    pub storage: StorageFile,
    /// Runtime settings.
    pub server: ServerFile,
    /// Login checking.
    pub auth: AuthFile,
    /// Listeners; none means the default `127.0.0.1:1883`.
    pub listener: Vec<ListenerFile>,
    /// Limits.
    pub limits: LimitsFile,
    /// Protocol features.
    pub mqtt: MqttFile,
    /// Metrics, admin API and dashboard.
    pub http: HttpFile,
    /// `$SYS` topics.
    pub sys: SysFile,
    /// Logging.
    pub log: LogFile,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// The validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Connections at once.
    pub max_connections: usize,
    /// CONNECT must arrive within this time.
    pub connect_timeout: Duration,
    /// Idle time before TCP keep-alive probes; `None`: no SO_KEEPALIVE.
    pub tcp_keepalive: Option<Duration>,
    /// Worker threads; 0 = one per core.
    pub worker_threads: usize,
    /// The broker core's settings.
    pub broker: BrokerConfig,
    /// How logins are checked.
    pub auth: AuthSettings,
    /// Persistence; `None` keeps everything in memory.
    pub storage: Option<StorageConfig>,
    /// The HTTP listener (metrics, admin API, dashboard); `None`: off.
    pub http: Option<HttpConfig>,
    /// Interval of `$SYS` updates; `None`: no `$SYS` topics.
    pub sys_interval: Option<Duration>,
    /// Rate and memory limits.
    pub limits: RateLimits,
    /// Logging.
    pub log: LogConfig,
}

/// The validated `[http]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address to bind.
    pub addr: SocketAddr,
    /// Admin token given in the config.
    pub token: Option<String>,
    /// Where the admin token is kept (read, or created when there is no other way in).
    pub token_file: PathBuf,
    /// Password file whose users may log in with HTTP Basic authentication.
    pub password_file: Option<PathBuf>,
    /// Users of `password_file` allowed (empty: all).
    pub users: Vec<String>,
    /// Whether `/metrics` needs the token too.
    pub metrics_require_auth: bool,
}

/// The default admin token file.
pub const DEFAULT_TOKEN_FILE: &str = "midge-admin.token";

/// Connection, publish and memory limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// New connections per second, all listeners; 0 = no limit.
    pub connection_rate: u32,
    /// PUBLISH packets per second per client; 0 = no limit.
    pub publish_rate: u32,
    /// Bytes per second per client; 0 = no limit.
    pub bytes_rate: u64,
    /// Heap budget in bytes; `None` = three quarters of the machine's memory.
    pub memory_budget: Option<u64>,
}

/// The validated `[log]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Level directives (`info`, `warn,midge_server=debug`).
    pub level: String,
}

impl ServerConfig {
    /// Decode limits for client packets.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_packet_size: self.broker.max_packet_size,
        }
    }

    /// Validates a file config; `cli` listeners (from the command line) replace its
    /// listeners when not empty. `origin` names the file in messages.
    pub fn from_file(
        file: FileConfig,
        cli: &[ListenerFile],
        origin: &str,
    ) -> Result<Self, ConfigError> {
        let invalid =
            |key: &'static str, problem: String, fix: &'static str| ConfigError::Invalid {
                origin: origin.to_owned(),
                key,
                problem,
                fix,
            };
        let (sources, keys, origin_of): (Vec<ListenerFile>, &ListenerKeys, &str) =
            if !cli.is_empty() {
                (cli.to_vec(), &CLI_KEYS, "command line")
            } else if file.listener.is_empty() {
                let default = ListenerFile {
                    bind: DEFAULT_LISTEN.to_owned(),
                    ..Default::default()
                };
                (vec![default], &FILE_KEYS, origin)
            } else {
                (file.listener.clone(), &FILE_KEYS, origin)
            };
        let mut listeners = Vec::new();
        for l in sources {
            listeners.push(validate_listener(l, keys, origin_of)?);
        }
        let l = &file.limits;
        if l.max_connections == 0 {
            return Err(invalid(
                "limits.max_connections",
                "must be at least 1".into(),
                "set a positive number (default 10000)",
            ));
        }
        if !(16..=DecodeLimits::PROTOCOL_MAX_PACKET_SIZE).contains(&l.max_packet_size_bytes) {
            return Err(invalid(
                "limits.max_packet_size_bytes",
                format!("{} is out of range", l.max_packet_size_bytes),
                "use 16 to 268435460 (default 1048576)",
            ));
        }
        if l.max_inflight_messages == 0 {
            return Err(invalid(
                "limits.max_inflight_messages",
                "must be at least 1".into(),
                "use 1 to 65535 (default 64)",
            ));
        }
        if l.receive_maximum == 0 {
            return Err(invalid(
                "limits.receive_maximum",
                "must be at least 1 ([MQTT-3.2.2] Receive Maximum 0 is a protocol error)".into(),
                "use 1 to 65535 (default 64)",
            ));
        }
        if l.connect_timeout_secs == 0 {
            return Err(invalid(
                "limits.connect_timeout_secs",
                "must be at least 1".into(),
                "use a number of seconds (default 10)",
            ));
        }
        if l.tcp_keepalive_secs > MAX_TCP_KEEPALIVE_SECS {
            return Err(invalid(
                "limits.tcp_keepalive_secs",
                format!(
                    "{} is above {MAX_TCP_KEEPALIVE_SECS}, the longest idle time TCP keep-alive takes",
                    l.tcp_keepalive_secs
                ),
                "use 1 to 32767 seconds, or 0 to turn TCP keep-alive off (default 300)",
            ));
        }
        let policy = match l.queue_full_policy.as_str() {
            "drop_oldest" => QueueFullPolicy::DropOldest,
            "drop_newest" => QueueFullPolicy::DropNewest,
            other => {
                return Err(invalid(
                    "limits.queue_full_policy",
                    format!("unknown policy `{other}`"),
                    "use \"drop_oldest\" or \"drop_newest\"",
                ))
            }
        };
        let max_qos = QoS::try_from(file.mqtt.max_qos).map_err(|_| {
            invalid(
                "mqtt.max_qos",
                format!("{} is not a QoS", file.mqtt.max_qos),
                "use 0, 1 or 2 (default 2)",
            )
        })?;
        let defaults = BrokerConfig::default();
        if file.server.worker_threads > 1024 {
            return Err(invalid(
                "server.worker_threads",
                format!("{} threads is too many", file.server.worker_threads),
                "use 0 (one per core, default) or a number up to 1024",
            ));
        }
        let a = &file.auth;
        if a.failed_login_delay_ms > 60_000 {
            return Err(invalid(
                "auth.failed_login_delay_ms",
                format!("{} ms is longer than a minute", a.failed_login_delay_ms),
                "use 0 (answer at once) to 60000 (default 1000)",
            ));
        }
        if a.password_check_threads > 256 {
            return Err(invalid(
                "auth.password_check_threads",
                format!("{} threads is too many", a.password_check_threads),
                "use 0 (one per core, default) or a number up to 256",
            ));
        }
        if a.max_pending_password_checks == 0 {
            return Err(invalid(
                "auth.max_pending_password_checks",
                "must be at least 1".into(),
                "set a positive number (default 1024)",
            ));
        }
        let st = &file.storage;
        let sync_policy = match st.sync.as_str() {
            "every_commit" => midge_storage::SyncPolicy::EveryCommit,
            "periodic" => {
                if !(1..=60_000).contains(&st.sync_interval_ms) {
                    return Err(invalid(
                        "storage.sync_interval_ms",
                        format!("{} ms is out of range", st.sync_interval_ms),
                        "use 1 to 60000 (default 100)",
                    ));
                }
                midge_storage::SyncPolicy::Periodic(Duration::from_millis(st.sync_interval_ms))
            }
            other => {
                return Err(invalid(
                    "storage.sync",
                    format!("unknown policy `{other}`"),
                    "use \"every_commit\" (default) or \"periodic\"",
                ))
            }
        };
        if !(1..=65_536).contains(&st.cache_mib) {
            return Err(invalid(
                "storage.cache_mib",
                format!("{} MiB is out of range", st.cache_mib),
                "use 1 to 65536 (default 32)",
            ));
        }
        if !st.in_memory && st.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "storage.data_dir",
                "is empty".into(),
                "name a directory (default \"midge-data\") or set in_memory = true",
            ));
        }
        let storage = (!st.in_memory).then(|| StorageConfig {
            data_dir: st.data_dir.clone(),
            policy: sync_policy,
            engine: midge_storage::FjallSettings {
                cache_bytes: st.cache_mib << 20,
                ..Default::default()
            },
            recover_empty: false,
        });
        let http = match &file.http.listen {
            None => None,
            Some(listen) => {
                let addr: SocketAddr = listen.parse().map_err(|e| {
                    invalid(
                        "http.listen",
                        format!("`{listen}` is not an address: {e}"),
                        "write IP:PORT, e.g. 127.0.0.1:8080",
                    )
                })?;
                if file.http.token.as_deref() == Some("") {
                    return Err(invalid(
                        "http.token",
                        "is empty".into(),
                        "remove the key (a token is then created in http.token_file) or set a long random string",
                    ));
                }
                if !file.http.users.is_empty() && file.http.password_file.is_none() {
                    return Err(invalid(
                        "http.users",
                        "users are listed but there is no password file to check them against"
                            .into(),
                        "set http.password_file, or remove http.users",
                    ));
                }
                Some(HttpConfig {
                    addr,
                    token: file.http.token.clone(),
                    token_file: file
                        .http
                        .token_file
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE)),
                    password_file: file.http.password_file.clone(),
                    users: file.http.users.clone(),
                    metrics_require_auth: file.http.metrics_require_auth,
                })
            }
        };
        if file.sys.interval_secs > 86_400 {
            return Err(invalid(
                "sys.interval_secs",
                format!("{} s is longer than a day", file.sys.interval_secs),
                "use 0 (no $SYS topics) to 86400 (default 10)",
            ));
        }
        let json = match file.log.format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("unknown format `{other}`"),
                    "use \"text\" (default) or \"json\"",
                ))
            }
        };
        if l.memory_budget_mib > (1 << 30) {
            return Err(invalid(
                "limits.memory_budget_mib",
                format!("{} MiB is out of range", l.memory_budget_mib),
                "use 0 (three quarters of the machine's memory, default) or a number of MiB",
            ));
        }
        Ok(ServerConfig {
            http,
            sys_interval: (file.sys.interval_secs > 0)
                .then(|| Duration::from_secs(file.sys.interval_secs)),
            limits: RateLimits {
                connection_rate: l.max_connection_rate_per_sec,
                publish_rate: l.max_publish_rate_per_client,
                bytes_rate: l.max_bytes_per_sec_per_client,
                memory_budget: (l.memory_budget_mib > 0).then_some(l.memory_budget_mib << 20),
            },
            log: LogConfig {
                json,
                level: file.log.level.clone(),
            },
            storage,
            auth: AuthSettings {
                failed_login_delay: Duration::from_millis(a.failed_login_delay_ms),
                check_threads: a.password_check_threads,
                max_pending_checks: a.max_pending_password_checks,
            },
            listeners,
            worker_threads: file.server.worker_threads,
            max_connections: l.max_connections,
            connect_timeout: Duration::from_secs(u64::from(l.connect_timeout_secs)),
            tcp_keepalive: (l.tcp_keepalive_secs > 0)
                .then(|| Duration::from_secs(u64::from(l.tcp_keepalive_secs))),
            broker: BrokerConfig {
                max_packet_size: l.max_packet_size_bytes,
                max_inflight: l.max_inflight_messages,
                receive_maximum: l.receive_maximum,
                max_queued_messages: l.max_queued_messages,
                max_queued_bytes: l.max_queued_bytes,
                queue_full_policy: policy,
                queue_qos0_offline: l.queue_qos0_offline,
                max_keep_alive_secs: l.max_keep_alive_secs,
                max_session_expiry_secs: l.max_session_expiry_secs,
                max_qos,
                retain_available: file.mqtt.retain_available,
                topic_alias_maximum: l.topic_alias_maximum,
                max_client_id_len: l.max_client_id_len,
                max_retained_messages: l.max_retained_messages,
                response_information_prefix: defaults.response_information_prefix,
            },
        })
    }
}

fn validate_listener(
    l: ListenerFile,
    keys: &ListenerKeys,
    origin: &str,
) -> Result<ListenerConfig, ConfigError> {
    let invalid = |key: &'static str, problem: String, fix: &'static str| ConfigError::Invalid {
        origin: origin.to_owned(),
        key,
        problem,
        fix,
    };
    let addr: SocketAddr = l.bind.parse().map_err(|e| {
        invalid(
            keys.bind,
            format!("`{}` is not an address: {e}", l.bind),
            "write IP:PORT, e.g. 127.0.0.1:1883 or [::]:1883",
        )
    })?;
    let tls = if l.kind.is_tls() {
        let (Some(cert_file), Some(key_file)) = (l.cert_file.clone(), l.key_file.clone()) else {
            return Err(invalid(
                keys.cert,
                format!(
                    "a {} listener on {addr} needs a certificate and a key",
                    l.kind.scheme()
                ),
                "give the PEM files: cert_file and key_file (--cert and --key)",
            ));
        };
        if (l.require_certificate || l.use_identity_as_username) && l.ca_file.is_none() {
            return Err(invalid(
                keys.ca,
                format!("client certificates on {addr} cannot be verified without a CA file"),
                "set ca_file (--cafile) to the CA that signs client certificates",
            ));
        }
        Some(TlsSettings {
            cert_file,
            key_file,
            ca_file: l.ca_file.clone(),
            require_certificate: l.require_certificate,
            use_identity_as_username: l.use_identity_as_username,
        })
    } else {
        if l.cert_file.is_some() || l.key_file.is_some() || l.ca_file.is_some() {
            return Err(invalid(
                keys.cert,
                format!(
                    "certificate files are set for a {} listener on {addr}",
                    l.kind.scheme()
                ),
                "use kind = \"mqtts\" or \"wss\" for TLS, or remove the certificate keys",
            ));
        }
        None
    };
    let ws_path = match (&l.path, l.kind.is_ws()) {
        (None, _) => crate::transport::ws::DEFAULT_PATH.to_owned(),
        (Some(p), true) if p.starts_with('/') => p.clone(),
        (Some(p), true) => {
            return Err(invalid(
                keys.path,
                format!("`{p}` is not a path"),
                "start the path with /, e.g. /mqtt",
            ))
        }
        (Some(_), false) => {
            return Err(invalid(
                keys.path,
                format!("a path is set for a {} listener on {addr}", l.kind.scheme()),
                "use kind = \"ws\" or \"wss\", or remove the path",
            ))
        }
    };
    let cert_auth = l.use_identity_as_username && l.require_certificate;
    let has_auth = l.password_file.is_some() || cert_auth;
    let allow_anonymous = match l.allow_anonymous {
        Some(v) => v,
        None if has_auth => false,
        None if addr.ip().is_loopback() => true,
        None => {
            return Err(invalid(
                keys.anonymous,
                format!("the listener on {addr} is reachable from other hosts and has no authentication"),
                "set password_file (--password-file) or client certificates, or set allow_anonymous = true (--allow-anonymous) to accept anyone",
            ))
        }
    };
    Ok(ListenerConfig {
        addr,
        kind: l.kind,
        ws_path,
        tls,
        allow_anonymous,
        password_file: l.password_file,
        acl_file: l.acl_file,
        max_connections: l.max_connections,
    })
}

impl Default for ServerConfig {
    /// The defaults of the config file, except that nothing is stored on disk and there
    /// are no `$SYS` topics: the configuration for embedding and tests. `midge serve`
    /// stores in `midge-data` and publishes `$SYS` every 10 s.
    fn default() -> Self {
        let mut file = FileConfig::default();
        file.storage.in_memory = true;
        file.sys.interval_secs = 0;
        ServerConfig::from_file(file, &[], "defaults")
            .expect("invariant: the default configuration is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback() {
        let c = ServerConfig::default();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].addr, DEFAULT_LISTEN.parse().expect("valid"));
        assert!(c.listeners[0].allow_anonymous);
        assert_eq!(c.broker, BrokerConfig::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = FileConfig::parse("[limits]\nmax_conections = 3\n", Path::new("m.toml"))
            .expect_err("typo must fail");
        let msg = e.to_string();
        assert!(
            msg.contains("m.toml") && msg.contains("max_conections"),
            "{msg}"
        );
    }

    #[test]
    fn bad_value_names_key_and_fix() {
        let msg = from_text("[mqtt]\nmax_qos = 3\n").expect_err("invalid");
        assert!(
            msg.contains("mqtt.max_qos") && msg.contains("use 0, 1 or 2"),
            "{msg}"
        );
        let cli = [ListenerFile {
            bind: "nope".into(),
            ..Default::default()
        }];
        let msg = ServerConfig::from_file(FileConfig::default(), &cli, "command line")
            .expect_err("invalid")
            .to_string();
        assert!(msg.contains("--listen"), "{msg}");
    }

    /// The configuration of a file's text, or the error `midge serve` would print.
    fn from_text(text: &str) -> Result<ServerConfig, String> {
        let f = FileConfig::parse(text, Path::new("m.toml")).expect("parses");
        ServerConfig::from_file(f, &[], "m.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn tcp_keepalive_defaults_to_300_s_and_0_turns_it_off() {
        let c = ServerConfig::default();
        assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(300)));
        let c = from_text("[limits]\ntcp_keepalive_secs = 0\n").expect("valid");
        assert_eq!(c.tcp_keepalive, None);
        let msg = from_text("[limits]\ntcp_keepalive_secs = 40000\n")
            .expect_err("above TCP_KEEPIDLE's range");
        assert!(
            msg.contains("limits.tcp_keepalive_secs") && msg.contains("1 to 32767"),
            "{msg}"
        );
    }

    #[test]
    fn listen_flags_replace_file_listeners() {
        let f = FileConfig::parse(
            "[[listener]]\nbind = \"0.0.0.0:1883\"\nallow_anonymous = true\n",
            Path::new("m.toml"),
        )
        .expect("parses");
        let cli = [ListenerFile {
            bind: "127.0.0.1:0".into(),
            ..Default::default()
        }];
        let c = ServerConfig::from_file(f, &cli, "m.toml").expect("valid");
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].addr, "127.0.0.1:0".parse().expect("valid"));
    }
}
