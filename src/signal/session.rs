//! Session state and records: the Double Ratchet over one X3DH agreement, and the record that
//! keeps the current state plus archived ones so that a peer who re-installs (new pkmsg, new
//! base key) does not break messages still in flight on the old session.

use std::collections::VecDeque;

use prost::Message;

use super::curve::{KeyPair, KeySource, strip_type, with_type};
use super::error::SignalError;
use super::ratchet::{
    ChainKey, MAX_SKIP, MessageKeys, PreKeySignalMessage, RootKey, SignalMessage, cbc_decrypt,
    cbc_encrypt,
};
use super::x3dh::{LocalIdentity, respond};
use crate::proto::wa::signal as pb;

/// Receiving chains kept per session (libsignal keeps 5).
const MAX_RECEIVER_CHAINS: usize = 5;
/// Archived states kept per record (libsignal keeps 40).
const MAX_ARCHIVED: usize = 40;
/// Skipped message keys kept per record, across every chain of every state (oldest evicted).
/// Without it a peer could park 40 states × 5 chains × 2,000 keys (30+ MB) in one record that
/// is parsed and written back on every message.
pub const MAX_RECORD_SKIPPED: usize = MAX_SKIP as usize;
/// DH ratchet steps one decryption may try across the current and archived states: a message
/// that fits no state costs a bounded amount of work, not one step per archived state.
const MAX_RATCHET_TRIES: u32 = 3;

/// Work one decryption attempt may still do across all the states it tries.
struct Budget {
    /// Chain steps (one HMAC each) left.
    steps: u32,
    /// DH ratchet steps left.
    ratchets: u32,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            steps: MAX_SKIP,
            ratchets: MAX_RATCHET_TRIES,
        }
    }
}

/// Our sending chain.
#[derive(Debug, Clone)]
pub struct SenderChain {
    /// Our current ratchet key pair.
    pub ratchet: KeyPair,
    /// Its chain key.
    pub chain: ChainKey,
}

/// A receiving chain for one of the peer's ratchet keys, with keys of skipped messages.
#[derive(Debug, Clone)]
pub struct ReceiverChain {
    /// The peer's ratchet public key.
    pub their_ratchet: [u8; 32],
    /// Next chain key.
    pub chain: ChainKey,
    /// Keys of messages not yet received, oldest first (bounded by `MAX_SKIP`).
    pub skipped: VecDeque<MessageKeys>,
}

impl ReceiverChain {
    pub(crate) fn new(their_ratchet: [u8; 32], chain: ChainKey) -> ReceiverChain {
        ReceiverChain {
            their_ratchet,
            chain,
            skipped: VecDeque::new(),
        }
    }

    /// Message keys for `counter`, advancing the chain and storing skipped keys.
    fn keys_for(&mut self, counter: u32, budget: &mut Budget) -> Result<MessageKeys, SignalError> {
        if counter < self.chain.index {
            let pos = self
                .skipped
                .iter()
                .position(|k| k.counter == counter)
                .ok_or(SignalError::DuplicateMessage { counter })?;
            return self
                .skipped
                .remove(pos)
                .ok_or(SignalError::DuplicateMessage { counter });
        }
        let ahead = counter - self.chain.index;
        if ahead > MAX_SKIP || ahead > budget.steps {
            return Err(SignalError::TooFarAhead {
                counter,
                limit: MAX_SKIP.min(budget.steps),
            });
        }
        budget.steps -= ahead;
        while self.chain.index < counter {
            self.skipped.push_back(self.chain.message_keys());
            if self.skipped.len() > MAX_SKIP as usize {
                self.skipped.pop_front();
            }
            self.chain = self.chain.next()?;
        }
        let keys = self.chain.message_keys();
        self.chain = self.chain.next()?;
        Ok(keys)
    }
}

