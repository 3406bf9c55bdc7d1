//! The tokio side of midge: listeners, one driver task per connection, the broker's timer
//! task, `$SYS`, the HTTP listener (metrics, admin API, dashboard), limits, live reload and
//! graceful shutdown. Only this crate knows about the async runtime.

#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod driver;
pub mod http;
pub mod limits;
pub mod listener;
pub mod process;
pub mod reload;
pub mod storage;
pub mod sys;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use midge_broker::Broker;
use midge_storage::GroupCommitStore;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use auth::AuthPool;
pub use config::{
    ConfigError, FileConfig, ListenerConfig, ListenerFile, ListenerKind, ServerConfig,
};
use driver::DriverConfig;
use limits::Limits;
use listener::{BoundListener, Shared};
use process::{HeapProbe, MemoryGauge};
use reload::ListenerEntry;

/// How often TLS listeners look for changed certificate files.
pub const CERT_RELOAD_CHECK: Duration = Duration::from_secs(5);

/// Reads the configuration again (the config file and the command line), for reloads.
pub type ConfigSource = Arc<dyn Fn() -> Result<ServerConfig, String> + Send + Sync>;

/// A bound, not yet running server.
pub struct Server {
    config: ServerConfig,
    broker: Arc<Broker>,
    listeners: Vec<BoundListener>,
    store: Option<Arc<GroupCommitStore>>,
    pool: Option<Arc<AuthPool>>,
    shutdown: CancellationToken,
    http: Option<http::BoundHttp>,
    heap_probe: Option<HeapProbe>,
    source: Option<ConfigSource>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// What the running server's parts share: the HTTP API and reloads act through it.
pub struct Control {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The configuration in force.
    pub config: Mutex<ServerConfig>,
    pub(crate) listeners: Mutex<Vec<ListenerEntry>>,
    pub(crate) shared: Shared,
    /// Connection, rate and memory limits.
    pub limits: Arc<Limits>,
    pub(crate) pool: Mutex<Option<Arc<AuthPool>>>,
    source: Option<ConfigSource>,
    /// The store, if persistent.
    pub store: Option<Arc<GroupCommitStore>>,
    /// Memory as the budget sees it.
    pub memory: Arc<MemoryGauge>,
    /// When the server started.
    pub started: Instant,
    /// `$SYS` interval (replaced on reload).
    pub sys_interval: ArcSwap<Option<Duration>>,
    /// Serializes reloads.
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// Addresses actually bound (port 0 resolved), in the order of the configuration.
    pub local_addrs: Vec<SocketAddr>,
    /// The HTTP listener's address, if it has one.
    pub http_addr: Option<SocketAddr>,
    /// The broker, for inspection.
    pub broker: Arc<Broker>,
    /// Shared state of the running server.
    pub control: Arc<Control>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Server {
    /// Binds every listener (MQTT and HTTP), loads certificates and files, and opens the
    /// store.
    pub async fn bind(config: ServerConfig) -> std::io::Result<Self> {
        let settings = &config.auth;
        let pool = if config.listeners.iter().any(|l| l.password_file.is_some()) {
            Some(AuthPool::start(
                settings.check_threads,
                settings.max_pending_checks,
            )?)
        } else {
            None
        };
        let shutdown = CancellationToken::new();
        let mut listeners = Vec::new();
        for l in &config.listeners {
            listeners.push(
                BoundListener::bind(l.clone(), settings, pool.as_ref(), shutdown.child_token())
                    .await?,
            );
        }
        let http = match &config.http {
            Some(h) => Some(http::BoundHttp::bind(h).await?),
            None => None,
        };
        let (broker, store) = match &config.storage {
            None => (Broker::new(config.broker.clone()), None),
            Some(s) => {
                let (broker, store) = storage::open(s, &config.broker)?;
                (broker, Some(store))
            }
        };
        Ok(Server {
            broker: Arc::new(broker),
            config,
            listeners,
            store,
            pool,
            shutdown,
            http,
            heap_probe: None,
            source: None,
        })
    }

    /// Measures memory with `probe` (the allocator's figure) instead of the resident set.
    pub fn with_heap_probe(mut self, probe: HeapProbe) -> Self {
        self.heap_probe = Some(probe);
        self
    }

    /// Where reloads read the configuration from (SIGHUP, `midge ctl reload`).
    pub fn with_config_source(mut self, source: ConfigSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Addresses bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Starts accepting connections in background tasks.
    pub fn start(self) -> RunningServer {
        let shutdown = self.shutdown.clone();
        let tasks = TaskTracker::new();
        let local_addrs = self.local_addrs();
        let limits = Arc::new(Limits::new(
            self.config.max_connections,
            &self.config.limits,
        ));
        let budget_mib = limits.memory_budget() >> 20;
        match self.config.limits.memory_budget {
            Some(_) => info!(budget_mib, "memory budget: limits.memory_budget_mib"),
            None => info!(
                budget_mib,
                "memory budget: three quarters of the memory limit (RAM or cgroup limit, the lower); set limits.memory_budget_mib to choose"
            ),
        }
        self.broker.limits.publish_rate.store(
            self.config.limits.publish_rate,
            std::sync::atomic::Ordering::Relaxed,
        );
        let shared = Shared {
            broker: self.broker.clone(),
            cfg: Arc::new(ArcSwap::from_pointee(DriverConfig {
                limits: self.config.decode_limits(),
                connect_timeout: self.config.connect_timeout,
                tcp_keepalive: self.config.tcp_keepalive,
                live: limits.clone(),
            })),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        let mut entries = Vec::new();
        for (listener, configured) in self.listeners.into_iter().zip(&self.config.listeners) {
            entries.push(ListenerEntry {
                configured: configured.clone(),
                local_addr: listener.local_addr().ok(),
                runtime: listener.runtime.clone(),
                stop: listener.stop.clone(),
            });
            tasks.spawn(listener::accept_loop(listener, shared.clone()));
        }
        let memory = Arc::new(MemoryGauge::new(self.heap_probe));
        let control = Arc::new(Control {
            broker: self.broker.clone(),
            sys_interval: ArcSwap::from_pointee(self.config.sys_interval),
            config: Mutex::new(self.config),
            listeners: Mutex::new(entries),
            shared,
            limits: limits.clone(),
            pool: Mutex::new(self.pool),
            source: self.source,
            store: self.store,
            memory: memory.clone(),
            started: Instant::now(),
            reloading: tokio::sync::Mutex::new(()),
        });
        tasks.spawn(reload::watch_certificates(
            control.clone(),
            CERT_RELOAD_CHECK,
            shutdown.clone(),
        ));
        tasks.spawn(timer_loop(self.broker.clone(), shutdown.clone()));
        tasks.spawn(limits::memory_loop(limits, memory, shutdown.clone()));
        tasks.spawn(sys::sys_loop(control.clone(), shutdown.clone()));
        let http_addr = self.http.as_ref().and_then(|h| h.local_addr().ok());
        if let Some(h) = self.http {
            tasks.spawn(http::serve(h, control.clone(), shutdown.clone()));
        }
        RunningServer {
            local_addrs,
            http_addr,
            broker: self.broker,
            control,
            shutdown,
            tasks,
        }
    }
}

impl RunningServer {
    /// Stops accepting, sends DISCONNECT 0x8B to 5.0 clients, closes every connection and
    /// waits for them (at most `grace`).
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some connections did not close within {grace:?}");
        }
        if let Some(store) = &self.control.store {
            store.close();
        }
    }

    /// Reloads every TLS listener's certificates; connected clients stay.
    pub fn reload_certificates(&self) {
        self.control.reload_certificates(true);
    }

    /// Reloads every listener's password and ACL files; connected clients stay, and their
    /// next checks use the new files. A file that does not load keeps its previous version
    /// in force; the errors are returned.
    pub fn reload_auth_files(&self) -> Result<(), String> {
        self.control.reload_auth_files()
    }

    /// Reads the configuration again from the config source and applies it (SIGHUP):
    /// see [`Control::reload`].
    pub async fn reload(&self) -> Result<Vec<String>, String> {
        self.control.reload().await
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Addresses the MQTT listeners are bound to now (after reloads).
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.control.listener_addrs()
    }
}

async fn timer_loop(broker: Arc<Broker>, shutdown: CancellationToken) {
    loop {
        let now = driver::now();
        let wait = broker
            .next_deadline()
            .map(|t| t.since(now))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            // Cancel-safe: a timer.
            _ = tokio::time::sleep(wait) => broker.tick(driver::now()),
            // Cancel-safe: level-triggered.
            _ = shutdown.cancelled() => return,
        }
    }
}
