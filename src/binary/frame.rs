//! The decrypted frame around a node: one flags byte, then the node, zlib-compressed when
//! `flags & 2` (PROTOCOL.md §4.1). We always send uncompressed frames with flags 0.

use std::io::Read;

use bytes::Bytes;

use super::decode::decode_node;
use super::encode::encode_node;
use super::error::{DecodeError, EncodeError};
use super::node::Node;

/// Flag bit for a zlib-compressed body.
pub const FLAG_COMPRESSED: u8 = 0x02;

/// Largest inflated body accepted: the references' 16 MiB frame limit.
pub const MAX_INFLATED: usize = 16 << 20;

/// Strips the flags byte and inflates the body if it is compressed.
pub fn unpack_frame(frame: Bytes) -> Result<Bytes, DecodeError> {
    let flags = *frame.first().ok_or(DecodeError::EmptyFrame)?;
    let body = frame.slice(1..);
    if flags & FLAG_COMPRESSED == 0 {
        return Ok(body);
    }
    // Grown by hand rather than by `read_to_end`, whose doubling would reserve up to twice the
    // cap for a body that is refused anyway.
    let limit = MAX_INFLATED + 1;
    let mut out = vec![0u8; body.len().saturating_mul(4).clamp(64, limit)];
    let mut len = 0;
    let mut z = flate2::read::ZlibDecoder::new(&body[..]);
    loop {
        if len == out.len() {
            if len == limit {
                return Err(DecodeError::InflatedTooLarge(MAX_INFLATED));
            }
            // Exact: `resize` alone would double the capacity past the cap.
            let grown = len.saturating_mul(2).min(limit);
            out.reserve_exact(grown - len);
            out.resize(grown, 0);
        }
        match z.read(&mut out[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(DecodeError::Inflate),
        }
    }
    out.truncate(len);
    Ok(Bytes::from(out))
}

/// Decodes a decrypted transport payload (flags byte + node) into a node.
pub fn decode_frame(frame: Bytes) -> Result<Node, DecodeError> {
    decode_node(&unpack_frame(frame)?)
}

/// Encodes a node as a transport payload: flags 0, then the node.
pub fn encode_frame(node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.push(0);
    encode_node(node, &mut out)?;
    Ok(out)
}
