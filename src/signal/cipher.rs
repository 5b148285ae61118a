//! Store-backed Signal operations for one account: load a record, run the protocol core, save the
//! record, all under a per-address lock so two tasks never race one ratchet.

use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use tokio::sync::{Mutex, MutexGuard};

use super::address::{ProtocolAddress, SenderKeyName};
use super::curve::OsKeys;
use super::error::SignalError;
use super::group::{PreparedKeys, SenderKeyDistribution, SenderKeyRecord};
use super::ratchet::{PreKeySignalMessage, SignalMessage};
use super::session::{CiphertextMessage, SessionRecord};
use super::store::{IdentityChange, SignalStore};
use super::x3dh::{PreKeyBundle, initiate};

/// Lock stripes shared by every account in the process: bounded memory however many accounts
/// there are; unrelated addresses only rarely share a stripe.
const STRIPES: usize = 4096;
static LOCKS: LazyLock<Vec<Mutex<()>>> =
    LazyLock::new(|| (0..STRIPES).map(|_| Mutex::new(())).collect());

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
    scope: String,
    trust: IdentityTrust,
    /// Sender-key signing and verifying keys, prepared once per key instead of per message.
    prepared: std::sync::Mutex<PreparedKeys>,
}

impl<S: SignalStore> SessionCipher<S> {
    /// A cipher over `store`; `scope` names the account, so locks of different accounts differ.
    pub fn new(store: S, scope: impl Into<String>, trust: IdentityTrust) -> SessionCipher<S> {
        SessionCipher {
            store,
            scope: scope.into(),
            trust,
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

    async fn lock(&self, key: &str) -> MutexGuard<'static, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.scope.hash(&mut h);
        key.hash(&mut h);
        LOCKS[(h.finish() as usize) % STRIPES].lock().await
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
        let _g = self.lock(&addr.to_string()).await;
        let change = self.check_identity(addr, &bundle.identity_key).await?;
        let ours = self.store.local_identity().await?;
        let state = initiate(&ours, bundle, &mut OsKeys)?;
        let mut record = self.store.session(addr).await?.unwrap_or_default();
        record.promote(state);
        self.store.store_session(addr, &record).await?;
        self.store.save_identity(addr, &bundle.identity_key).await?;
        Ok(change)
    }

    /// Encrypts for `addr` with its current session.
    pub async fn encrypt(
        &self,
        addr: &ProtocolAddress,
        plaintext: &[u8],
    ) -> Result<CiphertextMessage, SignalError> {
        let _g = self.lock(&addr.to_string()).await;
        let mut record = self
            .store
            .session(addr)
            .await?
            .ok_or(SignalError::NoSession)?;
        let ct = record.encrypt(plaintext)?;
        self.store.store_session(addr, &record).await?;
        Ok(ct)
    }

    /// Decrypts a `pkmsg` or `msg` from `addr`.
    pub async fn decrypt(
        &self,
        addr: &ProtocolAddress,
        kind: EncType,
        bytes: &[u8],
    ) -> Result<Decrypted, SignalError> {
        let _g = self.lock(&addr.to_string()).await;
        let mut record = self.store.session(addr).await?.unwrap_or_default();
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
                self.store.save_identity(addr, &msg.identity_key).await?;
                if let Some(id) = consumed {
                    self.store.remove_pre_key(id).await?;
                }
                (plaintext, change)
            }
        };
        self.store.store_session(addr, &record).await?;
        Ok(Decrypted {
            plaintext,
            identity,
        })
    }

    /// Our SenderKeyDistributionMessage for `group` (creating our sender key if needed).
    pub async fn group_distribution(&self, name: &SenderKeyName) -> Result<Vec<u8>, SignalError> {
        let _g = self.lock(&name.to_string()).await;
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
        let _g = self.lock(&name.to_string()).await;
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
        let _g = self.lock(&name.to_string()).await;
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
        let _g = self.lock(&name.to_string()).await;
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

    /// Deletes the session with `addr` (e.g. after the peer's identity changed).
    pub async fn delete_session(&self, addr: &ProtocolAddress) -> Result<(), SignalError> {
        let _g = self.lock(&addr.to_string()).await;
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
