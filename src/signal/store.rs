//! What the Signal protocol needs stored, as traits (implemented in memory here and over SQLite
//! by the store layer), and the key records they hold. Records are libsignal protobufs.

use std::future::Future;

use prost::Message;

use super::address::{ProtocolAddress, SenderKeyName};
use super::curve::{KeyPair, strip_type, with_type};
use super::error::{SignalError, StoreError};
use super::group::SenderKeyRecord;
use super::session::SessionRecord;
use super::x3dh::LocalIdentity;
use crate::proto::wa::signal as pb;

/// A one-time prekey.
#[derive(Debug, Clone)]
pub struct PreKey {
    /// 24-bit id.
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
}

impl PreKey {
    /// Serializes as PreKeyRecordStructure.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::PreKeyRecordStructure {
            id: Some(self.id),
            public_key: Some(with_type(&self.key_pair.public).to_vec()),
            private_key: Some(self.key_pair.private.to_vec()),
        }
        .encode_to_vec()
    }

    /// Parses a stored record.
    pub fn from_bytes(b: &[u8]) -> Result<PreKey, SignalError> {
        let r = pb::PreKeyRecordStructure::decode(b)
            .map_err(|_| SignalError::CorruptRecord("prekey"))?;
        let private: [u8; 32] = r
            .private_key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or(SignalError::CorruptRecord("prekey private"))?;
        Ok(PreKey {
            id: r.id.unwrap_or(0),
            key_pair: KeyPair::from_private(private),
        })
    }
}

/// A signed prekey: signed by the identity key over `0x05 ‖ public`.
#[derive(Debug, Clone)]
pub struct SignedPreKey {
    /// 24-bit id.
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
    /// XEdDSA signature by the identity key.
    pub signature: [u8; 64],
    /// Creation time (Unix ms, as libsignal stores it).
    pub timestamp: u64,
}

impl SignedPreKey {
    /// A fresh signed prekey.
    pub fn generate(id: u32, identity: &KeyPair, timestamp: u64) -> SignedPreKey {
        let key_pair = KeyPair::generate();
        let signature = identity.sign(&with_type(&key_pair.public));
        SignedPreKey {
            id,
            key_pair,
            signature,
            timestamp,
        }
    }

    /// Serializes as SignedPreKeyRecordStructure.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::SignedPreKeyRecordStructure {
            id: Some(self.id),
            public_key: Some(with_type(&self.key_pair.public).to_vec()),
            private_key: Some(self.key_pair.private.to_vec()),
            signature: Some(self.signature.to_vec()),
            timestamp: Some(self.timestamp),
        }
        .encode_to_vec()
    }

    /// Parses a stored record.
    pub fn from_bytes(b: &[u8]) -> Result<SignedPreKey, SignalError> {
        let r = pb::SignedPreKeyRecordStructure::decode(b)
            .map_err(|_| SignalError::CorruptRecord("signed prekey"))?;
        let private: [u8; 32] = r
            .private_key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or(SignalError::CorruptRecord("signed prekey private"))?;
        Ok(SignedPreKey {
            id: r.id.unwrap_or(0),
            key_pair: KeyPair::from_private(private),
            signature: r
                .signature
                .as_deref()
                .and_then(|s| s.try_into().ok())
                .ok_or(SignalError::CorruptRecord("signed prekey signature"))?,
            timestamp: r.timestamp.unwrap_or(0),
        })
    }
}

/// Serializes our identity as IdentityKeyPairStructure (the registration id is stored apart).
pub fn identity_to_bytes(kp: &KeyPair) -> Vec<u8> {
    pb::IdentityKeyPairStructure {
        public_key: Some(with_type(&kp.public).to_vec()),
        private_key: Some(kp.private.to_vec()),
    }
    .encode_to_vec()
}

/// Parses an IdentityKeyPairStructure.
pub fn identity_from_bytes(b: &[u8]) -> Result<KeyPair, SignalError> {
    let r = pb::IdentityKeyPairStructure::decode(b)
        .map_err(|_| SignalError::CorruptRecord("identity"))?;
    let private: [u8; 32] = r
        .private_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(SignalError::CorruptRecord("identity private"))?;
    let kp = KeyPair::from_private(private);
    if r.public_key.as_deref().and_then(strip_type) != Some(kp.public) {
        return Err(SignalError::CorruptRecord(
            "identity public does not match private",
        ));
    }
    Ok(kp)
}

