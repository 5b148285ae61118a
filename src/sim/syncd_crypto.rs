//! The simulated phone's app-state crypto (CLIENT-FEATURES §3.3–3.6): mutation-key expansion,
//! the LTHash, record encryption and the snapshot and patch MACs. A stand-in for the
//! sans-IO core in `src/appstate/` (built on branch h-core at the same time): the simulator
//! switches to the core once it lands, and these functions are the checks its tests use
//! until then. Only the phone uses them; the server never holds keys.

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use prost::Message as _;
use sha2::{Sha256, Sha512};
use zeroize::Zeroizing;

use crate::proto::wa;

/// The five keys one app-state sync key expands to. `Debug` shows none of them.
#[derive(Clone)]
pub struct MutationKeys {
    index: Zeroizing<[u8; 32]>,
    value_encryption: Zeroizing<[u8; 32]>,
    value_mac: Zeroizing<[u8; 32]>,
    snapshot_mac: Zeroizing<[u8; 32]>,
    patch_mac: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MutationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MutationKeys { .. }")
    }
}

impl MutationKeys {
    /// HKDF-SHA256(keyData, no salt, "WhatsApp Mutation Keys", 160), split 5 × 32
    /// (whatsmeow appstate/keys.go `expandAppStateKeys`).
    pub fn expand(key_data: &[u8]) -> MutationKeys {
        let mut okm = Zeroizing::new([0u8; 160]);
        // 160 bytes is far below HKDF-SHA256's limit: expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, key_data).expand(b"WhatsApp Mutation Keys", &mut okm[..]);
        let part = |i: usize| {
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&okm[i * 32..(i + 1) * 32]);
            k
        };
        MutationKeys {
            index: part(0),
            value_encryption: part(1),
            value_mac: part(2),
            snapshot_mac: part(3),
            patch_mac: part(4),
        }
    }
}

/// Bytes of an LTHash state.
pub const LTHASH_LEN: usize = 128;

/// Adds (or subtracts) the expansion of `value_mac` to `hash`, 64 little-endian u16 lanes,
/// wrapping (whatsmeow appstate/lthash/lthash.go, "WhatsApp Patch Integrity").
pub fn lthash_apply(hash: &mut [u8; LTHASH_LEN], value_mac: &[u8], add: bool) {
    let mut d = [0u8; LTHASH_LEN];
    let _ = Hkdf::<Sha256>::new(None, value_mac).expand(b"WhatsApp Patch Integrity", &mut d);
    for i in (0..LTHASH_LEN).step_by(2) {
        let a = u16::from_le_bytes([hash[i], hash[i + 1]]);
        let b = u16::from_le_bytes([d[i], d[i + 1]]);
        let r = if add {
            a.wrapping_add(b)
        } else {
            a.wrapping_sub(b)
        };
        hash[i..i + 2].copy_from_slice(&r.to_le_bytes());
    }
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The index MAC: HMAC-SHA256(indexKey, index JSON).
pub fn index_mac(keys: &MutationKeys, index: &[u8]) -> [u8; 32] {
    hmac256(&keys.index[..], &[index])
}

/// The value MAC: HMAC-SHA512(valueMacKey, [op+1] ‖ keyID ‖ iv‖ct ‖ u64be(len(keyID)+1))[..32]
/// (whatsmeow appstate/hash.go `generateContentMAC`).
pub fn value_mac(keys: &MutationKeys, op: i32, key_id: &[u8], enc: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha512> as Mac>::new_from_slice(&keys.value_mac[..])
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(&[(op + 1) as u8]);
    m.update(key_id);
    m.update(enc);
    m.update(&(key_id.len() as u64 + 1).to_be_bytes());
    let full = m.finalize().into_bytes();
    let mut out = [0u8; 32];
    out.copy_from_slice(&full[..32]);
    out
}

/// HMAC-SHA256(snapshotMacKey, ltHash ‖ u64be(version) ‖ name): a snapshot's `mac`, and a
/// patch's `snapshotMAC` (whatsmeow `generateSnapshotMAC`).
pub fn snapshot_mac(
    keys: &MutationKeys,
    hash: &[u8; LTHASH_LEN],
    version: u64,
    name: &str,
) -> [u8; 32] {
    hmac256(
        &keys.snapshot_mac[..],
        &[hash, &version.to_be_bytes(), name.as_bytes()],
    )
}

/// HMAC-SHA256(patchMacKey, snapshotMAC ‖ valueMACs… ‖ u64be(version) ‖ name)
/// (whatsmeow `generatePatchMAC`).
pub fn patch_mac(
    keys: &MutationKeys,
    snapshot_mac: &[u8],
    value_macs: &[[u8; 32]],
    version: u64,
    name: &str,
) -> [u8; 32] {
    let mut parts: Vec<&[u8]> = vec![snapshot_mac];
    parts.extend(value_macs.iter().map(|m| &m[..]));
    let v = version.to_be_bytes();
    parts.push(&v);
    parts.push(name.as_bytes());
    hmac256(&keys.patch_mac[..], &parts)
}

/// An encrypted record and its MACs.
pub struct Sealed {
    /// The record as a patch or snapshot carries it.
    pub record: wa::SyncdRecord,
    /// Its index MAC.
    pub index_mac: [u8; 32],
    /// Its value MAC.
    pub value_mac: [u8; 32],
}

/// Encrypts `data` (its `index` the JSON array) under `keys` with a fresh random IV prefixed
/// to the ciphertext (CLIENT-FEATURES §3.6).
pub fn seal(keys: &MutationKeys, key_id: &[u8], op: i32, data: &wa::SyncActionData) -> Sealed {
    let iv: [u8; 16] = rand::random();
    let ct = cbc::Encryptor::<Aes256>::new((&*keys.value_encryption).into(), (&iv).into())
        .encrypt_padded_vec_mut::<Pkcs7>(&data.encode_to_vec());
    let mut enc = iv.to_vec();
    enc.extend_from_slice(&ct);
    let vmac = value_mac(keys, op, key_id, &enc);
    let imac = index_mac(keys, data.index.as_deref().unwrap_or_default());
    enc.extend_from_slice(&vmac);
    Sealed {
        record: wa::SyncdRecord {
            index: Some(wa::SyncdIndex {
                blob: Some(imac.to_vec()),
            }),
            value: Some(wa::SyncdValue { blob: Some(enc) }),
            key_id: Some(wa::KeyId {
                id: Some(key_id.to_vec()),
            }),
        },
        index_mac: imac,
        value_mac: vmac,
    }
}

/// Why a record did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short, or not a SyncActionData.
    #[error("malformed record")]
    Malformed,
    /// The value MAC does not match.
    #[error("bad value MAC")]
    ValueMac,
    /// The padding does not check out.
    #[error("cannot decrypt")]
    Decrypt,
    /// The index MAC does not match the decrypted index.
    #[error("bad index MAC")]
    IndexMac,
}