/// Prekey data an initiator repeats in every message until the peer answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPreKey {
    /// One-time prekey used.
    pub pre_key_id: Option<u32>,
    /// Signed prekey used.
    pub signed_pre_key_id: u32,
    /// Our X3DH base key.
    pub base_key: [u8; 32],
}

/// One Double Ratchet session.
#[derive(Debug, Clone)]
pub struct SessionState {
    /// Our identity public key.
    pub local_identity: [u8; 32],
    /// The peer's identity public key.
    pub remote_identity: [u8; 32],
    /// Root key.
    pub root_key: RootKey,
    /// Length of our previous sending chain, announced in each message.
    pub previous_counter: u32,
    /// Our sending chain.
    pub sender: SenderChain,
    /// Receiving chains, newest last.
    pub receivers: Vec<ReceiverChain>,
    /// Set while we initiated and have not heard back.
    pub pending_pre_key: Option<PendingPreKey>,
    /// The peer's registration id.
    pub remote_registration_id: u32,
    /// Our registration id.
    pub local_registration_id: u32,
    /// The initiator's base key: identifies the X3DH agreement.
    pub alice_base_key: [u8; 32],
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey {{ index: {} }}", self.index)
    }
}

/// An encrypted message and its wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiphertextMessage {
    /// A PreKeySignalMessage (`pkmsg`): the first messages of a session we initiated.
    PreKey(Vec<u8>),
    /// A SignalMessage (`msg`).
    Whisper(Vec<u8>),
}

impl CiphertextMessage {
    /// The `type` attribute of the `<enc>` node.
    pub fn enc_type(&self) -> &'static str {
        match self {
            CiphertextMessage::PreKey(_) => "pkmsg",
            CiphertextMessage::Whisper(_) => "msg",
        }
    }

    /// The serialized message.
    pub fn bytes(&self) -> &[u8] {
        match self {
            CiphertextMessage::PreKey(b) | CiphertextMessage::Whisper(b) => b,
        }
    }
}

impl SessionState {
    /// Skipped message keys held in this state's receiving chains.
    pub fn skipped_keys(&self) -> usize {
        self.receivers.iter().map(|c| c.skipped.len()).sum()
    }

    /// Encrypts with the next sending message key.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<CiphertextMessage, SignalError> {
        let next = self.sender.chain.next()?;
        let keys = self.sender.chain.message_keys();
        let body = cbc_encrypt(&keys.cipher_key, &keys.iv, plaintext);
        let msg = SignalMessage::encode(
            &keys,
            &self.sender.ratchet.public,
            self.previous_counter,
            body,
            &self.local_identity,
            &self.remote_identity,
        );
        self.sender.chain = next;
        Ok(match &self.pending_pre_key {
            Some(p) => CiphertextMessage::PreKey(PreKeySignalMessage::encode(
                self.local_registration_id,
                p.pre_key_id,
                p.signed_pre_key_id,
                &p.base_key,
                &self.local_identity,
                msg,
            )),
            None => CiphertextMessage::Whisper(msg),
        })
    }

    /// Decrypts; the caller commits `self` only on success (see [`SessionRecord::decrypt`]).
    fn decrypt(
        &mut self,
        msg: &SignalMessage,
        keys: &mut dyn KeySource,
        budget: &mut Budget,
    ) -> Result<Vec<u8>, SignalError> {
        let idx = match self
            .receivers
            .iter()
            .position(|c| c.their_ratchet == msg.ratchet_key)
        {
            Some(i) => i,
            None => {
                if budget.ratchets == 0 {
                    return Err(SignalError::NoSession);
                }
                budget.ratchets -= 1;
                self.ratchet_step(&msg.ratchet_key, keys)
            }
        };
        let mk = self.receivers[idx].keys_for(msg.counter, budget)?;
        if !msg.verify_mac(&mk.mac_key, &self.remote_identity, &self.local_identity) {
            return Err(SignalError::InvalidMac);
        }
        let plaintext = cbc_decrypt(&mk.cipher_key, &mk.iv, &msg.ciphertext)?;
        self.pending_pre_key = None;
        Ok(plaintext)
    }

    /// A DH ratchet step for the peer's new ratchet key; returns the new receiver chain's index.
    fn ratchet_step(&mut self, their: &[u8; 32], keys: &mut dyn KeySource) -> usize {
        let (root, recv) = self.root_key.create_chain(their, &self.sender.ratchet);
        let ours = keys.generate();
        let (root, send) = root.create_chain(their, &ours);
        self.root_key = root;
        self.previous_counter = self.sender.chain.index.saturating_sub(1);
        self.sender = SenderChain {
            ratchet: ours,
            chain: send,
        };
        self.receivers.push(ReceiverChain::new(*their, recv));
        if self.receivers.len() > MAX_RECEIVER_CHAINS {
            self.receivers.remove(0);
        }
        self.receivers.len() - 1
    }
}

