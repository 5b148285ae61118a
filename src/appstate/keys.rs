//! Mutation keys and what they compute (CLIENT-FEATURES §3.3–§3.5): the HKDF expansion of an
//! app-state sync key, the value cipher (AES-256-CBC, IV prefixed, PKCS#7) and the four MACs
//! (whatsmeow `appstate/keys.go` `expandAppStateKeys`, `appstate/hash.go`; Baileys
//! `chat-utils.ts` `generateMac`, `generateSnapshotMac`, `generatePatchMac`).

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use zeroize::Zeroize;

use super::collection::Collection;
use super::error::AppStateError;
use super::lthash::LtHash;
use super::state::Operation;

/// The HKDF info string (whatsmeow `appstate/keys.go`).
const INFO: &[u8] = b"WhatsApp Mutation Keys";
/// Bytes of a MAC and of each expanded key.
pub const MAC_LEN: usize = 32;
/// Bytes of the IV prefixed to each encrypted value.
pub const IV_LEN: usize = 16;

/// The five keys one app-state sync key expands to. Debug never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct MutationKeys {
    /// HMAC-SHA256 key of the index MAC.
    pub index: [u8; 32],
    /// AES-256-CBC key of the values.
    pub value_encryption: [u8; 32],
    /// HMAC-SHA512 key of the value MAC.
    pub value_mac: [u8; 32],
    /// HMAC-SHA256 key of the snapshot MAC (snapshots and patches).
    pub snapshot_mac: [u8; 32],
    /// HMAC-SHA256 key of the patch MAC.
    pub patch_mac: [u8; 32],
}

impl std::fmt::Debug for MutationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MutationKeys { .. }")
    }
}

impl Drop for MutationKeys {
    fn drop(&mut self) {
        self.index.zeroize();
        self.value_encryption.zeroize();
        self.value_mac.zeroize();
        self.snapshot_mac.zeroize();
        self.patch_mac.zeroize();
    }
}

impl MutationKeys {
    /// HKDF-SHA256(ikm = keyData, no salt, info "WhatsApp Mutation Keys", L = 160), split 5 × 32
    /// in the order index, value encryption, value MAC, snapshot MAC, patch MAC (§3.3).
    pub fn expand(key_data: &[u8]) -> MutationKeys {
        let mut out = [0u8; 160];
        // 160 ≤ 255 × 32, so expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, key_data).expand(INFO, &mut out);
        let part = |i: usize| -> [u8; 32] {
            let mut k = [0u8; 32];
            k.copy_from_slice(&out[i * 32..(i + 1) * 32]);
            k
        };
        let keys = MutationKeys {
            index: part(0),
            value_encryption: part(1),
            value_mac: part(2),
            snapshot_mac: part(3),
            patch_mac: part(4),
        };
        out.zeroize();
        keys
    }

    /// The value MAC: HMAC-SHA512(valueMacKey, [op+1] ‖ keyID ‖ enc ‖ u64be(len(keyID)+1)),
    /// truncated to 32 bytes (whatsmeow `generateContentMAC`; `enc` is IV ‖ ciphertext).
    pub fn value_mac(&self, op: Operation, enc: &[u8], key_id: &[u8]) -> [u8; 32] {
        let mut mac = hmac_of::<Hmac<Sha512>>(&self.value_mac);
        mac.update(&[op.mac_byte()]);
        mac.update(key_id);
        mac.update(enc);
        mac.update(&(key_id.len() as u64 + 1).to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 32];
        out.copy_from_slice(&full[..32]);
        out
    }

    /// The index MAC: HMAC-SHA256(indexKey, index JSON bytes), all 32 bytes (§3.4 step 4).
    pub fn index_mac(&self, index_json: &[u8]) -> [u8; 32] {
        let mut mac = hmac_of::<Hmac<Sha256>>(&self.index);
        mac.update(index_json);
        mac.finalize().into_bytes().into()
    }

