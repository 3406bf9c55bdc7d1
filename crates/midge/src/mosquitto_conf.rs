//! `--mosquitto-conf`: reads a mosquitto.conf (mosquitto 2.x semantics) into a midge
//! [`FileConfig`], so a user can run midge on an existing mosquitto configuration.
//!
//! Invariants:
//! - Every option is either translated, reported in one warning per option name (options
//!   midge does not support, which mosquitto would have obeyed), or refused with an error
//!   naming the file, the line, the option and the fix. Unsupported options whose omission
//!   would let clients in that mosquitto kept out (`plugin`, `mount_point`, `crlfile`,
//!   `psk_hint`) are errors, never warnings.
//! - Options the file does not set take mosquitto's defaults where midge has the same knob
//!   (no persistence, 20 messages in flight, unlimited packet size, drop the newest message
//!   of a full queue, ...), so the broker behaves as mosquitto did.
//! - Every listener gets an explicit `allow_anonymous`, so the result always passes
//!   `ServerConfig::from_file` when the translation succeeds.
//! - Paths (password, ACL, certificate files, persistence location) are kept as written:
//!   relative paths stay relative to the working directory, as in mosquitto.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use midge_codec::DecodeLimits;
use midge_server::{FileConfig, ListenerFile, ListenerKind};

/// mosquitto's port when none is given.
const DEFAULT_PORT: u16 = 1883;

/// `message_size_limit` bounds the payload of a PUBLISH, midge's `max_packet_size_bytes` the
/// whole packet. The allowance covers the longest possible topic name (65,535 bytes plus its
/// 2-byte length), the fixed header (5 bytes), the packet identifier and 4 KiB of MQTT 5
/// properties, so no message mosquitto accepted is refused for its headers.
const MESSAGE_SIZE_HEADER_ALLOWANCE: u32 = 65_537 + 5 + 2 + 4_096;

/// Stands for mosquitto's "no limit" of `max_queued_messages 0`: midge keeps every queue
/// bounded.
const UNLIMITED_QUEUED_MESSAGES: usize = 10_000_000;

/// Stands for mosquitto's "no limit" of `max_queued_bytes` (its default): 1 TiB per session,
/// so in practice `max_queued_messages` and the memory budget are what bound a queue.
const UNLIMITED_QUEUED_BYTES: usize = 1 << 40;

/// mosquitto's `max_inflight_messages` default (also its Receive Maximum).
const MOSQUITTO_MAX_INFLIGHT: u16 = 20;

/// mosquitto's per-listener `max_topic_alias` default.
const MOSQUITTO_MAX_TOPIC_ALIAS: u16 = 10;

/// Reads a mosquitto.conf; returns the equivalent midge configuration and one warning per
/// option midge does not support.
pub fn load(path: &Path) -> anyhow::Result<(FileConfig, Vec<String>)> {
    let mut t = Translator::new();
    t.read_file(path, 0)?;
    t.finish()
}

/// Translates the text of a mosquitto.conf; `path` names it in messages (and `include_dir`
/// is still read from the disk).
#[cfg(test)]
fn translate(text: &str, path: &Path) -> anyhow::Result<(FileConfig, Vec<String>)> {
    let mut t = Translator::new();
    t.read_text(text, path, 0)?;
    t.finish()
}

/// Where a line is: `FILE:LINE` in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loc {
    file: String,
    line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One option line: its name and the rest of the line (trimmed).
#[derive(Debug)]
struct Opt<'a> {
    loc: &'a Loc,
    key: &'a str,
    rest: &'a str,
}

