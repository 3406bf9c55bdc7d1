//! Bench connections: TCP (optionally from a chosen 127.0.0.x source address), CONNECT and
//! CONNACK, and the shape of the payload every bench message carries.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use midge_codec::{
    decode, encode, Connect, ConnectProperties, DecodeLimits, Packet, ProtocolVersion, ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;

/// Bytes at the start of every bench payload: publisher id (u32), sequence (u64) and send
/// time in microseconds since the run's base instant (u64).
pub const HEADER_LEN: usize = 20;

/// An open, connected MQTT connection.
pub struct Conn {
    /// Read half.
    pub reader: OwnedReadHalf,
    /// Write half.
    pub writer: OwnedWriteHalf,
    /// Bytes already read after CONNACK.
    pub rbuf: BytesMut,
    /// Protocol.
    pub version: ProtocolVersion,
}

/// Opens a connection and completes CONNECT/CONNACK within 30 s.
pub async fn open(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    client_id: String,
    version: ProtocolVersion,
) -> std::io::Result<Conn> {
    let fut = async {
        let socket = match addr.ip() {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let connect = Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 0,
            properties: ConnectProperties::default(),
            client_id: client_id
                .as_str()
                .try_into()
                .map_err(|e| std::io::Error::other(format!("client id: {e}")))?,
            will: None,
            username: None,
            password: None,
        };
        let mut buf = BytesMut::new();
        encode(&Packet::Connect(Box::new(connect)), version, &mut buf)
            .map_err(std::io::Error::other)?;
        writer.write_all(&buf).await?;
        let mut rbuf = BytesMut::with_capacity(4096);
        loop {
            match decode(&mut rbuf, version, &DecodeLimits::default())
                .map_err(std::io::Error::other)?
            {
                Some(Packet::ConnAck(a)) if a.code == ReasonCode::Success => {
                    return Ok(Conn {
                        reader,
                        writer,
                        rbuf,
                        version,
                    })
                }
                Some(other) => {
                    return Err(std::io::Error::other(format!(
                        "connection refused: {other:?}"
                    )))
                }
                None => {}
            }
            if reader.read_buf(&mut rbuf).await? == 0 {
                return Err(std::io::Error::other("closed before CONNACK"));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| std::io::Error::other("CONNACK timeout"))?
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
