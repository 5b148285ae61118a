//! The Signal stores of one account over the shared SQLite pool; records are libsignal protobufs.

use sqlx::SqlitePool;

use super::AccountId;
use super::error::StoreError;
use super::seal::{Sealer, row};
use crate::signal::address::{ProtocolAddress, SenderKeyName};
use crate::signal::store::{
    ApplyChanges, IdentityChange, IdentityStore, PreKey, PreKeyStore, SenderKeyStore, SessionStore,
    SignalChanges, SignedPreKey, SignedPreKeyStore, StoreResult, allocate_pre_key_ids,
    identity_from_bytes, identity_to_bytes,
};
use crate::signal::{KeyPair, LocalIdentity, SenderKeyRecord, SessionRecord};

type SignalStoreError = crate::signal::StoreError;

fn corrupt(e: crate::signal::SignalError) -> SignalStoreError {
    StoreError::Corrupt(e.to_string()).into()
}

fn db(e: sqlx::Error) -> SignalStoreError {
    StoreError::Database(e).into()
}

/// One account's Signal stores; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteSignalStore {
    pool: SqlitePool,
    account: AccountId,
    sealer: Sealer,
}

impl SqliteSignalStore {
    pub(crate) fn new(pool: SqlitePool, account: AccountId, sealer: Sealer) -> SqliteSignalStore {
        SqliteSignalStore {
            pool,
            account,
            sealer,
        }
    }

    fn seal(&self, table: &str, key: impl std::fmt::Display, plain: Vec<u8>) -> Vec<u8> {
        self.sealer.seal(&row(table, self.account, key), plain)
    }

    fn open(
        &self,
        table: &str,
        key: impl std::fmt::Display,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, SignalStoreError> {
        Ok(self.sealer.open(&row(table, self.account, key), stored)?)
    }

    /// The account these stores belong to.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// Stores our identity (replacing any previous one).
    pub async fn set_local_identity(&self, identity: &LocalIdentity) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signal_identity (account_id, registration_id, key_pair) VALUES (?, ?, ?) \
             ON CONFLICT (account_id) DO UPDATE SET registration_id = excluded.registration_id, \
             key_pair = excluded.key_pair",
        )
        .bind(self.account)
        .bind(i64::from(identity.registration_id))
        .bind(self.seal("signal_identity", "", identity_to_bytes(&identity.key_pair)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes `changes` inside the caller's transaction (a message commit puts its row beside
    /// them).
    pub(crate) async fn apply_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        changes: &SignalChanges,
    ) -> Result<(), sqlx::Error> {
        for (addr, key) in &changes.identities {
            sqlx::query(
                "INSERT INTO signal_identities (account_id, address, identity) VALUES (?, ?, ?) \
                 ON CONFLICT (account_id, address) DO UPDATE SET identity = excluded.identity",
            )
            .bind(self.account)
            .bind(addr.to_string())
            .bind(key.as_slice())
            .execute(&mut *conn)
            .await?;
        }
        for id in &changes.removed_pre_keys {
            sqlx::query("DELETE FROM signal_pre_keys WHERE account_id = ? AND key_id = ?")
                .bind(self.account)
                .bind(i64::from(*id))
                .execute(&mut *conn)
                .await?;
        }
        for (addr, record) in &changes.sessions {
            sqlx::query(
                "INSERT INTO signal_sessions (account_id, address, record) VALUES (?, ?, ?) \
                 ON CONFLICT (account_id, address) DO UPDATE SET record = excluded.record",
            )
            .bind(self.account)
            .bind(addr.to_string())
            .bind(self.seal("signal_sessions", addr, record.to_bytes()))
            .execute(&mut *conn)
            .await?;
        }
        for (name, record) in &changes.sender_keys {
            sqlx::query(
                "INSERT INTO signal_sender_keys (account_id, name, record) VALUES (?, ?, ?) \
                 ON CONFLICT (account_id, name) DO UPDATE SET record = excluded.record",
            )
            .bind(self.account)
            .bind(name.to_string())
            .bind(self.seal("signal_sender_keys", name, record.to_bytes()))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Number of one-time prekeys stored.
    pub async fn pre_key_count(&self) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signal_pre_keys WHERE account_id = ?")
                .bind(self.account)
                .fetch_one(&self.pool)
                .await?;
        Ok(n as u64)
    }
}

impl IdentityStore for SqliteSignalStore {
    async fn local_identity(&self) -> StoreResult<LocalIdentity> {
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT registration_id, key_pair FROM signal_identity WHERE account_id = ?",
        )
        .bind(self.account)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let (reg, kp) =
            row.ok_or_else(|| SignalStoreError::from(StoreError::NoIdentity(self.account)))?;
        Ok(LocalIdentity {
            key_pair: identity_from_bytes(&self.open("signal_identity", "", kp)?)
                .map_err(corrupt)?,
            registration_id: reg as u32,
        })
    }

    async fn identity(&self, addr: &ProtocolAddress) -> StoreResult<Option<[u8; 32]>> {
        let row: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT identity FROM signal_identities WHERE account_id = ? AND address = ?",
        )
        .bind(self.account)
        .bind(addr.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|k| {
            <[u8; 32]>::try_from(k.as_slice())
                .map_err(|_| StoreError::Corrupt("identity key length".into()).into())
        })
        .transpose()
    }

