//! Sender keys for groups (libsignal v3): a chain per (group, sender device), distributed with a
//! SenderKeyDistributionMessage; each SenderKeyMessage is signed by the sender's signing key.

use std::collections::VecDeque;

use prost::Message;
use rand::RngCore;

use super::curve::{KeyPair, Signer, Verifier, strip_type, with_type};
use super::error::SignalError;
use super::ratchet::{MAX_SKIP, VERSION_BYTE, cbc_decrypt, cbc_encrypt, hkdf, hmac256, split32};
use crate::proto::wa::signal as pb;

/// Sender key states kept per record (libsignal keeps 5).
const MAX_STATES: usize = 5;
const SIG_LEN: usize = 64;

#[derive(Clone, PartialEq, Eq)]
struct SenderMessageKey {
    iteration: u32,
    seed: [u8; 32],
}

impl SenderMessageKey {
    /// HKDF(seed, salt 0, "WhisperGroup") → iv(16) ‖ key(32).
    fn keys(&self) -> ([u8; 16], [u8; 32]) {
        let mut okm = [0u8; 48];
        hkdf(&self.seed, None, b"WhisperGroup", &mut okm);
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&okm[..16]);
        (iv, split32(&okm, 16))
    }
}

impl Drop for SenderMessageKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
    }
}

#[derive(Clone, PartialEq, Eq)]
struct SenderChainKey {
    iteration: u32,
    seed: [u8; 32],
}

impl Drop for SenderChainKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
    }
}

impl SenderChainKey {
    fn message_key(&self) -> SenderMessageKey {
        SenderMessageKey {
            iteration: self.iteration,
            seed: hmac256(&self.seed, &[&[1]]),
        }
    }

    /// One step on; a distribution message may start a chain at any iteration, so the end of
    /// the u32 range is an error, never a wrap.
    fn next(&self) -> Result<SenderChainKey, SignalError> {
        Ok(SenderChainKey {
            iteration: self
                .iteration
                .checked_add(1)
                .ok_or(SignalError::ChainExhausted(self.iteration))?,
            seed: hmac256(&self.seed, &[&[2]]),
        })
    }
}

#[derive(Clone)]
struct SenderKeyState {
    key_id: u32,
    chain: SenderChainKey,
    signing_public: [u8; 32],
    signing_private: Option<[u8; 32]>,
    skipped: VecDeque<SenderMessageKey>,
    /// Prepared keys (derived, never stored): signing and verifying every group message.
    signer: Option<Signer>,
    verifier: Verifier,
}

impl Drop for SenderKeyState {
    fn drop(&mut self) {
        if let Some(p) = self.signing_private.as_mut() {
            zeroize::Zeroize::zeroize(p);
        }
    }
}

impl SenderKeyState {
    fn message_key(&mut self, iteration: u32) -> Result<SenderMessageKey, SignalError> {
        if iteration < self.chain.iteration {
            let pos = self
                .skipped
                .iter()
                .position(|k| k.iteration == iteration)
                .ok_or(SignalError::DuplicateMessage { counter: iteration })?;
            return self
                .skipped
                .remove(pos)
                .ok_or(SignalError::DuplicateMessage { counter: iteration });
        }
        if iteration - self.chain.iteration > MAX_SKIP {
            return Err(SignalError::TooFarAhead {
                counter: iteration,
                limit: MAX_SKIP,
            });
        }
        while self.chain.iteration < iteration {
            self.skipped.push_back(self.chain.message_key());
            if self.skipped.len() > MAX_SKIP as usize {
                self.skipped.pop_front();
            }
            self.chain = self.chain.next()?;
        }
        let key = self.chain.message_key();
        self.chain = self.chain.next()?;
        Ok(key)
    }
}

