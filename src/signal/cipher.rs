//! Store-backed Signal operations for one account: load a record, run the protocol core, and
//! either save the record or hand the writes back as a [`SignalChanges`] for the caller to commit
//! with the message they belong to. Each remote address has its own lock, per account (the cipher
//! is shared by everything that uses the account), so two tasks never race one ratchet and
//! unrelated peers never wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use tokio::sync::{Mutex, OwnedMutexGuard};

use super::address::{ProtocolAddress, SenderKeyName};
use super::curve::OsKeys;
use super::error::SignalError;
use super::group::{PreparedKeys, SenderKeyDistribution, SenderKeyRecord};
use super::ratchet::{PreKeySignalMessage, SignalMessage};
use super::session::{CiphertextMessage, SessionRecord};
use super::store::{IdentityChange, SignalChanges, SignalStore};
use super::x3dh::{PreKeyBundle, initiate};

/// Exclusive use of one address's session (or one sender key) until dropped: hold it from the
/// staged operation until its [`SignalChanges`] are committed.
#[derive(Debug)]
pub struct SessionLock {
    key: String,
    _guard: OwnedMutexGuard<()>,
}

impl SessionLock {
    /// The address (or sender-key name) this lock covers.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Lock table of one account: entries live while someone holds or waits for them.
#[derive(Debug, Default)]
struct Locks {
    map: std::sync::Mutex<HashMap<String, Weak<Mutex<()>>>>,
}

impl Locks {
    fn get(&self, key: &str) -> Arc<Mutex<()>> {
        let Ok(mut map) = self.map.lock() else {
            // A poisoned table (a panic elsewhere): a private lock still serializes nothing,
            // but never deadlocks; the panic is the bug to fix.
            return Arc::new(Mutex::new(()));
        };
        if let Some(m) = map.get(key).and_then(Weak::upgrade) {
            return m;
        }
        // Forget dead entries now and then, so the table stays as small as the live locks.
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let m = Arc::new(Mutex::new(()));
        map.insert(key.to_owned(), Arc::downgrade(&m));
        m
    }

    fn len(&self) -> usize {
        self.map
            .lock()
            .map(|m| m.values().filter(|w| w.strong_count() > 0).count())
            .unwrap_or(0)
    }
}

/// What to do when a peer's identity key changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityTrust {
    /// Accept the new key and report the change (what WhatsApp clients do).
    #[default]
    AcceptChanges,
    /// Refuse with [`SignalError::UntrustedIdentity`].
    RejectChanges,
}

/// The `type` of an `<enc>` node for 1:1 messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncType {
    /// PreKeySignalMessage.
    PreKey,
    /// SignalMessage.
    Whisper,
}

impl EncType {
    /// Parses the `type` attribute (`pkmsg` / `msg`).
    pub fn parse(s: &str) -> Option<EncType> {
        match s {
            "pkmsg" => Some(EncType::PreKey),
            "msg" => Some(EncType::Whisper),
            _ => None,
        }
    }
}

/// A decrypted 1:1 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext (still padded, as the sender padded it).
    pub plaintext: Vec<u8>,
    /// Whether the sender's identity was new, unchanged or changed.
    pub identity: IdentityChange,
}

/// Signal operations of one account over its store.
#[derive(Debug)]
pub struct SessionCipher<S> {
    store: S,
    trust: IdentityTrust,
    locks: Locks,
    /// Sender-key signing and verifying keys, prepared once per key instead of per message.
    prepared: std::sync::Mutex<PreparedKeys>,
}

impl<S: SignalStore> SessionCipher<S> {
    /// A cipher over one account's `store`. Share it (`Arc`) among every task of the account:
    /// its locks are what serializes them.
    pub fn new(store: S, trust: IdentityTrust) -> SessionCipher<S> {
        SessionCipher {
            store,
            trust,
            locks: Locks::default(),
            prepared: std::sync::Mutex::new(PreparedKeys::default()),
        }
    }

    fn with_prepared(&self, f: impl FnOnce(&mut PreparedKeys)) {
        // A poisoned cache only costs speed: skip it.
        if let Ok(mut p) = self.prepared.lock() {
            f(&mut p);
        }
    }

