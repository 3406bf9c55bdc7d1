//! Listeners of four kinds (`mqtt`, `mqtts`, `ws`, `wss`): each accepts TCP connections,
//! performs its handshakes within the connect timeout, and hands the resulting transport
//! to the one connection driver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use midge_broker::auth::ListenerAuth;
use midge_broker::Broker;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{listener_auth, AuthFiles, AuthPool, AuthSettings};
use crate::config::{ListenerConfig, ListenerKind};
use crate::driver::{self, ConnSetup, DriverConfig};
use crate::transport::tls::{self, TlsAcceptorHandle};
use crate::transport::ws;

/// A bound listener.
#[derive(Debug)]
pub struct BoundListener {
    /// Its configuration.
    pub config: ListenerConfig,
    /// The socket.
    pub tcp: TcpListener,
    /// The TLS configuration, for `mqtts` and `wss`.
    pub tls: Option<Arc<TlsAcceptorHandle>>,
    /// Who may connect and what they may do.
    pub auth: Arc<ListenerAuth>,
    /// The password and ACL files behind `auth`, to reload them.
    pub auth_files: AuthFiles,
}

impl BoundListener {
    /// Binds the socket and loads the certificates, password and ACL files; password checks
    /// run on `pool`.
    pub async fn bind(
        config: ListenerConfig,
        settings: &AuthSettings,
        pool: Option<&Arc<AuthPool>>,
    ) -> std::io::Result<Self> {
        let url = format!("{}://{}", config.kind.scheme(), config.addr);
        let alpn = if config.kind.is_ws() {
            tls::ALPN_HTTP1
        } else {
            tls::ALPN_MQTT
        };
        let tls = match &config.tls {
            Some(t) => Some(Arc::new(
                TlsAcceptorHandle::with_alpn(t.clone(), alpn).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("listener {url}: {e}"),
                    )
                })?,
            )),
            None => None,
        };
        let (auth, auth_files) = listener_auth(&config, settings, pool).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("listener {url}: {e}"),
            )
        })?;
        let auth = Arc::new(auth);
        let tcp = TcpListener::bind(config.addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {url}: {e}")))?;
        Ok(BoundListener {
            config,
            tcp,
            tls,
            auth,
            auth_files,
        })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// What every connection task of a server shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Driver settings.
    pub cfg: Arc<DriverConfig>,
    /// Connection slots (`max_connections`).
    pub permits: Arc<Semaphore>,
    /// Server shutdown.
    pub shutdown: CancellationToken,
    /// Every task of the server.
    pub tasks: TaskTracker,
}

