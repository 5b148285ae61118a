//! Streaming media encryption and verified decryption (CLIENT-FEATURES §2.2, §2.5):
//! `body = AES-256-CBC(cipherKey, iv, PKCS#7(plain)) ‖ HMAC-SHA256(macKey, iv ‖ ct)[..10]`,
//! `fileSha256 = SHA-256(plain)`, `fileEncSha256 = SHA-256(body)`. Neither side ever holds the
//! whole file: both take chunks of any size and keep fewer than 42 bytes between calls.

use aes::Aes256;
use cbc::cipher::consts::U16;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::MediaError;
use super::keys::MediaKeys;

/// Bytes of the truncated HMAC at the end of every body (whatsmeow `mediaHMACLength`;
/// whatsapp-rust `MEDIA_MAC_LEN`).
pub const MAC_LEN: usize = 10;
const BLOCK: usize = 16;
/// What the decryptor must hold back: the MAC candidates and the block that may carry padding.
const HOLD: usize = MAC_LEN + BLOCK;

type HmacSha256 = Hmac<Sha256>;

/// The body length for a plaintext of `plain_len` bytes: PKCS#7 always adds 1..=16 bytes (a full
/// block when the plaintext is already aligned), then the MAC. Saturates instead of overflowing.
pub fn encrypted_len(plain_len: u64) -> u64 {
    (plain_len / BLOCK as u64 + 1)
        .saturating_mul(BLOCK as u64)
        .saturating_add(MAC_LEN as u64)
}

fn new_mac(keys: &MediaKeys) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(&keys.mac_key[..]).unwrap_or_else(|_| unreachable!());
    mac.update(&keys.iv);
    mac
}

/// Runs the CBC chain over `buf`, whose length is a multiple of 16, in place, in one batch so
/// the decryptor can pipeline blocks (CBC decryption is parallel; encryption is not).
fn encrypt_blocks(cipher: &mut cbc::Encryptor<Aes256>, buf: &mut [u8]) {
    let (blocks, _) = InOutBuf::from(buf).into_chunks::<U16>();
    cipher.encrypt_blocks_inout_mut(blocks);
}

fn decrypt_blocks(cipher: &mut cbc::Decryptor<Aes256>, buf: &mut [u8]) {
    let (blocks, _) = InOutBuf::from(buf).into_chunks::<U16>();
    cipher.decrypt_blocks_inout_mut(blocks);
}

/// What an encryption produced: the fields every media message carries (CLIENT-FEATURES §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encrypted {
    /// SHA-256 of the plaintext (`fileSha256`).
    pub file_sha256: [u8; 32],
    /// SHA-256 of the upload body, ciphertext and MAC (`fileEncSha256`; the upload token).
    pub file_enc_sha256: [u8; 32],
    /// Plaintext length (`fileLength`).
    pub file_length: u64,
    /// Body length, `encrypted_len(file_length)`.
    pub enc_length: u64,
}

impl Encrypted {
    /// The upload token, `/mms/<type>/<token>?…&token=<token>`: unpadded base64url of
    /// fileEncSha256 (Baileys `encodeBase64EncodedStringForUpload`, whatsapp-rust; whatsmeow keeps
    /// the padding; CLIENT-FEATURES Appendix A picks unpadded).
    pub fn upload_token(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.file_enc_sha256)
    }
}

/// Streaming encryptor: feed plaintext in chunks of any size, get the upload body.
pub struct Encryptor {
    cipher: cbc::Encryptor<Aes256>,
    mac: HmacSha256,
    plain_hash: Sha256,
    enc_hash: Sha256,
    partial: [u8; BLOCK],
    partial_len: usize,
    file_length: u64,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("file_length", &self.file_length)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// Starts encrypting under `keys`.
    pub fn new(keys: &MediaKeys) -> Self {
        Encryptor {
            cipher: cbc::Encryptor::new((&*keys.cipher_key).into(), (&keys.iv).into()),
            mac: new_mac(keys),
            plain_hash: Sha256::new(),
            enc_hash: Sha256::new(),
            partial: [0; BLOCK],
            partial_len: 0,
            file_length: 0,
        }
    }

    /// Appends to `out` the ciphertext of every complete block so far; fewer than 16 bytes stay
    /// buffered for the next call or [`finish`](Self::finish).
    pub fn update(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        self.plain_hash.update(plain);
        self.file_length = self.file_length.saturating_add(plain.len() as u64);
        let start = out.len();
        let mut rest = plain;
        if self.partial_len > 0 {
            let take = (BLOCK - self.partial_len).min(rest.len());
            let (head, tail) = rest.split_at(take);
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(head);
            self.partial_len += take;
            rest = tail;
            if self.partial_len < BLOCK {
                return;
            }
            out.extend_from_slice(&self.partial);
            self.partial_len = 0;
        }
        let (whole, tail) = rest.split_at(rest.len() / BLOCK * BLOCK);
        out.extend_from_slice(whole);
        self.partial[..tail.len()].copy_from_slice(tail);
        self.partial_len = tail.len();
        self.absorb(&mut out[start..]);
    }

