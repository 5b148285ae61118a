//! Fixed-size byte fields as the protocol carries them: 3-byte big-endian key ids and 32-byte
//! keys, shared by the client, the simulator and the store instead of per-module copies.

/// A key id as the 3 big-endian bytes prekey nodes carry (the top byte of `id` is dropped:
/// ids never exceed 24 bits).
pub fn u24_be(id: u32) -> [u8; 3] {
    let b = id.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// Reads a 3-byte big-endian key id; None unless exactly 3 bytes.
pub fn read_u24_be(v: &[u8]) -> Option<u32> {
    match v {
        [a, b, c] => Some(u32::from_be_bytes([0, *a, *b, *c])),
        _ => None,
    }
}

/// `v` as a 32-byte key; None for any other length.
pub fn array32(v: &[u8]) -> Option<[u8; 32]> {
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u24_round_trips_and_refuses_other_lengths() {
        assert_eq!(u24_be(0x00AB_CDEF), [0xAB, 0xCD, 0xEF]);
        assert_eq!(read_u24_be(&u24_be(0xFF_FFFF)), Some(0xFF_FFFF));
        assert_eq!(read_u24_be(&[1, 2]), None);
        assert_eq!(read_u24_be(&[1, 2, 3, 4]), None);
        assert_eq!(array32(&[7; 32]), Some([7; 32]));
        assert_eq!(array32(&[7; 33]), None);
    }
}