/// All sessions with one peer device: the current one and archived ones.
#[derive(Debug, Clone, Default)]
pub struct SessionRecord {
    current: Option<SessionState>,
    previous: VecDeque<SessionState>,
}

impl SessionRecord {
    /// An empty record.
    pub fn new() -> SessionRecord {
        SessionRecord::default()
    }

    /// The current session.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// Archived sessions, newest first.
    pub fn previous(&self) -> impl Iterator<Item = &SessionState> {
        self.previous.iter()
    }

    /// Makes `state` current, archiving the old current state.
    pub fn promote(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            self.previous.push_front(old);
            self.previous.truncate(MAX_ARCHIVED);
        }
        self.trim_skipped();
    }

    /// Skipped message keys held across all states.
    pub fn skipped_keys(&self) -> usize {
        self.states().map(SessionState::skipped_keys).sum()
    }

    fn states(&self) -> impl Iterator<Item = &SessionState> {
        self.current.iter().chain(self.previous.iter())
    }

    /// Evicts the oldest skipped keys (oldest archived state first, then oldest chain, then
    /// lowest counter) until at most [`MAX_RECORD_SKIPPED`] remain.
    fn trim_skipped(&mut self) {
        let mut excess = self.skipped_keys().saturating_sub(MAX_RECORD_SKIPPED);
        let oldest_first = self.previous.iter_mut().rev().chain(self.current.as_mut());
        for state in oldest_first {
            for chain in state.receivers.iter_mut() {
                let n = excess.min(chain.skipped.len());
                chain.skipped.drain(..n);
                excess -= n;
                if excess == 0 {
                    return;
                }
            }
        }
    }

    /// Encrypts with the current session.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<CiphertextMessage, SignalError> {
        self.current
            .as_mut()
            .ok_or(SignalError::NoSession)?
            .encrypt(plaintext)
    }

    /// Decrypts a SignalMessage with the current session, else an archived one (which then
    /// becomes current). State changes only when decryption succeeds.
    pub fn decrypt(
        &mut self,
        msg: &SignalMessage,
        keys: &mut dyn KeySource,
    ) -> Result<Vec<u8>, SignalError> {
        let mut first_err = None;
        let mut budget = Budget::new();
        if let Some(cur) = &self.current {
            let mut s = cur.clone();
            match s.decrypt(msg, keys, &mut budget) {
                Ok(p) => {
                    self.current = Some(s);
                    self.trim_skipped();
                    return Ok(p);
                }
                Err(e) => first_err = Some(e),
            }
        }
        for i in 0..self.previous.len() {
            let mut s = self.previous[i].clone();
            match s.decrypt(msg, keys, &mut budget) {
                Ok(p) => {
                    self.previous.remove(i);
                    self.promote(s);
                    return Ok(p);
                }
                Err(e @ SignalError::DuplicateMessage { .. }) => first_err = Some(e),
                Err(_) => {}
            }
        }
        Err(first_err.unwrap_or(SignalError::NoSession))
    }

    /// True if a session (current or archived) was agreed with this base key.
    pub fn has_base_key(&self, base_key: &[u8; 32]) -> bool {
        self.states().any(|s| &s.alice_base_key == base_key)
    }

    /// Processes a PreKeySignalMessage as the responder and decrypts it. `signed` and
    /// `one_time` are the prekeys its ids name (the caller looks them up only when
    /// [`Self::has_base_key`] is false). Returns the plaintext and the one-time prekey id the
    /// caller must now delete, if one was consumed.
    pub fn decrypt_pre_key(
        &mut self,
        msg: &PreKeySignalMessage,
        our: &LocalIdentity,
        signed: Option<&KeyPair>,
        one_time: Option<&KeyPair>,
        keys: &mut dyn KeySource,
    ) -> Result<(Vec<u8>, Option<u32>), SignalError> {
        if self.has_base_key(&msg.base_key) {
            return Ok((self.decrypt(&msg.message, keys)?, None));
        }
        let signed = signed.ok_or(SignalError::MissingPreKey {
            kind: "signed",
            id: msg.signed_pre_key_id,
        })?;
        if let (Some(id), None) = (msg.pre_key_id, one_time) {
            return Err(SignalError::MissingPreKey {
                kind: "one-time",
                id,
            });
        }
        let mut state = respond(our, signed, one_time, msg);
        let plaintext = state.decrypt(&msg.message, keys, &mut Budget::new())?;
        self.promote(state);
        Ok((plaintext, msg.pre_key_id))
    }

    /// Serializes as libsignal's RecordStructure protobuf.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::RecordStructure {
            current_session: self.current.as_ref().map(state_to_pb),
            previous_sessions: self.previous.iter().map(state_to_pb).collect(),
        }
        .encode_to_vec()
    }

    /// Parses a stored RecordStructure.
    pub fn from_bytes(bytes: &[u8]) -> Result<SessionRecord, SignalError> {
        let r =
            pb::RecordStructure::decode(bytes).map_err(|_| SignalError::CorruptRecord("record"))?;
        let mut record = SessionRecord {
            current: r.current_session.as_ref().map(state_from_pb).transpose()?,
            previous: r
                .previous_sessions
                .iter()
                .take(MAX_ARCHIVED)
                .map(state_from_pb)
                .collect::<Result<_, _>>()?,
        };
        // Records written before the cap existed may hold more.
        record.trim_skipped();
        Ok(record)
    }
}

