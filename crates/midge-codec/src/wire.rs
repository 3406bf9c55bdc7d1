//! Primitive wire encodings (MQTT 5.0 section 1.5): integers, variable byte integers, UTF-8
//! strings and binary data. `Reader` reads them from the body of one packet without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::types::MqttString;

/// The largest value a variable byte integer can hold (four bytes).
pub const MAX_VARIABLE_BYTE_INTEGER: u32 = 268_435_455;

/// Number of bytes the variable byte integer encoding of `v` takes (1 to 4).
pub fn vbi_len(v: u32) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `v` as a variable byte integer; `v` must not exceed `MAX_VARIABLE_BYTE_INTEGER`.
pub fn put_vbi(buf: &mut impl BufMut, mut v: u32) {
    debug_assert!(v <= MAX_VARIABLE_BYTE_INTEGER);
    loop {
        let mut byte = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}

/// Outcome of reading a variable byte integer from the start of a buffer that may be partial.
pub(crate) enum VbiRead {
    /// The value and the number of bytes it took.
    Done(u32, usize),
    /// The buffer ends before the integer does.
    Incomplete,
}

/// Reads a variable byte integer from the start of `bytes`, rejecting more than four bytes
/// and encodings that are not minimal ([MQTT-1.5.5-1]).
pub(crate) fn read_vbi(bytes: &[u8]) -> Result<VbiRead, DecodeError> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i == 4 {
            return Err(DecodeError::VariableByteIntegerTooLong);
        }
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // A last byte of zero after a continuation byte adds nothing: not minimal.
            if i > 0 && b == 0 {
                return Err(DecodeError::VariableByteIntegerNotMinimal);
            }
            return Ok(VbiRead::Done(value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::VariableByteIntegerTooLong);
    }
    Ok(VbiRead::Incomplete)
}

/// Length on the wire of a two-byte-length-prefixed string or binary field.
pub fn prefixed_len(len: usize) -> usize {
    2 + len
}

/// Writes a length-prefixed UTF-8 string. Its length is guaranteed to fit by `MqttString`.
pub fn put_str(buf: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= usize::from(u16::MAX));
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

/// Writes length-prefixed binary data; the caller has checked the length fits in 16 bits.
pub fn put_binary(buf: &mut BytesMut, b: &[u8]) {
    debug_assert!(b.len() <= usize::from(u16::MAX));
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}

/// Reads fields from the body of one packet. Running out of bytes is malformed: the fixed
/// header promised them.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        if self.buf.remaining() < 1 {
            return Err(DecodeError::Truncated(field));
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        if self.buf.remaining() < 2 {
            return Err(DecodeError::Truncated(field));
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        if self.buf.remaining() < 4 {
            return Err(DecodeError::Truncated(field));
        }
        Ok(self.buf.get_u32())
    }

    pub(crate) fn vbi(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        match read_vbi(&self.buf)? {
            VbiRead::Done(v, n) => {
                self.buf.advance(n);
                Ok(v)
            }
            VbiRead::Incomplete => Err(DecodeError::Truncated(field)),
        }
    }

    /// Takes the next `n` bytes without copying.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if self.buf.remaining() < n {
            return Err(DecodeError::Truncated(field));
        }
        Ok(self.buf.split_to(n))
    }

    /// Takes everything that is left (a PUBLISH payload, a will payload in 3.1).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// A UTF-8 encoded string: well-formed, no surrogates ([MQTT-1.5.4-1]) and no U+0000
    /// ([MQTT-1.5.4-2]). The BOM U+FEFF is kept as it is ([MQTT-1.5.4-3]).
    pub(crate) fn string(&mut self, field: &'static str) -> Result<MqttString, DecodeError> {
        let raw = self.binary(field)?;
        let s = ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8(field))?;
        if s.as_bytes().contains(&0) {
            return Err(DecodeError::NullCharacter);
        }
        Ok(MqttString::from_checked(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vbi_bytes(v: u32) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_vbi(&mut b, v);
        b.to_vec()
    }

    #[test]
    fn vbi_boundaries_from_the_spec_table() {
        let table: &[(u32, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for &(v, bytes) in table {
            assert_eq!(vbi_bytes(v), bytes, "{v}");
            assert_eq!(vbi_len(v), bytes.len());
            match read_vbi(bytes) {
                Ok(VbiRead::Done(got, n)) => assert_eq!((got, n), (v, bytes.len())),
                _ => panic!("{v} did not decode"),
            }
        }
    }

    #[test]
    fn vbi_rejects_five_bytes_and_non_minimal() {
        assert!(matches!(
            read_vbi(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::VariableByteIntegerTooLong)
        ));
        assert!(matches!(
            read_vbi(&[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::VariableByteIntegerTooLong)
        ));
        assert!(matches!(
            read_vbi(&[0x80, 0x00]),
            Err(DecodeError::VariableByteIntegerNotMinimal)
        ));
        assert!(matches!(read_vbi(&[0x80, 0x80]), Ok(VbiRead::Incomplete)));
    }
}
