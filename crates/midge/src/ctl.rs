//! `midge ctl`: the command-line front end of the admin API (`--listen-http`). Prints tables
//! for people and `--json` for scripts; exits 0 on success, 1 when the broker refused (the
//! message says why), 2 when it could not be reached. Output to a closed pipe (`| head`)
//! is dropped quietly.

/// `println!` that ignores a closed standard output.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Options of `midge ctl`.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The admin API's address (`midge serve --listen-http`).
    #[arg(long, env = "MIDGE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin token (default: read from --token-file).
    #[arg(long, env = "MIDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the admin token (`http.token_file` of the broker).
    #[arg(long, value_name = "FILE", default_value = midge_server::config::DEFAULT_TOKEN_FILE)]
    pub token_file: PathBuf,
    /// A user of the broker's `http.password_file` (HTTP Basic), instead of a token.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// That user's password.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// Print the API's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What `midge ctl` does.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// Broker overview: version, uptime, clients, messages, memory.
    Status,
    /// Connected clients.
    Clients {
        /// Only client ids containing this text.
        #[arg(long)]
        search: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One connected client.
    Client {
        /// Client id.
        id: String,
    },
    /// Disconnect a client (5.0 clients get DISCONNECT 0x98).
    Kick {
        /// Client id.
        id: String,
    },
    /// Sessions, online and offline.
    Sessions {
        /// Only client ids containing this text.
        #[arg(long)]
        search: Option<String>,
        /// Only offline sessions.
        #[arg(long, conflicts_with = "online")]
        offline: bool,
        /// Only online sessions.
        #[arg(long)]
        online: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One session with its subscriptions.
    Session {
        /// Client id.
        id: String,
    },
    /// Delete a session (its client, if connected, is disconnected).
    DeleteSession {
        /// Client id.
        id: String,
    },
    /// Subscriptions.
    Subscriptions {
        /// Only this client's.
        #[arg(long)]
        client: Option<String>,
        /// Only filters containing this text.
        #[arg(long)]
        search: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Retained messages.
    Retained {
        /// Topic filter.
        #[arg(long, default_value = "#")]
        filter: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete the retained message of a topic.
    DeleteRetained {
        /// Topic.
        topic: String,
    },
    /// Publish a message as the broker.
    Publish {
        /// Topic.
        topic: String,
        /// Payload (text).
        message: String,
        /// QoS.
        #[arg(short, long, default_value_t = 0)]
        qos: u8,
        /// Retain it.
        #[arg(short, long)]
        retain: bool,
    },
    /// Reload the broker's configuration (as SIGHUP does).
    Reload,
    /// Print the messages on a filter as they arrive, until interrupted.
    Watch {
        /// Topic filter.
        filter: String,
    },
}

/// An HTTP answer.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Client {
    host: String,
    authority: String,
    auth: Option<String>,
}

impl Client {
    fn new(args: &CtlArgs) -> anyhow::Result<Self> {
        let rest = args.url.strip_prefix("http://").ok_or_else(|| {
            anyhow::anyhow!("--url {}: only http:// URLs are supported (the admin API listens on loopback by default)", args.url)
        })?;
        let authority = rest.trim_end_matches('/').to_owned();
        let auth = match (&args.username, &args.password, &args.token) {
            (Some(u), Some(p), _) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            (Some(_), None, _) => anyhow::bail!("-u needs -P (the password)"),
            (None, _, Some(t)) => Some(format!("Bearer {t}")),
            (None, _, None) => std::fs::read_to_string(&args.token_file)
                .ok()
                .map(|t| format!("Bearer {}", t.trim())),
        };
        Ok(Client {
            host: authority.clone(),
            authority,
            auth,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach the admin API at http://{}", self.authority))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake failed")?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if let Some(a) = &self.auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let body = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = sender
            .send_request(req.body(body)?)
            .await
            .context("the admin API did not answer")?;
        Ok(resp)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// Runs `midge ctl`; returns the exit code.
pub async fn run(args: CtlArgs) -> i32 {
    match run_inner(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("midge ctl: {e:#}");
            2
        }
    }
}

async fn run_inner(args: &CtlArgs) -> anyhow::Result<i32> {
    let client = Client::new(args)?;
    use CtlCommand as C;
    let (method, path, body) = match &args.command {
        C::Status => (Method::GET, "/api/v1/broker".to_owned(), None),
        C::Clients { search, limit } => (
            Method::GET,
            format!(
                "/api/v1/clients?limit={limit}{}",
                search
                    .as_deref()
                    .map(|q| format!("&q={}", enc(q)))
                    .unwrap_or_default()
            ),
            None,
        ),
        C::Client { id } => (Method::GET, format!("/api/v1/clients/{}", enc(id)), None),
        C::Kick { id } => (
            Method::POST,
            format!("/api/v1/clients/{}/kick", enc(id)),
            None,
        ),
        C::Sessions {
            search,
            offline,
            online,
            limit,
        } => {
            let mut p = format!("/api/v1/sessions?limit={limit}");
            if let Some(q) = search {
                p.push_str(&format!("&q={}", enc(q)));
            }
            if *offline {
                p.push_str("&online=false");
            } else if *online {
                p.push_str("&online=true");
            }
            (Method::GET, p, None)
        }
        C::Session { id } => (Method::GET, format!("/api/v1/sessions/{}", enc(id)), None),
        C::DeleteSession { id } => (
            Method::DELETE,
            format!("/api/v1/sessions/{}", enc(id)),
            None,
        ),
        C::Subscriptions {
            client,
            search,
            limit,
        } => {
            let mut p = format!("/api/v1/subscriptions?limit={limit}");
            if let Some(c) = client {
                p.push_str(&format!("&client_id={}", enc(c)));
            }
            if let Some(q) = search {
                p.push_str(&format!("&q={}", enc(q)));
            }
            (Method::GET, p, None)
        }
        C::Retained { filter, limit } => (
            Method::GET,
            format!("/api/v1/retained?filter={}&limit={limit}", enc(filter)),
            None,
        ),
        C::DeleteRetained { topic } => (
            Method::DELETE,
            format!("/api/v1/retained?topic={}", enc(topic)),
            None,
        ),
        C::Publish {
            topic,
            message,
            qos,
            retain,
        } => (
            Method::POST,
            "/api/v1/publish".to_owned(),
            Some(serde_json::json!({
                "topic": topic, "payload": message, "qos": qos, "retain": retain
            })),
        ),
        C::Reload => (Method::POST, "/api/v1/reload".to_owned(), None),
        C::Watch { filter } => {
            return watch(&client, filter, args.json).await;
        }
    };
    let answer = client.call(method, &path, body).await?;
    let json: Value = if answer.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
    };
    if !answer.status.is_success() {
        let msg = json
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        eprintln!("midge ctl: {} {msg}", answer.status);
        return Ok(1);
    }
    if args.json {
        if !json.is_null() {
            say!("{json}");
        }
        return Ok(0);
    }
    print_human(&args.command, &json);
    Ok(0)
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn table(rows: &[Value], cols: &[&str]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| s(r, c)).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        say!("{}", parts.join("  ").trim_end());
    };
    line(cols.iter().map(|c| c.to_uppercase()).collect());
    for r in cells {
        line(r);
    }
}

fn print_human(cmd: &CtlCommand, json: &Value) {
    use CtlCommand as C;
    let list = |key: &str| {
        json.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let total = || {
        say!("({} in total)", s(json, "total"));
    };
    match cmd {
        C::Status | C::Client { .. } | C::Session { .. } => {
            if let Some(obj) = json.as_object() {
                for (k, v) in obj {
                    if k == "filters" {
                        continue;
                    }
                    say!("{k:<22} {}", s(json, k));
                    let _ = v;
                }
            }
            if let C::Session { .. } = cmd {
                let filters = list("filters");
                if !filters.is_empty() {
                    say!();
                    table(
                        &filters,
                        &[
                            "filter",
                            "qos",
                            "no_local",
                            "retain_as_published",
                            "subscription_id",
                        ],
                    );
                }
            }
        }
        C::Clients { .. } => {
            table(
                &list("clients"),
                &[
                    "client_id",
                    "username",
                    "address",
                    "protocol",
                    "keep_alive_secs",
                    "inflight",
                    "queued",
                    "subscriptions",
                ],
            );
            total();
        }
        C::Sessions { .. } => {
            table(
                &list("sessions"),
                &[
                    "client_id",
                    "online",
                    "protocol",
                    "expiry_secs",
                    "expires_in_secs",
                    "queued",
                    "inflight",
                    "subscriptions",
                ],
            );
            total();
        }
        C::Subscriptions { .. } => {
            table(
                &list("subscriptions"),
                &[
                    "client_id",
                    "filter",
                    "qos",
                    "no_local",
                    "retain_as_published",
                ],
            );
            total();
        }
        C::Retained { .. } => {
            table(
                &list("messages"),
                &["topic", "qos", "payload_bytes", "payload"],
            );
            total();
        }
        C::Kick { id } => say!("kicked {id}"),
        C::DeleteSession { id } => say!("deleted the session of {id}"),
        C::DeleteRetained { topic } => say!("deleted the retained message of {topic}"),
        C::Publish { .. } => say!("published, matched {} subscription(s)", s(json, "matched")),
        C::Reload => {
            let changes = list("changes");
            if changes.is_empty() {
                say!("reloaded, nothing changed");
            } else {
                say!("reloaded:");
                for c in changes {
                    say!("  {}", c.as_str().unwrap_or_default());
                }
            }
        }
        C::Watch { .. } => {}
    }
}

/// Streams `/api/v1/watch` and prints each message as `topic payload` (or JSON).
async fn watch(client: &Client, filter: &str, json: bool) -> anyhow::Result<i32> {
    let resp = client
        .send(
            Method::GET,
            &format!("/api/v1/watch?filter={}", enc(filter)),
            None,
        )
        .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        eprintln!("midge ctl: {status} {}", s(&v, "error"));
        return Ok(1);
    }
    let mut body = resp.into_body();
    let mut buf = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the watch stream broke")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(d) = line.strip_prefix("data:") {
                    let d = d.trim();
                    if json {
                        say!("{d}");
                    } else if let Ok(v) = serde_json::from_str::<Value>(d) {
                        say!("{} {}", s(&v, "topic"), s(&v, "payload"));
                    }
                }
            }
        }
    }
    Ok(0)
}
