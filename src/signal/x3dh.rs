//! X3DH session agreement as libsignal v3 does it (no PQ keys): the initiator from a prekey
//! bundle, the responder from a PreKeySignalMessage.

use super::curve::{KeyPair, KeySource, with_type, xeddsa_verify};
use super::error::SignalError;
use super::ratchet::{ChainKey, PreKeySignalMessage, RootKey, hkdf, split32};
use super::session::{PendingPreKey, ReceiverChain, SenderChain, SessionState};

/// Our long-term identity.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    /// Identity key pair.
    pub key_pair: KeyPair,
    /// Registration id announced to peers.
    pub registration_id: u32,
}

/// A peer device's published keys (from a prekey fetch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The device's registration id.
    pub registration_id: u32,
    /// One-time prekey (id, public key), when the server had one left.
    pub pre_key: Option<(u32, [u8; 32])>,
    /// Signed prekey id.
    pub signed_pre_key_id: u32,
    /// Signed prekey public key.
    pub signed_pre_key: [u8; 32],
    /// XEdDSA signature by the identity key over `0x05 ‖ signed_pre_key`.
    pub signed_pre_key_signature: [u8; 64],
    /// The device's identity key.
    pub identity_key: [u8; 32],
}

/// HKDF over the X3DH secrets with libsignal's 32-byte 0xFF discontinuity prefix.
fn derive(parts: &[[u8; 32]]) -> (RootKey, ChainKey) {
    let mut secret = Vec::with_capacity(32 * (parts.len() + 1));
    secret.extend_from_slice(&[0xff; 32]);
    for p in parts {
        secret.extend_from_slice(p);
    }
    let mut okm = [0u8; 64];
    hkdf(&secret, None, b"WhisperText", &mut okm);
    (
        RootKey(split32(&okm, 0)),
        ChainKey {
            key: split32(&okm, 32),
            index: 0,
        },
    )
}

/// Starts a session as the initiator ("Alice"): verifies the bundle's signed prekey, then takes
/// the base key and the first sending ratchet key from `keys`, in that order.
pub fn initiate(
    our: &LocalIdentity,
    bundle: &PreKeyBundle,
    keys: &mut dyn KeySource,
) -> Result<SessionState, SignalError> {
    if !xeddsa_verify(
        &bundle.identity_key,
        &with_type(&bundle.signed_pre_key),
        &bundle.signed_pre_key_signature,
    ) {
        return Err(SignalError::InvalidKey("signed prekey signature"));
    }
    let base = keys.generate();
    let sending = keys.generate();
    let mut parts = vec![
        our.key_pair.dh(&bundle.signed_pre_key),
        base.dh(&bundle.identity_key),
        base.dh(&bundle.signed_pre_key),
    ];
    if let Some((_, opk)) = bundle.pre_key {
        parts.push(base.dh(&opk));
    }
    let (root, chain) = derive(&parts);
    let (root, send_chain) = root.create_chain(&bundle.signed_pre_key, &sending);
    Ok(SessionState {
        local_identity: our.key_pair.public,
        remote_identity: bundle.identity_key,
        root_key: root,
        previous_counter: 0,
        sender: SenderChain {
            ratchet: sending,
            chain: send_chain,
        },
        receivers: vec![ReceiverChain::new(bundle.signed_pre_key, chain)],
        pending_pre_key: Some(PendingPreKey {
            pre_key_id: bundle.pre_key.map(|(id, _)| id),
            signed_pre_key_id: bundle.signed_pre_key_id,
            base_key: base.public,
        }),
        remote_registration_id: bundle.registration_id,
        local_registration_id: our.registration_id,
        alice_base_key: base.public,
    })
}

/// Builds the responder's ("Bob's") session for an incoming PreKeySignalMessage.
pub fn respond(
    our: &LocalIdentity,
    signed_pre_key: &KeyPair,
    one_time_pre_key: Option<&KeyPair>,
    msg: &PreKeySignalMessage,
) -> SessionState {
    let mut parts = vec![
        signed_pre_key.dh(&msg.identity_key),
        our.key_pair.dh(&msg.base_key),
        signed_pre_key.dh(&msg.base_key),
    ];
    if let Some(opk) = one_time_pre_key {
        parts.push(opk.dh(&msg.base_key));
    }
    let (root, chain) = derive(&parts);
    SessionState {
        local_identity: our.key_pair.public,
        remote_identity: msg.identity_key,
        root_key: root,
        previous_counter: 0,
        sender: SenderChain {
            ratchet: signed_pre_key.clone(),
            chain,
        },
        receivers: Vec::new(),
        pending_pre_key: None,
        remote_registration_id: msg.registration_id,
        local_registration_id: our.registration_id,
        alice_base_key: msg.base_key,
    }
}
