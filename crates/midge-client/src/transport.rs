//! Connections to the broker over TCP, TLS, WebSocket or WebSocket over TLS, as one byte
//! stream type. A [`Connector`] is built once from the options (it reads the TLS files) and
//! opens every connection, so reconnects and `midge bench`'s many connections share it.
//!
//! Invariant for writers: TLS and WebSocket buffer written bytes in user space until
//! flushed. [`WriteHalf`] remembers that (`unflushed`), and [`WriteHalf::write_or_flush`]
//! flushes once the caller's buffer is empty, so a select loop never leaves bytes behind.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::ClientError;
use crate::options::{split_host_port, ClientOptions, Transport};
use crate::ws::{self, WsStream};

/// Opens connections to one broker over one transport.
#[derive(Clone)]
pub struct Connector {
    transport: Transport,
    host: String,
    port: u16,
    /// The upgrade URL, for WebSocket.
    ws_url: Option<String>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("transport", &self.transport)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("ws_url", &self.ws_url)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Checks the address and loads the TLS files of `opts`; no network I/O.
    pub fn new(opts: &ClientOptions) -> Result<Connector, ClientError> {
        let t = opts.transport;
        let (host, port) = split_host_port(&opts.addr).map_err(|problem| ClientError::Address {
            addr: opts.addr.clone(),
            problem,
        })?;
        if host.is_empty() {
            return Err(ClientError::Address {
                addr: opts.addr.clone(),
                problem: "missing host",
            });
        }
        let port = port.unwrap_or_else(|| t.default_port());
        let tls = if t.is_tls() {
            let config = crate::tls::client_config(&opts.tls)?;
            Some((TlsConnector::from(config), crate::tls::server_name(host)?))
        } else {
            None
        };
        let ws_url = t.is_websocket().then(|| {
            let h = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            let path = if opts.ws_path.starts_with('/') {
                opts.ws_path.clone()
            } else {
                format!("/{}", opts.ws_path)
            };
            format!("{}://{h}:{port}{path}", t.scheme())
        });
        Ok(Connector {
            transport: t,
            host: host.to_owned(),
            port,
            ws_url,
            tls,
        })
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The host (also the TLS server name).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (the transport's default if the address named none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Opens TCP to the host and runs the TLS and WebSocket handshakes of the transport.
    pub async fn connect(&self) -> Result<Stream, ClientError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        self.over(tcp).await
    }

    /// Runs the TLS and WebSocket handshakes over a TCP stream the caller opened (from a
    /// chosen source address, say); sets TCP_NODELAY.
    pub async fn over(&self, tcp: TcpStream) -> Result<Stream, ClientError> {
        tcp.set_nodelay(true)?;
        let Some((connector, name)) = &self.tls else {
            return match &self.ws_url {
                Some(url) => Ok(Stream::Ws(Box::new(ws::connect(tcp, url).await?))),
                None => Ok(Stream::Tcp(tcp)),
            };
        };
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|source| ClientError::Tls {
                server: self.host.clone(),
                source,
            })?;
        match &self.ws_url {
            Some(url) => Ok(Stream::Wss(Box::new(ws::connect(tls, url).await?))),
            None => Ok(Stream::Tls(Box::new(tls))),
        }
    }

    /// Names a TLS alert that arrived after the handshake as a TLS failure: with TLS 1.3 a
    /// broker refuses a client certificate only after the client finished its handshake,
    /// so the refusal shows up on the first read.
    pub fn explain(&self, e: ClientError) -> ClientError {
        match e {
            ClientError::Io(io)
                if self.tls.is_some()
                    && io
                        .get_ref()
                        .is_some_and(|inner| inner.is::<rustls::Error>()) =>
            {
                ClientError::Tls {
                    server: self.host.clone(),
                    source: io,
                }
            }
            e => e,
        }
    }

    /// Resolves the host to the first socket address, for callers that open TCP themselves.
    pub async fn resolve(&self) -> Result<SocketAddr, ClientError> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or(ClientError::Address {
                addr: self.host.clone(),
                problem: "the host name resolves to no address",
            })
    }
}

/// An open connection to the broker.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
    /// WebSocket over TCP.
    Ws(Box<WsStream<TcpStream>>),
    /// WebSocket over TLS.
    Wss(Box<WsStream<TlsStream<TcpStream>>>),
}

impl Stream {
    /// Splits into halves for a task that reads and writes at once. TCP splits without a
    /// lock; the others share the stream through tokio's split.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (
                    ReadHalf(ReadInner::Tcp(r)),
                    WriteHalf::new(WriteInner::Tcp(w)),
                )
            }
            other => {
                let (r, w) = tokio::io::split(other);
                (
                    ReadHalf(ReadInner::Shared(r)),
                    WriteHalf::new(WriteInner::Shared(w)),
                )
            }
        }
    }
}

macro_rules! each {
    ($s:expr, $v:ident => $e:expr) => {
        match $s.get_mut() {
            Stream::Tcp($v) => $e,
            Stream::Tls($v) => $e,
            Stream::Ws($v) => $e,
            Stream::Wss($v) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The read half of a [`Stream`].
#[derive(Debug)]
pub struct ReadHalf(ReadInner);

#[derive(Debug)]
enum ReadInner {
    Tcp(OwnedReadHalf),
    Shared(tokio::io::ReadHalf<Stream>),
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            ReadInner::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadInner::Shared(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The write half of a [`Stream`]; knows whether written bytes still wait for a flush.
#[derive(Debug)]
pub struct WriteHalf {
    inner: WriteInner,
    unflushed: bool,
}

#[derive(Debug)]
enum WriteInner {
    Tcp(OwnedWriteHalf),
    Shared(tokio::io::WriteHalf<Stream>),
}

impl WriteHalf {
    fn new(inner: WriteInner) -> Self {
        WriteHalf {
            inner,
            unflushed: false,
        }
    }

    /// Whether bytes were written since the last completed flush (never for TCP, which
    /// holds nothing back).
    pub fn unflushed(&self) -> bool {
        self.unflushed
    }

    /// Writes some of `buf` (advancing it), or, if it is empty, flushes. Cancel-safe: a
    /// write advances `buf` only by what was written, and an interrupted flush stays due.
    pub async fn write_or_flush(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        if buf.is_empty() {
            self.flush().await
        } else {
            self.write_buf(buf).await.map(drop)
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match &mut this.inner {
            WriteInner::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteInner::Shared(w) => {
                let r = Pin::new(w).poll_write(cx, buf);
                if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
                    this.unflushed = true;
                }
                r
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            WriteInner::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteInner::Shared(w) => Pin::new(w).poll_flush(cx),
        };
        if matches!(r, Poll::Ready(Ok(()))) {
            this.unflushed = false;
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            WriteInner::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteInner::Shared(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