/// Prepared signing and verifying keys of sender-key states, kept across messages: stores hold
/// records serialized, so without it every group message would redo the Edwards conversion
/// (a base-point multiplication to sign, a decompression to verify). Keyed by the signing
/// public key, so an entry is right whatever store a record came from. Bounded: past
/// [`PreparedKeys::MAX`] entries of a kind, that kind is cleared and refilled as used.
#[derive(Default)]
pub struct PreparedKeys {
    signers: std::collections::HashMap<[u8; 32], Signer>,
    verifiers: std::collections::HashMap<[u8; 32], Verifier>,
}

impl std::fmt::Debug for PreparedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PreparedKeys {{ signers: {}, verifiers: {} }}",
            self.signers.len(),
            self.verifiers.len()
        )
    }
}

impl PreparedKeys {
    /// Entries kept of each kind (an account's active groups and their senders).
    pub const MAX: usize = 1024;

    /// Entries held (signers, verifiers).
    pub fn len(&self) -> (usize, usize) {
        (self.signers.len(), self.verifiers.len())
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty() && self.verifiers.is_empty()
    }
}

/// Sender key states for one (group, sender device), newest first.
#[derive(Clone, Default)]
pub struct SenderKeyRecord {
    states: VecDeque<SenderKeyState>,
}

impl std::fmt::Debug for SenderKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SenderKeyRecord {{ states: {} }}", self.states.len())
    }
}

/// A parsed SenderKeyDistributionMessage.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderKeyDistribution {
    /// Key id.
    pub key_id: u32,
    /// Chain iteration the seed belongs to.
    pub iteration: u32,
    /// Chain seed.
    pub chain_key: [u8; 32],
    /// Sender's signing public key.
    pub signing_key: [u8; 32],
}

impl std::fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The chain key reads every later message of this sender: never printed.
        f.debug_struct("SenderKeyDistribution")
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("signing_key", &crate::util::hex::Short(&self.signing_key))
            .finish_non_exhaustive()
    }
}

impl SenderKeyDistribution {
    /// Wire bytes: version ‖ protobuf.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION_BYTE];
        pb::SenderKeyDistributionMessage {
            id: Some(self.key_id),
            iteration: Some(self.iteration),
            chain_key: Some(self.chain_key.to_vec()),
            signing_key: Some(with_type(&self.signing_key).to_vec()),
        }
        .encode(&mut out)
        .unwrap_or_else(|_| unreachable!("Vec grows"));
        out
    }

    /// Parses wire bytes.
    pub fn decode(bytes: &[u8]) -> Result<SenderKeyDistribution, SignalError> {
        let (&v, rest) = bytes
            .split_first()
            .ok_or(SignalError::InvalidMessage("empty"))?;
        if v >> 4 != 3 {
            return Err(SignalError::UnsupportedVersion(v >> 4));
        }
        let m = pb::SenderKeyDistributionMessage::decode(rest)
            .map_err(|_| SignalError::InvalidMessage("not a SenderKeyDistributionMessage"))?;
        Ok(SenderKeyDistribution {
            key_id: m.id.ok_or(SignalError::InvalidMessage("no id"))?,
            iteration: m.iteration.unwrap_or(0),
            chain_key: m
                .chain_key
                .as_deref()
                .and_then(|k| k.try_into().ok())
                .ok_or(SignalError::InvalidKey("chain key"))?,
            signing_key: m
                .signing_key
                .as_deref()
                .and_then(strip_type)
                .ok_or(SignalError::InvalidKey("signing key"))?,
        })
    }
}

impl SenderKeyRecord {
    /// An empty record.
    pub fn new() -> SenderKeyRecord {
        SenderKeyRecord::default()
    }

    /// True when no state exists.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Our distribution message, creating our sending state first if there is none.
    pub fn distribution(&mut self) -> SenderKeyDistribution {
        if self
            .states
            .front()
            .is_none_or(|s| s.signing_private.is_none())
        {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            let signing = KeyPair::generate();
            let key_id = rand::rng().next_u32() >> 1;
            self.add_state(SenderKeyState {
                key_id,
                chain: SenderChainKey { iteration: 0, seed },
                signing_public: signing.public,
                signing_private: Some(signing.private),
                skipped: VecDeque::new(),
                signer: Some(Signer::new(&signing.private)),
                verifier: Verifier::new(signing.public),
            });
        }
        let s = &self.states[0];
        SenderKeyDistribution {
            key_id: s.key_id,
            iteration: s.chain.iteration,
            chain_key: s.chain.seed,
            signing_key: s.signing_public,
        }
    }

