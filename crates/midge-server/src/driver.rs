//! One task per client connection: reads bytes, decodes every complete packet, feeds the
//! connection state machine, and writes what it produced with vectored writes. Reading
//! stops while too much output is pending (backpressure on a slow reader).
//!
//! Waiting is one `poll_fn` over every source (shutdown, socket, timer, wake-ups) rather
//! than a `select!` of futures: an idle connection's task then stores no future per
//! source, which keeps its memory small. For the same reason shutdown reaches a connection
//! through its wake-up flag (`Closer`) rather than a cancellation future in its task.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use futures_util::task::AtomicWaker;
use midge_broker::auth::ListenerAuth;
use midge_broker::{Broker, CloseReason, ConnectInfo, Connection, Notify, OutBuffer, Timestamp};
use midge_codec::{decode, DecodeLimits};
use parking_lot::Mutex;
use slab::Slab;
use tracing::{debug, info};

use crate::limits::{Bucket, Limits};
pub use crate::transport::Transport;

/// Stop reading from a client while this many bytes wait to be written to it.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// First read size; reads grow (doubling) while they fill the buffer, up to `READ_MAX`, and
/// shrink again when they do not. The buffer is released whenever it is drained.
const READ_MIN: usize = 1024;
/// Largest read.
const READ_MAX: usize = 64 * 1024;
/// Slices per vectored write.
const MAX_IOVECS: usize = 64;
/// `timer_at` when no deadline is armed.
const UNARMED: u64 = u64::MAX;
/// How long a closing connection may take to send its last packets.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection may take to close its write side.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// The broker's clock: milliseconds since the UNIX epoch.
pub fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// Wakes a connection task. Polled in place (no future to store), so an idle connection
/// pays only for this shared flag and waker.
#[derive(Debug, Default)]
pub struct TaskNotify {
    woken: AtomicBool,
    waker: AtomicWaker,
}

