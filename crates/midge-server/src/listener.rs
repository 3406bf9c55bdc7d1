//! Listeners of four kinds (`mqtt`, `mqtts`, `ws`, `wss`): each accepts TCP connections,
//! performs its handshakes within the connect timeout, and hands the resulting transport
//! to the one connection driver.
//!
//! What a listener needs per connection (certificates, authentication, WebSocket path,
//! connection slots) is one `ListenerRuntime` behind an `ArcSwap`: a reload swaps it and the
//! next accepted connection uses the new one, while connections already open keep theirs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use midge_broker::auth::ListenerAuth;
use midge_broker::Broker;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::{listener_auth, AuthFiles, AuthPool, AuthSettings, PendingAuth};
use crate::config::{ListenerConfig, ListenerKind};
use crate::driver::{self, Closer, ConnSetup, DriverConfig};
use crate::limits::{SlotGuard, Slots};
use crate::transport::tls::{self, TlsAcceptorHandle};
use crate::transport::ws;

/// Everything a listener reads for a new connection; replaced as a whole on reload.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// Its configuration.
    pub config: ListenerConfig,
    /// `scheme://address` as bound.
    pub name: Arc<str>,
    /// The TLS configuration, for `mqtts` and `wss`.
    pub tls: Option<Arc<TlsAcceptorHandle>>,
    /// Who may connect and what they may do.
    pub auth: Arc<ListenerAuth>,
    /// The password and ACL files behind `auth`, to reload them.
    pub auth_files: AuthFiles,
    /// WebSocket path.
    pub ws_path: Arc<str>,
    /// This listener's connections: counted also without a limit (the maximum is then
    /// `usize::MAX`), so that a limit set by a reload counts the connections already open,
    /// and kept across reloads that keep the listener.
    pub slots: Arc<Slots>,
}

impl ListenerRuntime {
    /// Loads the certificates, password and ACL files of `config`; password checks run on
    /// `pool`. `name` is the listener's bound name.
    pub fn load(
        config: ListenerConfig,
        name: Arc<str>,
        settings: &AuthSettings,
        pool: Option<&Arc<AuthPool>>,
    ) -> std::io::Result<Self> {
        Self::load_reusing(config, name, settings, pool, None).map(|(rt, _)| rt)
    }

    /// `load` for a listener a reload changes: its password and ACL objects are kept
    /// (see `listener_auth`), and the new contents are applied with the `PendingAuth`
    /// when the reload commits.
    pub fn load_reusing(
        config: ListenerConfig,
        name: Arc<str>,
        settings: &AuthSettings,
        pool: Option<&Arc<AuthPool>>,
        reuse: Option<&AuthFiles>,
    ) -> std::io::Result<(Self, PendingAuth)> {
        let alpn = if config.kind.is_ws() {
            tls::ALPN_HTTP1
        } else {
            tls::ALPN_MQTT
        };
        let invalid = |e: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("listener {name}: {e}"),
            )
        };
        let tls = match &config.tls {
            Some(t) => Some(Arc::new(
                TlsAcceptorHandle::with_alpn(t.clone(), alpn)
                    .map_err(|e| invalid(e.to_string()))?,
            )),
            None => None,
        };
        let (auth, auth_files, pending) =
            listener_auth(&config, settings, pool, reuse).map_err(|e| invalid(e.to_string()))?;
        let rt = ListenerRuntime {
            ws_path: config.ws_path.as_str().into(),
            slots: Slots::new(config.max_connections.unwrap_or(usize::MAX)),
            config,
            name,
            tls,
            auth: Arc::new(auth),
            auth_files,
        };
        Ok((rt, pending))
    }
}

/// A bound listener.
#[derive(Debug)]
pub struct BoundListener {
    /// The socket.
    pub tcp: TcpListener,
    /// What new connections use.
    pub runtime: Arc<ArcSwap<ListenerRuntime>>,
    /// Stops this listener (and closes its connections) without stopping the server.
    pub stop: CancellationToken,
}

