//! MQTT over WebSocket (chapter 6 of the MQTT specifications): the HTTP upgrade on a
//! configured path (default `/mqtt`) with subprotocol `mqtt` (also `mqttv3.1`), then MQTT
//! bytes in binary frames; any other data frame closes the connection ([MQTT-6.0.0-1]).
//! Frames are a transport detail: packets may span frames and frames may hold several
//! packets ([MQTT-6.0.0-2]), so the driver sees one byte stream.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::Transport;

/// Default path of WebSocket listeners.
pub const DEFAULT_PATH: &str = "/mqtt";

/// Subprotocols accepted, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Largest write copied into one binary frame; larger output goes out in several frames.
const MAX_FRAME_WRITE: usize = 64 * 1024;

/// A WebSocket connection carrying MQTT.
#[derive(Debug)]
pub struct WsTransport<S> {
    ws: WebSocketStream<S>,
}

fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_owned()));
    *r.status_mut() = status;
    r
}

/// Performs the server side of the WebSocket handshake on `stream`. `max_message` bounds
/// one WebSocket message (the MQTT maximum packet size plus framing is enough).
pub async fn accept<S>(stream: S, path: &str, max_message: usize) -> Result<WsTransport<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The error type is tungstenite's callback contract, not ours to box.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != path {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "no MQTT endpoint at this path",
            ));
        }
        let offered: Vec<&str> = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if offered.is_empty() {
            // Lenient: a client that names no subprotocol still speaks MQTT here.
            return Ok(resp);
        }
        let Some(chosen) = SUBPROTOCOLS.iter().find(|p| offered.contains(p)) else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "subprotocol must be mqtt or mqttv3.1",
            ));
        };
        resp.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(chosen));
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await?;
    Ok(WsTransport { ws })
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        e => io::Error::other(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for WsTransport<S> {
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        _want: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            let msg = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(0))
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                Some(Ok(m)) => m,
            };
            match msg {
                Message::Binary(b) if !b.is_empty() => {
                    buf.extend_from_slice(&b);
                    return Poll::Ready(Ok(b.len()));
                }
                Message::Close(_) => return Poll::Ready(Ok(0)),
                Message::Text(_) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "[MQTT-6.0.0-1] a text frame on an MQTT WebSocket",
                    )))
                }
                // Pings are answered by tungstenite; pongs and empty frames carry nothing.
                _ => continue,
            }
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        let total = bufs
            .iter()
            .map(|b| b.len())
            .sum::<usize>()
            .min(MAX_FRAME_WRITE);
        let mut frame = Vec::with_capacity(total);
        for b in bufs {
            let take = b.len().min(total - frame.len());
            frame.extend_from_slice(&b[..take]);
            if frame.len() == total {
                break;
            }
        }
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(frame.into()))
            .map_err(to_io)?;
        Poll::Ready(Ok(total))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
