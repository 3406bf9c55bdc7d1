//! Byte streams under the connection driver: plain TCP, TLS, and WebSocket over either.
//! Every operation is poll-based, so a waiting connection stores no future per operation,
//! and a transport allocates read room only once bytes are there, so an idle plain TCP
//! connection owns no buffer at all.

pub mod tls;
pub mod ws;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;

/// A byte stream the driver reads from and writes to.
pub trait Transport: Unpin + Send {
    /// Appends what is available to `buf`, making room for about `want` bytes only once
    /// data is there. `Ok(0)` means the peer closed the stream.
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        want: usize,
    ) -> Poll<io::Result<usize>>;
    /// Writes some of `bufs`.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Flushes what the transport itself buffers.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Closes the write side.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// Drops an empty buffer's allocation. Readiness can be stale (tokio clears it only when a
/// read would block), so a buffer made for a read that found nothing would otherwise stay
/// allocated for as long as the connection idles.
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Makes room for `want` more bytes unless at least half of that is free already.
fn make_room(buf: &mut BytesMut, want: usize) {
    if buf.capacity() - buf.len() < want / 2 {
        buf.reserve(want);
    }
}

impl Transport for TcpStream {
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            // Readiness first, so that the buffer exists only when there is something to read.
            ready!(self.poll_read_ready(cx))?;
            make_room(buf, want);
            let room = buf.capacity() - buf.len();
            let mut read = 0;
            // A read that did not fill the room drained the socket: clearing the readiness now
            // (as tokio's own `poll_read` does) saves the next wake-up a read that would only
            // find nothing. tokio clears it only if no readiness arrived since the read began.
            let r = self.try_io(Interest::READABLE, || {
                read = self.try_read_buf(buf)?;
                if read > 0 && read < room {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(read)
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => {
                    return Poll::Ready(Ok(read))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => release_if_empty(buf),
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write_vectored(Pin::new(self), cx, bufs)
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TCP sends what it is given; nothing is held back in user space.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(self), cx)
    }
}

/// Reads from a stream that has its own buffering (TLS), through `buf`: the buffer is
/// released again when nothing arrived, so idle connections keep none of it.
pub(crate) fn poll_read_async<R: AsyncRead + Unpin>(
    reader: &mut R,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    want: usize,
) -> Poll<io::Result<usize>> {
    make_room(buf, want);
    let r = tokio_util::io::poll_read_buf(Pin::new(reader), cx, buf);
    if r.is_pending() {
        release_if_empty(buf);
    }
    r
}
