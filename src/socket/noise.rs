//! Noise_XX_25519_AESGCM_SHA256 as WhatsApp runs it (PROTOCOL.md §2), sans-IO. Both roles share
//! the symmetric state; each handshake step consumes its state and returns the next, ending in
//! a [`TransportCipher`]. Messages here are unframed `HandshakeMessage` protobufs.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use prost::Message;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::cert::{TrustRoot, VerifiedChain, verify_chain};
use super::error::{CipherError, HandshakeError};
use super::framing::MAX_FRAME;
use crate::binary::token::DICT_VERSION;
use crate::proto::wa::HandshakeMessage;
use crate::proto::wa::handshake_message::{ClientFinish, ClientHello, ServerHello};
use crate::signal::KeyPair;

/// Protocol name, zero-padded to 32 bytes and used directly as the initial hash (Noise §5.2).
pub const NOISE_XX_NAME: &[u8; 32] = b"Noise_XX_25519_AESGCM_SHA256\0\0\0\0";

/// `W A <socket version 6> <dictionary version>`: sent before the first frame and hashed into
/// the prologue. Built from the token table's version so the two can never disagree.
pub const CONN_HEADER: [u8; 4] = [b'W', b'A', 6, DICT_VERSION];

/// Length of the AES-GCM tag that ends every encrypted frame.
pub const TAG_LEN: usize = 16;

/// AES-GCM nonce: 8 zero bytes, then the counter as u32 big-endian.
fn nonce(n: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&n.to_be_bytes());
    iv
}

fn hkdf64(salt: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut okm = [0u8; 64];
    // 64 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(&[], &mut okm);
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    a.copy_from_slice(&okm[..32]);
    b.copy_from_slice(&okm[32..]);
    (a, b)
}

/// The Noise symmetric state: handshake hash, chaining key, and the one key and counter that
/// both directions share during the handshake.
struct Symmetric {
    h: [u8; 32],
    ck: [u8; 32],
    cipher: Option<Aes256Gcm>,
    n: u32,
}

impl Drop for Symmetric {
    fn drop(&mut self) {
        self.ck.zeroize();
    }
}

impl Symmetric {
    fn new(prologue: &[u8]) -> Symmetric {
        let mut s = Symmetric {
            h: *NOISE_XX_NAME,
            ck: *NOISE_XX_NAME,
            cipher: None,
            n: 0,
        };
        s.mix_hash(prologue);
        s
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = Sha256::new()
            .chain_update(self.h)
            .chain_update(data)
            .finalize()
            .into();
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, mut k) = hkdf64(&self.ck, ikm);
        self.ck = ck;
        self.cipher = Some(Aes256Gcm::new(&k.into()));
        k.zeroize();
        self.n = 0;
    }

    fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut buf = plaintext.to_vec();
        if let Some(c) = &self.cipher {
            // Encryption only fails for messages over 64 GiB.
            if let Ok(tag) =
                c.encrypt_in_place_detached(Nonce::from_slice(&nonce(self.n)), &self.h, &mut buf)
            {
                buf.extend_from_slice(&tag);
            }
            self.n += 1;
        }
        self.mix_hash(&buf);
        buf
    }

    fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let c = self.cipher.as_ref().ok_or(HandshakeError::Decrypt)?;
        if ciphertext.len() < 16 {
            return Err(HandshakeError::Decrypt);
        }
        let (body, tag) = ciphertext.split_at(ciphertext.len() - 16);
        let mut buf = body.to_vec();
        c.decrypt_in_place_detached(
            Nonce::from_slice(&nonce(self.n)),
            &self.h,
            &mut buf,
            Tag::from_slice(tag),
        )
        .map_err(|_| HandshakeError::Decrypt)?;
        self.n += 1;
        self.mix_hash(ciphertext);
        Ok(buf)
    }

    /// Transport keys: (initiator→responder, responder→initiator).
    fn split(&self) -> ([u8; 32], [u8; 32]) {
        hkdf64(&self.ck, &[])
    }
}

/// X25519 with the peer's key, refusing an all-zero result: a low-order point would make the
/// shared secret public knowledge (RFC 7748 §6.1), so such a peer key ends the handshake.
fn dh(ours: &KeyPair, theirs: &[u8; 32]) -> Result<[u8; 32], HandshakeError> {
    use subtle::ConstantTimeEq;
    let shared = ours.dh(theirs);
    if bool::from(shared.ct_eq(&[0u8; 32])) {
        return Err(HandshakeError::LowOrderPoint);
    }
    Ok(shared)
}