impl BoundListener {
    /// Binds the socket and loads the certificates, password and ACL files; password checks
    /// run on `pool`. `stop` is cancelled to remove the listener.
    pub async fn bind(
        config: ListenerConfig,
        settings: &AuthSettings,
        pool: Option<&Arc<AuthPool>>,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let url = format!("{}://{}", config.kind.scheme(), config.addr);
        // Loaded first: a listener with bad files is refused before its port is taken.
        let probe = ListenerRuntime::load(config.clone(), url.as_str().into(), settings, pool)?;
        let tcp = listen(config.addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {url}: {e}")))?;
        let bound = tcp.local_addr()?;
        let name: Arc<str> = format!("{}://{bound}", config.kind.scheme()).into();
        let runtime = ListenerRuntime { name, ..probe };
        Ok(BoundListener {
            tcp,
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            stop,
        })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Connections the kernel may hold waiting for `accept` (capped by `net.core.somaxconn`);
/// tokio's default of 128 overflows under connection storms.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener with `SO_REUSEADDR` and a backlog of `LISTEN_BACKLOG`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What every connection task of a server shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Driver settings (replaced on reload).
    pub cfg: Arc<ArcSwap<DriverConfig>>,
    /// Server shutdown.
    pub shutdown: CancellationToken,
    /// Every task of the server.
    pub tasks: TaskTracker,
}

/// The slots a connection holds, given back when it ends.
#[derive(Debug)]
struct Permit {
    _total: SlotGuard,
    _listener: SlotGuard,
}

/// Takes a slot in total and on the listener, and a token of the connection rate.
fn admit(rt: &ListenerRuntime, cfg: &DriverConfig, peer: SocketAddr) -> Option<Permit> {
    let live = &cfg.live;
    let Some(total) = live.slots.try_take() else {
        live.stats
            .refused_max_connections
            .fetch_add(1, Ordering::Relaxed);
        if let Some(unlogged) = live.refusal_logs.max_connections.admit(driver::now().0) {
            warn!(%peer, unlogged, "connection refused: limits.max_connections reached (logged at most once a second; unlogged: refusals since the last line)");
        }
        return None;
    };
    let Some(listener) = rt.slots.try_take() else {
        live.stats
            .refused_max_connections
            .fetch_add(1, Ordering::Relaxed);
        let log = &live.refusal_logs.listener_max_connections;
        if let Some(unlogged) = log.admit(driver::now().0) {
            warn!(%peer, listener = %rt.name, unlogged, "connection refused: the listener's max_connections reached (logged at most once a second; unlogged: refusals since the last line)");
        }
        return None;
    };
    if !live.accept_allowed() {
        if let Some(unlogged) = live.refusal_logs.connection_rate.admit(driver::now().0) {
            warn!(%peer, unlogged, "connection refused: limits.max_connection_rate_per_sec exceeded (logged at most once a second; unlogged: refusals since the last line)");
        }
        return None;
    }
    Some(Permit {
        _total: total,
        _listener: listener,
    })
}

/// Accepts connections until shutdown or until the listener is removed; removing it also
/// closes its connections.
pub async fn accept_loop(listener: BoundListener, shared: Shared) {
    if let Ok(addr) = listener.local_addr() {
        let kind = listener.runtime.load().config.kind;
        info!(%addr, "listening for MQTT on {}://{addr}", kind.scheme());
    }
    let stop = listener.stop.clone();
    // The listener's connections stop with the server or with the listener (`stop` is a
    // child of the server's shutdown).
    let closer = Closer::new();
    loop {
        let accepted = tokio::select! {
            // Cancel-safe: `accept` loses no connection when dropped.
            r = listener.tcp.accept() => r,
            // Cancel-safe: level-triggered.
            _ = stop.cancelled() => {
                closer.close();
                return;
            }
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
        let rt = listener.runtime.load_full();
        let cfg = shared.cfg.load_full();
        let Some(permit) = admit(&rt, &cfg, peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        if let Some(idle) = cfg.tcp_keepalive {
            if let Err(e) = set_keepalive(&stream, idle) {
                debug!(%peer, error = %e, "could not enable TCP keep-alive");
            }
        }
        let s = &shared;
        match Handshake::for_kind(rt.config.kind) {
            // The plain path spawns the driver itself: the smallest task per connection.
            None => {
                s.tasks.spawn(driver::drive(
                    stream,
                    peer,
                    setup(s, &rt, None),
                    cfg,
                    &closer,
                    permit,
                ));
            }
            Some(handshake) => {
                let admitted = Admitted {
                    stream,
                    peer,
                    permit,
                };
                s.tasks.spawn(handshake_then_drive(
                    handshake,
                    admitted,
                    rt,
                    shared.clone(),
                    cfg,
                    closer.clone(),
                ));
            }
        }
    }
}

/// Interval between TCP keep-alive probes (or the idle time, if shorter).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Unanswered probes after which the kernel closes the connection.
const KEEPALIVE_PROBES: u32 = 4;

/// SO_KEEPALIVE: after `idle` without traffic the kernel probes the peer, and a peer that
/// stopped answering (powered off, unplugged, behind a NAT that forgot it) is closed.
fn set_keepalive(stream: &TcpStream, idle: Duration) -> std::io::Result<()> {
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(KEEPALIVE_INTERVAL.min(idle));
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "macos"
    ))]
    let ka = ka.with_retries(KEEPALIVE_PROBES);
    socket2::SockRef::from(stream).set_tcp_keepalive(&ka)
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

/// An accepted connection with its slots.
struct Admitted {
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
}

/// TLS and WebSocket handshakes, within the connect timeout, then the driver.
async fn handshake_then_drive(
    handshake: Handshake,
    admitted: Admitted,
    rt: Arc<ListenerRuntime>,
    s: Shared,
    cfg: Arc<DriverConfig>,
    closer: Arc<Closer>,
) {
    let Admitted {
        stream,
        peer,
        permit,
    } = admitted;
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    // A WebSocket message holds at most one maximum-size packet plus its framing.
    let max_message = cfg.limits.max_packet_size as usize + 16;
    let tls = rt.tls.clone();
    match handshake {
        Handshake::Tls => {
            let Some(t) = within(deadline, peer, "TLS", tls_accept(tls, stream)).await else {
                return;
            };
            let setup = setup(&s, &rt, tls::peer_identity(&t));
            driver::drive(t, peer, setup, cfg, &closer, permit).await
        }
        Handshake::Ws => {
            let handshake = ws::accept(stream, &rt.ws_path, max_message);
            let Some(w) = within(deadline, peer, "WebSocket", handshake).await else {
                return;
            };
            let setup = setup(&s, &rt, None);
            driver::drive(w, peer, setup, cfg, &closer, permit).await
        }
        Handshake::TlsThenWs => {
            let Some(t) = within(deadline, peer, "TLS", tls_accept(tls, stream)).await else {
                return;
            };
            let identity = tls::peer_identity(&t);
            let handshake = ws::accept(t, &rt.ws_path, max_message);
            let Some(w) = within(deadline, peer, "WebSocket", handshake).await else {
                return;
            };
            let setup = setup(&s, &rt, identity);
            driver::drive(w, peer, setup, cfg, &closer, permit).await
        }
    }
}

fn setup(s: &Shared, rt: &ListenerRuntime, cert_identity: Option<String>) -> ConnSetup {
    ConnSetup {
        broker: s.broker.clone(),
        auth: rt.auth.clone(),
        cert_identity: cert_identity.map(String::into_boxed_str),
        listener: rt.name.clone(),
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