    fn add_state(&mut self, state: SenderKeyState) {
        self.states.retain(|s| s.key_id != state.key_id);
        self.states.push_front(state);
        self.states.truncate(MAX_STATES);
    }

    /// Installs a peer's distribution message (a known key id keeps its current chain).
    pub fn process(&mut self, d: &SenderKeyDistribution) {
        if self.states.iter().any(|s| s.key_id == d.key_id) {
            return;
        }
        self.add_state(SenderKeyState {
            key_id: d.key_id,
            chain: SenderChainKey {
                iteration: d.iteration,
                seed: d.chain_key,
            },
            signing_public: d.signing_key,
            signing_private: None,
            skipped: VecDeque::new(),
            signer: None,
            verifier: Verifier::new(d.signing_key),
        });
    }

    /// Takes prepared keys from `cache` for states that lack them (a record just parsed).
    pub fn use_prepared(&mut self, cache: &PreparedKeys) {
        for s in self.states.iter_mut() {
            if s.signer.is_none()
                && s.signing_private.is_some()
                && let Some(signer) = cache.signers.get(&s.signing_public)
            {
                s.signer = Some(signer.clone());
            }
            if let Some(v) = cache.verifiers.get(&s.signing_public) {
                s.verifier = v.clone();
            }
        }
    }

    /// Keeps this record's prepared keys in `cache` for the next message.
    pub fn keep_prepared(&self, cache: &mut PreparedKeys) {
        for s in &self.states {
            if let Some(signer) = &s.signer
                && !cache.signers.contains_key(&s.signing_public)
            {
                if cache.signers.len() >= PreparedKeys::MAX {
                    cache.signers.clear();
                }
                cache.signers.insert(s.signing_public, signer.clone());
            }
            if s.verifier.is_prepared() && !cache.verifiers.contains_key(&s.signing_public) {
                if cache.verifiers.len() >= PreparedKeys::MAX {
                    cache.verifiers.clear();
                }
                cache.verifiers.insert(s.signing_public, s.verifier.clone());
            }
        }
    }

