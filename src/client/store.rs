//! What the client keeps per account, and the storage trait it needs (implemented in memory here
//! and over SQLite by the store layer).

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::binary::Jid;
use crate::signal::store::SignedPreKeyStore;
use crate::signal::{KeyPair, LocalIdentity, MemoryStore, SignalStore, SignedPreKey};

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
#[derive(Clone)]
pub struct Creds {
    /// Long-term Noise key (its public half is in the QR code).
    pub noise: KeyPair,
    /// Signal identity.
    pub identity: KeyPair,
    /// Signal registration id.
    pub registration_id: u32,
    /// Current signed prekey.
    pub signed_pre_key: SignedPreKey,
    /// ADV secret (in the QR code; keys the pair-success HMAC); wiped on drop.
    pub adv_secret: zeroize::Zeroizing<[u8; 32]>,
    /// Set once paired.
    pub me: Option<Me>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key pairs print only their public halves; the ADV secret not at all.
        f.debug_struct("Creds")
            .field("noise", &self.noise)
            .field("identity", &self.identity)
            .field("registration_id", &self.registration_id)
            .field("signed_pre_key", &self.signed_pre_key.id)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
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
            adv_secret: zeroize::Zeroizing::new(rand::random()),
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
}

/// Credentials in memory, with the Signal stores beside them (tests, benches).
pub struct MemoryCreds {
    creds: Mutex<Option<Creds>>,
    signal: Arc<MemoryStore>,
}

impl std::fmt::Debug for MemoryCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let linked = self.creds.lock().map(|c| c.is_some()).unwrap_or(false);
        f.debug_struct("MemoryCreds")
            .field("has_creds", &linked)
            .field("signal", &self.signal)
            .finish()
    }
}

impl Default for MemoryCreds {
    fn default() -> MemoryCreds {
        MemoryCreds {
            creds: Mutex::new(None),
            signal: Arc::new(MemoryStore::empty()),
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
        *self.creds.lock().map_err(poisoned)? = None;
        Ok(())
    }
}