    async fn save_identity(
        &self,
        addr: &ProtocolAddress,
        key: &[u8; 32],
    ) -> StoreResult<IdentityChange> {
        // Read and write in one transaction so the change report is exact.
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(db)?;
        let old: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT identity FROM signal_identities WHERE account_id = ? AND address = ?",
        )
        .bind(self.account)
        .bind(addr.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let change = match old {
            None => IdentityChange::New,
            Some(k) if k.as_slice() == key => IdentityChange::Unchanged,
            Some(_) => IdentityChange::Changed,
        };
        if change != IdentityChange::Unchanged {
            sqlx::query(
                "INSERT INTO signal_identities (account_id, address, identity) VALUES (?, ?, ?) \
                 ON CONFLICT (account_id, address) DO UPDATE SET identity = excluded.identity",
            )
            .bind(self.account)
            .bind(addr.to_string())
            .bind(key.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(change)
    }
}

impl PreKeyStore for SqliteSignalStore {
    async fn pre_key(&self, id: u32) -> StoreResult<Option<PreKey>> {
        let row: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT record FROM signal_pre_keys WHERE account_id = ? AND key_id = ?",
        )
        .bind(self.account)
        .bind(i64::from(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| PreKey::from_bytes(&self.open("signal_pre_keys", id, r)?).map_err(corrupt))
            .transpose()
    }

    async fn store_pre_keys(&self, keys: &[PreKey]) -> StoreResult<()> {
        // One transaction for the whole batch (an upload is 50–812 keys).
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(db)?;
        for k in keys {
            sqlx::query(
                "INSERT INTO signal_pre_keys (account_id, key_id, record) VALUES (?, ?, ?) \
                 ON CONFLICT (account_id, key_id) DO UPDATE SET record = excluded.record",
            )
            .bind(self.account)
            .bind(i64::from(k.id))
            .bind(self.seal("signal_pre_keys", k.id, k.to_bytes()))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn create_pre_keys(&self, n: u32) -> StoreResult<Vec<PreKey>> {
        // Key generation (~30 µs each) stays outside the transaction.
        let pairs: Vec<KeyPair> = (0..n).map(|_| KeyPair::generate()).collect();
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(db)?;
        let next: i64 = sqlx::query_scalar("SELECT next_pre_key_id FROM accounts WHERE id = ?")
            .bind(self.account)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let live: std::collections::HashSet<u32> =
            sqlx::query_scalar::<_, i64>("SELECT key_id FROM signal_pre_keys WHERE account_id = ?")
                .bind(self.account)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .into_iter()
                .map(|id| id as u32)
                .collect();
        let (ids, next) =
            allocate_pre_key_ids(next.max(1) as u64, pairs.len(), |id| live.contains(&id));
        let keys: Vec<PreKey> = ids
            .into_iter()
            .zip(pairs)
            .map(|(id, key_pair)| PreKey { id, key_pair })
            .collect();
        for k in &keys {
            sqlx::query(
                "INSERT INTO signal_pre_keys (account_id, key_id, record) VALUES (?, ?, ?)",
            )
            .bind(self.account)
            .bind(i64::from(k.id))
            .bind(self.seal("signal_pre_keys", k.id, k.to_bytes()))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        // The counter moves with the keys, in the same transaction.
        sqlx::query("UPDATE accounts SET next_pre_key_id = ? WHERE id = ?")
            .bind(i64::try_from(next).unwrap_or(i64::MAX))
            .bind(self.account)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(keys)
    }

    async fn pre_keys_allocated(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT next_pre_key_id FROM accounts WHERE id = ?")
            .bind(self.account)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok((n.max(1) - 1) as u64)
    }

    async fn remove_pre_key(&self, id: u32) -> StoreResult<()> {
        sqlx::query("DELETE FROM signal_pre_keys WHERE account_id = ? AND key_id = ?")
            .bind(self.account)
            .bind(i64::from(id))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

impl SignedPreKeyStore for SqliteSignalStore {
    async fn signed_pre_key(&self, id: u32) -> StoreResult<Option<SignedPreKey>> {
        let row: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT record FROM signal_signed_pre_keys WHERE account_id = ? AND key_id = ?",
        )
        .bind(self.account)
        .bind(i64::from(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            SignedPreKey::from_bytes(&self.open("signal_signed_pre_keys", id, r)?).map_err(corrupt)
        })
        .transpose()
    }

    async fn store_signed_pre_key(&self, key: &SignedPreKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signal_signed_pre_keys (account_id, key_id, record) VALUES (?, ?, ?) \
             ON CONFLICT (account_id, key_id) DO UPDATE SET record = excluded.record",
        )
        .bind(self.account)
        .bind(i64::from(key.id))
        .bind(self.seal("signal_signed_pre_keys", key.id, key.to_bytes()))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}

impl SessionStore for SqliteSignalStore {
    async fn session(&self, addr: &ProtocolAddress) -> StoreResult<Option<SessionRecord>> {
        let row: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT record FROM signal_sessions WHERE account_id = ? AND address = ?",
        )
        .bind(self.account)
        .bind(addr.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            SessionRecord::from_bytes(&self.open("signal_sessions", addr, r)?).map_err(corrupt)
        })
        .transpose()
    }

    async fn store_session(
        &self,
        addr: &ProtocolAddress,
        record: &SessionRecord,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signal_sessions (account_id, address, record) VALUES (?, ?, ?) \
             ON CONFLICT (account_id, address) DO UPDATE SET record = excluded.record",
        )
        .bind(self.account)
        .bind(addr.to_string())
        .bind(self.seal("signal_sessions", addr, record.to_bytes()))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_session(&self, addr: &ProtocolAddress) -> StoreResult<()> {
        sqlx::query("DELETE FROM signal_sessions WHERE account_id = ? AND address = ?")
            .bind(self.account)
            .bind(addr.to_string())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

impl SenderKeyStore for SqliteSignalStore {
    async fn sender_key(&self, name: &SenderKeyName) -> StoreResult<Option<SenderKeyRecord>> {
        let row: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT record FROM signal_sender_keys WHERE account_id = ? AND name = ?",
        )
        .bind(self.account)
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            SenderKeyRecord::from_bytes(&self.open("signal_sender_keys", name, r)?).map_err(corrupt)
        })
        .transpose()
    }

    async fn store_sender_key(
        &self,
        name: &SenderKeyName,
        record: &SenderKeyRecord,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signal_sender_keys (account_id, name, record) VALUES (?, ?, ?) \
             ON CONFLICT (account_id, name) DO UPDATE SET record = excluded.record",
        )
        .bind(self.account)
        .bind(name.to_string())
        .bind(self.seal("signal_sender_keys", name, record.to_bytes()))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}

impl ApplyChanges for SqliteSignalStore {
    async fn apply(&self, changes: &SignalChanges) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(db)?;
        self.apply_in(&mut tx, changes).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }
}