/// What saving a peer's identity key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityChange {
    /// First key seen for the address (trust on first use).
    New,
    /// Same key as before.
    Unchanged,
    /// A different key replaced the stored one (the peer re-installed, or worse).
    Changed,
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Our identity and the identities of peers.
pub trait IdentityStore: Send + Sync {
    /// Our identity key pair and registration id.
    fn local_identity(&self) -> impl Future<Output = StoreResult<LocalIdentity>> + Send;
    /// The stored identity of `addr`.
    fn identity(
        &self,
        addr: &ProtocolAddress,
    ) -> impl Future<Output = StoreResult<Option<[u8; 32]>>> + Send;
    /// Stores `key` for `addr` and says whether it was new, unchanged or changed.
    fn save_identity(
        &self,
        addr: &ProtocolAddress,
        key: &[u8; 32],
    ) -> impl Future<Output = StoreResult<IdentityChange>> + Send;
}

/// Highest one-time prekey id: ids travel in 3 bytes.
pub const MAX_PRE_KEY_ID: u32 = 0xFF_FFFF;

/// The prekey id the `n`th allocation (counting from 1) gets: 1..=[`MAX_PRE_KEY_ID`], then 1
/// again, as libsignal's key helper wraps. Allocation skips ids still held, so a wrapped id
/// never overwrites a live key.
pub fn pre_key_id(n: u64) -> u32 {
    (n.saturating_sub(1) % u64::from(MAX_PRE_KEY_ID)) as u32 + 1
}

/// Picks `n` ids from allocation counter `next` (1-based), skipping `live` ones; returns them
/// and the counter after them. The shared rule of every [`PreKeyStore`].
pub fn allocate_pre_key_ids(next: u64, n: usize, live: impl Fn(u32) -> bool) -> (Vec<u32>, u64) {
    let mut ids = Vec::with_capacity(n);
    let mut counter = next.max(1);
    // At most MAX_PRE_KEY_ID ids can be live, so the scan ends.
    let mut scanned = 0u64;
    while ids.len() < n && scanned <= u64::from(MAX_PRE_KEY_ID) {
        let id = pre_key_id(counter);
        counter += 1;
        scanned += 1;
        if !live(id) {
            ids.push(id);
        }
    }
    (ids, counter)
}