impl Notify for TaskNotify {
    fn notify(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl TaskNotify {
    /// Ready (and reset) once `notify` was called since the last ready poll.
    fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The open connections of a listener, so that they can be closed together (server
/// shutdown, listener removed by a reload). Each connection keeps its key here (in its
/// `Registered` guard) instead of a cancellation future in its task: 16 bytes of a shared
/// table rather than 72 in every task.
#[derive(Debug, Default)]
pub struct Closer {
    closed: AtomicBool,
    conns: Mutex<Slab<Arc<TaskNotify>>>,
}

impl Closer {
    /// A closer with no connections.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Closes every connection registered now or later: each sends what its protocol
    /// version says to a client when the server goes away and ends.
    pub fn close(&self) {
        // Set before the wake-ups: a woken connection must see it, and one registered from
        // now on finds it on its first poll.
        self.closed.store(true, Ordering::SeqCst);
        for (_, notify) in self.conns.lock().iter() {
            notify.notify();
        }
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Connections registered and not yet ended.
    #[cfg(test)]
    fn registered(&self) -> usize {
        self.conns.lock().len()
    }

    fn register(self: &Arc<Self>, notify: Arc<TaskNotify>) -> Registered {
        let key = self.conns.lock().insert(notify);
        Registered {
            closer: self.clone(),
            key,
        }
    }
}

/// A connection's place in its `Closer`, given up when the connection ends.
#[derive(Debug)]
struct Registered {
    closer: Arc<Closer>,
    key: usize,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.closer.conns.lock().try_remove(self.key);
    }
}

/// Settings a driver needs.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Decode limits.
    pub limits: DecodeLimits,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle time before TCP keep-alive probes on accepted sockets; `None`: off.
    pub tcp_keepalive: Option<Duration>,
    /// Byte rate and memory budget.
    pub live: Arc<Limits>,
}

/// Runs one connection until it closes. `guard` is dropped when it has (a connection
/// permit, say).
pub fn drive<T: Transport, G: Send>(
    transport: T,
    peer: SocketAddr,
    setup: ConnSetup,
    cfg: Arc<DriverConfig>,
    closer: &Arc<Closer>,
    guard: G,
) -> impl Future<Output = ()> + Send {
    // No tracing span around the task (it would take 40 bytes of every connection's task):
    // the connect and disconnect lines carry the peer and client id themselves.
    // Built here rather than in the task, so the task stores it once.
    let notify = Arc::new(TaskNotify::default());
    let mut conn = Connection::with_auth(
        setup.broker,
        notify.clone(),
        now(),
        cfg.connect_timeout,
        setup.auth,
        setup.cert_identity,
    );
    // The peer is kept once, in the connection (the task would otherwise hold a copy).
    conn.set_origin(peer, setup.listener);
    let registered = closer.register(notify.clone());
    serve(transport, conn, notify, cfg, (registered, guard))
}

/// What a connection starts from.
#[derive(Debug)]
pub struct ConnSetup {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The listener's authentication and authorization.
    pub auth: Arc<ListenerAuth>,
    /// Identity of the client's verified TLS certificate.
    pub cert_identity: Option<Box<str>>,
    /// The listener's name (`mqtt://127.0.0.1:1883`).
    pub listener: Arc<str>,
}

/// The connection task's one async layer. An `async` block rather than an `async fn`,
/// which would keep a second copy of every argument in the task.
#[allow(clippy::manual_async_fn)] // Deliberate: see above.
fn serve<T: Transport, G: Send>(
    mut transport: T,
    mut conn: Connection,
    notify: Arc<TaskNotify>,
    cfg: Arc<DriverConfig>,
    guard: (Registered, G),
) -> impl Future<Output = ()> + Send {
    async move {
        let reason = run(&mut transport, &mut conn, &notify, &cfg, &guard.0.closer).await;
        let client_id = conn.client_id().cloned();
        let peer = peer_of(&conn);
        conn.finish(&reason, now());
        match client_id {
            Some(id) => info!(%peer, client_id = %id, %reason, "disconnected"),
            None => debug!(%peer, %reason, "connection closed before CONNECT completed"),
        }
        drop(guard);
    }
}

/// A connection's byte-rate bucket and memory-budget wait, boxed because most connections
/// never need them and the connection task must stay small.
#[derive(Debug)]
struct Limited {
    bucket: Option<Bucket>,
    /// Reading is paused by the byte rate until then (ms, `UNARMED`: not paused).
    throttle_at: u64,
    /// Registered to be woken when the memory pause ends.
    waiting_for_memory: bool,
}

impl Default for Limited {
    fn default() -> Self {
        Limited {
            bucket: None,
            throttle_at: UNARMED,
            waiting_for_memory: false,
        }
    }
}

/// What woke the connection.
enum Wake {
    Shutdown,
    Wrote,
    WriteFailed(io::Error),
    Timer,
    Notified,
    Read(io::Result<usize>),
}

#[allow(clippy::manual_async_fn)] // Deliberate: see `serve`.
fn run<'a, T: Transport>(
    transport: &'a mut T,
    conn: &'a mut Connection,
    notify: &'a Arc<TaskNotify>,
    cfg: &'a DriverConfig,
    closer: &'a Closer,
) -> impl Future<Output = CloseReason> + Send + 'a {
    // An `async` block for the same reason as in `serve`.
    async move {
        let mut inbuf = BytesMut::new();
        let mut read_size = READ_MIN;
        let mut out = OutBuffer::new();
        // Boxed: it is rarely set, and a plain `CloseReason` would take 32 bytes of the task.
        let mut closing: Option<Box<CloseReason>> = None;
        // One timer for the whole connection, moved rather than re-created.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        // The armed deadline in milliseconds, `UNARMED` if none (a plain integer: this lives
        // in every connection's task).
        let mut timer_at = UNARMED;
        // Byte rate and memory budget state, allocated only for connections they touch.
        let mut limited: Option<Box<Limited>> = None;
        loop {
            // Always drain the connection's output, also when closing: that is where the final
            // CONNACK or DISCONNECT waits.
            match conn.poll_auth(now()) {
                Ok(Some(info)) => log_connected(conn, &info),
                Ok(None) => {}
                Err(r) => {
                    closing.get_or_insert_with(|| Box::new(r));
                }
            }
            if let Err(r) = conn.poll_output(now(), &mut out) {
                closing.get_or_insert_with(|| Box::new(r));
            }
            if let Some(reason) = closing.take() {
                let sent = &conn.broker().metrics.bytes_sent;
                close(transport, &mut out, timer.as_mut(), sent).await;
                return *reason;
            }
            // Bytes left undecoded while paused are decoded as soon as the pause ends, without
            // waiting for the socket.
            if !inbuf.is_empty() && !conn.read_paused() {
                let before = inbuf.len();
                if let Err(reason) = handle_input(conn, &mut inbuf, cfg) {
                    closing = Some(Box::new(reason));
                    continue;
                }
                if inbuf.len() != before {
                    continue;
                }
            }
            let throttle_at = limited.as_ref().map_or(UNARMED, |l| l.throttle_at);
            let deadline = conn
                .next_deadline()
                .map_or(UNARMED, |t| t.0)
                .min(throttle_at);
            if deadline != timer_at {
                timer_at = deadline;
                if deadline != UNARMED {
                    timer.as_mut().reset(to_instant(Timestamp(deadline)));
                }
            }
            // Backpressure: a client whose output is not being read, or whose publishes wait for
            // full subscriber queues, is not read from until that clears.
            let memory_pause = conn.has_published() && cfg.live.memory_paused();
            let mut memory_wait = false;
            if memory_pause {
                let l = limited.get_or_insert_with(Box::default);
                if !l.waiting_for_memory {
                    l.waiting_for_memory = cfg.live.wait_for_memory(notify.clone());
                }
                memory_wait = l.waiting_for_memory;
            } else if let Some(l) = limited.as_mut() {
                l.waiting_for_memory = false;
            }
            let can_read = out.len() < OUTPUT_HIGH_WATER
                && !conn.read_paused()
                && throttle_at == UNARMED
                && !memory_wait;
            let sent = &conn.broker().metrics.bytes_sent;
            // Every source is polled in place, so waiting stores no future per source.
            let wake = std::future::poll_fn(|cx| {
                // `close` sets the flag, then wakes the connection through `notify`.
                if closer.is_closed() {
                    return Poll::Ready(Wake::Shutdown);
                }
                if !out.is_empty() {
                    match poll_write_out(transport, &mut out, cx, sent) {
                        Poll::Ready(Ok(())) => return Poll::Ready(Wake::Wrote),
                        Poll::Ready(Err(e)) => return Poll::Ready(Wake::WriteFailed(e)),
                        Poll::Pending => {}
                    }
                }
                if timer_at != UNARMED && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
                if notify.poll_notified(cx).is_ready() {
                    return Poll::Ready(Wake::Notified);
                }
                if can_read {
                    if let Poll::Ready(r) = transport.poll_read_buf(cx, &mut inbuf, read_size) {
                        return Poll::Ready(Wake::Read(r));
                    }
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Shutdown => closing = Some(Box::new(conn.shutdown())),
                Wake::Wrote | Wake::Notified => {}
                Wake::WriteFailed(e) => return CloseReason::ConnectionLost(e.to_string()),
                Wake::Timer => {
                    // Re-armed on the next turn from the connection's next deadline.
                    timer_at = UNARMED;
                    if let Some(l) = limited.as_mut() {
                        if l.throttle_at != UNARMED && now().0 >= l.throttle_at {
                            l.throttle_at = UNARMED;
                        }
                    }
                    if let Err(r) = conn.handle_timeout(now()) {
                        closing = Some(Box::new(r));
                    }
                }
                Wake::Read(Err(e)) => return CloseReason::ConnectionLost(e.to_string()),
                Wake::Read(Ok(0)) => return CloseReason::ConnectionLost("closed by peer".into()),
                Wake::Read(Ok(n)) => {
                    conn.broker()
                        .metrics
                        .bytes_received
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let rate = cfg.live.bytes_rate.load(Ordering::Relaxed);
                    if rate > 0 {
                        let l = limited.get_or_insert_with(Box::default);
                        let b = l.bucket.get_or_insert_with(|| Bucket::new(rate as f64));
                        let wait = b.spend(n as f64, rate as f64, std::time::Instant::now());
                        if !wait.is_zero() {
                            l.throttle_at = (now() + wait).0;
                            cfg.live
                                .stats
                                .throttled_bytes
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    read_size = if n >= read_size {
                        (read_size * 2).min(READ_MAX)
                    } else if n < read_size / 4 {
                        (read_size / 2).max(READ_MIN)
                    } else {
                        read_size
                    };
                    if let Err(reason) = handle_input(conn, &mut inbuf, cfg) {
                        closing = Some(Box::new(reason));
                    }
                    // The buffer exists only while bytes are being processed.
                    if inbuf.is_empty() {
                        inbuf = BytesMut::new();
                    }
                }
            }
        }
    }
}

fn handle_input(
    conn: &mut Connection,
    inbuf: &mut BytesMut,
    cfg: &DriverConfig,
) -> Result<(), CloseReason> {
    loop {
        if conn.read_paused() {
            // Leave the rest undecoded: bytes on the wire are smaller than decoded packets.
            return Ok(());
        }
        if !conn.is_connected() {
            conn.sniff_connect(inbuf);
        }
        match decode(inbuf, conn.version(), &cfg.limits) {
            Ok(Some(packet)) => {
                if let Some(info) = conn.handle_packet(packet, now())? {
                    log_connected(conn, &info);
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(conn.handle_decode_error(&e)),
        }
    }
}

/// The client's address (`drive` always sets it).
fn peer_of(conn: &Connection) -> SocketAddr {
    conn.peer().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn log_connected(conn: &Connection, info: &ConnectInfo) {
    info!(
        peer = %peer_of(conn),
        client_id = %info.client_id,
        protocol = %info.protocol,
        keep_alive = info.keep_alive,
        clean_start = info.clean_start,
        session_present = info.session_present,
        "connected"
    );
}

/// Writes until `out` is empty and flushed (`Ready(Ok)`), or the transport is full
/// (`Pending`, with a wake-up registered).
fn poll_write_out<T: Transport>(
    transport: &mut T,
    out: &mut OutBuffer,
    cx: &mut Context<'_>,
    sent: &AtomicU64,
) -> Poll<io::Result<()>> {
    while !out.is_empty() {
        // On the stack of this poll: no allocation per write, nothing kept between polls.
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, chunk) in slices.iter_mut().zip(out.chunks()) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        let n = ready!(transport.poll_write_vectored(cx, &slices[..count]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        out.advance(n);
        sent.fetch_add(n as u64, Ordering::Relaxed);
    }
    transport.poll_flush(cx)
}

/// Sends what is pending (the final CONNACK or DISCONNECT) and closes the write side,
/// giving up after `FLUSH_TIMEOUT` and `SHUTDOWN_TIMEOUT`.
async fn close<T: Transport>(
    transport: &mut T,
    out: &mut OutBuffer,
    mut timer: Pin<&mut tokio::time::Sleep>,
    sent: &AtomicU64,
) {
    timer
        .as_mut()
        .reset(tokio::time::Instant::now() + FLUSH_TIMEOUT);
    let flushed = std::future::poll_fn(|cx| {
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        poll_write_out(transport, out, cx, sent).map(|r| r.is_ok())
    })
    .await;
    if !flushed {
        return;
    }
    timer
        .as_mut()
        .reset(tokio::time::Instant::now() + SHUTDOWN_TIMEOUT);
    std::future::poll_fn(|cx| {
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        transport.poll_shutdown(cx).map(|_| ())
    })
    .await;
}

fn to_instant(t: Timestamp) -> tokio::time::Instant {
    let now = now();
    tokio::time::Instant::now() + t.since(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closer_wakes_its_connections_and_forgets_ended_ones() {
        let closer = Closer::new();
        let a = Arc::new(TaskNotify::default());
        let b = Arc::new(TaskNotify::default());
        let ra = closer.register(a.clone());
        let rb = closer.register(b.clone());
        assert_eq!(closer.registered(), 2);
        drop(rb);
        assert_eq!(closer.registered(), 1);
        assert!(!closer.is_closed());
        closer.close();
        assert!(closer.is_closed());
        assert!(
            a.woken.load(Ordering::Acquire),
            "a registered connection is woken"
        );
        assert!(!b.woken.load(Ordering::Acquire), "an ended one is not");
        drop(ra);
        assert_eq!(closer.registered(), 0);
        // One registered after the close finds it set on its first poll.
        let _late = closer.register(Arc::new(TaskNotify::default()));
        assert!(closer.is_closed());
    }
}
