//! MQTT over WebSocket for the client (chapter 6 of the MQTT specifications): the HTTP
//! upgrade with subprotocol `mqtt`, then a byte stream over binary frames. Frames are a
//! transport detail: a packet may span frames and a frame may hold several packets
//! ([MQTT-6.0.0-2]), so reads hand out frame payloads as plain bytes. A text frame from the
//! broker is an error ([MQTT-6.0.0-1]).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::error::ClientError;

/// Largest write copied into one binary frame; larger output goes out in several frames.
const MAX_FRAME_WRITE: usize = 64 * 1024;

/// A WebSocket connection as a byte stream. Writes are queued in tungstenite until flushed.
#[derive(Debug)]
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary frame.
    pending: Bytes,
}

/// Performs the client side of the upgrade to `url` (`ws://host:port/path`) on `stream`.
pub(crate) async fn connect<S>(stream: S, url: &str) -> Result<WsStream<S>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let failed = |e: WsError| ClientError::WebSocket {
        url: url.to_owned(),
        source: Box::new(e),
    };
    let mut req = url.into_client_request().map_err(failed)?;
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    let (ws, _response) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(failed)?;
    Ok(WsStream {
        ws,
        pending: Bytes::new(),
    })
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        e => io::Error::other(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        while self.pending.is_empty() {
            let msg = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                // End of stream: `buf` stays empty.
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()))
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                Some(Ok(m)) => m,
            };
            match msg {
                Message::Binary(b) => self.pending = b,
                Message::Close(_) => return Poll::Ready(Ok(())),
                Message::Text(_) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "[MQTT-6.0.0-1] the broker sent a text frame",
                    )))
                }
                // Pings are answered by tungstenite; pongs carry nothing.
                _ => {}
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        let n = buf.len().min(MAX_FRAME_WRITE);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