    fn absorb(&mut self, plain_blocks: &mut [u8]) {
        encrypt_blocks(&mut self.cipher, plain_blocks);
        self.mac.update(&*plain_blocks);
        self.enc_hash.update(&*plain_blocks);
    }

    /// Appends the last, padded block and the 10-byte MAC, and returns the message's hashes.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Encrypted {
        let pad = BLOCK - self.partial_len; // 1..=16: PKCS#7 never pads with zero bytes
        let mut last = self.partial;
        last[self.partial_len..].fill(pad as u8);
        self.absorb(&mut last);
        out.extend_from_slice(&last);
        let tag = self.mac.finalize().into_bytes();
        let tag = &tag[..MAC_LEN];
        out.extend_from_slice(tag);
        self.enc_hash.update(tag);
        Encrypted {
            file_sha256: self.plain_hash.finalize().into(),
            file_enc_sha256: self.enc_hash.finalize().into(),
            file_length: self.file_length,
            enc_length: encrypted_len(self.file_length),
        }
    }
}

/// What the message says the download must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// `fileSha256` from the message. Required: whatsmeow substitutes zeros when it is missing,
    /// so the check fails rather than being skipped (CLIENT-FEATURES §2.5 step 6).
    pub file_sha256: [u8; 32],
    /// `fileEncSha256`, checked when the message carries it.
    pub file_enc_sha256: Option<[u8; 32]>,
    /// The largest plaintext the caller accepts; a longer body fails as soon as it is seen.
    pub max_plain: u64,
}

/// A download that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Plaintext length.
    pub file_length: u64,
}

/// Streaming, verifying decryptor.
///
/// **Plaintext is released before it is verified**: [`update`](Self::update) appends decrypted
/// bytes as they arrive, and only [`finish`](Self::finish) checks the hash, MAC, padding and
/// plaintext hash. Callers must write the output somewhere temporary and discard it unless
/// `finish` returns `Ok` (the product writes a temp file and renames it only then). After any
/// error the decryptor must be dropped.
pub struct Decryptor {
    cipher: cbc::Decryptor<Aes256>,
    mac: HmacSha256,
    plain_hash: Sha256,
    enc_hash: Sha256,
    expect: Expect,
    limit: u64,
    seen: u64,
    released: u64,
    /// Body bytes not yet processed; always fewer than `HOLD + BLOCK` between calls.
    pending: Vec<u8>,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("seen", &self.seen)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// Starts decrypting a body that must match `expect`.
    pub fn new(keys: &MediaKeys, expect: Expect) -> Self {
        Decryptor {
            cipher: cbc::Decryptor::new((&*keys.cipher_key).into(), (&keys.iv).into()),
            mac: new_mac(keys),
            plain_hash: Sha256::new(),
            enc_hash: Sha256::new(),
            limit: encrypted_len(expect.max_plain),
            expect,
            seen: 0,
            released: 0,
            pending: Vec::with_capacity(HOLD + 2 * BLOCK),
        }
    }

    /// Feeds body bytes; appends the plaintext of every block that is surely neither the last
    /// block nor part of the MAC. Fails with [`MediaError::TooLarge`] as soon as the body is
    /// longer than `max_plain` could encrypt to.
    pub fn update(&mut self, enc: &[u8], out: &mut Vec<u8>) -> Result<(), MediaError> {
        self.seen = self.seen.saturating_add(enc.len() as u64);
        if self.seen > self.limit {
            return Err(MediaError::TooLarge { limit: self.limit });
        }
        let ready = (self.pending.len() + enc.len()).saturating_sub(HOLD) / BLOCK * BLOCK;
        if ready == 0 {
            self.pending.extend_from_slice(enc);
            return Ok(());
        }
        let start = out.len();
        let from_pending = ready.min(self.pending.len());
        let (from_enc, keep) = enc.split_at(ready - from_pending);
        out.extend_from_slice(&self.pending[..from_pending]);
        out.extend_from_slice(from_enc);
        self.pending.drain(..from_pending);
        self.pending.extend_from_slice(keep);

        let blocks = &mut out[start..];
        self.mac.update(&*blocks);
        self.enc_hash.update(&*blocks);
        decrypt_blocks(&mut self.cipher, blocks);
        self.plain_hash.update(&*blocks);
        self.released += ready as u64;
        Ok(())
    }

    /// Checks the body in whatsmeow's order (`downloadAndDecrypt`, `validateMedia`): length,
    /// fileEncSha256, MAC (constant time), padding, fileSha256; appends the last plaintext bytes.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<Verified, MediaError> {
        if self.seen <= MAC_LEN as u64 {
            return Err(MediaError::TooShort { len: self.seen });
        }
        let ct_len = self.seen - MAC_LEN as u64;
        if !ct_len.is_multiple_of(BLOCK as u64) {
            return Err(MediaError::BadLength { len: ct_len });
        }
        // With a valid length, `update` left exactly the last block and the MAC.
        let (last, tag) = self
            .pending
            .split_at(self.pending.len().saturating_sub(MAC_LEN));
        let Ok(last) = <[u8; BLOCK]>::try_from(last) else {
            return Err(MediaError::BadLength { len: ct_len });
        };

