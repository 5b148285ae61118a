//! Fuzzes what a server controls after the handshake: the 3-byte framing, then each frame's
//! flags byte, zlib body and binary node. Any input must give Ok or Err, never a panic; a node
//! that decodes must re-encode, and its encoding is a fixed point (string content the wire wrote
//! packed may come back as bytes once, as in the references, but never changes after that).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wa_gateway::binary::{NodeArena, decode_frame, encode_frame, unpack_frame};
use wa_gateway::socket::framing::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    // The borrowed view accepts exactly what the owned decoder accepts, with equal content.
    if let Ok(body) = unpack_frame(Bytes::copy_from_slice(data)) {
        let owned = wa_gateway::binary::decode_node(&body);
        let mut arena = NodeArena::new();
        let view = arena.decode(&body);
        assert_eq!(owned.is_ok(), view.is_ok());
        if let (Ok(o), Ok(v)) = (&owned, &view) {
            assert_eq!(&v.to_owned_node(Some(&body)), o);
        }
    }
    if let Ok(node) = decode_frame(Bytes::copy_from_slice(data)) {
        let once = encode_frame(&node).expect("decoded nodes re-encode");
        let back = decode_frame(Bytes::from(once.clone())).expect("re-encoded nodes decode");
        assert_eq!(encode_frame(&back).expect("re-encodes"), once);
    }
    let mut dec = FrameDecoder::new(1 << 16);
    for chunk in data.chunks(7) {
        dec.push(chunk);
        while let Ok(Some(frame)) = dec.next_frame() {
            let _ = decode_frame(frame);
        }
    }
});