fn chain_key_pb(c: &ChainKey) -> pb::session_structure::chain::ChainKey {
    pb::session_structure::chain::ChainKey {
        index: Some(c.index),
        key: Some(c.key.to_vec()),
    }
}

fn state_to_pb(s: &SessionState) -> pb::SessionStructure {
    use pb::session_structure::{Chain, PendingPreKey as PbPending, chain::MessageKey};
    pb::SessionStructure {
        session_version: Some(3),
        local_identity_public: Some(with_type(&s.local_identity).to_vec()),
        remote_identity_public: Some(with_type(&s.remote_identity).to_vec()),
        root_key: Some(s.root_key.0.to_vec()),
        previous_counter: Some(s.previous_counter),
        sender_chain: Some(Chain {
            sender_ratchet_key: Some(with_type(&s.sender.ratchet.public).to_vec()),
            sender_ratchet_key_private: Some(s.sender.ratchet.private.to_vec()),
            chain_key: Some(chain_key_pb(&s.sender.chain)),
            message_keys: Vec::new(),
        }),
        receiver_chains: s
            .receivers
            .iter()
            .map(|r| Chain {
                sender_ratchet_key: Some(with_type(&r.their_ratchet).to_vec()),
                sender_ratchet_key_private: None,
                chain_key: Some(chain_key_pb(&r.chain)),
                message_keys: r
                    .skipped
                    .iter()
                    .map(|k| MessageKey {
                        index: Some(k.counter),
                        cipher_key: Some(k.cipher_key.to_vec()),
                        mac_key: Some(k.mac_key.to_vec()),
                        iv: Some(k.iv.to_vec()),
                    })
                    .collect(),
            })
            .collect(),
        pending_pre_key: s.pending_pre_key.as_ref().map(|p| PbPending {
            pre_key_id: p.pre_key_id,
            base_key: Some(with_type(&p.base_key).to_vec()),
            signed_pre_key_id: Some(p.signed_pre_key_id as i32),
        }),
        remote_registration_id: Some(s.remote_registration_id),
        local_registration_id: Some(s.local_registration_id),
        needs_refresh: None,
        alice_base_key: Some(with_type(&s.alice_base_key).to_vec()),
    }
}