    /// Encrypts a group message with our sending state.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SignalError> {
        let s = self.states.front_mut().ok_or(SignalError::NoSession)?;
        let private = s.signing_private.ok_or(SignalError::NoSession)?;
        let signer = s.signer.get_or_insert_with(|| Signer::new(&private));
        let mk = s.chain.message_key();
        let (iv, key) = mk.keys();
        let mut out = vec![VERSION_BYTE];
        pb::SenderKeyMessage {
            id: Some(s.key_id),
            iteration: Some(mk.iteration),
            ciphertext: Some(cbc_encrypt(&key, &iv, plaintext)),
        }
        .encode(&mut out)
        .unwrap_or_else(|_| unreachable!("Vec grows"));
        let next = s.chain.next()?;
        let sig = signer.sign(&out);
        out.extend_from_slice(&sig);
        s.chain = next;
        Ok(out)
    }

    /// Verifies and decrypts a SenderKeyMessage. State changes only on success.
    pub fn decrypt(&mut self, bytes: &[u8]) -> Result<Vec<u8>, SignalError> {
        if bytes.len() < 1 + SIG_LEN {
            return Err(SignalError::InvalidMessage("too short"));
        }
        if bytes[0] >> 4 != 3 {
            return Err(SignalError::UnsupportedVersion(bytes[0] >> 4));
        }
        let (signed, sig) = bytes.split_at(bytes.len() - SIG_LEN);
        let m = pb::SenderKeyMessage::decode(&signed[1..])
            .map_err(|_| SignalError::InvalidMessage("not a SenderKeyMessage"))?;
        let id = m.id.ok_or(SignalError::InvalidMessage("no id"))?;
        let iteration = m
            .iteration
            .ok_or(SignalError::InvalidMessage("no iteration"))?;
        let ciphertext = m
            .ciphertext
            .ok_or(SignalError::InvalidMessage("no ciphertext"))?;
        let idx = self
            .states
            .iter()
            .position(|s| s.key_id == id)
            .ok_or(SignalError::NoSession)?;
        let sig: &[u8; 64] = sig
            .try_into()
            .map_err(|_| SignalError::InvalidMessage("signature"))?;
        if !self.states[idx].verifier.verify(signed, sig) {
            return Err(SignalError::InvalidMac);
        }
        let mut state = self.states[idx].clone();
        let mk = state.message_key(iteration)?;
        let (iv, key) = mk.keys();
        let plaintext = cbc_decrypt(&key, &iv, &ciphertext)?;
        self.states[idx] = state;
        Ok(plaintext)
    }

    /// Serializes as libsignal's SenderKeyRecordStructure.
    pub fn to_bytes(&self) -> Vec<u8> {
        use pb::sender_key_state_structure::{
            SenderChainKey as PbChain, SenderMessageKey as PbKey, SenderSigningKey,
        };
        pb::SenderKeyRecordStructure {
            sender_key_states: self
                .states
                .iter()
                .map(|s| pb::SenderKeyStateStructure {
                    sender_key_id: Some(s.key_id),
                    sender_chain_key: Some(PbChain {
                        iteration: Some(s.chain.iteration),
                        seed: Some(s.chain.seed.to_vec()),
                    }),
                    sender_signing_key: Some(SenderSigningKey {
                        public: Some(with_type(&s.signing_public).to_vec()),
                        private: s.signing_private.map(|p| p.to_vec()),
                    }),
                    sender_message_keys: s
                        .skipped
                        .iter()
                        .map(|k| PbKey {
                            iteration: Some(k.iteration),
                            seed: Some(k.seed.to_vec()),
                        })
                        .collect(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Parses a stored record.
    pub fn from_bytes(bytes: &[u8]) -> Result<SenderKeyRecord, SignalError> {
        let r = pb::SenderKeyRecordStructure::decode(bytes)
            .map_err(|_| SignalError::CorruptRecord("sender key record"))?;
        let seed = |v: Option<&Vec<u8>>| -> Result<[u8; 32], SignalError> {
            v.and_then(|b| b.as_slice().try_into().ok())
                .ok_or(SignalError::CorruptRecord("seed"))
        };
        let states = r
            .sender_key_states
            .iter()
            .map(|s| {
                let chain = s
                    .sender_chain_key
                    .as_ref()
                    .ok_or(SignalError::CorruptRecord("chain"))?;
                let signing = s
                    .sender_signing_key
                    .as_ref()
                    .ok_or(SignalError::CorruptRecord("signing key"))?;
                let signing_public = signing
                    .public
                    .as_deref()
                    .and_then(strip_type)
                    .ok_or(SignalError::CorruptRecord("signing public"))?;
                Ok(SenderKeyState {
                    key_id: s.sender_key_id.unwrap_or(0),
                    verifier: Verifier::new(signing_public),
                    signer: None,
                    chain: SenderChainKey {
                        iteration: chain.iteration.unwrap_or(0),
                        seed: seed(chain.seed.as_ref())?,
                    },
                    signing_public,
                    signing_private: signing
                        .private
                        .as_ref()
                        .map(|p| seed(Some(p)))
                        .transpose()?,
                    skipped: s
                        .sender_message_keys
                        .iter()
                        .map(|k| {
                            Ok(SenderMessageKey {
                                iteration: k.iteration.unwrap_or(0),
                                seed: seed(k.seed.as_ref())?,
                            })
                        })
                        .collect::<Result<_, SignalError>>()?,
                })
            })
            .collect::<Result<_, SignalError>>()?;
        Ok(SenderKeyRecord { states })
    }
}
