//! What the client keeps per account, and the storage trait it needs (implemented in memory here
//! and over SQLite by the store layer).

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::binary::Jid;
use crate::signal::store::{PreKeyStore, SignedPreKeyStore};
use crate::signal::{KeyPair, LocalIdentity, MemoryStore, PreKey, SignalStore, SignedPreKey};

/// Our own identity once paired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// Device JID on the phone-number server.
    pub jid: Jid,
    /// Device JID on the LID server.
    pub lid: Option<Jid>,
    /// The phone's platform.
    pub platform: Option<String>,
    /// Business name.
    pub business_name: Option<String>,
    /// Push name (display name).
    pub push_name: Option<String>,
    /// ADVSignedDeviceIdentity with our device signature and the account key.
    pub signed_identity: Vec<u8>,
    /// The phone's identity key.
    pub account_signature_key: [u8; 32],
}

/// The keys and identity of one account's companion device.
#[derive(Debug, Clone)]
pub struct Creds {
    /// Long-term Noise key (its public half is in the QR code).
    pub noise: KeyPair,
    /// Signal identity.
    pub identity: KeyPair,
    /// Signal registration id.
    pub registration_id: u32,
    /// Current signed prekey.
    pub signed_pre_key: SignedPreKey,
    /// ADV secret (in the QR code; keys the pair-success HMAC).
    pub adv_secret: [u8; 32],
    /// Set once paired.
    pub me: Option<Me>,
}

impl Creds {
    /// Fresh credentials for a new device (signed prekey id 1, as all references do).
    pub fn generate(now_ms: u64) -> Creds {
        let identity = KeyPair::generate();
        let signed_pre_key = SignedPreKey::generate(1, &identity, now_ms);
        Creds {
            noise: KeyPair::generate(),
            identity,
            // Signal's usual range 1..=16380.
            registration_id: 1 + rand::random::<u32>() % 16380,
            signed_pre_key,
            adv_secret: rand::random(),
            me: None,
        }
    }
}

/// Storage failed; the message names the backend's error (never key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential store: {0}")]
pub struct CredsStoreError(pub String);

/// Where a client keeps its credentials.
pub trait CredsStore: Send + Sync + 'static {
    /// The account's Signal stores (sessions, peer identities, prekeys); they share the identity
    /// and prekeys with these credentials.
    type Signal: SignalStore + Clone + 'static;
    /// A handle on the account's Signal stores.
    fn signal(&self) -> Self::Signal;
    /// The stored credentials, if any.
    fn load(&self) -> impl Future<Output = Result<Option<Creds>, CredsStoreError>> + Send;
    /// Stores (replaces) the credentials.
    fn save(&self, creds: &Creds) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Deletes the credentials and every key of the account (logged out).
    fn wipe(&self) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Stores one-time prekeys before they are uploaded.
    fn store_pre_keys(
        &self,
        keys: &[PreKey],
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// The id for the next new prekey (1 + the highest ever stored).
    fn next_pre_key_id(&self) -> impl Future<Output = Result<u32, CredsStoreError>> + Send;
}

/// Credentials in memory, with the Signal stores beside them (tests, benches).
#[derive(Debug)]
pub struct MemoryCreds {
    creds: Mutex<Option<Creds>>,
    signal: Arc<MemoryStore>,
    /// Next prekey id: ids only grow, even when the highest key is consumed.
    next_pre_key: std::sync::atomic::AtomicU32,
}

impl Default for MemoryCreds {
    fn default() -> MemoryCreds {
        MemoryCreds {
            creds: Mutex::new(None),
            signal: Arc::new(MemoryStore::empty()),
            next_pre_key: std::sync::atomic::AtomicU32::new(1),
        }
    }
}

fn poisoned<T>(_: T) -> CredsStoreError {
    CredsStoreError("poisoned".into())
}

fn signal_err(e: crate::signal::StoreError) -> CredsStoreError {
    CredsStoreError(e.to_string())
}

impl MemoryCreds {
    /// Prekeys held.
    pub fn pre_key_count(&self) -> usize {
        self.signal.pre_key_count()
    }
}

impl CredsStore for MemoryCreds {
    type Signal = Arc<MemoryStore>;

    fn signal(&self) -> Arc<MemoryStore> {
        self.signal.clone()
    }

    async fn load(&self) -> Result<Option<Creds>, CredsStoreError> {
        Ok(self.creds.lock().map_err(poisoned)?.clone())
    }

    async fn save(&self, creds: &Creds) -> Result<(), CredsStoreError> {
        let identity = LocalIdentity {
            key_pair: creds.identity.clone(),
            registration_id: creds.registration_id,
        };
        // New keys (a new device): the Signal state of the old ones is void.
        if self.signal.identity().map(|i| i.key_pair.public) != Some(identity.key_pair.public) {
            self.signal.reset(Some(identity));
        }
        self.signal
            .store_signed_pre_key(&creds.signed_pre_key)
            .await
            .map_err(signal_err)?;
        *self.creds.lock().map_err(poisoned)? = Some(creds.clone());
        Ok(())
    }

    async fn wipe(&self) -> Result<(), CredsStoreError> {
        self.signal.reset(None);
        self.next_pre_key
            .store(1, std::sync::atomic::Ordering::Relaxed);
        *self.creds.lock().map_err(poisoned)? = None;
        Ok(())
    }

    async fn store_pre_keys(&self, keys: &[PreKey]) -> Result<(), CredsStoreError> {
        self.signal.store_pre_keys(keys).await.map_err(signal_err)?;
        if let Some(max) = keys.iter().map(|k| k.id).max() {
            self.next_pre_key
                .fetch_max(max + 1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    async fn next_pre_key_id(&self) -> Result<u32, CredsStoreError> {
        Ok(self.next_pre_key.load(std::sync::atomic::Ordering::Relaxed))
    }
}
