//! The LTHash ("WhatsApp Patch Integrity"; whatsmeow `appstate/lthash/lthash.go`,
//! CLIENT-FEATURES §3.5): a 128-byte sum over the value MACs of a collection's live records, so
//! adding and removing records in any order gives the same hash as building it afresh.

use hkdf::Hkdf;
use sha2::Sha256;

/// The HKDF info string.
const INFO: &[u8] = b"WhatsApp Patch Integrity";
/// Bytes of the hash: 64 little-endian u16 lanes.
pub const LTHASH_LEN: usize = 128;

/// A collection's LTHash. Not secret (it is a sum of MACs), so Debug shows it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LtHash(pub [u8; LTHASH_LEN]);

impl Default for LtHash {
    fn default() -> Self {
        LtHash([0; LTHASH_LEN])
    }
}

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", crate::util::hex::encode(&self.0))
    }
}

/// HKDF-SHA256(ikm = value MAC, no salt, info "WhatsApp Patch Integrity", L = 128).
fn derive(value_mac: &[u8]) -> [u8; LTHASH_LEN] {
    let mut d = [0u8; LTHASH_LEN];
    // 128 ≤ 255 × 32, so expand cannot fail.
    let _ = Hkdf::<Sha256>::new(None, value_mac).expand(INFO, &mut d);
    d
}

impl LtHash {
    /// Adds one value MAC: each u16-LE lane plus the derived lane, wrapping mod 2¹⁶.
    pub fn add(&mut self, value_mac: &[u8]) {
        let d = derive(value_mac);
        for (a, b) in self.0.chunks_exact_mut(2).zip(d.chunks_exact(2)) {
            let v = u16::from_le_bytes([a[0], a[1]]).wrapping_add(u16::from_le_bytes([b[0], b[1]]));
            a.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Subtracts one value MAC (the inverse of [`LtHash::add`]).
    pub fn subtract(&mut self, value_mac: &[u8]) {
        let d = derive(value_mac);
        for (a, b) in self.0.chunks_exact_mut(2).zip(d.chunks_exact(2)) {
            let v = u16::from_le_bytes([a[0], a[1]]).wrapping_sub(u16::from_le_bytes([b[0], b[1]]));
            a.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// All subtractions, then all additions (whatsmeow `SubtractThenAdd`; the order cannot
    /// change the result of wrapping sums, it is kept for parity).
    pub fn subtract_then_add<'a>(
        &mut self,
        subtract: impl IntoIterator<Item = &'a [u8]>,
        add: impl IntoIterator<Item = &'a [u8]>,
    ) {
        for m in subtract {
            self.subtract(m);
        }
        for m in add {
            self.add(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::hex;

    /// CLIENT-FEATURES Appendix B: adding a zero value MAC to the zero state gives the HKDF
    /// output itself; subtracting it again gives zero.
    #[test]
    fn add_and_subtract_match_appendix_b() {
        let mut h = LtHash::default();
        h.add(&[0u8; 32]);
        assert_eq!(
            hex::encode(&h.0),
            "4fa00dd372c1cba9ef14247423d1ba9f86ff3e15a42f01ea2a3e652df71ae0c27d65c542680d56ac52715dda5a796055b514c545c61fc730228ec3d31dab5f3d0a55f0bf1007f9e1a9a6b5bb87da1667bfaa1ae28c637e6789c9ed9ac3951680482b1040e815801416f90b5cd9c4538a4aead575ab5d776d5724b488f9977b1d"
        );
        h.subtract(&[0u8; 32]);
        assert_eq!(h, LtHash::default());
    }

    #[test]
    fn order_does_not_matter_and_lanes_wrap() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let mut x = LtHash::default();
        x.subtract_then_add([&c[..]], [&a[..], &b[..]]);
        let mut y = LtHash::default();
        y.add(&b);
        y.subtract(&c);
        y.add(&a);
        assert_eq!(x, y);
        // Subtracting from zero wraps rather than saturating: adding back restores zero.
        let mut z = LtHash::default();
        z.subtract(&a);
        assert_ne!(z, LtHash::default());
        z.add(&a);
        assert_eq!(z, LtHash::default());
    }
}