/// Accepts connections until shutdown.
pub async fn accept_loop(listener: BoundListener, shared: Shared) {
    let kind = listener.config.kind;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "listening for MQTT on {}://{addr}", kind.scheme());
    }
    let ws_path: Arc<str> = listener.config.ws_path.as_str().into();
    let handshake = Handshake::for_kind(kind);
    loop {
        let accepted = tokio::select! {
            // Cancel-safe: `accept` loses no connection when dropped.
            r = listener.tcp.accept() => r,
            // Cancel-safe: level-triggered.
            _ = shared.shutdown.cancelled() => return,
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
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            warn!(%peer, "connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let s = &shared;
        match handshake {
            // The plain path spawns the driver itself: the smallest task per connection.
            None => {
                s.tasks.spawn(driver::drive(
                    stream,
                    peer,
                    setup(s, &listener.auth, None),
                    s.cfg.clone(),
                    s.shutdown.clone(),
                    permit,
                ));
            }
            Some(handshake) => {
                let tls = listener.tls.clone();
                s.tasks.spawn(handshake_then_drive(
                    handshake,
                    stream,
                    peer,
                    tls,
                    listener.auth.clone(),
                    ws_path.clone(),
                    shared.clone(),
                    permit,
                ));
            }
        }
    }
}

/// What a listener does between accept and MQTT.
#[derive(Debug, Clone, Copy)]
enum Handshake {
    Tls,
    Ws,
    TlsThenWs,
}

impl Handshake {
    /// None for plain MQTT, whose connections go straight to the driver.
    fn for_kind(kind: ListenerKind) -> Option<Handshake> {
        match kind {
            ListenerKind::Mqtt => None,
            ListenerKind::Mqtts => Some(Handshake::Tls),
            ListenerKind::Ws => Some(Handshake::Ws),
            ListenerKind::Wss => Some(Handshake::TlsThenWs),
        }
    }
}

/// TLS and WebSocket handshakes, within the connect timeout, then the driver.
// Each argument is one owned piece of the new connection's task; bundling them would only
// add a struct that is unpacked at once.
#[allow(clippy::too_many_arguments)]
async fn handshake_then_drive(
    handshake: Handshake,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<TlsAcceptorHandle>>,
    auth: Arc<ListenerAuth>,
    ws_path: Arc<str>,
    s: Shared,
    permit: OwnedSemaphorePermit,
) {
    let deadline = tokio::time::Instant::now() + s.cfg.connect_timeout;
    // A WebSocket message holds at most one maximum-size packet plus its framing.
    let max_message = s.cfg.limits.max_packet_size as usize + 16;
    let (cfg, shutdown) = (s.cfg.clone(), s.shutdown.clone());
    match handshake {
        Handshake::Tls => {
            let Some(t) = within(deadline, peer, "TLS", tls_accept(tls, stream)).await else {
                return;
            };
            let setup = setup(&s, &auth, tls::peer_identity(&t));
            driver::drive(t, peer, setup, cfg, shutdown, permit).await
        }
        Handshake::Ws => {
            let handshake = ws::accept(stream, &ws_path, max_message);
            let Some(w) = within(deadline, peer, "WebSocket", handshake).await else {
                return;
            };
            let setup = setup(&s, &auth, None);
            driver::drive(w, peer, setup, cfg, shutdown, permit).await
        }
        Handshake::TlsThenWs => {
            let Some(t) = within(deadline, peer, "TLS", tls_accept(tls, stream)).await else {
                return;
            };
            let identity = tls::peer_identity(&t);
            let handshake = ws::accept(t, &ws_path, max_message);
            let Some(w) = within(deadline, peer, "WebSocket", handshake).await else {
                return;
            };
            let setup = setup(&s, &auth, identity);
            driver::drive(w, peer, setup, cfg, shutdown, permit).await
        }
    }
}

fn setup(s: &Shared, auth: &Arc<ListenerAuth>, cert_identity: Option<String>) -> ConnSetup {
    ConnSetup {
        broker: s.broker.clone(),
        auth: auth.clone(),
        cert_identity: cert_identity.map(String::into_boxed_str),
    }
}

async fn tls_accept(
    tls: Option<Arc<TlsAcceptorHandle>>,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let tls = tls.ok_or_else(|| std::io::Error::other("TLS listener without certificates"))?;
    tls.acceptor().accept(stream).await
}

/// Runs a handshake until `deadline`; a failure is logged and closes the connection.
async fn within<T, E: std::fmt::Display>(
    deadline: tokio::time::Instant,
    peer: SocketAddr,
    what: &str,
    handshake: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            info!(%peer, error = %e, "{what} handshake failed");
            None
        }
        Err(_) => {
            info!(%peer, "{what} handshake timed out");
            None
        }
    }
}

/// Reloads the certificates of TLS listeners whose files changed, every `every`, until
/// shutdown. A failed reload is logged and the running certificates stay.
pub async fn watch_certificates(
    handles: Vec<Arc<TlsAcceptorHandle>>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            // Cancel-safe: a timer.
            _ = tokio::time::sleep(every) => reload_certificates(&handles, false),
            // Cancel-safe: level-triggered.
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Reloads TLS certificates now (`force`) or if their files changed.
pub fn reload_certificates(handles: &[Arc<TlsAcceptorHandle>], force: bool) {
    for h in handles {
        match h.reload(force) {
            Ok(true) => {
                info!(cert = %h.settings().cert_file.display(), "TLS certificates reloaded")
            }
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "TLS certificates not reloaded; the previous ones stay in use")
            }
        }
    }
}
