//! The tokio side of midge: listeners, one driver task per connection, the broker's timer
//! task, and graceful shutdown. Only this crate knows about the async runtime.

#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod driver;
pub mod listener;
pub mod storage;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use midge_broker::Broker;
use midge_storage::GroupCommitStore;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use auth::{AuthFiles, AuthPool};
pub use config::{
    ConfigError, FileConfig, ListenerConfig, ListenerFile, ListenerKind, ServerConfig,
};
use driver::DriverConfig;
use listener::{BoundListener, Shared};
use transport::tls::TlsAcceptorHandle;

/// How often TLS listeners look for changed certificate files.
pub const CERT_RELOAD_CHECK: Duration = Duration::from_secs(5);

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    broker: Arc<Broker>,
    listeners: Vec<BoundListener>,
    store: Option<Arc<GroupCommitStore>>,
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// Addresses actually bound (port 0 resolved), in the order of the configuration.
    pub local_addrs: Vec<SocketAddr>,
    /// The broker, for inspection.
    pub broker: Arc<Broker>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    tls: Vec<Arc<TlsAcceptorHandle>>,
    auth_files: Vec<AuthFiles>,
    store: Option<Arc<GroupCommitStore>>,
}

impl Server {
    /// Binds every listener and loads its certificates.
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
        let mut listeners = Vec::new();
        for l in &config.listeners {
            listeners.push(BoundListener::bind(l.clone(), settings, pool.as_ref()).await?);
        }
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
        })
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
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let local_addrs = self.local_addrs();
        let shared = Shared {
            broker: self.broker.clone(),
            cfg: Arc::new(DriverConfig {
                limits: self.config.decode_limits(),
                connect_timeout: self.config.connect_timeout,
            }),
            permits: Arc::new(Semaphore::new(self.config.max_connections)),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        let tls: Vec<_> = self
            .listeners
            .iter()
            .filter_map(|l| l.tls.clone())
            .collect();
        let mut auth_files = Vec::new();
        for mut listener in self.listeners {
            auth_files.push(std::mem::take(&mut listener.auth_files));
            tasks.spawn(listener::accept_loop(listener, shared.clone()));
        }
        if !tls.is_empty() {
            tasks.spawn(listener::watch_certificates(
                tls.clone(),
                CERT_RELOAD_CHECK,
                shutdown.clone(),
            ));
        }
        tasks.spawn(timer_loop(self.broker.clone(), shutdown.clone()));
        RunningServer {
            local_addrs,
            broker: self.broker,
            shutdown,
            tasks,
            tls,
            auth_files,
            store: self.store,
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
        if let Some(store) = &self.store {
            store.close();
        }
    }

    /// Reloads every TLS listener's certificates (SIGHUP); connected clients stay.
    pub fn reload_certificates(&self) {
        listener::reload_certificates(&self.tls, true);
    }

    /// Reloads every listener's password and ACL files (SIGHUP); connected clients stay,
    /// and their next checks use the new files. A file that does not load keeps its
    /// previous version in force; the errors are returned.
    pub fn reload_auth_files(&self) -> Result<(), String> {
        let errors: Vec<String> = self
            .auth_files
            .iter()
            .filter_map(|f| f.reload().err())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
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