fn arr<const N: usize>(v: Option<&Vec<u8>>, what: &'static str) -> Result<[u8; N], SignalError> {
    v.and_then(|b| b.as_slice().try_into().ok())
        .ok_or(SignalError::CorruptRecord(what))
}

fn pub33(v: Option<&Vec<u8>>, what: &'static str) -> Result<[u8; 32], SignalError> {
    v.and_then(|b| strip_type(b))
        .ok_or(SignalError::CorruptRecord(what))
}

fn chain_key_from_pb(
    c: Option<&pb::session_structure::chain::ChainKey>,
) -> Result<ChainKey, SignalError> {
    let c = c.ok_or(SignalError::CorruptRecord("chain key"))?;
    Ok(ChainKey {
        key: arr(c.key.as_ref(), "chain key")?,
        index: c.index.unwrap_or(0),
    })
}

fn state_from_pb(s: &pb::SessionStructure) -> Result<SessionState, SignalError> {
    let sender = s
        .sender_chain
        .as_ref()
        .ok_or(SignalError::CorruptRecord("sender chain"))?;
    let private: [u8; 32] = arr(
        sender.sender_ratchet_key_private.as_ref(),
        "sender ratchet private",
    )?;
    Ok(SessionState {
        local_identity: pub33(s.local_identity_public.as_ref(), "local identity")?,
        remote_identity: pub33(s.remote_identity_public.as_ref(), "remote identity")?,
        root_key: RootKey(arr(s.root_key.as_ref(), "root key")?),
        previous_counter: s.previous_counter.unwrap_or(0),
        sender: SenderChain {
            ratchet: KeyPair::from_stored(
                private,
                pub33(sender.sender_ratchet_key.as_ref(), "sender ratchet public")?,
            ),
            chain: chain_key_from_pb(sender.chain_key.as_ref())?,
        },
        receivers: s
            .receiver_chains
            .iter()
            .map(|c| {
                Ok(ReceiverChain {
                    their_ratchet: pub33(c.sender_ratchet_key.as_ref(), "receiver ratchet")?,
                    chain: chain_key_from_pb(c.chain_key.as_ref())?,
                    skipped: c
                        .message_keys
                        .iter()
                        .map(|k| {
                            Ok(MessageKeys {
                                cipher_key: arr(k.cipher_key.as_ref(), "message cipher key")?,
                                mac_key: arr(k.mac_key.as_ref(), "message mac key")?,
                                iv: arr(k.iv.as_ref(), "message iv")?,
                                counter: k.index.unwrap_or(0),
                            })
                        })
                        .collect::<Result<_, SignalError>>()?,
                })
            })
            .collect::<Result<_, SignalError>>()?,
        pending_pre_key: s
            .pending_pre_key
            .as_ref()
            .map(|p| {
                Ok::<_, SignalError>(PendingPreKey {
                    pre_key_id: p.pre_key_id,
                    signed_pre_key_id: p.signed_pre_key_id.unwrap_or(0) as u32,
                    base_key: pub33(p.base_key.as_ref(), "pending base key")?,
                })
            })
            .transpose()?,
        remote_registration_id: s.remote_registration_id.unwrap_or(0),
        local_registration_id: s.local_registration_id.unwrap_or(0),
        alice_base_key: pub33(s.alice_base_key.as_ref(), "alice base key")?,
    })
}