impl Opt<'_> {
    /// An error naming the file, line and option, what is wrong and how to fix it.
    fn err(&self, problem: impl fmt::Display, fix: &str) -> anyhow::Error {
        anyhow!("{}: option `{}`: {problem}; {fix}", self.loc, self.key)
    }

    /// The single word value (a trailing `# comment` is allowed).
    fn word(&self) -> anyhow::Result<&str> {
        let mut words = self.rest.split_whitespace();
        let Some(w) = words.next() else {
            return Err(self.err("has no value", "write the value after the option name"));
        };
        if let Some(extra) = words.next() {
            if !extra.starts_with('#') {
                return Err(self.err(
                    format!("takes one value, found `{}`", self.rest),
                    "remove the extra words",
                ));
            }
        }
        Ok(w)
    }

    /// The rest of the line, which may contain spaces (file names).
    fn text(&self) -> anyhow::Result<&str> {
        if self.rest.is_empty() {
            return Err(self.err("has no value", "write the value after the option name"));
        }
        Ok(self.rest)
    }

    fn path(&self) -> anyhow::Result<PathBuf> {
        Ok(PathBuf::from(self.text()?))
    }

    fn bool(&self) -> anyhow::Result<bool> {
        match self.word()? {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(self.err(
                format!("`{other}` is not true or false"),
                "write true or false",
            )),
        }
    }

    /// An integer in `range`; `fix` says which values are allowed.
    fn int(&self, range: RangeInclusive<i64>, fix: &str) -> anyhow::Result<i64> {
        let w = self.word()?;
        let n: i64 = w
            .parse()
            .map_err(|_| self.err(format!("`{w}` is not a whole number"), fix))?;
        if !range.contains(&n) {
            return Err(self.err(format!("{n} is out of range"), fix));
        }
        Ok(n)
    }
}

/// `allow_anonymous`, `password_file` and `acl_file`: global, or per listener with
/// `per_listener_settings true`.
#[derive(Debug, Clone, Default)]
struct Security {
    allow_anonymous: Option<bool>,
    password_file: Option<PathBuf>,
    acl_file: Option<PathBuf>,
}

/// One mosquitto listener: section 0 is the default listener (`port`, `bind_address` and
/// listener options before the first `listener` line), the others start at `listener`.
#[derive(Debug, Default)]
struct Section {
    /// The `listener` line (`None` for the default listener).
    opened: Option<(Loc, String)>,
    port: Option<u16>,
    /// The bind address or host name as written.
    bind: Option<(String, Loc)>,
    /// `listener 0 PATH`: a unix socket, which midge does not serve.
    unix_socket: bool,
    websockets: bool,
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    cafile: Option<PathBuf>,
    require_certificate: bool,
    use_identity_as_username: bool,
    max_connections: Option<usize>,
    max_qos: Option<u8>,
    max_topic_alias: Option<u16>,
    security: Security,
    /// The first option that makes mosquitto open the default listener even when `listener`
    /// lines exist (default section only).
    touched: Option<(Loc, String)>,
}

impl Section {
    fn describe(&self) -> String {
        match &self.opened {
            Some((loc, text)) => format!("`{text}` ({loc})"),
            None => "the default listener".to_owned(),
        }
    }
}

/// The state of one translation.
#[derive(Debug)]
struct Translator {
    /// Section 0 is the default listener.
    sections: Vec<Section>,
    /// The section listener options apply to.
    cur: usize,
    per_listener_settings: bool,
    /// A security option was read (`per_listener_settings` must come before them).
    security_seen: Option<Loc>,
    global: Security,
    /// No `listener`, `port` or `bind_address`: mosquitto 2 listens on localhost only and
    /// accepts anonymous clients.
    local_only: bool,
    /// The bridge being configured (`connection NAME`), whose options are skipped.
    bridge: Option<String>,
    out: FileConfig,
    max_packet_size: Option<u32>,
    message_size_limit: Option<u32>,
    /// The most verbose `log_type`, as a tracing level.
    log_level: Option<LogLevel>,
    warnings: Vec<String>,
    warned: HashSet<String>,
}

/// `log_type` values ordered from quiet to verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// The configuration mosquitto runs with when its file says nothing, in midge's terms.
fn mosquitto_defaults() -> FileConfig {
    let mut f = FileConfig::default();
    // `persistence false`.
    f.storage.in_memory = true;
    // `max_inflight_messages 20`, also advertised as Receive Maximum.
    f.limits.max_inflight_messages = MOSQUITTO_MAX_INFLIGHT;
    f.limits.receive_maximum = MOSQUITTO_MAX_INFLIGHT;
    f.limits.max_queued_messages = 1000;
    // `max_queued_bytes 0`: no limit.
    f.limits.max_queued_bytes = UNLIMITED_QUEUED_BYTES;
    // mosquitto drops new messages when a queue is full.
    f.limits.queue_full_policy = "drop_newest".to_owned();
    // `max_packet_size` unset: any packet MQTT allows.
    f.limits.max_packet_size_bytes = DecodeLimits::PROTOCOL_MAX_PACKET_SIZE;
    f.limits.topic_alias_maximum = MOSQUITTO_MAX_TOPIC_ALIAS;
    f
}

