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
        let stream = match source {
            Some(ip) => connect_from(ip, addr).await?,
            None => {
                let socket = match addr.ip() {
                    IpAddr::V4(_) => TcpSocket::new_v4()?,
                    IpAddr::V6(_) => TcpSocket::new_v6()?,
                };
                socket.connect(addr).await?
            }
        };
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

/// Ports tried before a connection from a source address gives up.
const SOURCE_PORT_TRIES: usize = 64;
/// Ports below the kernel's ephemeral range that connections from a chosen source address
/// take, at most this many.
const SOURCE_PORT_SPAN: u32 = 22_000;

/// The ports connections from a chosen source address take: just below the kernel's
/// ephemeral range (`net.ipv4.ip_local_port_range`, 32768 by default). Not inside it: a
/// port explicitly bound, even on another 127.0.0.x address and in TIME_WAIT, is skipped by
/// every other program's `connect`, and thousands of them would leave the machine's own
/// clients without ports for a minute. `None` when the range starts too low to leave room.
fn source_ports() -> Option<std::ops::Range<u32>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let low = text
        .as_deref()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|w| w.parse::<u32>().ok())
        .unwrap_or(32768);
    let start = low.saturating_sub(SOURCE_PORT_SPAN).max(1024);
    (low > start + 4096).then_some(start..low)
}

/// Connects from `ip`, choosing the source port here. Binding to port 0 makes the kernel
/// search for a port free for every destination, which with thousands of sockets open or in
/// TIME_WAIT costs milliseconds of kernel time per connection: runs of 19,000 connections
/// took from 2 to 30 s, nearly all of it in the generator's `bind`. Ports are taken in turn
/// from a start that differs between runs, so back-to-back runs meet few of each other's
/// TIME_WAIT sockets; a port in use is skipped.
async fn connect_from(ip: Ipv4Addr, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static PORTS: OnceLock<Option<(std::ops::Range<u32>, AtomicU32)>> = OnceLock::new();
    let ports = PORTS.get_or_init(|| {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            ^ std::process::id().wrapping_mul(2_654_435_761);
        source_ports().map(|r| (r, AtomicU32::new(seed)))
    });
    let mut last = None;
    for _ in 0..SOURCE_PORT_TRIES {
        let socket = TcpSocket::new_v4()?;
        // Allows a port whose earlier connection is still in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        let port = match ports {
            Some((range, next)) => {
                let span = range.end - range.start;
                (range.start + next.fetch_add(1, Ordering::Relaxed) % span) as u16
            }
            // The kernel chooses.
            None => 0,
        };
        let attempt = match socket.bind(SocketAddr::new(IpAddr::V4(ip), port)) {
            Ok(()) => socket.connect(addr).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e)
                if port != 0
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable
                    ) =>
            {
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_source_ports_stay_below_the_ephemeral_range() {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .expect("the ephemeral port range");
        let low: u32 = text
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .expect("a number");
        match source_ports() {
            Some(r) => {
                assert_eq!(r.end, low, "{r:?}");
                assert!(r.start >= 1024 && r.len() > 4096, "{r:?}");
            }
            None => assert!(low < 1024 + 4096, "{low}"),
        }
    }
}
