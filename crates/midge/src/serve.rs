//! `midge serve`: loads the configuration, starts the server, stops it on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use midge_server::{FileConfig, ListenerFile, ListenerKind, Server, ServerConfig};
use tracing_subscriber::EnvFilter;

/// Options of `midge serve`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on for MQTT over TCP (repeatable; replaces the default
    /// 127.0.0.1:1883 and the config file's listeners). Port 0 picks a free port.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Address for MQTT over TLS (repeatable; needs --cert and --key).
    #[arg(long = "listen-tls", value_name = "ADDR")]
    pub listen_tls: Vec<String>,
    /// Address for MQTT over WebSocket, path /mqtt (repeatable).
    #[arg(long = "listen-ws", value_name = "ADDR")]
    pub listen_ws: Vec<String>,
    /// Address for MQTT over secure WebSocket (repeatable; needs --cert and --key).
    #[arg(long = "listen-wss", value_name = "ADDR")]
    pub listen_wss: Vec<String>,
    /// PEM certificate chain for TLS listeners.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key for TLS listeners.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// Refuse TLS clients without a valid certificate (needs --cafile).
    #[arg(long)]
    pub require_certificate: bool,
    /// Use the client certificate's CN (else first SAN) as the username.
    #[arg(long)]
    pub use_identity_as_username: bool,
    /// Password file (midge passwd or mosquitto_passwd) for every listener given here.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// ACL file (mosquitto acl_file format) for every listener given here.
    #[arg(long, value_name = "FILE")]
    pub acl_file: Option<PathBuf>,
    /// Accept clients without credentials on every listener given here (default: only on
    /// loopback addresses without a password file).
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Data directory of the store (default: midge-data; overrides `storage.data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep sessions, queues and retained messages in memory only (nothing survives a
    /// restart).
    #[arg(long, conflicts_with = "data_dir")]
    pub in_memory: bool,
    /// If the data directory cannot be opened, move it aside and start empty (otherwise
    /// midge refuses to start).
    #[arg(long, conflicts_with = "in_memory")]
    pub recover_empty: bool,
    /// TOML configuration file (see README for the keys).
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        conflicts_with = "mosquitto_conf"
    )]
    pub config: Option<PathBuf>,
    /// Read an existing mosquitto.conf instead of a midge config file (options midge does
    /// not support are reported once each; `midge check-config` shows the translation).
    #[arg(long, value_name = "FILE")]
    pub mosquitto_conf: Option<PathBuf>,
    /// Serve /metrics, the admin API and the dashboard over HTTP on ADDR (overrides
    /// `http.listen`), e.g. 127.0.0.1:8080.
    #[arg(long = "listen-http", value_name = "ADDR")]
    pub listen_http: Option<String>,
    /// Log format: text (default) or json (overrides `log.format`).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log level, or levels per module, e.g. `warn,midge_server=debug` (overrides
    /// `log.level`; RUST_LOG overrides both).
    #[arg(long, value_name = "LEVELS")]
    pub log_level: Option<String>,
    /// Worker threads (default: one per CPU core; overrides `server.worker_threads`).
    #[arg(long = "workers", value_name = "N")]
    pub workers: Option<usize>,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Runs the broker until a signal stops it.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (config, warnings) = load_config(&args)?;
    init_logging(&config.log, args.verbose)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = builder
        .enable_all()
        .thread_name("midge-worker")
        .build()
        .context("cannot start the async runtime")?;
    let source_args = args.clone();
    let source: midge_server::ConfigSource = std::sync::Arc::new(move || {
        load_config(&source_args)
            .map(|(c, _)| c)
            .map_err(|e| format!("{e:#}"))
    });
    runtime.block_on(async move {
        // Before anything listens: a SIGTERM that arrives once clients can connect must
        // stop the broker gracefully, not kill it with the default action.
        let mut signals = Signals::listen()?;
        let mut server = Server::bind(config).await?.with_config_source(source);
        if let Some(probe) = crate::heap::probe() {
            server = server.with_heap_probe(probe);
        }
        let running = server.start();
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "midge started");
        signals.wait(&running).await?;
        tracing::info!("shutting down");
        running.shutdown(Duration::from_secs(10)).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Reads the config file (midge TOML or mosquitto.conf) and applies the flags: the whole
/// configuration, as at start and on every reload. Also returns warnings to log (options
/// of a mosquitto.conf that midge does not support).
pub fn load_config(args: &ServeArgs) -> anyhow::Result<(ServerConfig, Vec<String>)> {
    let (mut file, origin, warnings) = match (&args.config, &args.mosquitto_conf) {
        (Some(path), _) => (
            FileConfig::load(path)?,
            path.display().to_string(),
            Vec::new(),
        ),
        (None, Some(path)) => {
            let (file, warnings) = crate::mosquitto_conf::load(path)?;
            (file, path.display().to_string(), warnings)
        }
        (None, None) => (FileConfig::default(), "command line".to_owned(), Vec::new()),
    };
    if let Some(n) = args.workers {
        file.server.worker_threads = n;
    }
    if let Some(dir) = &args.data_dir {
        file.storage.data_dir = dir.clone();
        file.storage.in_memory = false;
    }
    if args.in_memory {
        file.storage.in_memory = true;
    }
    if let Some(addr) = &args.listen_http {
        file.http.listen = Some(addr.clone());
    }
    if let Some(f) = &args.log_format {
        file.log.format = f.clone();
    }
    if let Some(l) = &args.log_level {
        file.log.level = l.clone();
    }
    let mut config = ServerConfig::from_file(file, &cli_listeners(args)?, &origin)?;
    if let Some(s) = config.storage.as_mut() {
        s.recover_empty = args.recover_empty;
    }
    Ok((config, warnings))
}

/// The listeners given by flags, each with the flags' TLS and authentication settings.
fn cli_listeners(args: &ServeArgs) -> anyhow::Result<Vec<ListenerFile>> {
    let kinds = [
        (&args.listen, ListenerKind::Mqtt),
        (&args.listen_tls, ListenerKind::Mqtts),
        (&args.listen_ws, ListenerKind::Ws),
        (&args.listen_wss, ListenerKind::Wss),
    ];
    let mut out = Vec::new();
    for (addrs, kind) in kinds {
        for bind in addrs {
            let tls = kind.is_tls();
            out.push(ListenerFile {
                bind: bind.clone(),
                kind,
                cert_file: args.cert.clone().filter(|_| tls),
                key_file: args.key.clone().filter(|_| tls),
                ca_file: args.cafile.clone().filter(|_| tls),
                require_certificate: args.require_certificate && tls,
                use_identity_as_username: args.use_identity_as_username && tls,
                allow_anonymous: args.allow_anonymous.then_some(true),
                password_file: args.password_file.clone(),
                acl_file: args.acl_file.clone(),
                ..Default::default()
            });
        }
    }
    let any_tls = !args.listen_tls.is_empty() || !args.listen_wss.is_empty();
    if !any_tls && (args.cert.is_some() || args.key.is_some() || args.cafile.is_some()) {
        anyhow::bail!("--cert, --key and --cafile apply to TLS listeners: add --listen-tls ADDR or --listen-wss ADDR");
    }
    if out.is_empty()
        && (args.password_file.is_some() || args.acl_file.is_some() || args.allow_anonymous)
    {
        // Security flags without listener flags apply to the default listener.
        out.push(ListenerFile {
            bind: midge_server::config::DEFAULT_LISTEN.to_owned(),
            allow_anonymous: args.allow_anonymous.then_some(true),
            password_file: args.password_file.clone(),
            acl_file: args.acl_file.clone(),
            ..Default::default()
        });
    }
    Ok(out)
}

/// The filter of a `log.level` list, or an error naming the key and the fix.
pub fn log_filter(levels: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(levels).map_err(|e| {
        anyhow::anyhow!(
            "log.level (--log-level): `{levels}` is not a level list ({e}); use e.g. \"info\" or \"warn,midge_server=debug\""
        )
    })
}

/// Text or JSON logs at the configured levels; `-v`/`-vv` raise every module to debug or
/// trace, and `RUST_LOG` overrides both.
fn init_logging(log: &midge_server::config::LogConfig, verbose: u8) -> anyhow::Result<()> {
    let levels = match verbose {
        0 => log.level.clone(),
        1 => "debug".to_owned(),
        _ => "trace".to_owned(),
    };
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => log_filter(&levels)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log.json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    Ok(())
}

/// The signals `midge serve` handles, listened for from the start.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
                hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for SIGINT or SIGTERM; SIGHUP reloads the configuration (and with it
    /// certificates, password and ACL files) meanwhile.
    async fn wait(&mut self, running: &midge_server::RunningServer) -> anyhow::Result<()> {
        #[cfg(unix)]
        loop {
            tokio::select! {
                // Cancel-safe: a signal stream keeps what arrived until it is read.
                _ = self.int.recv() => break,
                // Cancel-safe: as above.
                _ = self.term.recv() => break,
                // Cancel-safe: as above.
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration, certificates, password and ACL files");
                    if let Err(e) = running.reload().await {
                        tracing::warn!(error = %e, "reload refused; the running configuration stays");
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = running;
            tokio::signal::ctrl_c()
                .await
                .context("cannot listen for Ctrl-C")?;
        }
        Ok(())
    }
}