        self.enc_hash.update(&self.pending);
        if let Some(want) = self.expect.file_enc_sha256
            && <[u8; 32]>::from(self.enc_hash.finalize()) != want
        {
            return Err(MediaError::EncHashMismatch);
        }

        self.mac.update(&last);
        let full = self.mac.finalize().into_bytes();
        if !bool::from(full[..MAC_LEN].ct_eq(tag)) {
            return Err(MediaError::BadMac);
        }

        let mut block = last;
        decrypt_blocks(&mut self.cipher, &mut block);
        let pad = block[BLOCK - 1];
        let body_len = BLOCK.checked_sub(pad as usize).filter(|_| pad != 0);
        let Some(body_len) = body_len.filter(|&n| block[n..].iter().all(|&b| b == pad)) else {
            return Err(MediaError::BadPadding);
        };
        let tail = &block[..body_len];
        self.plain_hash.update(tail);
        out.extend_from_slice(tail);
        if <[u8; 32]>::from(self.plain_hash.finalize()) != self.expect.file_sha256 {
            return Err(MediaError::HashMismatch);
        }
        Ok(Verified {
            file_length: self.released + body_len as u64,
        })
    }
}

/// Encrypts a small plaintext in one call (thumbnails, tests): the body and its hashes.
pub fn encrypt(keys: &MediaKeys, plain: &[u8]) -> (Vec<u8>, Encrypted) {
    let mut out = Vec::with_capacity(plain.len() + BLOCK + MAC_LEN);
    let mut enc = Encryptor::new(keys);
    enc.update(plain, &mut out);
    let done = enc.finish(&mut out);
    (out, done)
}

/// Decrypts and verifies a small body in one call; nothing is returned unless every check passed.
pub fn decrypt(keys: &MediaKeys, enc: &[u8], expect: Expect) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::with_capacity(enc.len());
    let mut dec = Decryptor::new(keys, expect);
    dec.update(enc, &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::keys::{MediaType, expand};

    fn keys() -> MediaKeys {
        expand(&[7; 32], MediaType::Document)
    }

    fn expect_for(e: &Encrypted) -> Expect {
        Expect {
            file_sha256: e.file_sha256,
            file_enc_sha256: Some(e.file_enc_sha256),
            max_plain: e.file_length,
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(encrypted_len(0), 26);
        assert_eq!(encrypted_len(15), 26);
        assert_eq!(encrypted_len(16), 42);
        assert_eq!(encrypted_len(u64::MAX), u64::MAX);
        for n in [0usize, 1, 15, 16, 17, 100] {
            let (body, e) = encrypt(&keys(), &vec![1; n]);
            assert_eq!(body.len() as u64, encrypted_len(n as u64));
            assert_eq!(e.enc_length, body.len() as u64);
        }
    }

    #[test]
    fn round_trip_and_checks_in_order() {
        let plain: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let (body, e) = encrypt(&keys(), &plain);
        assert_eq!(decrypt(&keys(), &body, expect_for(&e)).unwrap(), plain);

        let short = decrypt(&keys(), &body[..10], expect_for(&e));
        assert_eq!(short, Err(MediaError::TooShort { len: 10 }));
        let odd = decrypt(&keys(), &body[..body.len() - 1], expect_for(&e));
        assert!(matches!(odd, Err(MediaError::BadLength { .. })));

        let mut flipped = body.clone();
        flipped[3] ^= 1;
        let hash_first = decrypt(&keys(), &flipped, expect_for(&e));
        assert_eq!(hash_first, Err(MediaError::EncHashMismatch));
        let no_enc_hash = Expect {
            file_enc_sha256: None,
            ..expect_for(&e)
        };
        assert_eq!(
            decrypt(&keys(), &flipped, no_enc_hash),
            Err(MediaError::BadMac)
        );

        let mut wrong = expect_for(&e);
        wrong.file_sha256[0] ^= 1;
        assert_eq!(
            decrypt(&keys(), &body, wrong),
            Err(MediaError::HashMismatch)
        );

        let mut small = expect_for(&e);
        small.max_plain = 983;
        assert!(matches!(
            decrypt(&keys(), &body, small),
            Err(MediaError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_padding_behind_a_good_mac() {
        // A sender that pads with zero: the MAC is fine, the padding is not.
        let k = keys();
        let mut block = [0u8; 16];
        let mut enc = cbc::Encryptor::<Aes256>::new((&*k.cipher_key).into(), (&k.iv).into());
        encrypt_blocks(&mut enc, &mut block);
        let mut mac = new_mac(&k);
        mac.update(&block);
        let mut body = block.to_vec();
        body.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        let expect = Expect {
            file_sha256: [0; 32],
            file_enc_sha256: None,
            max_plain: 16,
        };
        assert_eq!(decrypt(&k, &body, expect), Err(MediaError::BadPadding));
    }
}