    /// Prepared sender-key keys held (signers, verifiers).
    pub fn prepared_keys(&self) -> (usize, usize) {
        self.prepared.lock().map(|p| p.len()).unwrap_or_default()
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    async fn lock(&self, key: String) -> SessionLock {
        let guard = self.locks.get(&key).lock_owned().await;
        SessionLock { key, _guard: guard }
    }

    /// Takes the lock of `addr`'s session.
    pub async fn lock_session(&self, addr: &ProtocolAddress) -> SessionLock {
        self.lock(addr.to_string()).await
    }

    /// Takes the locks of several sessions, in one global order so two callers with
    /// overlapping sets never deadlock.
    pub async fn lock_sessions(&self, addrs: &[ProtocolAddress]) -> Vec<SessionLock> {
        let mut keys: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        keys.sort();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.lock(k).await);
        }
        out
    }

    /// Locks currently held or awaited (the table shrinks back as they are released).
    pub fn live_locks(&self) -> usize {
        self.locks.len()
    }

    fn check_lock(lock: &SessionLock, addr: &ProtocolAddress) -> Result<(), SignalError> {
        if lock.key != addr.to_string() {
            return Err(SignalError::Store(format!(
                "lock for {} used on {addr}",
                lock.key
            )));
        }
        Ok(())
    }

    async fn check_identity(
        &self,
        addr: &ProtocolAddress,
        key: &[u8; 32],
    ) -> Result<IdentityChange, SignalError> {
        let change = match self.store.identity(addr).await? {
            None => IdentityChange::New,
            Some(k) if &k == key => IdentityChange::Unchanged,
            Some(_) => IdentityChange::Changed,
        };
        if change == IdentityChange::Changed && self.trust == IdentityTrust::RejectChanges {
            return Err(SignalError::UntrustedIdentity(addr.to_string()));
        }
        Ok(change)
    }

    /// True if a current session exists for `addr`.
    pub async fn has_session(&self, addr: &ProtocolAddress) -> Result<bool, SignalError> {
        Ok(self
            .store
            .session(addr)
            .await?
            .is_some_and(|r| r.current().is_some()))
    }

    /// Starts a session with `addr` from its prekey bundle.
    pub async fn process_bundle(
        &self,
        addr: &ProtocolAddress,
        bundle: &PreKeyBundle,
    ) -> Result<IdentityChange, SignalError> {
        let lock = self.lock_session(addr).await;
        let mut record = self.store.session(addr).await?.unwrap_or_default();
        let change = self.start_session(&lock, addr, &mut record, bundle).await?;
        let changes = SignalChanges {
            sessions: vec![(addr.clone(), record)],
            identities: vec![(addr.clone(), bundle.identity_key)],
            ..SignalChanges::default()
        };
        self.store.apply(&changes).await?;
        Ok(change)
    }

    /// Runs X3DH with `bundle` into `record` (nothing stored): the sending half of a new session.
    async fn start_session(
        &self,
        lock: &SessionLock,
        addr: &ProtocolAddress,
        record: &mut SessionRecord,
        bundle: &PreKeyBundle,
    ) -> Result<IdentityChange, SignalError> {
        Self::check_lock(lock, addr)?;
        let change = self.check_identity(addr, &bundle.identity_key).await?;
        let ours = self.store.local_identity().await?;
        let state = initiate(&ours, bundle, &mut OsKeys)?;
        record.promote(state);
        Ok(change)
    }

    /// Encrypts for `addr` under its `lock`, first starting a session from `bundle` when one
    /// is given; nothing is stored: the returned changes must be committed (before the
    /// ciphertext leaves, so a crash never sends one message key twice).
    pub async fn encrypt_staged(
        &self,
        lock: &SessionLock,
        addr: &ProtocolAddress,
        bundle: Option<&PreKeyBundle>,
        plaintext: &[u8],
    ) -> Result<(CiphertextMessage, Option<IdentityChange>, SignalChanges), SignalError> {
        Self::check_lock(lock, addr)?;
        let mut record = self.store.session(addr).await?.unwrap_or_default();
        let mut changes = SignalChanges::default();
        let change = match bundle {
            Some(b) => {
                let c = self.start_session(lock, addr, &mut record, b).await?;
                changes.identities.push((addr.clone(), b.identity_key));
                Some(c)
            }
            None => None,
        };
        let ct = record.encrypt(plaintext)?;
        changes.sessions.push((addr.clone(), record));
        Ok((ct, change, changes))
    }

    /// Encrypts for `addr` with its current session and stores the advance.
    pub async fn encrypt(
        &self,
        addr: &ProtocolAddress,
        plaintext: &[u8],
    ) -> Result<CiphertextMessage, SignalError> {
        let lock = self.lock_session(addr).await;
        let (ct, _, changes) = self.encrypt_staged(&lock, addr, None, plaintext).await?;
        self.store.apply(&changes).await?;
        Ok(ct)
    }

    /// Decrypts a `pkmsg` or `msg` from `addr` under its `lock`; nothing is stored: commit the
    /// returned changes together with the message, then answer the sender.
    pub async fn decrypt_staged(
        &self,
        lock: &SessionLock,
        addr: &ProtocolAddress,
        kind: EncType,
        bytes: &[u8],
    ) -> Result<(Decrypted, SignalChanges), SignalError> {
        Self::check_lock(lock, addr)?;
        let mut record = self.store.session(addr).await?.unwrap_or_default();
        let mut changes = SignalChanges::default();
        let (plaintext, identity) = match kind {
            EncType::Whisper => {
                let msg = SignalMessage::decode(bytes)?;
                (
                    record.decrypt(&msg, &mut OsKeys)?,
                    IdentityChange::Unchanged,
                )
            }
            EncType::PreKey => {
                let msg = PreKeySignalMessage::decode(bytes)?;
                let change = self.check_identity(addr, &msg.identity_key).await?;
                let ours = self.store.local_identity().await?;
                let (signed, one_time) = if record.has_base_key(&msg.base_key) {
                    (None, None)
                } else {
                    let signed = self
                        .store
                        .signed_pre_key(msg.signed_pre_key_id)
                        .await?
                        .map(|k| k.key_pair);
                    let one_time = match msg.pre_key_id {
                        Some(id) => self.store.pre_key(id).await?.map(|k| k.key_pair),
                        None => None,
                    };
                    (signed, one_time)
                };
                let (plaintext, consumed) = record.decrypt_pre_key(
                    &msg,
                    &ours,
                    signed.as_ref(),
                    one_time.as_ref(),
                    &mut OsKeys,
                )?;
                changes.identities.push((addr.clone(), msg.identity_key));
                changes.removed_pre_keys.extend(consumed);
                (plaintext, change)
            }
        };
        changes.sessions.push((addr.clone(), record));
        Ok((
            Decrypted {
                plaintext,
                identity,
            },
            changes,
        ))
    }

    /// Decrypts a `pkmsg` or `msg` from `addr` and stores what it advanced.
    pub async fn decrypt(
        &self,
        addr: &ProtocolAddress,
        kind: EncType,
        bytes: &[u8],
    ) -> Result<Decrypted, SignalError> {
        let lock = self.lock_session(addr).await;
        let (d, changes) = self.decrypt_staged(&lock, addr, kind, bytes).await?;
        self.store.apply(&changes).await?;
        Ok(d)
    }

    /// Our SenderKeyDistributionMessage for `group` (creating our sender key if needed).
    pub async fn group_distribution(&self, name: &SenderKeyName) -> Result<Vec<u8>, SignalError> {
        let _g = self.lock(name.to_string()).await;
        let mut record = self.store.sender_key(name).await?.unwrap_or_default();
        let d = record.distribution();
        self.store.store_sender_key(name, &record).await?;
        Ok(d.encode())
    }

    /// Installs a peer's distribution message.
    pub async fn process_group_distribution(
        &self,
        name: &SenderKeyName,
        bytes: &[u8],
    ) -> Result<(), SignalError> {
        let d = SenderKeyDistribution::decode(bytes)?;
        let _g = self.lock(name.to_string()).await;
        let mut record = self.store.sender_key(name).await?.unwrap_or_default();
        record.process(&d);
        self.store.store_sender_key(name, &record).await?;
        Ok(())
    }

    /// Encrypts a group message with our sender key (`name.sender` is our own address).
    pub async fn group_encrypt(
        &self,
        name: &SenderKeyName,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SignalError> {
        let _g = self.lock(name.to_string()).await;
        let mut record = self
            .store
            .sender_key(name)
            .await?
            .ok_or(SignalError::NoSession)?;
        self.with_prepared(|p| record.use_prepared(p));
        let ct = record.encrypt(plaintext)?;
        self.store.store_sender_key(name, &record).await?;
        self.with_prepared(|p| record.keep_prepared(p));
        Ok(ct)
    }

    /// Decrypts a group message from `name.sender`.
    pub async fn group_decrypt(
        &self,
        name: &SenderKeyName,
        bytes: &[u8],
    ) -> Result<Vec<u8>, SignalError> {
        let _g = self.lock(name.to_string()).await;
        let mut record: SenderKeyRecord = self
            .store
            .sender_key(name)
            .await?
            .ok_or(SignalError::NoSession)?;
        self.with_prepared(|p| record.use_prepared(p));
        let pt = record.decrypt(bytes)?;
        self.store.store_sender_key(name, &record).await?;
        self.with_prepared(|p| record.keep_prepared(p));
        Ok(pt)
    }

    /// Takes the lock of one sender key (ours for a group, or a peer's).
    pub async fn lock_sender_key(&self, name: &SenderKeyName) -> SessionLock {
        self.lock(name.to_string()).await
    }

    fn check_key_lock(lock: &SessionLock, name: &SenderKeyName) -> Result<(), SignalError> {
        if lock.key != name.to_string() {
            return Err(SignalError::Store(format!(
                "lock for {} used on {name}",
                lock.key
            )));
        }
        Ok(())
    }

    /// Encrypts a group message with our sender key `name` under its `lock`, creating the key
    /// when there is none; nothing is stored. Also returns the distribution message as of
    /// before this message (what a device without our key needs to read it).
    pub async fn group_encrypt_staged(
        &self,
        lock: &SessionLock,
        name: &SenderKeyName,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>, SignalChanges), SignalError> {
        Self::check_key_lock(lock, name)?;
        let mut record = self.store.sender_key(name).await?.unwrap_or_default();
        self.with_prepared(|p| record.use_prepared(p));
        let distribution = record.distribution().encode();
        let ct = record.encrypt(plaintext)?;
        self.with_prepared(|p| record.keep_prepared(p));
        let changes = SignalChanges {
            sender_keys: vec![(name.clone(), record)],
            ..SignalChanges::default()
        };
        Ok((ct, distribution, changes))
    }

    /// Our current distribution message for `name` (created if needed), staged.
    pub async fn group_distribution_staged(
        &self,
        lock: &SessionLock,
        name: &SenderKeyName,
    ) -> Result<(Vec<u8>, SignalChanges), SignalError> {
        Self::check_key_lock(lock, name)?;
        let mut record = self.store.sender_key(name).await?.unwrap_or_default();
        let d = record.distribution().encode();
        let changes = SignalChanges {
            sender_keys: vec![(name.clone(), record)],
            ..SignalChanges::default()
        };
        Ok((d, changes))
    }

    /// Installs a peer's distribution message (when given) and decrypts `ciphertext` (when
    /// given) with the sender key `name` under its `lock`; nothing is stored. A distribution
    /// alone still yields the record to store.
    pub async fn group_decrypt_staged(
        &self,
        lock: &SessionLock,
        name: &SenderKeyName,
        distribution: Option<&[u8]>,
        ciphertext: Option<&[u8]>,
    ) -> Result<(Option<Vec<u8>>, SignalChanges), SignalError> {
        Self::check_key_lock(lock, name)?;
        let stored = self.store.sender_key(name).await?;
        let mut changed = false;
        let mut record = stored.unwrap_or_default();
        if let Some(d) = distribution {
            record.process(&SenderKeyDistribution::decode(d)?);
            changed = true;
        }
        let plaintext = match ciphertext {
            Some(ct) => {
                if record.is_empty() {
                    return Err(SignalError::NoSession);
                }
                self.with_prepared(|p| record.use_prepared(p));
                let pt = record.decrypt(ct)?;
                self.with_prepared(|p| record.keep_prepared(p));
                changed = true;
                Some(pt)
            }
            None => None,
        };
        let mut changes = SignalChanges::default();
        if changed {
            changes.sender_keys.push((name.clone(), record));
        }
        Ok((plaintext, changes))
    }

    /// Starts our sender key `name` over: the next message distributes a new key, so those
    /// who held the old one (a removed member) cannot read what follows.
    pub async fn rotate_sender_key(&self, name: &SenderKeyName) -> Result<(), SignalError> {
        let _g = self.lock(name.to_string()).await;
        self.store
            .store_sender_key(name, &SenderKeyRecord::new())
            .await?;
        Ok(())
    }

    /// Deletes the session with `addr` (e.g. after the peer's identity changed).
    pub async fn delete_session(&self, addr: &ProtocolAddress) -> Result<(), SignalError> {
        let _g = self.lock_session(addr).await;
        Ok(self.store.delete_session(addr).await?)
    }

    /// The stored record for `addr`.
    pub async fn load_record(
        &self,
        addr: &ProtocolAddress,
    ) -> Result<Option<SessionRecord>, SignalError> {
        Ok(self.store.session(addr).await?)
    }
}
