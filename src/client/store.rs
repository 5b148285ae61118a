//! What the client keeps per account, and the storage trait it needs (implemented in memory here
//! and over SQLite by the store layer).

use std::future::Future;
use std::sync::Mutex;

use crate::binary::Jid;
use crate::signal::{KeyPair, PreKey, SignedPreKey};

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

/// Credentials and prekeys in memory (tests).
#[derive(Debug, Default)]
pub struct MemoryCreds(Mutex<(Option<Creds>, Vec<PreKey>)>);

type MemoryState = (Option<Creds>, Vec<PreKey>);

impl MemoryCreds {
    fn with<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> Result<T, CredsStoreError> {
        Ok(f(&mut *self
            .0
            .lock()
            .map_err(|_| CredsStoreError("poisoned".into()))?))
    }

    /// Prekeys held.
    pub fn pre_key_count(&self) -> usize {
        self.with(|s| s.1.len()).unwrap_or(0)
    }
}

impl CredsStore for MemoryCreds {
    async fn load(&self) -> Result<Option<Creds>, CredsStoreError> {
        self.with(|s| s.0.clone())
    }

    async fn save(&self, creds: &Creds) -> Result<(), CredsStoreError> {
        self.with(|s| s.0 = Some(creds.clone()))
    }

    async fn wipe(&self) -> Result<(), CredsStoreError> {
        self.with(|s| *s = (None, Vec::new()))
    }

    async fn store_pre_keys(&self, keys: &[PreKey]) -> Result<(), CredsStoreError> {
        self.with(|s| s.1.extend_from_slice(keys))
    }

    async fn next_pre_key_id(&self) -> Result<u32, CredsStoreError> {
        self.with(|s| s.1.iter().map(|k| k.id).max().unwrap_or(0) + 1)
    }
}