    /// The snapshot MAC: HMAC-SHA256(snapshotMacKey, ltHash ‖ u64be(version) ‖ name) (§3.5;
    /// whatsmeow `generateSnapshotMAC`).
    pub fn snapshot_mac(&self, hash: &LtHash, version: u64, c: Collection) -> [u8; 32] {
        let mut mac = hmac_of::<Hmac<Sha256>>(&self.snapshot_mac);
        mac.update(&hash.0);
        mac.update(&version.to_be_bytes());
        mac.update(c.name().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The patch MAC: HMAC-SHA256(patchMacKey, snapshotMAC ‖ valueMAC₁ ‖ … ‖ valueMACₙ ‖
    /// u64be(version) ‖ name), value MACs in mutation order (§3.5; whatsmeow `generatePatchMAC`).
    pub fn patch_mac<'a>(
        &self,
        snapshot_mac: &[u8],
        value_macs: impl IntoIterator<Item = &'a [u8]>,
        version: u64,
        c: Collection,
    ) -> [u8; 32] {
        let mut mac = hmac_of::<Hmac<Sha256>>(&self.patch_mac);
        mac.update(snapshot_mac);
        for v in value_macs {
            mac.update(v);
        }
        mac.update(&version.to_be_bytes());
        mac.update(c.name().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts a `SyncActionData` with AES-256-CBC and PKCS#7 under `iv`: IV ‖ ciphertext
    /// (whatsmeow `cbcutil.Encrypt`, Baileys `aesEncrypt`).
    pub fn encrypt_value(&self, plain: &[u8], iv: [u8; IV_LEN]) -> Vec<u8> {
        let ct = cbc::Encryptor::<Aes256>::new((&self.value_encryption).into(), (&iv).into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain);
        let mut out = Vec::with_capacity(IV_LEN + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts IV ‖ ciphertext. Call only after the value MAC verified: a padding error then
    /// means a sender bug, not tampering.
    pub fn decrypt_value(&self, enc: &[u8]) -> Result<Vec<u8>, AppStateError> {
        if enc.len() < IV_LEN + 16 || !(enc.len() - IV_LEN).is_multiple_of(16) {
            return Err(AppStateError::Truncated);
        }
        let (iv, ct) = enc.split_at(IV_LEN);
        let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| AppStateError::Truncated)?;
        cbc::Decryptor::<Aes256>::new((&self.value_encryption).into(), (&iv).into())
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(|_| AppStateError::BadPadding)
    }
}

/// An HMAC keyed with a 32-byte key (any length is valid for HMAC, so this cannot fail).
fn hmac_of<M: Mac + hmac::digest::KeyInit>(key: &[u8; 32]) -> M {
    <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::hex;

    /// CLIENT-FEATURES Appendix B: keyData = 32 zero bytes.
    #[test]
    fn expansion_matches_appendix_b() {
        let k = MutationKeys::expand(&[0u8; 32]);
        assert_eq!(
            hex::encode(&k.index),
            "16ba7619bd784475dbde56caf38e0103cbba5e6cb8939eb9db46597c96a047e7"
        );
        assert_eq!(
            hex::encode(&k.value_encryption),
            "405b44418d753d2690fe90e68d35234f453584cc75b3c60ec288695bd6275085"
        );
        assert_eq!(
            hex::encode(&k.value_mac),
            "f144037c4a2ef06b5f21872ff0c46afc09324503d2f3edbe8f4ceaf7ed9188c4"
        );
        assert_eq!(
            hex::encode(&k.snapshot_mac),
            "3a1f8d5a0e7c8af0b6ab830d7f249b68ffcb3eb4b94ac96462afc698e5b89908"
        );
        assert_eq!(
            hex::encode(&k.patch_mac),
            "3155dafbf35be5a23d17bbb56fe650032240f73e053c56f024a81d85328e69b3"
        );
    }

    #[test]
    fn debug_redacts_keys() {
        let k = MutationKeys::expand(&[0u8; 32]);
        let shown = format!("{k:?}");
        assert_eq!(shown, "MutationKeys { .. }");
        assert!(!shown.contains("16ba"));
    }

    #[test]
    fn value_cipher_round_trips_and_rejects_bad_input() {
        let k = MutationKeys::expand(&[7u8; 32]);
        for len in [0usize, 1, 15, 16, 17, 100] {
            let plain: Vec<u8> = (0..len as u8).collect();
            let enc = k.encrypt_value(&plain, [9u8; 16]);
            assert_eq!(&enc[..16], &[9u8; 16]);
            assert_eq!(enc.len(), 16 + (len / 16 + 1) * 16);
            assert_eq!(k.decrypt_value(&enc).unwrap(), plain);
        }
        let enc = k.encrypt_value(b"hello", [1u8; 16]);
        assert_eq!(k.decrypt_value(&enc[..16]), Err(AppStateError::Truncated));
        assert_eq!(
            k.decrypt_value(&enc[..enc.len() - 1]),
            Err(AppStateError::Truncated)
        );
        // In CBC the block before the last one (here the IV) XORs into the last plaintext block:
        // flipping its last byte turns the padding byte 0x0b into 0x51, which is no padding.
        let mut bad = enc.clone();
        let n = bad.len();
        bad[n - 17] ^= 0x5a;
        assert_eq!(k.decrypt_value(&bad), Err(AppStateError::BadPadding));
    }

    #[test]
    fn value_mac_depends_on_operation_key_id_and_content() {
        let k = MutationKeys::expand(&[3u8; 32]);
        let a = k.value_mac(Operation::Set, b"abc", b"kid");
        assert_ne!(a, k.value_mac(Operation::Remove, b"abc", b"kid"));
        assert_ne!(a, k.value_mac(Operation::Set, b"abd", b"kid"));
        assert_ne!(a, k.value_mac(Operation::Set, b"abc", b"kie"));
        // The trailing length is len(keyID)+1 as a u64 BE: recompute by hand.
        let mut mac =
            <Hmac<Sha512> as hmac::digest::KeyInit>::new_from_slice(&k.value_mac).unwrap();
        mac.update(&[
            1, b'k', b'i', b'd', b'a', b'b', b'c', 0, 0, 0, 0, 0, 0, 0, 4,
        ]);
        assert_eq!(&mac.finalize().into_bytes()[..32], &a);
    }
}
