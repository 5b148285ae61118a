//! Optional envelope encryption of key material at rest. With a store key configured
//! (`WA_GATEWAY_STORE_KEY`), every private key and every session or sender-key record is written
//! as `"WGS1" ‖ nonce(12) ‖ AES-256-GCM(value)`, the row's identity (table, account, key) as
//! associated data: a database copied without the key yields no key material, and a value moved
//! to another row does not decrypt. Off by default. Public values (peers' identities, JIDs) stay
//! plain so the database remains inspectable.

use std::sync::Arc;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use zeroize::Zeroizing;

use super::error::StoreError;

/// Prefix of a sealed value.
const MAGIC: &[u8; 4] = b"WGS1";
const NONCE: usize = 12;
const TAG: usize = 16;

/// What `store_meta` holds under `key_check`: proves at start-up that the configured key is the
/// one the database was sealed with.
const CHECK: &[u8] = b"wa-gateway store key check";

/// A 32-byte store key; wiped on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

impl StoreKey {
    /// The key from its base64 form (32 bytes).
    pub fn from_base64(text: &str) -> Option<StoreKey> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok()?,
        );
        let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(StoreKey(Zeroizing::new(key)))
    }

    /// A random key (tests; `openssl rand -base64 32` makes one for a deployment).
    pub fn generate() -> StoreKey {
        StoreKey(Zeroizing::new(rand::random()))
    }

    /// The key in base64, for handing to a configuration.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(*self.0))
    }
}

/// Seals and opens stored values; a no-op without a key. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Sealer(Option<Arc<Aes256Gcm>>);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer {{ enabled: {} }}", self.0.is_some())
    }
}

/// Associated data naming a value's row: a sealed value only opens where it was written.
pub(crate) fn row(table: &str, account: i64, key: impl std::fmt::Display) -> Vec<u8> {
    format!("{table}\0{account}\0{key}").into_bytes()
}

fn is_sealed(v: &[u8]) -> bool {
    // Longer than an empty sealed value, so a raw 32-byte key can never be mistaken for one.
    v.len() > MAGIC.len() + NONCE + TAG && v.starts_with(MAGIC)
}

impl Sealer {
    pub(crate) fn new(key: Option<&StoreKey>) -> Sealer {
        Sealer(key.map(|k| Arc::new(Aes256Gcm::new((&*k.0).into()))))
    }

    pub(crate) fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The value to store for `plain` in the row `ad`.
    pub(crate) fn seal(&self, ad: &[u8], plain: Vec<u8>) -> Vec<u8> {
        let Some(c) = &self.0 else { return plain };
        let nonce: [u8; NONCE] = rand::random();
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE + plain.len() + TAG);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(&plain);
        drop(Zeroizing::new(plain));
        // AES-GCM only refuses messages of 64 GiB and more.
        if let Ok(tag) =
            c.encrypt_in_place_detached(Nonce::from_slice(&nonce), ad, &mut out[start..])
        {
            out.extend_from_slice(&tag);
        }
        out
    }

    /// The plain value of a stored one. Without a key, a sealed value is an error that says a
    /// key is needed; with one, a plain (older) value is read as it is and sealed when next
    /// written.
    pub(crate) fn open(&self, ad: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        if !is_sealed(&stored) {
            return Ok(stored);
        }
        let Some(c) = &self.0 else {
            return Err(StoreError::Sealed);
        };
        let (head, tag) = stored.split_at(stored.len() - TAG);
        let nonce = &head[MAGIC.len()..MAGIC.len() + NONCE];
        let mut plain = head[MAGIC.len() + NONCE..].to_vec();
        c.decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            ad,
            &mut plain,
            Tag::from_slice(tag),
        )
        .map_err(|_| StoreError::Unsealable)?;
        Ok(plain)
    }

    /// Checks the configured key against the database (or records it on first use) and refuses
    /// a database sealed with another key, or a sealed one opened without a key.
    pub(crate) async fn verify(&self, pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM store_meta WHERE name = 'key_check'")
                .fetch_optional(pool)
                .await?;
        match (stored, self.enabled()) {
            (Some(v), true) => match self.open(b"store_meta\0key_check", v) {
                Ok(p) if p == CHECK => Ok(()),
                _ => Err(StoreError::WrongKey),
            },
            (Some(_), false) => Err(StoreError::Sealed),
            (None, true) => {
                sqlx::query("INSERT INTO store_meta (name, value) VALUES ('key_check', ?)")
                    .bind(self.seal(b"store_meta\0key_check", CHECK.to_vec()))
                    .execute(pool)
                    .await?;
                Ok(())
            }
            (None, false) => Ok(()),
        }
    }
}
