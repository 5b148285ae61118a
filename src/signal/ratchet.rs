//! Double Ratchet building blocks (libsignal v3): root, chain and message keys, the AES-CBC body
//! cipher, and the SignalMessage / PreKeySignalMessage wire formats with their truncated MAC.

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::curve::{KeyPair, strip_type, with_type};
use super::error::SignalError;
use crate::proto::wa::signal as pb;

/// Version byte of every v3 message: `(3 << 4) | 3`.
pub const VERSION_BYTE: u8 = 0x33;
/// Length of the truncated MAC that ends a SignalMessage.
pub const MAC_LEN: usize = 8;
/// How far ahead of a chain a message may be, and how many skipped keys a chain keeps
/// (libsignal's 2,000).
pub const MAX_SKIP: u32 = 2000;

pub(crate) fn hmac256(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for d in data {
        m.update(d);
    }
    m.finalize().into_bytes().into()
}

/// HKDF-SHA256 into `out` (at most 8160 bytes, so expand cannot fail for our sizes).
pub(crate) fn hkdf(ikm: &[u8], salt: Option<&[u8]>, info: &[u8], out: &mut [u8]) {
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand(info, out);
}

pub(crate) fn split32<const N: usize>(okm: &[u8; N], at: usize) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&okm[at..at + 32]);
    k
}

/// Keys for one message.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageKeys {
    /// AES-256-CBC key.
    pub cipher_key: [u8; 32],
    /// HMAC-SHA256 key.
    pub mac_key: [u8; 32],
    /// CBC IV.
    pub iv: [u8; 16],
    /// The chain index these keys belong to.
    pub counter: u32,
}

impl Drop for MessageKeys {
    fn drop(&mut self) {
        self.cipher_key.zeroize();
        self.mac_key.zeroize();
        self.iv.zeroize();
    }
}

impl Drop for ChainKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl Drop for RootKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageKeys {{ counter: {} }}", self.counter)
    }
}

impl MessageKeys {
    /// libsignal's derivation: HKDF(seed, salt 0, "WhisperMessageKeys") → key ‖ mac key ‖ iv.
    fn from_seed(seed: &[u8; 32], counter: u32) -> MessageKeys {
        let mut okm = [0u8; 80];
        hkdf(seed, None, b"WhisperMessageKeys", &mut okm);
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&okm[64..]);
        MessageKeys {
            cipher_key: split32(&okm, 0),
            mac_key: split32(&okm, 32),
            iv,
            counter,
        }
    }
}

/// A sending or receiving chain key and the index of the next message key it yields.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainKey {
    /// The chain key.
    pub key: [u8; 32],
    /// Index of the next message.
    pub index: u32,
}

impl ChainKey {
    /// Message keys for `index`.
    pub fn message_keys(&self) -> MessageKeys {
        MessageKeys::from_seed(&hmac256(&self.key, &[&[1]]), self.index)
    }

    /// The chain key one step on; an error at the end of the u32 index space.
    pub fn next(&self) -> Result<ChainKey, SignalError> {
        Ok(ChainKey {
            key: hmac256(&self.key, &[&[2]]),
            index: self
                .index
                .checked_add(1)
                .ok_or(SignalError::ChainExhausted(self.index))?,
        })
    }
}

/// The root key of a session.
#[derive(Clone, PartialEq, Eq)]
pub struct RootKey(pub [u8; 32]);

impl RootKey {
    /// A DH ratchet step: HKDF(DH(ours, theirs), salt = root, "WhisperRatchet") → new root ‖ chain.
    pub fn create_chain(&self, their_ratchet: &[u8; 32], ours: &KeyPair) -> (RootKey, ChainKey) {
        let mut okm = [0u8; 64];
        hkdf(
            &ours.dh(their_ratchet),
            Some(&self.0),
            b"WhisperRatchet",
            &mut okm,
        );
        (
            RootKey(split32(&okm, 0)),
            ChainKey {
                key: split32(&okm, 32),
                index: 0,
            },
        )
    }
}

/// AES-256-CBC with PKCS#7 padding.
pub fn cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<Aes256>::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

/// AES-256-CBC decryption; bad padding is an invalid message.
pub fn cbc_decrypt(
    key: &[u8; 32],
    iv: &[u8; 16],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SignalError> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(SignalError::InvalidMessage(
            "ciphertext is not whole blocks",
        ));
    }
    cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| SignalError::InvalidMessage("bad padding"))
}

fn check_version(b: u8) -> Result<(), SignalError> {
    match b >> 4 {
        3 => Ok(()),
        v => Err(SignalError::UnsupportedVersion(v)),
    }
}

fn key33(v: Option<&Vec<u8>>, what: &'static str) -> Result<[u8; 32], SignalError> {
    v.and_then(|k| strip_type(k))
        .ok_or(SignalError::InvalidKey(what))
}

/// A parsed SignalMessage (`msg`).
#[derive(Debug, Clone)]
pub struct SignalMessage {
    /// The sender's current ratchet public key.
    pub ratchet_key: [u8; 32],
    /// Index in the sender's chain.
    pub counter: u32,
    /// Length of the sender's previous chain.
    pub previous_counter: u32,
    /// AES-CBC body.
    pub ciphertext: Vec<u8>,
    /// Version byte ‖ protobuf: what the MAC covers.
    signed: Vec<u8>,
    mac: [u8; MAC_LEN],
}

