//! In-memory Signal stores for tests, benches and the simulator's phones.

use std::collections::HashMap;
use std::sync::Mutex;

use super::address::{ProtocolAddress, SenderKeyName};
use super::curve::KeyPair;
use super::error::StoreError;
use super::group::SenderKeyRecord;
use super::session::SessionRecord;
use super::store::{
    ApplyChanges, IdentityChange, IdentityStore, PreKey, PreKeyStore, SenderKeyStore, SessionStore,
    SignalChanges, SignedPreKey, SignedPreKeyStore, StoreResult, allocate_pre_key_ids,
};
use super::x3dh::LocalIdentity;

/// All stores of one account, in memory.
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: records hold root, chain and private keys.
        let mut d = f.debug_struct("MemoryStore");
        if let Ok(i) = self.inner.lock() {
            d.field("identity", &i.identity.as_ref().map(|i| &i.key_pair))
                .field("identities", &i.identities.len())
                .field("pre_keys", &i.pre_keys.len())
                .field("signed_pre_keys", &i.signed.len())
                .field("sessions", &i.sessions.len())
                .field("sender_keys", &i.sender_keys.len());
        }
        d.finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    identity: Option<LocalIdentity>,
    identities: HashMap<ProtocolAddress, [u8; 32]>,
    pre_keys: HashMap<u32, PreKey>,
    signed: HashMap<u32, SignedPreKey>,
    sessions: HashMap<ProtocolAddress, Vec<u8>>,
    sender_keys: HashMap<String, Vec<u8>>,
    /// Prekey id allocation counter (1-based; see `allocate_pre_key_ids`).
    next_pre_key: u64,
}

impl MemoryStore {
    /// An empty store for `identity`.
    pub fn new(identity: LocalIdentity) -> MemoryStore {
        let store = MemoryStore::empty();
        store.reset(Some(identity));
        store
    }

    /// A store with no identity yet (a device before its keys exist).
    pub fn empty() -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Forgets everything and takes `identity` (None: logged out).
    pub fn reset(&self, identity: Option<LocalIdentity>) {
        if let Ok(mut g) = self.inner.lock() {
            *g = Inner {
                identity,
                ..Inner::default()
            };
        }
    }

    /// Our identity, if set.
    pub fn identity(&self) -> Option<LocalIdentity> {
        self.with(|i| i.identity.clone()).ok().flatten()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> StoreResult<T> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
        Ok(f(&mut g))
    }

    /// Moves the sessions and identities of every device of address name `from` to name `to`
    /// (a contact's phone number to its LID), keeping what `to` already has.
    pub fn move_addresses(&self, from: &str, to: &str) -> StoreResult<()> {
        self.with(|i| {
            let moved: Vec<ProtocolAddress> = i
                .sessions
                .keys()
                .chain(i.identities.keys())
                .filter(|a| a.name == from)
                .cloned()
                .collect();
            for a in moved {
                let target = ProtocolAddress::new(to, a.device_id);
                if let Some(r) = i.sessions.remove(&a) {
                    i.sessions.entry(target.clone()).or_insert(r);
                }
                if let Some(k) = i.identities.remove(&a) {
                    i.identities.entry(target).or_insert(k);
                }
            }
            // Sender keys are named `<group>::<address>`: theirs follow the devices.
            let needle = format!("::{from}.");
            let names: Vec<String> = i
                .sender_keys
                .keys()
                .filter(|n| n.contains(&needle))
                .cloned()
                .collect();
            for n in names {
                if let Some((group, device)) = n.split_once(&needle)
                    && let Some(r) = i.sender_keys.remove(&n)
                {
                    i.sender_keys
                        .entry(format!("{group}::{to}.{device}"))
                        .or_insert(r);
                }
            }
        })
    }

    /// Stores a signed prekey now (the async trait method does the same).
    pub fn put_signed_pre_key(&self, key: &SignedPreKey) {
        let _ = self.with(|i| {
            i.signed.insert(key.id, key.clone());
        });
    }

    /// Number of one-time prekeys held.
    pub fn pre_key_count(&self) -> usize {
        self.with(|i| i.pre_keys.len()).unwrap_or(0)
    }
}

impl IdentityStore for MemoryStore {
    async fn local_identity(&self) -> StoreResult<LocalIdentity> {
        self.with(|i| i.identity.clone())?
            .ok_or_else(|| StoreError("no local identity".into()))
    }

    async fn identity(&self, addr: &ProtocolAddress) -> StoreResult<Option<[u8; 32]>> {
        self.with(|i| i.identities.get(addr).copied())
    }

