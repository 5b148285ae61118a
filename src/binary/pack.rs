//! NIBBLE_8 and HEX_8 packed strings (PROTOCOL.md §4.5): two characters a byte, high nibble
//! first; an odd length sets bit 7 of the header and pads with 15.

use super::error::DecodeError;

/// Longest string that may be packed.
pub const PACKED_MAX: usize = 127;

/// Which alphabet a packed string uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// `0-9`, `-`, `.`.
    Nibble,
    /// `0-9`, `A-F` (uppercase only).
    Hex,
}

/// The packing this string qualifies for, preferring nibble as the references do.
#[inline]
pub fn packing_for(s: &str) -> Option<Packing> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > PACKED_MAX {
        return None;
    }
    let mut nibble = true;
    let mut hex = true;
    for &c in b {
        let digit = c.is_ascii_digit();
        nibble &= digit || c == b'-' || c == b'.';
        hex &= digit || (b'A'..=b'F').contains(&c);
        if !nibble && !hex {
            return None;
        }
    }
    if nibble {
        Some(Packing::Nibble)
    } else {
        Some(Packing::Hex)
    }
}

#[inline]
fn code(p: Packing, c: u8) -> u8 {
    match (p, c) {
        (_, b'0'..=b'9') => c - b'0',
        (Packing::Nibble, b'-') => 10,
        (Packing::Nibble, b'.') => 11,
        (Packing::Hex, b'A'..=b'F') => c - b'A' + 10,
        // packing_for admitted only the characters above.
        _ => 15,
    }
}

/// Appends the header byte and packed body of `s` (which `packing_for` accepted).
pub fn write_packed(out: &mut Vec<u8>, p: Packing, s: &str) {
    let b = s.as_bytes();
    let odd = b.len() % 2;
    out.push(((b.len() / 2 + odd) as u8) | ((odd as u8) << 7));
    let mut pairs = b.chunks_exact(2);
    for pair in &mut pairs {
        out.push((code(p, pair[0]) << 4) | code(p, pair[1]));
    }
    if let [last] = pairs.remainder() {
        out.push((code(p, *last) << 4) | 15);
    }
}

#[inline]
fn unpack(p: Packing, n: u8) -> Result<u8, DecodeError> {
    match (p, n) {
        (_, 0..=9) => Ok(b'0' + n),
        (Packing::Nibble, 10) => Ok(b'-'),
        (Packing::Nibble, 11) => Ok(b'.'),
        (Packing::Hex, 10..=15) => Ok(b'A' + n - 10),
        _ => Err(DecodeError::InvalidNibble(n)),
    }
}

/// Unpacks `body` (the bytes after the header) into a string of the header's length.
pub fn read_packed(p: Packing, header: u8, body: &[u8]) -> Result<String, DecodeError> {
    let odd = header & 0x80 != 0;
    let mut out = Vec::with_capacity(body.len() * 2);
    for (i, &b) in body.iter().enumerate() {
        out.push(unpack(p, b >> 4)?);
        let last = i + 1 == body.len();
        if last && odd {
            // The pad nibble is dropped unread, as the references do.
            break;
        }
        out.push(unpack(p, b & 0x0f)?);
    }
    // Only ASCII digits, '-', '.', 'A'-'F' were pushed.
    Ok(String::from_utf8(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_nibble_before_hex_and_rejects_lowercase() {
        assert_eq!(packing_for("1700000000"), Some(Packing::Nibble));
        assert_eq!(packing_for("12.34-5"), Some(Packing::Nibble));
        assert_eq!(packing_for("3EB0ABCD"), Some(Packing::Hex));
        assert_eq!(packing_for("3eb0"), None);
        assert_eq!(packing_for(""), None);
        assert_eq!(packing_for(&"1".repeat(128)), None);
    }

    #[test]
    fn protocol_md_example() {
        // PROTOCOL.md §4.8: "12.34-5" → 84 12 B3 4A 5F.
        let mut out = Vec::new();
        write_packed(&mut out, Packing::Nibble, "12.34-5");
        assert_eq!(out, [0x84, 0x12, 0xB3, 0x4A, 0x5F]);
        assert_eq!(
            read_packed(Packing::Nibble, 0x84, &out[1..]).unwrap(),
            "12.34-5"
        );
    }
}