fn key32(v: &[u8], what: &'static str) -> Result<[u8; 32], HandshakeError> {
    crate::util::bytes::array32(v).ok_or(HandshakeError::Malformed(what))
}

/// The initiator (client) before anything was sent.
pub struct Initiator {
    sym: Symmetric,
    e: KeyPair,
    s: KeyPair,
}

impl Initiator {
    /// Starts a handshake with our long-term noise key `s` and a fresh ephemeral `e` (injected
    /// so that recorded handshakes replay exactly).
    pub fn new(prologue: &[u8], s: KeyPair, e: KeyPair) -> Initiator {
        Initiator {
            sym: Symmetric::new(prologue),
            e,
            s,
        }
    }

    /// Message 1: `HandshakeMessage{clientHello{ephemeral}}`.
    pub fn client_hello(mut self) -> (AwaitingServerHello, Vec<u8>) {
        self.sym.mix_hash(&self.e.public);
        let msg = HandshakeMessage {
            client_hello: Some(ClientHello {
                ephemeral: Some(self.e.public.to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        (
            AwaitingServerHello {
                sym: self.sym,
                e: self.e,
                s: self.s,
            },
            msg,
        )
    }
}

/// The initiator waiting for the ServerHello.
pub struct AwaitingServerHello {
    sym: Symmetric,
    e: KeyPair,
    s: KeyPair,
}

impl AwaitingServerHello {
    /// Processes message 2 and verifies the server's certificate chain against `trust` at time
    /// `now` (Unix seconds). The chain check cannot be skipped.
    pub fn read_server_hello(
        mut self,
        msg: &[u8],
        trust: &TrustRoot,
        now: u64,
    ) -> Result<ServerHelloRead, HandshakeError> {
        let hello = HandshakeMessage::decode(msg)
            .map_err(|_| HandshakeError::Malformed("not a HandshakeMessage"))?
            .server_hello
            .ok_or(HandshakeError::Malformed("no serverHello"))?;
        let re = key32(
            hello
                .ephemeral
                .as_deref()
                .ok_or(HandshakeError::Malformed("no ephemeral"))?,
            "ephemeral is not 32 bytes",
        )?;
        let enc_static = hello
            .r#static
            .ok_or(HandshakeError::Malformed("no static"))?;
        let enc_cert = hello
            .payload
            .ok_or(HandshakeError::Malformed("no payload"))?;

        self.sym.mix_hash(&re);
        self.sym.mix_key(&dh(&self.e, &re)?);
        let rs = key32(
            &self.sym.decrypt_and_hash(&enc_static)?,
            "server static is not 32 bytes",
        )?;
        self.sym.mix_key(&dh(&self.e, &rs)?);
        let cert = self.sym.decrypt_and_hash(&enc_cert)?;
        let chain = verify_chain(&cert, &rs, trust, now)?;
        Ok(ServerHelloRead {
            sym: self.sym,
            re,
            s: self.s,
            chain,
        })
    }
}

/// The initiator after a verified ServerHello, ready to send its static key and payload.
pub struct ServerHelloRead {
    sym: Symmetric,
    re: [u8; 32],
    s: KeyPair,
    chain: VerifiedChain,
}

impl ServerHelloRead {
    /// The verified server certificate chain.
    pub fn chain(&self) -> &VerifiedChain {
        &self.chain
    }

    /// Message 3: `clientFinish{static, payload}` carrying the serialized ClientPayload.
    pub fn client_finish(mut self, payload: &[u8]) -> (Vec<u8>, TransportCipher) {
        let enc_static = self.sym.encrypt_and_hash(&self.s.public);
        self.sym.mix_key(&self.s.dh(&self.re));
        let enc_payload = self.sym.encrypt_and_hash(payload);
        let msg = HandshakeMessage {
            client_finish: Some(ClientFinish {
                r#static: Some(enc_static),
                payload: Some(enc_payload),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let (write, read) = self.sym.split();
        (msg, TransportCipher::new(write, read))
    }
}

/// The responder (server) before the ClientHello; used by the simulator.
pub struct Responder {
    sym: Symmetric,
    e: KeyPair,
    s: KeyPair,
    cert_chain: Vec<u8>,
}

impl Responder {
    /// A responder with static key `s` (the leaf certificate's key), ephemeral `e` and the
    /// serialized CertChain it presents.
    pub fn new(prologue: &[u8], s: KeyPair, e: KeyPair, cert_chain: Vec<u8>) -> Responder {
        Responder {
            sym: Symmetric::new(prologue),
            e,
            s,
            cert_chain,
        }
    }

    /// Reads message 1 and answers with message 2.
    pub fn read_client_hello(
        mut self,
        msg: &[u8],
    ) -> Result<(AwaitingClientFinish, Vec<u8>), HandshakeError> {
        let hello = HandshakeMessage::decode(msg)
            .map_err(|_| HandshakeError::Malformed("not a HandshakeMessage"))?
            .client_hello
            .ok_or(HandshakeError::Malformed("no clientHello"))?;
        let ie = key32(
            hello
                .ephemeral
                .as_deref()
                .ok_or(HandshakeError::Malformed("no ephemeral"))?,
            "ephemeral is not 32 bytes",
        )?;
        self.sym.mix_hash(&ie);
        self.sym.mix_hash(&self.e.public);
        self.sym.mix_key(&dh(&self.e, &ie)?);
        let enc_static = self.sym.encrypt_and_hash(&self.s.public);
        self.sym.mix_key(&dh(&self.s, &ie)?);
        let enc_cert = self.sym.encrypt_and_hash(&self.cert_chain);
        let msg = HandshakeMessage {
            server_hello: Some(ServerHello {
                ephemeral: Some(self.e.public.to_vec()),
                r#static: Some(enc_static),
                payload: Some(enc_cert),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        Ok((
            AwaitingClientFinish {
                sym: self.sym,
                e: self.e,
            },
            msg,
        ))
    }
}

/// The responder waiting for the ClientFinish.
pub struct AwaitingClientFinish {
    sym: Symmetric,
    e: KeyPair,
}

/// What the responder learns from a completed handshake.
pub struct ClientFinished {
    /// The client's long-term noise public key.
    pub client_static: [u8; 32],
    /// The decrypted ClientPayload bytes.
    pub payload: Vec<u8>,
    /// Transport ciphers from the responder's side.
    pub cipher: TransportCipher,
}

impl AwaitingClientFinish {
    /// Reads message 3.
    pub fn read_client_finish(mut self, msg: &[u8]) -> Result<ClientFinished, HandshakeError> {
        let finish = HandshakeMessage::decode(msg)
            .map_err(|_| HandshakeError::Malformed("not a HandshakeMessage"))?
            .client_finish
            .ok_or(HandshakeError::Malformed("no clientFinish"))?;
        let enc_static = finish
            .r#static
            .ok_or(HandshakeError::Malformed("no static"))?;
        let enc_payload = finish
            .payload
            .ok_or(HandshakeError::Malformed("no payload"))?;
        let client_static = key32(
            &self.sym.decrypt_and_hash(&enc_static)?,
            "client static is not 32 bytes",
        )?;
        self.sym.mix_key(&dh(&self.e, &client_static)?);
        let payload = self.sym.decrypt_and_hash(&enc_payload)?;
        let (to_responder, to_initiator) = self.sym.split();
        Ok(ClientFinished {
            client_static,
            payload,
            cipher: TransportCipher::new(to_initiator, to_responder),
        })
    }
}

/// One direction of the transport phase: AES-256-GCM, empty AD, its own counter from 0.
///
/// The key lives only inside the AES key schedule, which is wiped on drop (the `zeroize`
/// features of `aes` and `aes-gcm`); no raw copy is kept.
pub struct CipherState {
    cipher: Aes256Gcm,
    n: u32,
    exhausted: bool,
}

impl CipherState {
    fn new(mut key: [u8; 32]) -> CipherState {
        let cipher = Aes256Gcm::new(&key.into());
        key.zeroize();
        CipherState {
            cipher,
            n: 0,
            exhausted: false,
        }
    }

    fn next_nonce(&mut self) -> Result<[u8; 12], CipherError> {
        if self.exhausted {
            return Err(CipherError::CounterExhausted);
        }
        let iv = nonce(self.n);
        match self.n.checked_add(1) {
            Some(n) => self.n = n,
            None => self.exhausted = true,
        }
        Ok(iv)
    }

    /// Encrypts `plaintext` and appends the 3-byte length, ciphertext and tag to `out`: one
    /// complete wire frame, built in place.
    pub fn encrypt_frame(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CipherError> {
        let len = plaintext.len() + TAG_LEN;
        if len > MAX_FRAME {
            return Err(CipherError::FrameTooLarge {
                len,
                max: MAX_FRAME,
            });
        }
        let iv = self.next_nonce()?;
        out.reserve(3 + len);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&iv), &[], &mut out[start..])
            .map_err(|_| CipherError::Encrypt)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypts one frame payload (ciphertext ‖ tag) in place and returns the plaintext.
    pub fn decrypt(&mut self, frame: &[u8]) -> Result<Vec<u8>, CipherError> {
        let iv = self.next_nonce()?;
        if frame.len() < 16 {
            return Err(CipherError::Decrypt);
        }
        let (body, tag) = frame.split_at(frame.len() - 16);
        let mut buf = body.to_vec();
        self.cipher
            .decrypt_in_place_detached(Nonce::from_slice(&iv), &[], &mut buf, Tag::from_slice(tag))
            .map_err(|_| CipherError::Decrypt)?;
        Ok(buf)
    }

    /// Frames processed so far in this direction.
    pub fn counter(&self) -> u32 {
        self.n
    }
}

/// The two transport directions after the handshake; split them so that one writer task and
/// one reader task each own their counter.
pub struct TransportCipher {
    /// Our sending direction.
    pub send: CipherState,
    /// Our receiving direction.
    pub recv: CipherState,
}

impl TransportCipher {
    fn new(write: [u8; 32], read: [u8; 32]) -> TransportCipher {
        // `CipherState::new` wipes its copy of each key.
        TransportCipher {
            send: CipherState::new(write),
            recv: CipherState::new(read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Low-order points of Curve25519 (u-coordinates), the ones libsodium blocklists.
    const LOW_ORDER: [[u8; 32]; 3] = [
        [0; 32],
        {
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        },
        [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ],
    ];

    #[test]
    fn low_order_peer_keys_end_the_handshake_on_both_sides() {
        for point in LOW_ORDER {
            // Responder: a ClientHello whose ephemeral is a low-order point.
            let hello = HandshakeMessage {
                client_hello: Some(ClientHello {
                    ephemeral: Some(point.to_vec()),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec();
            let r = Responder::new(
                &CONN_HEADER,
                KeyPair::generate(),
                KeyPair::generate(),
                vec![],
            );
            assert_eq!(
                r.read_client_hello(&hello).err(),
                Some(HandshakeError::LowOrderPoint)
            );

            // Initiator: a ServerHello whose ephemeral is a low-order point.
            let (state, _) = Initiator::new(&CONN_HEADER, KeyPair::generate(), KeyPair::generate())
                .client_hello();
            let server_hello = HandshakeMessage {
                server_hello: Some(ServerHello {
                    ephemeral: Some(point.to_vec()),
                    r#static: Some(vec![0; 48]),
                    payload: Some(vec![0; 16]),
                }),
                ..Default::default()
            }
            .encode_to_vec();
            let trust = TrustRoot::from_key([9; 32]);
            assert_eq!(
                state.read_server_hello(&server_hello, &trust, 0).err(),
                Some(HandshakeError::LowOrderPoint)
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_anything_is_written() {
        let mut c = CipherState::new([7; 32]);
        let mut out = vec![1, 2, 3];
        let big = vec![0u8; MAX_FRAME - TAG_LEN + 1];
        assert_eq!(
            c.encrypt_frame(&big, &mut out),
            Err(CipherError::FrameTooLarge {
                len: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );
        assert_eq!(out, [1, 2, 3], "nothing written");
        assert_eq!(c.counter(), 0, "no nonce spent");
        // The largest frame that fits still goes out, with a correct 3-byte length.
        c.encrypt_frame(&big[1..], &mut out).unwrap();
        assert_eq!(&out[3..6], &[0xff, 0xff, 0xff]);
        assert_eq!(out.len(), 3 + 3 + MAX_FRAME);
    }

    #[test]
    fn initial_hash_matches_protocol_check_value() {
        let s = Symmetric::new(&CONN_HEADER);
        assert_eq!(
            crate::util::hex::encode(&s.h),
            "ffff0c9267310966f1311170c04b38c79504285bf5edf763e5c946492a50a755"
        );
    }
}