    async fn save_identity(
        &self,
        addr: &ProtocolAddress,
        key: &[u8; 32],
    ) -> StoreResult<IdentityChange> {
        self.with(|i| match i.identities.insert(addr.clone(), *key) {
            None => IdentityChange::New,
            Some(old) if &old == key => IdentityChange::Unchanged,
            Some(_) => IdentityChange::Changed,
        })
    }
}

impl PreKeyStore for MemoryStore {
    async fn pre_key(&self, id: u32) -> StoreResult<Option<PreKey>> {
        self.with(|i| i.pre_keys.get(&id).cloned())
    }

    async fn store_pre_keys(&self, keys: &[PreKey]) -> StoreResult<()> {
        self.with(|i| {
            for k in keys {
                i.pre_keys.insert(k.id, k.clone());
            }
        })
    }

    async fn remove_pre_key(&self, id: u32) -> StoreResult<()> {
        self.with(|i| {
            i.pre_keys.remove(&id);
        })
    }

    async fn create_pre_keys(&self, n: u32) -> StoreResult<Vec<PreKey>> {
        let pairs: Vec<KeyPair> = (0..n).map(|_| KeyPair::generate()).collect();
        self.with(|i| {
            let (ids, next) = allocate_pre_key_ids(i.next_pre_key, pairs.len(), |id| {
                i.pre_keys.contains_key(&id)
            });
            i.next_pre_key = next;
            ids.into_iter()
                .zip(pairs)
                .map(|(id, key_pair)| {
                    let k = PreKey { id, key_pair };
                    i.pre_keys.insert(id, k.clone());
                    k
                })
                .collect()
        })
    }

    async fn pre_keys_allocated(&self) -> StoreResult<u64> {
        self.with(|i| i.next_pre_key.saturating_sub(1))
    }
}

impl SignedPreKeyStore for MemoryStore {
    async fn signed_pre_key(&self, id: u32) -> StoreResult<Option<SignedPreKey>> {
        self.with(|i| i.signed.get(&id).cloned())
    }

    async fn store_signed_pre_key(&self, key: &SignedPreKey) -> StoreResult<()> {
        self.with(|i| {
            i.signed.insert(key.id, key.clone());
        })
    }
}

impl SessionStore for MemoryStore {
    async fn session(&self, addr: &ProtocolAddress) -> StoreResult<Option<SessionRecord>> {
        // Stored as bytes, like a real backend, so tests exercise serialization too.
        let bytes = self.with(|i| i.sessions.get(addr).cloned())?;
        bytes
            .map(|b| SessionRecord::from_bytes(&b).map_err(|e| StoreError(e.to_string())))
            .transpose()
    }

    async fn store_session(
        &self,
        addr: &ProtocolAddress,
        record: &SessionRecord,
    ) -> StoreResult<()> {
        let b = record.to_bytes();
        self.with(|i| {
            i.sessions.insert(addr.clone(), b);
        })
    }

    async fn delete_session(&self, addr: &ProtocolAddress) -> StoreResult<()> {
        self.with(|i| {
            i.sessions.remove(addr);
        })
    }
}

impl SenderKeyStore for MemoryStore {
    async fn sender_key(&self, name: &SenderKeyName) -> StoreResult<Option<SenderKeyRecord>> {
        let bytes = self.with(|i| i.sender_keys.get(&name.to_string()).cloned())?;
        bytes
            .map(|b| SenderKeyRecord::from_bytes(&b).map_err(|e| StoreError(e.to_string())))
            .transpose()
    }

    async fn store_sender_key(
        &self,
        name: &SenderKeyName,
        record: &SenderKeyRecord,
    ) -> StoreResult<()> {
        let b = record.to_bytes();
        self.with(|i| {
            i.sender_keys.insert(name.to_string(), b);
        })
    }
}

impl ApplyChanges for MemoryStore {
    async fn apply(&self, changes: &SignalChanges) -> StoreResult<()> {
        self.apply_now(changes)
    }
}

impl MemoryStore {
    /// Applies `changes` at once (synchronously: callers may hold their own lock around it).
    pub fn apply_now(&self, changes: &SignalChanges) -> StoreResult<()> {
        // Serialize first: one lock, so the whole unit lands at once.
        let sessions: Vec<(ProtocolAddress, Vec<u8>)> = changes
            .sessions
            .iter()
            .map(|(a, r)| (a.clone(), r.to_bytes()))
            .collect();
        let senders: Vec<(String, Vec<u8>)> = changes
            .sender_keys
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_bytes()))
            .collect();
        self.with(|i| {
            for (a, k) in &changes.identities {
                i.identities.insert(a.clone(), *k);
            }
            for id in &changes.removed_pre_keys {
                i.pre_keys.remove(id);
            }
            i.sessions.extend(sessions);
            i.sender_keys.extend(senders);
        })
    }
}