/// Options of a bridge (`connection NAME` starts one); skipped with the bridge.
fn is_bridge_option(key: &str) -> bool {
    key.starts_with("bridge_")
        || matches!(
            key,
            "address"
                | "addresses"
                | "cleansession"
                | "local_cleansession"
                | "clientid"
                | "remote_clientid"
                | "idle_timeout"
                | "keepalive_interval"
                | "local_clientid"
                | "local_password"
                | "local_username"
                | "notifications"
                | "notifications_local_only"
                | "notification_topic"
                | "password"
                | "remote_password"
                | "restart_timeout"
                | "round_robin"
                | "start_type"
                | "threshold"
                | "topic"
                | "try_private"
                | "username"
                | "remote_username"
        )
}

/// Options midge ignores with a warning, and what that means for the user. Listener
/// options among them make mosquitto open its default listener (`touches`).
fn unsupported(key: &str) -> Option<(&'static str, bool)> {
    let note = match key {
        "log_dest" => ("midge logs to stderr", false),
        "log_timestamp" | "log_timestamp_format" | "log_facility" => (
            "midge's log lines always carry an RFC 3339 timestamp",
            false,
        ),
        "connection_messages" => (
            "midge always logs connects and disconnects at info level",
            false,
        ),
        "user" => (
            "midge does not change user: start it as the user it should run as",
            false,
        ),
        "pid_file" => ("midge writes no pid file", false),
        "persistence_file" | "autosave_interval" | "autosave_on_changes" => (
            "midge writes every change to its store as it happens, in storage.data_dir",
            false,
        ),
        "max_inflight_bytes" => ("midge bounds in-flight messages by count", false),
        "allow_zero_length_clientid" | "auto_id_prefix" => (
            "midge assigns an identifier to clients that send an empty one",
            false,
        ),
        "set_tcp_nodelay" => ("midge always sets TCP_NODELAY", false),
        "allow_duplicate_messages"
        | "check_retain_source"
        | "upgrade_outgoing_qos"
        | "websockets_log_level"
        | "websockets_headers_size"
        | "retry_interval"
        | "clientid_prefixes"
        | "psk_file"
        | "auth_plugin_deny_special_chars" => ("", false),
        "capath" => ("use cafile with the CA certificates in one PEM file", true),
        "socket_domain" => ("the listener binds the address given", true),
        "bind_interface" => ("bind the listener to the interface's address instead", true),
        "http_dir" => ("midge serves no files on WebSocket listeners", false),
        "use_subject_as_username" | "use_username_as_clientid" => ("", true),
        "ciphers"
        | "ciphers_tls1.3"
        | "dhparamfile"
        | "tls_engine"
        | "tls_engine_kpass_sha1"
        | "tls_keyform" => ("midge uses rustls' safe default cipher suites", true),
        "tls_version" => ("midge accepts TLS 1.2 and 1.3", false),
        _ => return None,
    };
    Some(note)
}

impl Translator {
    fn new() -> Self {
        Translator {
            sections: vec![Section::default()],
            cur: 0,
            per_listener_settings: false,
            security_seen: None,
            global: Security::default(),
            local_only: true,
            bridge: None,
            out: mosquitto_defaults(),
            max_packet_size: None,
            message_size_limit: None,
            log_level: None,
            warnings: Vec::new(),
            warned: HashSet::new(),
        }
    }

    /// Warns once per `key`.
    fn warn_once(&mut self, key: &str, message: String) {
        if self.warned.insert(key.to_owned()) {
            self.warnings.push(message);
        }
    }

