//! LZ4 frame compression, as a client asks for it in STARTUP (`COMPRESSION:
//! lz4`, protocol v4): from then on the client may compress request bodies and
//! the node compresses its answers' bodies, marking each such frame with the
//! compression flag. Frames are built uncompressed everywhere else in the node
//! and compressed here on their way out, so no answer needs to know.

use std::collections::HashMap;

use cassandra_protocol::compression::Compression;

/// Header bytes of a v4 frame.
const HEADER_BYTES: usize = 9;

/// The compression flag of a frame header's flag byte.
const COMPRESSED: u8 = 0x01;

/// Whether a STARTUP's options ask for LZ4 (the only compression offered).
pub(crate) fn wants_lz4(options: &HashMap<String, String>) -> bool {
    options
        .get("COMPRESSION")
        .is_some_and(|c| c.eq_ignore_ascii_case(cassandra_protocol::compression::LZ4))
}

/// Whether a frame's header says its body is compressed.
pub(crate) fn is_compressed(frame: &[u8]) -> bool {
    frame.len() > 1 && frame[1] & COMPRESSED != 0
}

/// `frame` (a whole uncompressed v4 frame) with an LZ4-compressed body. A frame
/// without a body stays as it is: the flag is per frame, and an empty body has
/// nothing to compress.
pub(crate) fn compress_frame(frame: Vec<u8>) -> Vec<u8> {
    if frame.len() <= HEADER_BYTES || is_compressed(&frame) {
        return frame;
    }
    let Ok(body) = Compression::Lz4.encode(&frame[HEADER_BYTES..]) else {
        return frame;
    };
    let Ok(length) = i32::try_from(body.len()) else {
        return frame;
    };
    let mut compressed = Vec::with_capacity(HEADER_BYTES + body.len());
    compressed.extend_from_slice(&frame[..5]);
    compressed[1] |= COMPRESSED;
    compressed.extend_from_slice(&length.to_be_bytes());
    compressed.extend_from_slice(&body);
    compressed
}

#[cfg(test)]
mod tests {
    use super::*;
    use cassandra_protocol::frame::{Direction, Envelope, Flags, Opcode, Version};

    #[test]
    fn a_compressed_frame_decodes_to_the_original() {
        let body = b"a body long enough to be worth compressing, compressing, compressing".to_vec();
        let envelope = Envelope::new(
            Version::V4,
            Direction::Response,
            Flags::empty(),
            Opcode::Result,
            7,
            body.clone(),
            None,
            Vec::new(),
        );
        let plain = envelope.encode_with(Compression::None).unwrap();
        let compressed = compress_frame(plain.clone());
        assert!(is_compressed(&compressed));
        assert!(!is_compressed(&plain));
        let decoded = Envelope::from_buffer(&compressed, Compression::Lz4).unwrap();
        assert_eq!(decoded.envelope.body, body);
        assert_eq!(decoded.envelope.stream_id, 7);
        assert_eq!(decoded.envelope_len, compressed.len());
    }

    #[test]
    fn only_lz4_is_taken() {
        let ask = |value: &str| HashMap::from([("COMPRESSION".to_owned(), value.to_owned())]);
        assert!(wants_lz4(&ask("lz4")));
        assert!(!wants_lz4(&ask("snappy")));
        assert!(!wants_lz4(&HashMap::new()));
    }
}
