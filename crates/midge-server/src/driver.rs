//! One task per client connection: reads bytes, decodes every complete packet, feeds the
//! connection state machine, and writes what it produced with vectored writes. Reading
//! stops while too much output is pending (backpressure on a slow reader).

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use midge_broker::{Broker, CloseReason, Connection, Notify, OutBuffer, Timestamp};
use midge_codec::{decode, DecodeLimits};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

/// Stop reading from a client while this many bytes wait to be written to it.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// First read size; reads grow (doubling) while they fill the buffer, up to `READ_MAX`, and
/// shrink again when they do not. The buffer is released whenever it is drained.
const READ_MIN: usize = 1024;
/// Largest read.
const READ_MAX: usize = 64 * 1024;
/// Slices per vectored write.
const MAX_IOVECS: usize = 64;

/// The broker's clock: milliseconds since the UNIX epoch.
pub fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// Wakes a connection task.
#[derive(Debug, Default)]
pub struct TaskNotify(tokio::sync::Notify);

impl Notify for TaskNotify {
    fn notify(&self) {
        self.0.notify_one();
    }
}

/// Settings a driver needs.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Decode limits.
    pub limits: DecodeLimits,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// A byte source the driver can wait on without holding a buffer, so that an idle
/// connection owns no read buffer at all.
pub trait Source: Unpin + Send {
    /// Waits until a read would not block (cancel-safe).
    fn ready(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// Reads what is available into `buf` without blocking; `WouldBlock` if nothing is.
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize>;
}

impl Source for tokio::net::tcp::OwnedReadHalf {
    async fn ready(&mut self) -> std::io::Result<()> {
        self.readable().await
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        tokio::net::tcp::OwnedReadHalf::try_read_buf(self, buf)
    }
}

/// Runs one connection until it closes.
pub async fn drive<R, W>(
    reader: R,
    writer: W,
    peer: SocketAddr,
    broker: Arc<Broker>,
    cfg: DriverConfig,
    shutdown: CancellationToken,
) where
    R: Source,
    W: AsyncWrite + Unpin,
{
    // A debug-level span: at the default level it costs nothing per connection, so the
    // connect and disconnect lines carry the peer and client id themselves.
    let span = tracing::debug_span!("conn", %peer, client_id = tracing::field::Empty);
    async move {
        let notify = Arc::new(TaskNotify::default());
        let mut conn = Connection::new(broker, notify.clone(), now(), cfg.connect_timeout);
        let reason = run(reader, writer, &mut conn, &notify, &cfg, &shutdown, peer).await;
        let client_id = conn.client_id().cloned();
        conn.finish(&reason, now());
        match client_id {
            Some(id) => info!(%peer, client_id = %id, %reason, "disconnected"),
            None => debug!(%peer, %reason, "connection closed before CONNECT completed"),
        }
    }
    .instrument(span)
    .await
}

async fn run<R, W>(
    mut reader: R,
    mut stream: W,
    conn: &mut Connection,
    notify: &Arc<TaskNotify>,
    cfg: &DriverConfig,
    shutdown: &CancellationToken,
    peer: SocketAddr,
) -> CloseReason
where
    R: Source,
    W: AsyncWrite + Unpin,
{
    let mut inbuf = BytesMut::new();
    let mut read_size = READ_MIN;
    let mut out = OutBuffer::new();
    let mut closing: Option<CloseReason> = None;
    loop {
        // Always drain the connection's output, also when closing: that is where the final
        // CONNACK or DISCONNECT waits.
        if let Err(r) = conn.poll_output(now(), &mut out) {
            closing.get_or_insert(r);
        }
        if let Some(reason) = closing.take() {
            // Flush what is pending (CONNACK, DISCONNECT, ...) then close.
            let _ =
                tokio::time::timeout(Duration::from_secs(5), flush(&mut stream, &mut out)).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
            return reason;
        }
        // Bytes left undecoded while paused are decoded as soon as the pause ends, without
        // waiting for the socket.
        if !inbuf.is_empty() && !conn.read_paused() && closing.is_none() {
            let before = inbuf.len();
            if let Err(reason) = handle_input(conn, &mut inbuf, cfg, peer) {
                closing = Some(reason);
                continue;
            }
            if inbuf.len() != before {
                continue;
            }
        }
        let deadline = conn.next_deadline().map(to_instant);
        // Backpressure: a client whose output is not being read, or whose publishes wait for
        // full subscriber queues, is not read from until that clears.
        let can_read = out.len() < OUTPUT_HIGH_WATER && !conn.read_paused();
        tokio::select! {
            // Cancel-safe: readiness only; the read itself happens in the arm's body.
            r = reader.ready(), if can_read => {
                if let Err(e) = r {
                    return CloseReason::ConnectionLost(e.to_string());
                }
                // The buffer exists only while bytes are being processed.
                if inbuf.capacity() - inbuf.len() < read_size / 2 {
                    inbuf.reserve(read_size);
                }
                let room = inbuf.capacity() - inbuf.len();
                match reader.try_read_buf(&mut inbuf) {
                    Ok(0) => return CloseReason::ConnectionLost("closed by peer".into()),
                    Ok(n) => {
                        read_size = if n == room {
                            (read_size * 2).min(READ_MAX)
                        } else if n < read_size / 4 {
                            (read_size / 2).max(READ_MIN)
                        } else {
                            read_size
                        };
                        if let Err(reason) = handle_input(conn, &mut inbuf, cfg, peer) {
                            closing = Some(reason);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return CloseReason::ConnectionLost(e.to_string()),
                }
                if inbuf.is_empty() {
                    inbuf = BytesMut::new();
                }
            }
            // Cancel-safe: one `write_vectored` call either wrote some bytes or none.
            r = write_some(&mut stream, &mut out), if !out.is_empty() => {
                if let Err(e) = r {
                    return CloseReason::ConnectionLost(e.to_string());
                }
            }
            // Cancel-safe: a missed wake-up leaves a permit in the `Notify`.
            _ = notify.0.notified() => {}
            // Cancel-safe: a timer; the deadline is recomputed every turn.
            _ = sleep_until(deadline) => {
                if let Err(r) = conn.handle_timeout(now()) {
                    closing = Some(r);
                }
            }
            // Cancel-safe: cancellation is level-triggered.
            _ = shutdown.cancelled() => {
                closing = Some(conn.shutdown());
            }
        }
    }
}

fn handle_input(
    conn: &mut Connection,
    inbuf: &mut BytesMut,
    cfg: &DriverConfig,
    peer: SocketAddr,
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
                    tracing::Span::current().record("client_id", info.client_id.as_str());
                    info!(
                        %peer,
                        client_id = %info.client_id,
                        protocol = %info.protocol,
                        keep_alive = info.keep_alive,
                        clean_start = info.clean_start,
                        session_present = info.session_present,
                        "connected"
                    );
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(conn.handle_decode_error(&e)),
        }
    }
}

async fn write_some<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut OutBuffer,
) -> std::io::Result<()> {
    let n = {
        // On the stack: no allocation per write.
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (slot, chunk) in slices.iter_mut().zip(out.chunks()) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        stream.write_vectored(&slices[..n]).await?
    };
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    out.advance(n);
    if out.is_empty() {
        stream.flush().await?;
    }
    Ok(())
}

async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut OutBuffer) -> std::io::Result<()> {
    while !out.is_empty() {
        write_some(stream, out).await?;
    }
    stream.flush().await
}

fn to_instant(t: Timestamp) -> tokio::time::Instant {
    let now = now();
    tokio::time::Instant::now() + t.since(now)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