/// Checks and decrypts one record (CLIENT-FEATURES §3.4).
pub fn open(
    keys: &MutationKeys,
    op: i32,
    record: &wa::SyncdRecord,
) -> Result<wa::SyncActionData, OpenError> {
    let blob = record
        .value
        .as_ref()
        .and_then(|v| v.blob.as_deref())
        .ok_or(OpenError::Malformed)?;
    let key_id = record
        .key_id
        .as_ref()
        .and_then(|k| k.id.as_deref())
        .unwrap_or_default();
    if blob.len() < 16 + 16 + 32 {
        return Err(OpenError::Malformed);
    }
    let (enc, mac) = blob.split_at(blob.len() - 32);
    if value_mac(keys, op, key_id, enc) != mac {
        return Err(OpenError::ValueMac);
    }
    let (iv, ct) = enc.split_at(16);
    let iv: [u8; 16] = iv.try_into().map_err(|_| OpenError::Malformed)?;
    let plain = cbc::Decryptor::<Aes256>::new((&*keys.value_encryption).into(), (&iv).into())
        .decrypt_padded_vec_mut::<Pkcs7>(ct)
        .map_err(|_| OpenError::Decrypt)?;
    let data = wa::SyncActionData::decode(&plain[..]).map_err(|_| OpenError::Malformed)?;
    let imac = index_mac(keys, data.index.as_deref().unwrap_or_default());
    let given = record
        .index
        .as_ref()
        .and_then(|i| i.blob.as_deref())
        .unwrap_or_default();
    if imac != given {
        return Err(OpenError::IndexMac);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        crate::util::hex::encode(b)
    }

    #[test]
    fn keys_and_lthash_match_the_check_values() {
        // CLIENT-FEATURES Appendix B.
        let k = MutationKeys::expand(&[0; 32]);
        assert_eq!(
            hex(&k.index[..]),
            "16ba7619bd784475dbde56caf38e0103cbba5e6cb8939eb9db46597c96a047e7"
        );
        assert_eq!(
            hex(&k.patch_mac[..]),
            "3155dafbf35be5a23d17bbb56fe650032240f73e053c56f024a81d85328e69b3"
        );
        let mut h = [0u8; LTHASH_LEN];
        lthash_apply(&mut h, &[0; 32], true);
        assert!(hex(&h).starts_with("4fa00dd372c1cba9ef14247423d1ba9f"));
        lthash_apply(&mut h, &[0; 32], false);
        assert_eq!(h, [0; LTHASH_LEN]);
    }

    #[test]
    fn a_sealed_record_opens_and_a_flipped_byte_does_not() {
        let k = MutationKeys::expand(&[7; 32]);
        let data = wa::SyncActionData {
            index: Some(br#"["archive","1@s.whatsapp.net"]"#.to_vec()),
            version: Some(3),
            ..Default::default()
        };
        let s = seal(&k, b"key1", 0, &data);
        assert_eq!(open(&k, 0, &s.record), Ok(data));
        assert_eq!(open(&k, 1, &s.record), Err(OpenError::ValueMac));
        let mut bad = s.record.clone();
        if let Some(b) = bad.value.as_mut().and_then(|v| v.blob.as_mut()) {
            b[20] ^= 1;
        }
        assert_eq!(open(&k, 0, &bad), Err(OpenError::ValueMac));
    }
}