impl SignalMessage {
    /// Builds the wire bytes: version ‖ protobuf ‖ 8-byte MAC over both identities and them.
    pub fn encode(
        keys: &MessageKeys,
        ratchet_key: &[u8; 32],
        previous_counter: u32,
        ciphertext: Vec<u8>,
        sender_identity: &[u8; 32],
        receiver_identity: &[u8; 32],
    ) -> Vec<u8> {
        let mut out = vec![VERSION_BYTE];
        pb::SignalMessage {
            ratchet_key: Some(with_type(ratchet_key).to_vec()),
            counter: Some(keys.counter),
            previous_counter: Some(previous_counter),
            ciphertext: Some(ciphertext),
        }
        .encode(&mut out)
        .unwrap_or_else(|_| unreachable!("Vec grows"));
        let mac = mac(&keys.mac_key, sender_identity, receiver_identity, &out);
        out.extend_from_slice(&mac);
        out
    }

    /// Parses wire bytes (the MAC is checked later, once the keys are known).
    pub fn decode(bytes: &[u8]) -> Result<SignalMessage, SignalError> {
        if bytes.len() < 1 + MAC_LEN {
            return Err(SignalError::InvalidMessage("too short"));
        }
        check_version(bytes[0])?;
        let (signed, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let m = pb::SignalMessage::decode(&signed[1..])
            .map_err(|_| SignalError::InvalidMessage("not a SignalMessage"))?;
        Ok(SignalMessage {
            ratchet_key: key33(m.ratchet_key.as_ref(), "ratchet key")?,
            counter: m.counter.ok_or(SignalError::InvalidMessage("no counter"))?,
            previous_counter: m.previous_counter.unwrap_or(0),
            ciphertext: m
                .ciphertext
                .ok_or(SignalError::InvalidMessage("no ciphertext"))?,
            signed: signed.to_vec(),
            mac: mac
                .try_into()
                .map_err(|_| SignalError::InvalidMessage("mac"))?,
        })
    }

    /// Constant-time MAC check.
    pub fn verify_mac(
        &self,
        mac_key: &[u8; 32],
        sender_identity: &[u8; 32],
        receiver_identity: &[u8; 32],
    ) -> bool {
        let expected = mac(mac_key, sender_identity, receiver_identity, &self.signed);
        expected.ct_eq(&self.mac).into()
    }
}

fn mac(mac_key: &[u8; 32], sender: &[u8; 32], receiver: &[u8; 32], signed: &[u8]) -> [u8; MAC_LEN] {
    let full = hmac256(mac_key, &[&with_type(sender), &with_type(receiver), signed]);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// A parsed PreKeySignalMessage (`pkmsg`).
#[derive(Debug, Clone)]
pub struct PreKeySignalMessage {
    /// Sender's registration id.
    pub registration_id: u32,
    /// The one-time prekey used, if any.
    pub pre_key_id: Option<u32>,
    /// The signed prekey used.
    pub signed_pre_key_id: u32,
    /// Sender's X3DH base key.
    pub base_key: [u8; 32],
    /// Sender's identity key.
    pub identity_key: [u8; 32],
    /// The inner message.
    pub message: SignalMessage,
}

impl PreKeySignalMessage {
    /// Wraps a serialized SignalMessage.
    pub fn encode(
        registration_id: u32,
        pre_key_id: Option<u32>,
        signed_pre_key_id: u32,
        base_key: &[u8; 32],
        identity_key: &[u8; 32],
        message: Vec<u8>,
    ) -> Vec<u8> {
        let mut out = vec![VERSION_BYTE];
        pb::PreKeySignalMessage {
            pre_key_id,
            base_key: Some(with_type(base_key).to_vec()),
            identity_key: Some(with_type(identity_key).to_vec()),
            message: Some(message),
            registration_id: Some(registration_id),
            signed_pre_key_id: Some(signed_pre_key_id),
        }
        .encode(&mut out)
        .unwrap_or_else(|_| unreachable!("Vec grows"));
        out
    }

    /// Parses wire bytes.
    pub fn decode(bytes: &[u8]) -> Result<PreKeySignalMessage, SignalError> {
        let (&v, rest) = bytes
            .split_first()
            .ok_or(SignalError::InvalidMessage("empty"))?;
        check_version(v)?;
        let m = pb::PreKeySignalMessage::decode(rest)
            .map_err(|_| SignalError::InvalidMessage("not a PreKeySignalMessage"))?;
        Ok(PreKeySignalMessage {
            registration_id: m.registration_id.unwrap_or(0),
            pre_key_id: m.pre_key_id,
            signed_pre_key_id: m
                .signed_pre_key_id
                .ok_or(SignalError::InvalidMessage("no signed prekey id"))?,
            base_key: key33(m.base_key.as_ref(), "base key")?,
            identity_key: key33(m.identity_key.as_ref(), "identity key")?,
            message: SignalMessage::decode(
                m.message
                    .as_deref()
                    .ok_or(SignalError::InvalidMessage("no message"))?,
            )?,
        })
    }
}
