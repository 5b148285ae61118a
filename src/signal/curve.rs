//! Curve25519 keys as Signal and WhatsApp use them: X25519 key agreement and XEdDSA signatures
//! (Signal's XEdDSA specification; libsignal's wire form puts the Edwards sign bit in the top
//! bit of byte 63, which a spec-conformant signature leaves 0).

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use rand::RngCore;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Type byte that prefixes a serialized Curve25519 public key in Signal messages.
pub const DJB_TYPE: u8 = 0x05;

/// A Curve25519 key pair (private key stored clamped, as the references keep it).
#[derive(Clone)]
pub struct KeyPair {
    /// Clamped private scalar.
    pub private: [u8; 32],
    /// Montgomery u-coordinate of the public key.
    pub public: [u8; 32],
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private);
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Private keys never reach logs.
        write!(f, "KeyPair {{ public: {:02x?}.. }}", &self.public[..4])
    }
}

/// Clamps a 32-byte string into an X25519 private scalar.
pub fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

impl KeyPair {
    /// Key pair from private key bytes (clamped here if they are not already).
    pub fn from_private(private: [u8; 32]) -> KeyPair {
        let private = clamp(private);
        let public = MontgomeryPoint::mul_base_clamped(private).to_bytes();
        KeyPair { private, public }
    }

    /// A pair read back from our own storage, public half as stored: recomputing it costs a
    /// base-point multiplication, which on every record load dominated encrypting a message.
    /// Only for values this process wrote (records are ours, and sealed at rest when a store
    /// key is set); keys from a peer go through [`KeyPair::from_private`] or stay public.
    pub fn from_stored(private: [u8; 32], public: [u8; 32]) -> KeyPair {
        KeyPair { private, public }
    }

    /// A fresh key pair from the operating system's CSPRNG.
    pub fn generate() -> KeyPair {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        KeyPair::from_private(k)
    }

    /// X25519 shared secret with `their_public`.
    pub fn dh(&self, their_public: &[u8; 32]) -> [u8; 32] {
        MontgomeryPoint(*their_public)
            .mul_clamped(self.private)
            .to_bytes()
    }

    /// XEdDSA signature over `msg` with a fresh random nonce input.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        sign_with_private(&self.private, msg)
    }

    /// The public key with the 0x05 type byte, as Signal messages carry it.
    pub fn public_with_type(&self) -> [u8; 33] {
        with_type(&self.public)
    }
}

/// Where new key pairs come from. Injected so that recorded sessions replay exactly and ratchet
/// tests are deterministic; production uses [`OsKeys`].
pub trait KeySource {
    /// The next key pair.
    fn generate(&mut self) -> KeyPair;
}

/// Fresh keys from the operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsKeys;

impl KeySource for OsKeys {
    fn generate(&mut self) -> KeyPair {
        KeyPair::generate()
    }
}

/// Key pairs from a fixed sequence (recorded vectors, deterministic tests); falls back to fresh
/// keys when the sequence runs out.
#[derive(Debug, Default, Clone)]
pub struct SequenceKeys(std::collections::VecDeque<KeyPair>);

impl SequenceKeys {
    /// Keys to hand out in this order.
    pub fn new(keys: impl IntoIterator<Item = KeyPair>) -> SequenceKeys {
        SequenceKeys(keys.into_iter().collect())
    }

    /// Keys not yet handed out.
    pub fn remaining(&self) -> usize {
        self.0.len()
    }
}

impl KeySource for SequenceKeys {
    fn generate(&mut self) -> KeyPair {
        self.0.pop_front().unwrap_or_else(KeyPair::generate)
    }
}

/// A 33-byte `0x05 ‖ key` public key back to its 32 raw bytes.
pub fn strip_type(key: &[u8]) -> Option<[u8; 32]> {
    match key {
        [DJB_TYPE, rest @ ..] => rest.try_into().ok(),
        _ => None,
    }
}

/// `0x05 ‖ key`.
pub fn with_type(key: &[u8; 32]) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = DJB_TYPE;
    out[1..].copy_from_slice(key);
    out
}

/// XEdDSA signature by a private key alone (no public key needed) with a random nonce input.
pub fn sign_with_private(private: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    Signer::new(private).sign(msg)
}

/// XEdDSA sign (XEdDSA spec §2.5): `random` is the 64-byte nonce input Z.
pub fn xeddsa_sign(private: &[u8; 32], msg: &[u8], random: &[u8; 64]) -> [u8; 64] {
    Signer::new(private).sign_with(msg, random)
}

/// A private key prepared for repeated XEdDSA signing: the Edwards key is computed once, so a
/// signature costs one base-point multiplication (sender keys sign every group message).
#[derive(Clone)]
pub struct Signer {
    a: Scalar,
    a_pub: [u8; 32],
}

impl Drop for Signer {
    fn drop(&mut self) {
        // dalek's `zeroize` feature: the scalar is the private key in Edwards form.
        zeroize::Zeroize::zeroize(&mut self.a);
    }
}

