//! Bench connections: TCP (optionally from a chosen 127.0.0.x source address), then TLS
//! and WebSocket as the target asks (midge-client's transport layer), CONNECT and CONNACK,
//! and the shape of the payload every bench message carries.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use midge_client::transport::{Connector, ReadHalf, WriteHalf};
use midge_client::ClientError;
use midge_codec::{
    decode, encode, Connect, ConnectProperties, DecodeLimits, MqttString, Packet, ProtocolVersion,
    ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Bytes at the start of every bench payload: publisher id (u32), sequence (u64) and send
/// time in microseconds since the run's base instant (u64).
pub const HEADER_LEN: usize = 20;

/// Where every connection of a run goes.
#[derive(Debug)]
pub struct Target {
    /// Transport, TLS settings and host name.
    pub connector: Connector,
    /// The broker's address, resolved once.
    pub addr: SocketAddr,
    /// User name from `-L`.
    pub username: Option<String>,
    /// Password from `-L`.
    pub password: Option<Bytes>,
    /// Keep-alive of every connection, seconds (0: none).
    pub keep_alive: u16,
    /// Persistent sessions: clean start off (3.1.1: clean session 0) and, in 5.0, a session
    /// expiry of an hour, so the broker keeps (and with a store, writes) their state.
    pub persistent: bool,
}

/// An open, connected MQTT connection.
pub struct Conn {
    /// Read half.
    pub reader: ReadHalf,
    /// Write half; TLS and WebSocket need a flush after writing (`write_or_flush`).
    pub writer: WriteHalf,
    /// Bytes already read after CONNACK.
    pub rbuf: BytesMut,
    /// Protocol.
    pub version: ProtocolVersion,
}

/// Opens a connection and completes CONNECT/CONNACK within 30 s.
pub async fn open(
    target: Arc<Target>,
    source: Option<Ipv4Addr>,
    client_id: String,
    version: ProtocolVersion,
) -> Result<Conn, ClientError> {
    let fut = async {
        let addr = target.addr;
        let socket = match addr.ip() {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = source {
            // Binding picks a free port itself; without SO_REUSEADDR it skips ports still in
            // TIME_WAIT from the previous run's connections, and back-to-back runs of many
            // thousand connections run out of ports.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
        }
        let stream = socket.connect(addr).await?;
        let (mut reader, mut writer) = target.connector.over(stream).await?.into_split();
        let connect = Connect {
            protocol: version,
            clean_start: !target.persistent,
            keep_alive: target.keep_alive,
            properties: ConnectProperties {
                session_expiry_interval: (target.persistent && version == ProtocolVersion::V5)
                    .then_some(3600),
                ..ConnectProperties::default()
            },
            client_id: client_id.as_str().try_into()?,
            will: None,
            username: target
                .username
                .as_deref()
                .map(MqttString::try_from)
                .transpose()?,
            password: target.password.clone(),
        };
        let mut buf = BytesMut::new();
        encode(&Packet::Connect(Box::new(connect)), version, &mut buf)?;
        writer.write_all(&buf).await?;
        writer.flush().await?;
        let mut rbuf = BytesMut::with_capacity(4096);
        loop {
            match decode(&mut rbuf, version, &DecodeLimits::default())? {
                Some(Packet::ConnAck(a)) if a.code == ReasonCode::Success => {
                    return Ok(Conn {
                        reader,
                        writer,
                        rbuf,
                        version,
                    })
                }
                Some(Packet::ConnAck(a)) => {
                    return Err(ClientError::Refused {
                        code: a.code,
                        reason: a.properties.reason_string.map(|s| s.to_string()),
                    })
                }
                Some(other) => {
                    return Err(ClientError::Protocol(format!(
                        "expected CONNACK, got {}",
                        other.packet_type()
                    )))
                }
                None => {}
            }
            if reader.read_buf(&mut rbuf).await? == 0 {
                return Err(ClientError::Disconnected {
                    code: None,
                    reason: Some("connection closed before CONNACK".into()),
                });
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| ClientError::Timeout("CONNACK"))?
        .map_err(|e| target.connector.explain(e))
}

/// The source address for connection `i` when spreading over `n` loopback addresses.
pub fn source_ip(i: usize, n: usize) -> Option<Ipv4Addr> {
    if n <= 1 {
        return None;
    }
    let k = (i % n) as u32 + 1;
    Some(Ipv4Addr::from(0x7F00_0000u32 + k))
}

/// Writes a payload of `size` bytes (at least `HEADER_LEN`) with the bench header.
pub fn payload(buf: &mut BytesMut, publisher: u32, seq: u64, ts_us: u64, size: usize) {
    buf.put_u32(publisher);
    buf.put_u64(seq);
    buf.put_u64(ts_us);
    buf.put_bytes(0x2A, size.saturating_sub(HEADER_LEN));
}

/// Reads the bench header from a payload.
pub fn parse_header(mut p: &[u8]) -> Option<(u32, u64, u64)> {
    if p.len() < HEADER_LEN {
        return None;
    }
    Some((p.get_u32(), p.get_u64(), p.get_u64()))
}
