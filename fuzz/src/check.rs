// The checks the `decode` fuzz target runs on every input. Shared verbatim with
// crates/midge-codec/tests/fuzz_corpus.rs through `include!`, so the corpus replay in
// `cargo test` and the fuzzer test the same properties. (Plain `//` comments: a file that is
// `include!`d cannot carry inner doc comments.)
//
// Properties, for MQTT 3.1, 3.1.1 and 5.0 alike:
// - `decode` never panics; it consumes bytes only when it returns a packet, and `Ok(None)`
//   leaves the buffer untouched;
// - every packet it returns encodes without error, `encoded_len` is the encoded size, the
//   encoding decodes to the same packet (round trip), every strict prefix of the encoding is
//   "need more bytes", the packet fits a limit of exactly its size and not one byte less,
//   and for PUBLISH `encode_publish_header` + payload equals `encode`;
// - `Debug` of packets and `Display`/`reason_code` of errors never panic.

use bytes::BytesMut;
use midge_codec::{
    decode, encode, encode_publish_header, encoded_len, DecodeError, DecodeLimits, Packet,
    ProtocolVersion,
};

/// The versions every input is decoded with.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

/// Runs every check on one input; panics on the first violated property.
pub fn check_input(data: &[u8]) {
    for version in VERSIONS {
        check_stream(data, version);
    }
}

/// Decodes `data` as a stream of packets until it needs more bytes or fails.
pub fn check_stream(data: &[u8], version: ProtocolVersion) {
    let limits = DecodeLimits::default();
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode(&mut buf, version, &limits) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a packet consumes bytes");
                check_round_trip(&packet, version);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumes nothing");
                return;
            }
            Err(e) => {
                touch_error(&e, version);
                return;
            }
        }
    }
}

fn touch_error(e: &DecodeError, version: ProtocolVersion) {
    let _ = e.to_string();
    let _ = e.reason_code();
    let _ = e.disconnect_reason(version);
}

/// Checks that a decoded packet survives encode -> decode unchanged.
pub fn check_round_trip(packet: &Packet, version: ProtocolVersion) {
    let _ = format!("{packet:?}");
    // A CONNECT is decoded by its own protocol level, whatever the connection's version.
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    let mut out = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut out) {
        panic!("decoded packet does not encode ({version}): {e}: {packet:?}");
    }
    assert_eq!(
        out.len(),
        encoded_len(packet, version),
        "encoded_len disagrees with encode ({version}): {packet:?}"
    );

    let limits = DecodeLimits::default();
    let mut again = out.clone();
    let decoded = match decode(&mut again, version, &limits) {
        Ok(Some(p)) => p,
        Ok(None) => panic!("encoding is incomplete ({version}): {packet:?} -> {out:02x?}"),
        Err(e) => panic!("encoding does not decode ({version}): {e}: {packet:?} -> {out:02x?}"),
    };
    assert!(again.is_empty(), "encoding has trailing bytes ({version})");
    assert_eq!(&decoded, packet, "round trip changed the packet ({version})");

    for cut in [0, 1, out.len() / 2, out.len() - 1] {
        let mut prefix = BytesMut::from(&out[..cut]);
        assert_eq!(
            decode(&mut prefix, version, &limits),
            Ok(None),
            "a prefix of {cut} of {} bytes is not 'need more' ({version})",
            out.len()
        );
    }

    let size = u32::try_from(out.len()).expect("fuzz inputs are small");
    let exact = DecodeLimits {
        max_packet_size: size,
    };
    assert_eq!(
        decode(&mut out.clone(), version, &exact),
        Ok(Some(packet.clone())),
        "a packet fits a limit of its own size ({version})"
    );
    let below = DecodeLimits {
        max_packet_size: size - 1,
    };
    assert!(
        matches!(
            decode(&mut out.clone(), version, &below),
            Err(DecodeError::PacketTooLarge { .. })
        ),
        "a packet one byte over the limit is refused ({version})"
    );

    if let Packet::Publish(p) = packet {
        let mut split = BytesMut::new();
        if let Err(e) = encode_publish_header(p, version, &mut split) {
            panic!("encode_publish_header fails where encode works: {e}");
        }
        split.extend_from_slice(&p.payload);
        assert_eq!(split, out, "encode_publish_header + payload != encode");
    }
}