impl Signer {
    /// Prepares `private` (a Montgomery scalar, clamped here).
    pub fn new(private: &[u8; 32]) -> Signer {
        let k = Scalar::from_bytes_mod_order(clamp(*private));
        let e = (&k * ED25519_BASEPOINT_TABLE).compress().to_bytes();
        // The Edwards public key with sign bit 0: negate the scalar when E's sign bit is set.
        let a = if e[31] & 0x80 != 0 { -k } else { k };
        let mut a_pub = e;
        a_pub[31] &= 0x7f;
        Signer { a, a_pub }
    }

    /// Signs with a fresh random nonce input.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut z = [0u8; 64];
        rand::rng().fill_bytes(&mut z);
        self.sign_with(msg, &z)
    }

    /// Signs with the nonce input `random` (Z).
    pub fn sign_with(&self, msg: &[u8], random: &[u8; 64]) -> [u8; 64] {
        let mut prefix = [0xffu8; 32];
        prefix[0] = 0xfe;
        let r = Scalar::from_hash(
            Sha512::new()
                .chain_update(prefix)
                .chain_update(self.a.as_bytes())
                .chain_update(msg)
                .chain_update(random),
        );
        let big_r = (&r * ED25519_BASEPOINT_TABLE).compress();
        let h = Scalar::from_hash(
            Sha512::new()
                .chain_update(big_r.as_bytes())
                .chain_update(self.a_pub)
                .chain_update(msg),
        );
        let s = r + h * self.a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }
}

/// Verifies an XEdDSA signature by the Montgomery key `public`, taking the Edwards sign bit
/// from the top bit of byte 63 as libsignal does.
pub fn xeddsa_verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    Verifier::new(*public).verify(msg, sig)
}

/// A public key prepared for repeated verification: its Edwards form (one per sign bit, since
/// libsignal-style signers may set either) is derived on first use and kept.
#[derive(Clone)]
pub struct Verifier {
    public: [u8; 32],
    edwards: [Option<(EdwardsPoint, [u8; 32])>; 2],
}

impl Verifier {
    /// Prepares `public` (a Montgomery u-coordinate).
    pub fn new(public: [u8; 32]) -> Verifier {
        Verifier {
            public,
            edwards: [None, None],
        }
    }

    /// The key being verified against.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// True once an Edwards form was derived (a verification happened).
    pub fn is_prepared(&self) -> bool {
        self.edwards.iter().any(Option::is_some)
    }

    fn edwards(&mut self, sign: u8) -> Option<(EdwardsPoint, [u8; 32])> {
        let slot = &mut self.edwards[usize::from(sign & 1)];
        if slot.is_none() {
            // The u-coordinate must be canonical (u < p), as the XEdDSA spec requires.
            if !is_canonical_field_element(&self.public) {
                return None;
            }
            let a = MontgomeryPoint(self.public).to_edwards(sign)?;
            *slot = Some((-a, a.compress().to_bytes()));
        }
        *slot
    }

    /// Checks `sig` over `msg`.
    pub fn verify(&mut self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let sign = sig[63] >> 7;
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&sig[32..]);
        s_bytes[31] &= 0x7f;
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let Some((neg_a, a_bytes)) = self.edwards(sign) else {
            return false;
        };
        // R is compared as bytes, not decompressed: a non-point R cannot equal a computed
        // point's encoding (libsignal does the same).
        let r_bytes = &sig[..32];
        let h = Scalar::from_hash(
            Sha512::new()
                .chain_update(r_bytes)
                .chain_update(a_bytes)
                .chain_update(msg),
        );
        let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &neg_a, &s).compress();
        check.as_bytes().ct_eq(r_bytes).into()
    }
}

/// True when the little-endian 255-bit value is below p = 2^255 − 19 (top bit ignored).
fn is_canonical_field_element(u: &[u8; 32]) -> bool {
    let mut v = *u;
    v[31] &= 0x7f;
    // p = 0x7fff…ffed; only values ≥ p are 2^255−19 … 2^255−1.
    !(v[31] == 0x7f && v[1..31].iter().all(|&b| b == 0xff) && v[0] >= 0xed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    #[test]
    fn sign_verify_and_reject_tampering() {
        for _ in 0..50 {
            let kp = KeyPair::generate();
            let sig = kp.sign(b"hello");
            assert!(xeddsa_verify(&kp.public, b"hello", &sig));
            assert!(!xeddsa_verify(&kp.public, b"hellp", &sig));
            let mut bad = sig;
            bad[10] ^= 1;
            assert!(!xeddsa_verify(&kp.public, b"hello", &bad));
            let other = KeyPair::generate();
            assert!(!xeddsa_verify(&other.public, b"hello", &sig));
        }
    }

    #[test]
    fn public_key_matches_recorded_pair() {
        // shared/fixtures/noise_xx.json client_static.
        let kp = KeyPair::from_private(hex32(
            "8008894c243fcd99c00b45250427b7dd180c2a2beb9429ef59c250535870f453",
        ));
        assert_eq!(
            kp.public,
            hex32("5281dac9be0b262cf81d122134faa9c1bdedb7a27d0c615b998d1bec0d9b9200")
        );
    }
}