/// One-time prekeys. The store alone owns their ids.
pub trait PreKeyStore: Send + Sync {
    /// The prekey `id`.
    fn pre_key(&self, id: u32) -> impl Future<Output = StoreResult<Option<PreKey>>> + Send;
    /// Imports prekeys with the ids they carry (recorded vectors, peers built in tests); an id
    /// that is already held is replaced. New keys come from [`Self::create_pre_keys`].
    fn store_pre_keys(&self, keys: &[PreKey]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes a consumed prekey.
    fn remove_pre_key(&self, id: u32) -> impl Future<Output = StoreResult<()>> + Send;
    /// Creates `n` new prekeys under the next free ids (see [`pre_key_id`]), stores them and
    /// advances the id counter in one unit. Ids only grow until they wrap, so a late message
    /// naming a consumed key never meets a different one.
    fn create_pre_keys(&self, n: u32) -> impl Future<Output = StoreResult<Vec<PreKey>>> + Send;
    /// How many prekey ids were ever allocated (0 for a new device: the first upload is large).
    fn pre_keys_allocated(&self) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Signed prekeys.
pub trait SignedPreKeyStore: Send + Sync {
    /// The signed prekey `id`.
    fn signed_pre_key(
        &self,
        id: u32,
    ) -> impl Future<Output = StoreResult<Option<SignedPreKey>>> + Send;
    /// Stores a signed prekey.
    fn store_signed_pre_key(
        &self,
        key: &SignedPreKey,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Session records per peer device.
pub trait SessionStore: Send + Sync {
    /// The record for `addr`.
    fn session(
        &self,
        addr: &ProtocolAddress,
    ) -> impl Future<Output = StoreResult<Option<SessionRecord>>> + Send;
    /// Stores the record for `addr`.
    fn store_session(
        &self,
        addr: &ProtocolAddress,
        record: &SessionRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes the record for `addr`.
    fn delete_session(
        &self,
        addr: &ProtocolAddress,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Sender key records per (group, sender device).
pub trait SenderKeyStore: Send + Sync {
    /// The record for `name`.
    fn sender_key(
        &self,
        name: &SenderKeyName,
    ) -> impl Future<Output = StoreResult<Option<SenderKeyRecord>>> + Send;
    /// Stores the record for `name`.
    fn store_sender_key(
        &self,
        name: &SenderKeyName,
        record: &SenderKeyRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The writes one Signal operation (or several under their locks) produced: applied all at once,
/// alone ([`ApplyChanges::apply`]) or in the same transaction as the message they belong to, so a
/// crash never keeps a session advance without its message or consumes a prekey for nothing.
#[derive(Clone, Default)]
pub struct SignalChanges {
    /// Session records to store, replacing the stored ones.
    pub sessions: Vec<(ProtocolAddress, SessionRecord)>,
    /// Peer identities to store.
    pub identities: Vec<(ProtocolAddress, [u8; 32])>,
    /// One-time prekeys consumed.
    pub removed_pre_keys: Vec<u32>,
    /// Sender-key records to store.
    pub sender_keys: Vec<(SenderKeyName, SenderKeyRecord)>,
}

impl std::fmt::Debug for SignalChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Addresses only: records hold chain and private keys.
        f.debug_struct("SignalChanges")
            .field(
                "sessions",
                &self.sessions.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .field(
                "identities",
                &self.identities.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .field("removed_pre_keys", &self.removed_pre_keys)
            .field(
                "sender_keys",
                &self
                    .sender_keys
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SignalChanges {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.identities.is_empty()
            && self.removed_pre_keys.is_empty()
            && self.sender_keys.is_empty()
    }

    /// Adds `other`'s writes after these (a later write to the same row wins).
    pub fn extend(&mut self, other: SignalChanges) {
        self.sessions.extend(other.sessions);
        self.identities.extend(other.identities);
        self.removed_pre_keys.extend(other.removed_pre_keys);
        self.sender_keys.extend(other.sender_keys);
    }
}

/// Applies a [`SignalChanges`] atomically.
pub trait ApplyChanges: Send + Sync {
    /// Writes every change, all or nothing.
    fn apply(&self, changes: &SignalChanges) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Everything a [`super::cipher::SessionCipher`] needs.
pub trait SignalStore:
    IdentityStore + PreKeyStore + SignedPreKeyStore + SessionStore + SenderKeyStore + ApplyChanges
{
}

impl<
    T: IdentityStore + PreKeyStore + SignedPreKeyStore + SessionStore + SenderKeyStore + ApplyChanges,
> SignalStore for T
{
}

impl<T: ApplyChanges + ?Sized> ApplyChanges for std::sync::Arc<T> {
    fn apply(&self, changes: &SignalChanges) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).apply(changes)
    }
}

// A shared store (`Arc<T>`) is a store: clients and the simulator's phones hand one to several
// ciphers and keep a handle for themselves.
impl<T: IdentityStore + ?Sized> IdentityStore for std::sync::Arc<T> {
    fn local_identity(&self) -> impl Future<Output = StoreResult<LocalIdentity>> + Send {
        (**self).local_identity()
    }
    fn identity(
        &self,
        addr: &ProtocolAddress,
    ) -> impl Future<Output = StoreResult<Option<[u8; 32]>>> + Send {
        (**self).identity(addr)
    }
    fn save_identity(
        &self,
        addr: &ProtocolAddress,
        key: &[u8; 32],
    ) -> impl Future<Output = StoreResult<IdentityChange>> + Send {
        (**self).save_identity(addr, key)
    }
}

impl<T: PreKeyStore + ?Sized> PreKeyStore for std::sync::Arc<T> {
    fn pre_key(&self, id: u32) -> impl Future<Output = StoreResult<Option<PreKey>>> + Send {
        (**self).pre_key(id)
    }
    fn store_pre_keys(&self, keys: &[PreKey]) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).store_pre_keys(keys)
    }
    fn remove_pre_key(&self, id: u32) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).remove_pre_key(id)
    }
    fn create_pre_keys(&self, n: u32) -> impl Future<Output = StoreResult<Vec<PreKey>>> + Send {
        (**self).create_pre_keys(n)
    }
    fn pre_keys_allocated(&self) -> impl Future<Output = StoreResult<u64>> + Send {
        (**self).pre_keys_allocated()
    }
}

impl<T: SignedPreKeyStore + ?Sized> SignedPreKeyStore for std::sync::Arc<T> {
    fn signed_pre_key(
        &self,
        id: u32,
    ) -> impl Future<Output = StoreResult<Option<SignedPreKey>>> + Send {
        (**self).signed_pre_key(id)
    }
    fn store_signed_pre_key(
        &self,
        key: &SignedPreKey,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).store_signed_pre_key(key)
    }
}

impl<T: SessionStore + ?Sized> SessionStore for std::sync::Arc<T> {
    fn session(
        &self,
        addr: &ProtocolAddress,
    ) -> impl Future<Output = StoreResult<Option<SessionRecord>>> + Send {
        (**self).session(addr)
    }
    fn store_session(
        &self,
        addr: &ProtocolAddress,
        record: &SessionRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).store_session(addr, record)
    }
    fn delete_session(
        &self,
        addr: &ProtocolAddress,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).delete_session(addr)
    }
}

impl<T: SenderKeyStore + ?Sized> SenderKeyStore for std::sync::Arc<T> {
    fn sender_key(
        &self,
        name: &SenderKeyName,
    ) -> impl Future<Output = StoreResult<Option<SenderKeyRecord>>> + Send {
        (**self).sender_key(name)
    }
    fn store_sender_key(
        &self,
        name: &SenderKeyName,
        record: &SenderKeyRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).store_sender_key(name, record)
    }
}
