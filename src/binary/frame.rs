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
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_INFLATED));
    let mut z = flate2::read::ZlibDecoder::new(&body[..]).take(MAX_INFLATED as u64 + 1);
    z.read_to_end(&mut out).map_err(|_| DecodeError::Inflate)?;
    if out.len() > MAX_INFLATED {
        return Err(DecodeError::InflatedTooLarge(MAX_INFLATED));
    }
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
