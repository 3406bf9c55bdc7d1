//! The tokio side of midge: listeners, one driver task per connection, the broker's timer
//! task, and graceful shutdown. Only this crate knows about the async runtime.

#![warn(missing_docs)]

pub mod config;
pub mod driver;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use midge_broker::Broker;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{ConfigError, FileConfig, ServerConfig};
use driver::DriverConfig;

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    broker: Arc<Broker>,
    listeners: Vec<TcpListener>,
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// Addresses actually bound (port 0 resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// The broker, for inspection.
    pub broker: Arc<Broker>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Server {
    /// Binds every listener.
    pub async fn bind(config: ServerConfig) -> std::io::Result<Self> {
        let mut listeners = Vec::new();
        for addr in &config.listeners {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            listeners.push(l);
        }
        Ok(Server {
            broker: Arc::new(Broker::new(config.broker.clone())),
            config,
            listeners,
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
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        let driver_cfg = Arc::new(DriverConfig {
            limits: self.config.decode_limits(),
            connect_timeout: self.config.connect_timeout,
        });
        for listener in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "listening for MQTT on mqtt://{addr}");
            }
            tasks.spawn(accept_loop(
                listener,
                self.broker.clone(),
                driver_cfg.clone(),
                permits.clone(),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        tasks.spawn(timer_loop(self.broker.clone(), shutdown.clone()));
        RunningServer {
            local_addrs,
            broker: self.broker,
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
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    cfg: Arc<DriverConfig>,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            // Cancel-safe: `accept` loses no connection when dropped.
            r = listener.accept() => r,
            // Cancel-safe: level-triggered.
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(driver::drive(
            stream,
            peer,
            broker.clone(),
            cfg.clone(),
            shutdown.clone(),
            permit,
        ));
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