    fn read_file(&mut self, path: &Path, level: usize) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read mosquitto config file {}", path.display()))?;
        self.read_text(&text, path, level)
    }

    /// Reads one file. As in mosquitto, each file starts with the default listener as the
    /// current one and outside any bridge.
    fn read_text(&mut self, text: &str, path: &Path, level: usize) -> anyhow::Result<()> {
        self.cur = 0;
        self.bridge = None;
        let file = path.display().to_string();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = match line.split_once(char::is_whitespace) {
                Some((k, r)) => (k, r.trim()),
                None => (line, ""),
            };
            let loc = Loc {
                file: file.clone(),
                line: i + 1,
            };
            self.option(
                &Opt {
                    loc: &loc,
                    key,
                    rest,
                },
                level,
            )?;
        }
        Ok(())
    }

    /// The current listener; `touches` marks options that make mosquitto open its default
    /// listener when they appear before the first `listener` line.
    fn listener(&mut self, o: &Opt<'_>, touches: bool) -> &mut Section {
        if touches {
            self.touch(o);
        }
        &mut self.sections[self.cur]
    }

    /// Records that `o`, if it is read for the default listener, makes mosquitto open it.
    fn touch(&mut self, o: &Opt<'_>) {
        let s = &mut self.sections[self.cur];
        if self.cur == 0 && s.touched.is_none() {
            s.touched = Some((o.loc.clone(), o.key.to_owned()));
        }
    }

    /// Where `allow_anonymous`, `password_file` and `acl_file` go.
    fn security(&mut self, o: &Opt<'_>) -> &mut Security {
        if self.security_seen.is_none() {
            self.security_seen = Some(o.loc.clone());
        }
        if self.per_listener_settings {
            &mut self.sections[self.cur].security
        } else {
            &mut self.global
        }
    }

    fn option(&mut self, o: &Opt<'_>, level: usize) -> anyhow::Result<()> {
        if is_bridge_option(o.key) {
            if self.bridge.is_none() {
                return Err(o.err(
                    "belongs to a bridge, but no bridge is being configured",
                    "start the bridge with `connection NAME` first, or remove the line",
                ));
            }
            // The bridge was reported once at `connection`.
            return Ok(());
        }
        if let Some((note, touches)) = unsupported(o.key) {
            if touches {
                self.touch(o);
            }
            let note = if note.is_empty() {
                String::new()
            } else {
                format!(" ({note})")
            };
            self.warn_once(
                o.key,
                format!(
                    "{}: option `{}` is not supported by midge, ignored{note}",
                    o.loc, o.key
                ),
            );
            return Ok(());
        }
        if o.key.starts_with("auth_opt_") || o.key.starts_with("plugin_opt_") {
            // The plugin line itself is refused, so these are never reached with a plugin.
            return Err(o.err(
                "configures a plugin, and midge cannot load mosquitto plugins",
                "remove the line",
            ));
        }
        match o.key {
            "listener" => self.start_listener(o)?,
            "port" => {
                self.local_only = false;
                let port = o.int(1..=65_535, "use a port from 1 to 65535")?;
                // Always the default listener's, wherever the line is.
                let s = &mut self.sections[0];
                s.port = Some(port as u16);
                if s.touched.is_none() {
                    s.touched = Some((o.loc.clone(), o.key.to_owned()));
                }
            }
            "bind_address" => {
                self.local_only = false;
                let host = o.word()?.to_owned();
                let s = &mut self.sections[0];
                s.bind = Some((host, o.loc.clone()));
                if s.touched.is_none() {
                    s.touched = Some((o.loc.clone(), o.key.to_owned()));
                }
            }
            "protocol" => {
                let ws = match o.word()? {
                    "mqtt" => false,
                    "websockets" => true,
                    other => {
                        return Err(o.err(
                            format!("`{other}` is not a protocol"),
                            "write mqtt or websockets",
                        ))
                    }
                };
                self.listener(o, ws).websockets = ws;
                if ws {
                    self.warn_once(
                        "protocol websockets",
                        format!(
                            "{}: midge accepts MQTT over WebSocket on the path /mqtt only (mosquitto accepted any path): clients must connect to ws://HOST:PORT/mqtt",
                            o.loc
                        ),
                    );
                }
            }
            "certfile" => self.listener(o, true).certfile = Some(o.path()?),
            "keyfile" => self.listener(o, true).keyfile = Some(o.path()?),
            "cafile" => self.listener(o, true).cafile = Some(o.path()?),
            "require_certificate" => {
                let v = o.bool()?;
                self.listener(o, v).require_certificate = v;
            }
            "use_identity_as_username" => {
                let v = o.bool()?;
                self.listener(o, v).use_identity_as_username = v;
            }
            "max_connections" => {
                // mosquitto: 0 or negative means no limit.
                let n = o.int(i64::MIN..=i64::MAX, "use -1 (no limit) or a positive number")?;
                let limit = usize::try_from(n).ok().filter(|&n| n > 0);
                self.listener(o, limit.is_some()).max_connections = limit;
            }
            "max_qos" | "maximum_qos" => {
                let q = o.int(0..=2, "use 0, 1 or 2")? as u8;
                self.listener(o, q != 2).max_qos = Some(q);
            }
            "max_topic_alias" => {
                let n = o.int(0..=65_535, "use 0 (no topic aliases) to 65535")? as u16;
                self.listener(o, false).max_topic_alias = Some(n);
            }
            "mount_point" => {
                return Err(o.err(
                    "is not supported: clients of this listener would share the whole topic tree with every other client",
                    "give these clients their own broker, or put the prefix into their topics and ACLs, then remove the line",
                ))
            }
            "crlfile" => {
                return Err(o.err(
                    "is not supported: revoked client certificates would be accepted",
                    "remove the revoked clients' CA or user, then remove the line",
                ))
            }
            "psk_hint" => {
                return Err(o.err(
                    "is not supported: midge has no TLS-PSK, and the listener would accept clients without a key",
                    "use certfile and keyfile (and client certificates) instead, or remove the listener",
                ))
            }
            "plugin" | "auth_plugin" => {
                return Err(o.err(
                    "is not supported: midge cannot load mosquitto plugins, so the logins and topic access the plugin checks would go unchecked",
                    "move the users to password_file and their rights to acl_file, then remove the line",
                ))
            }
            "per_listener_settings" => {
                let v = o.bool()?;
                if v != self.per_listener_settings {
                    if let Some(first) = &self.security_seen {
                        return Err(o.err(
                            format!("comes after a security option ({first})"),
                            "move per_listener_settings above every allow_anonymous, password_file and acl_file line",
                        ));
                    }
                }
                self.per_listener_settings = v;
            }
            "allow_anonymous" => {
                let v = o.bool()?;
                self.security(o).allow_anonymous = Some(v);
            }
            "password_file" => {
                let p = o.path()?;
                self.security(o).password_file = Some(p);
                if self.per_listener_settings {
                    self.touch(o);
                }
            }
            "acl_file" => {
                let p = o.path()?;
                self.security(o).acl_file = Some(p);
            }
            "persistence" | "retained_persistence" => {
                let on = o.bool()?;
                self.out.storage.in_memory = !on;
                if on {
                    self.warn_once(
                        "persistence",
                        format!(
                            "{}: midge keeps its own store in storage.data_dir; sessions and retained messages saved in mosquitto.db are not imported",
                            o.loc
                        ),
                    );
                }
            }
            "persistence_location" => self.out.storage.data_dir = o.path()?,
            "max_queued_messages" => {
                let n = o.int(i64::MIN..=i64::MAX, "use 0 (no limit) or a positive number")?;
                self.out.limits.max_queued_messages = if n <= 0 {
                    self.warn_once(
                        o.key,
                        format!(
                            "{}: max_queued_messages 0 means no limit in mosquitto; midge keeps queues bounded and uses {UNLIMITED_QUEUED_MESSAGES}",
                            o.loc
                        ),
                    );
                    UNLIMITED_QUEUED_MESSAGES
                } else {
                    usize::try_from(n).unwrap_or(UNLIMITED_QUEUED_MESSAGES)
                };
            }
            "max_queued_bytes" => {
                let n = o.int(i64::MIN..=i64::MAX, "use 0 (no limit) or a number of bytes")?;
                self.out.limits.max_queued_bytes = if n <= 0 {
                    UNLIMITED_QUEUED_BYTES
                } else {
                    usize::try_from(n)
                        .unwrap_or(UNLIMITED_QUEUED_BYTES)
                        .min(UNLIMITED_QUEUED_BYTES)
                };
            }
            "max_inflight_messages" => {
                let n = o.int(i64::MIN..=65_535, "use 0 (no limit) to 65535")?;
                // 0, negative and 65535 all mean "no limit" in mosquitto; 65535 is the
                // largest Receive Maximum MQTT allows.
                let n = if n <= 0 { 65_535 } else { n as u16 };
                self.out.limits.max_inflight_messages = n;
                self.out.limits.receive_maximum = n;
            }
            "message_size_limit" => {
                let n = o.int(0..=268_435_455, "use 0 (no limit) to 268435455 bytes")?;
                self.message_size_limit = Some(n as u32);
            }
            "max_packet_size" => {
                let n = o.int(20..=i64::from(u32::MAX), "use 20 bytes or more")?;
                self.max_packet_size = Some(n as u32);
            }
            "max_keepalive" => {
                let n = o.int(0..=65_535, "use 10 to 65535 seconds")?;
                if (1..10).contains(&n) {
                    return Err(o.err(format!("{n} s is too short"), "use 10 to 65535 seconds"));
                }
                self.out.limits.max_keep_alive_secs = n as u16;
            }
            "retain_available" => self.out.mqtt.retain_available = o.bool()?,
            "sys_interval" => {
                let n = o.int(0..=65_535, "use 0 (no $SYS topics) to 65535 seconds")?;
                self.out.sys.interval_secs = n as u64;
            }
            "persistent_client_expiration" => {
                self.out.limits.max_session_expiry_secs = parse_expiration(o)?;
            }
            "queue_qos0_messages" => self.out.limits.queue_qos0_offline = o.bool()?,
            "memory_limit" => {
                let n = o.int(0..=i64::MAX, "use 0 (no limit) or a number of bytes")?;
                if n > 0 {
                    // midge's budget is in MiB; round up so nothing mosquitto allowed is refused.
                    self.out.limits.memory_budget_mib = (n as u64).div_ceil(1 << 20);
                }
            }
            "log_type" => {
                let level = match o.word()? {
                    "none" => LogLevel::Off,
                    "error" => LogLevel::Error,
                    "warning" => LogLevel::Warn,
                    "notice" | "information" | "subscribe" | "unsubscribe" | "websockets"
                    | "internal" => LogLevel::Info,
                    "debug" | "all" => LogLevel::Debug,
                    other => {
                        return Err(o.err(
                            format!("`{other}` is not a log type"),
                            "write debug, error, warning, notice, information, subscribe, unsubscribe, websockets, none or all",
                        ))
                    }
                };
                self.log_level = Some(self.log_level.map_or(level, |l| l.max(level)));
            }
            "include_dir" => {
                // As in mosquitto, only the main file may include others.
                if level == 0 {
                    let dir = o.path()?;
                    let cur = (self.cur, self.bridge.take());
                    for file in conf_files(&dir).map_err(|e| {
                        o.err(
                            format!("cannot read directory {}: {e}", dir.display()),
                            "create the directory or remove the line",
                        )
                    })? {
                        self.read_file(&file, level + 1)?;
                    }
                    // Back in the main file: the listener and bridge being configured before
                    // `include_dir` continue.
                    (self.cur, self.bridge) = cur;
                }
            }
            "connection" => {
                let name = o.word()?.to_owned();
                self.warnings.push(format!(
                    "{}: bridge `{name}` is not supported by midge, ignored with all its options",
                    o.loc
                ));
                self.bridge = Some(name);
            }
            _ => self.warn_once(
                o.key,
                format!(
                    "{}: unknown option `{}`, ignored (mosquitto refuses to start with it: check the spelling)",
                    o.loc, o.key
                ),
            ),
        }
        Ok(())
    }

    /// `listener PORT [BIND_ADDRESS | UNIX_SOCKET_PATH]`.
    fn start_listener(&mut self, o: &Opt<'_>) -> anyhow::Result<()> {
        self.local_only = false;
        let mut words = o.rest.split_whitespace();
        let Some(port) = words.next() else {
            return Err(o.err("has no port", "write `listener PORT [ADDRESS]`"));
        };
        let port: u16 = port.parse().map_err(|_| {
            o.err(
                format!("`{port}` is not a port number"),
                "use a port from 1 to 65535",
            )
        })?;
        let bind = words.next().filter(|w| !w.starts_with('#'));
        if let Some(extra) = words.next().filter(|w| !w.starts_with('#')) {
            return Err(o.err(
                format!("unexpected `{extra}`"),
                "write `listener PORT [ADDRESS]`",
            ));
        }
        let mut s = Section {
            opened: Some((o.loc.clone(), format!("listener {}", o.rest))),
            port: Some(port),
            bind: bind.map(|b| (b.to_owned(), o.loc.clone())),
            ..Default::default()
        };
        if port == 0 {
            let Some(path) = bind else {
                return Err(o.err(
                    "port 0 needs a unix socket path",
                    "use a port from 1 to 65535, or `listener 0 PATH` for a unix socket",
                ));
            };
            s.unix_socket = true;
            self.warnings.push(format!(
                "{}: `listener 0 {path}`: unix sockets are not supported by midge, this listener is ignored",
                o.loc
            ));
        }
        self.sections.push(s);
        self.cur = self.sections.len() - 1;
        Ok(())
    }

    /// The midge configuration, after every file is read.
    fn finish(mut self) -> anyhow::Result<(FileConfig, Vec<String>)> {
        let sections = std::mem::take(&mut self.sections);
        let mut listeners: Vec<(&Section, ListenerFile)> = Vec::new();
        let explicit = sections.len() > 1;
        for (i, s) in sections.iter().enumerate() {
            if s.unix_socket {
                continue;
            }
            let local = i == 0 && self.local_only;
            if i == 0 && !local {
                let Some((loc, key)) = &s.touched else {
                    continue;
                };
                if explicit && s.port.is_none() && s.bind.is_none() {
                    self.warnings.push(format!(
                        "{loc}: `{key}` comes before the first `listener` line, so (as in mosquitto) it opens the default listener on port {DEFAULT_PORT} on every interface; move it below a `listener` line if that is not intended"
                    ));
                }
            }
            let l = self.listener_file(s, local)?;
            listeners.push((s, l));
        }
        if listeners.is_empty() {
            let first = sections.iter().find_map(|s| s.opened.as_ref());
            let at = first.map_or_else(String::new, |(loc, _)| format!("{loc}: "));
            anyhow::bail!(
                "{at}no listener midge can serve (unix sockets are not supported); add a TCP listener, e.g. `listener 1883 127.0.0.1`"
            );
        }
        self.global_limits(&listeners);
        self.out.listener = listeners.into_iter().map(|(_, l)| l).collect();
        let from_message = self.message_size_limit.map(|m| {
            if m == 0 {
                DecodeLimits::PROTOCOL_MAX_PACKET_SIZE
            } else {
                m.saturating_add(MESSAGE_SIZE_HEADER_ALLOWANCE)
            }
        });
        let packet = [from_message, self.max_packet_size]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(DecodeLimits::PROTOCOL_MAX_PACKET_SIZE);
        self.out.limits.max_packet_size_bytes = packet.min(DecodeLimits::PROTOCOL_MAX_PACKET_SIZE);
        if let Some(level) = self.log_level {
            self.out.log.level = level.as_str().to_owned();
        }
        Ok((self.out, self.warnings))
    }

    /// `max_qos` and `max_topic_alias` are per listener in mosquitto and global in midge;
    /// per-listener connection limits raise the global one when they add up to more.
    fn global_limits(&mut self, listeners: &[(&Section, ListenerFile)]) {
        let qos: Vec<u8> = listeners
            .iter()
            .map(|(s, _)| s.max_qos.unwrap_or(2))
            .collect();
        if let Some(&min) = qos.iter().min() {
            self.out.mqtt.max_qos = min;
            if qos.iter().any(|&q| q != min) {
                self.warnings.push(format!(
                    "max_qos differs between listeners; midge grants one maximum QoS on every listener and uses the lowest, {min}"
                ));
            }
        }
        let aliases: Vec<u16> = listeners
            .iter()
            .map(|(s, _)| s.max_topic_alias.unwrap_or(MOSQUITTO_MAX_TOPIC_ALIAS))
            .collect();
        if let Some(&min) = aliases.iter().min() {
            self.out.limits.topic_alias_maximum = min;
            if aliases.iter().any(|&a| a != min) {
                self.warnings.push(format!(
                    "max_topic_alias differs between listeners; midge uses one value on every listener and uses the lowest, {min}"
                ));
            }
        }
        let sum: usize = listeners
            .iter()
            .filter_map(|(s, _)| s.max_connections)
            .fold(0, usize::saturating_add);
        self.out.limits.max_connections = self.out.limits.max_connections.max(sum);
    }

    /// One midge listener from a mosquitto listener; `local` for mosquitto 2's local-only
    /// mode (no `listener`, `port` or `bind_address`: localhost, anonymous by default).
    fn listener_file(&mut self, s: &Section, local: bool) -> anyhow::Result<ListenerFile> {
        let bind = if local {
            SocketAddr::from((Ipv4Addr::LOCALHOST, s.port.unwrap_or(DEFAULT_PORT))).to_string()
        } else {
            resolve_bind(s.bind.as_ref(), s.port.unwrap_or(DEFAULT_PORT))?
        };
        let tls = s.certfile.is_some() || s.keyfile.is_some();
        if tls && (s.certfile.is_none() || s.keyfile.is_none()) {
            let (have, missing) = if s.certfile.is_some() {
                ("certfile", "keyfile")
            } else {
                ("keyfile", "certfile")
            };
            anyhow::bail!(
                "{}: {have} is set but {missing} is not; set both for TLS, or neither",
                s.describe()
            );
        }
        let kind = match (s.websockets, tls) {
            (false, false) => ListenerKind::Mqtt,
            (false, true) => ListenerKind::Mqtts,
            (true, false) => ListenerKind::Ws,
            (true, true) => ListenerKind::Wss,
        };
        if !tls {
            for (set, key) in [
                (s.cafile.is_some(), "cafile"),
                (s.require_certificate, "require_certificate"),
                (s.use_identity_as_username, "use_identity_as_username"),
            ] {
                if set {
                    self.warn_once(
                        &format!("{key} without tls"),
                        format!(
                            "{}: `{key}` only applies to listeners with certfile and keyfile, ignored",
                            s.describe()
                        ),
                    );
                }
            }
        }
        if tls && s.require_certificate && s.cafile.is_none() {
            anyhow::bail!(
                "{}: require_certificate is true but there is no cafile to verify client certificates against (capath is not supported); set cafile to the PEM file of the CA that signs client certificates",
                s.describe()
            );
        }
        let security = if self.per_listener_settings {
            &s.security
        } else {
            &self.global
        };
        Ok(ListenerFile {
            bind,
            kind,
            path: None,
            cert_file: s.certfile.clone().filter(|_| tls),
            key_file: s.keyfile.clone().filter(|_| tls),
            ca_file: s.cafile.clone().filter(|_| tls),
            require_certificate: tls && s.require_certificate,
            // mosquitto only reads the identity of a certificate it required.
            use_identity_as_username: tls && s.require_certificate && s.use_identity_as_username,
            // mosquitto 2: anonymous clients are refused unless allowed, except in local-only
            // mode.
            allow_anonymous: Some(security.allow_anonymous.unwrap_or(local)),
            password_file: security.password_file.clone(),
            acl_file: security.acl_file.clone(),
            max_connections: s.max_connections,
        })
    }
}

