//! Outbound bytes of one connection: encoded packets coalesced into as few buffers as
//! possible, with large PUBLISH payloads kept as shared `Bytes` (no copy) so that the server
//! sends everything pending with one vectored write.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use midge_codec::{encode, encode_publish_header, EncodeError, Packet, ProtocolVersion, Publish};

/// Payloads at least this large are sent from the shared buffer instead of being copied.
pub const ZERO_COPY_MIN_PAYLOAD: usize = 1024;

/// Pending output of a connection.
#[derive(Debug, Default)]
pub struct OutBuffer {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl OutBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes pending.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a packet.
    pub fn push(&mut self, packet: &Packet, version: ProtocolVersion) -> Result<(), EncodeError> {
        if let Packet::Publish(p) = packet {
            return self.push_publish(p, version);
        }
        let before = self.tail.len();
        encode(packet, version, &mut self.tail)?;
        self.len += self.tail.len() - before;
        Ok(())
    }

    /// Appends a PUBLISH, sharing a large payload instead of copying it.
    pub fn push_publish(
        &mut self,
        p: &Publish,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        let before = self.tail.len();
        if p.payload.len() >= ZERO_COPY_MIN_PAYLOAD {
            encode_publish_header(p, version, &mut self.tail)?;
            self.len += self.tail.len() - before + p.payload.len();
            self.seal();
            self.chunks.push_back(p.payload.clone());
        } else {
            encode_publish_header(p, version, &mut self.tail)?;
            self.tail.extend_from_slice(&p.payload);
            self.len += self.tail.len() - before;
        }
        Ok(())
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    /// The pending bytes as a list of buffers, in order, for a vectored write.
    pub fn chunks(&mut self) -> &VecDeque<Bytes> {
        self.seal();
        &self.chunks
    }

    /// Marks `n` bytes as written. Once everything is written the buffers are released, so
    /// an idle connection holds no output memory.
    pub fn advance(&mut self, mut n: usize) {
        self.seal();
        self.len -= n.min(self.len);
        if self.len == 0 {
            self.chunks = VecDeque::new();
            self.tail = BytesMut::new();
            return;
        }
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midge_codec::{PublishProperties, QosPid, TopicName};

    #[test]
    fn large_payload_is_shared_and_bytes_match_encode() {
        let payload = Bytes::from(vec![7u8; 4096]);
        let p = Publish {
            dup: false,
            qos: QosPid::AtMostOnce,
            retain: false,
            topic: Some(TopicName::try_from("t").expect("valid")),
            properties: PublishProperties::default(),
            payload: payload.clone(),
        };
        let mut out = OutBuffer::new();
        out.push(&Packet::PingResp, ProtocolVersion::V311)
            .expect("encodes");
        out.push_publish(&p, ProtocolVersion::V311)
            .expect("encodes");
        let chunks = out.chunks();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].as_ptr(), payload.as_ptr());
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let mut expected = BytesMut::new();
        encode(&Packet::PingResp, ProtocolVersion::V311, &mut expected).expect("encodes");
        encode(&Packet::Publish(p), ProtocolVersion::V311, &mut expected).expect("encodes");
        assert_eq!(joined, expected.to_vec());
        let total = out.len();
        out.advance(3);
        assert_eq!(out.len(), total - 3);
        out.advance(total);
        assert!(out.is_empty());
    }
}