/// The listener address: `localhost` is 127.0.0.1, no address is every IPv4 interface, a
/// host name is resolved (its first IPv4 address preferred).
fn resolve_bind(bind: Option<&(String, Loc)>, port: u16) -> anyhow::Result<String> {
    let Some((host, loc)) = bind else {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).to_string());
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)).to_string());
    }
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port).to_string());
    }
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .with_context(|| {
            format!("{loc}: cannot resolve the bind address `{host}`; write an IP address, e.g. 0.0.0.0 or 127.0.0.1")
        })?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .ok_or_else(|| {
            anyhow!("{loc}: the bind address `{host}` has no IP address; write an IP address, e.g. 0.0.0.0 or 127.0.0.1")
        })?;
    Ok(addr.to_string())
}

/// `persistent_client_expiration`: a positive number followed by h, d, w, m (30 days) or y
/// (365 days); seconds, capped at midge's "never".
fn parse_expiration(o: &Opt<'_>) -> anyhow::Result<u32> {
    const FIX: &str = "write a number followed by h, d, w, m or y, e.g. 14d";
    let w = o.word()?;
    let Some(unit) = w.chars().last() else {
        return Err(o.err("has no value", FIX));
    };
    let secs: u64 = match unit {
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(o.err(format!("`{w}` has no unit"), FIX)),
    };
    let n: u64 = w[..w.len() - unit.len_utf8()]
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| o.err(format!("`{w}` is not a positive duration"), FIX))?;
    Ok(u32::try_from(n.saturating_mul(secs)).unwrap_or(u32::MAX))
}

/// The `.conf` files of an `include_dir`, in mosquitto's order: alphabetical ignoring case,
/// upper case first.
fn conf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "conf") && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by_cached_key(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        (name.to_lowercase(), name)
    });
    Ok(files)
}

#[cfg(test)]
mod tests;
