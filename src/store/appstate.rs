//! App-state sync of one account over the shared pool (migration 0020): sync keys (sealed like
//! other key material), and per collection the verified version, LTHash and live records.

use std::collections::HashMap;

use sqlx::Row;

use super::creds::{SqliteCreds, err};
use crate::client::account::ChatChange;
use crate::client::appstate_store::{
    AppStateCommit, AppStateKey, AppStateRecord, AppStateStore, CHAT_FLAG_KINDS, CollectionVersion,
    flags_dropped_by, index_prefix,
};
use crate::client::store::CredsStoreError;
use crate::util::bytes::array32;
use crate::util::hex;

/// Index MACs looked up per query (SQLite's bound-parameter limit is far above this).
const LOOKUP_CHUNK: usize = 500;
/// Records written per multi-row statement: 6 bound values each, 3,000 a statement, under
/// SQLite's limit on bound parameters (32,766 since 3.32; 999 before, which the bundled
/// SQLite is newer than).
const WRITE_CHUNK: usize = 500;

fn key_of(s: &SqliteCreds, r: &sqlx::sqlite::SqliteRow) -> Result<AppStateKey, CredsStoreError> {
    let id: Vec<u8> = r.try_get("key_id").map_err(err)?;
    let data = s.open(
        "appstate_keys",
        hex::encode(&id),
        r.try_get("key_data").map_err(err)?,
    )?;
    let data = array32(&data).ok_or_else(|| CredsStoreError("corrupt app-state key".into()))?;
    Ok(AppStateKey {
        id,
        data: zeroize::Zeroizing::new(data),
        created: r.try_get("created").map_err(err)?,
    })
}

fn record_of(
    s: &SqliteCreds,
    collection: &str,
    r: &sqlx::sqlite::SqliteRow,
) -> Result<AppStateRecord, CredsStoreError> {
    let mac = |col: &str| -> Result<[u8; 32], CredsStoreError> {
        let v: Vec<u8> = r.try_get(col).map_err(err)?;
        array32(&v).ok_or_else(|| CredsStoreError(format!("corrupt app-state {col}")))
    };
    let index_mac = mac("index_mac")?;
    let data = s.open(
        "appstate_records",
        record_key(collection, &index_mac),
        r.try_get("data").map_err(err)?,
    )?;
    Ok(AppStateRecord {
        index_mac,
        value_mac: mac("value_mac")?,
        index: r.try_get("idx").map_err(err)?,
        data,
    })
}

/// A record's identity for sealing: its `data` is the decrypted action, and may be a secret
/// (the `nct_salt_sync` salt), so it is sealed like key material when a store key is set.
fn record_key(collection: &str, index_mac: &[u8; 32]) -> String {
    format!("{collection}/{}", hex::encode(index_mac))
}

impl AppStateStore for SqliteCreds {
    async fn add_app_state_keys(&self, keys: &[AppStateKey]) -> Result<usize, CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        let mut new = 0;
        for k in keys {
            let done = sqlx::query(
                "INSERT OR IGNORE INTO appstate_keys (account_id, key_id, key_data, created) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(self.account)
            .bind(&k.id)
            .bind(self.seal("appstate_keys", hex::encode(&k.id), k.data.to_vec()))
            .bind(k.created)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            new += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        tx.commit().await.map_err(err)?;
        Ok(new)
    }

    async fn app_state_key(&self, id: &[u8]) -> Result<Option<AppStateKey>, CredsStoreError> {
        let row = sqlx::query(
            "SELECT key_id, key_data, created FROM appstate_keys WHERE account_id = ? AND key_id = ?",
        )
        .bind(self.account)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(|r| key_of(self, &r)).transpose()
    }

    async fn latest_app_state_key(&self) -> Result<Option<AppStateKey>, CredsStoreError> {
        let row = sqlx::query(
            "SELECT key_id, key_data, created FROM appstate_keys WHERE account_id = ? \
             ORDER BY created DESC, key_id DESC LIMIT 1",
        )
        .bind(self.account)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(|r| key_of(self, &r)).transpose()
    }

    async fn app_state_version(
        &self,
        collection: &str,
    ) -> Result<Option<CollectionVersion>, CredsStoreError> {
        let row = sqlx::query(
            "SELECT version, hash FROM appstate_collections WHERE account_id = ? AND name = ?",
        )
        .bind(self.account)
        .bind(collection)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        let Some(r) = row else { return Ok(None) };
        let version: i64 = r.try_get("version").map_err(err)?;
        let hash: Vec<u8> = r.try_get("hash").map_err(err)?;
        let hash: [u8; 128] = hash
            .try_into()
            .map_err(|_| CredsStoreError("corrupt app-state hash".into()))?;
        Ok(Some(CollectionVersion {
            version: u64::try_from(version).unwrap_or(0),
            hash,
        }))
    }

    async fn value_macs(
        &self,
        collection: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], [u8; 32]>, CredsStoreError> {
        let mut out = HashMap::new();
        for chunk in index_macs.chunks(LOOKUP_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT index_mac, value_mac FROM appstate_records \
                 WHERE account_id = ? AND collection = ? AND index_mac IN ({marks})"
            );
            let mut q = sqlx::query(&sql).bind(self.account).bind(collection);
            for m in chunk {
                q = q.bind(m.to_vec());
            }
            for r in q.fetch_all(&self.pool).await.map_err(err)? {
                let i: Vec<u8> = r.try_get("index_mac").map_err(err)?;
                let v: Vec<u8> = r.try_get("value_mac").map_err(err)?;
                if let (Some(i), Some(v)) = (array32(&i), array32(&v)) {
                    out.insert(i, v);
                }
            }
        }
        Ok(out)
    }

    async fn app_state_records(
        &self,
        collection: &str,
        prefix: &[&str],
    ) -> Result<Vec<AppStateRecord>, CredsStoreError> {
        let p = index_prefix(prefix);
        // A byte-wise prefix test: LIKE would read `_` and `%` in a JID as wildcards.
        let rows = sqlx::query(
            "SELECT index_mac, value_mac, idx, data FROM appstate_records \
             WHERE account_id = ? AND collection = ? AND substr(idx, 1, length(?)) = ?",
        )
        .bind(self.account)
        .bind(collection)
        .bind(&p)
        .bind(&p)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| record_of(self, collection, r))
            .collect()
    }

    async fn commit_app_state(
        &self,
        c: &AppStateCommit,
    ) -> Result<Vec<ChatChange>, CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        let mut cleared = Vec::new();
        if c.replace {
            // The chat flags of records the snapshot no longer holds go with them, in this
            // transaction: the records and the chats they describe never disagree.
            let marks = vec!["substr(idx, 1, length(?)) = ?"; CHAT_FLAG_KINDS.len()].join(" OR ");
            let sql = format!(
                "SELECT index_mac, idx FROM appstate_records \
                 WHERE account_id = ? AND collection = ? AND ({marks})"
            );
            let mut q = sqlx::query(&sql).bind(self.account).bind(&c.collection);
            let prefixes: Vec<String> = CHAT_FLAG_KINDS
                .iter()
                .map(|k| index_prefix(&[*k]))
                .collect();
            for p in &prefixes {
                q = q.bind(p).bind(p);
            }
            let old: Vec<([u8; 32], String)> = q
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?
                .iter()
                .filter_map(|r| {
                    let mac: Vec<u8> = r.try_get("index_mac").ok()?;
                    Some((array32(&mac)?, r.try_get("idx").ok()?))
                })
                .collect();
            cleared = flags_dropped_by(old.iter().map(|(m, i)| (m, i.as_str())), c);
            for ch in &cleared {
                super::account::apply_chat_change(&mut tx, self.account, ch)
                    .await
                    .map_err(err)?;
            }
            sqlx::query("DELETE FROM appstate_records WHERE account_id = ? AND collection = ?")
                .bind(self.account)
                .bind(&c.collection)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        // Multi-row statements, [`WRITE_CHUNK`] rows each: one round trip to SQLite per chunk,
        // not per record (a snapshot holds tens of thousands).
        for chunk in c.removed.chunks(WRITE_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "DELETE FROM appstate_records WHERE account_id = ? AND collection = ? \
                 AND index_mac IN ({marks})"
            );
            let mut q = sqlx::query(&sql).bind(self.account).bind(&c.collection);
            for r in chunk {
                q = q.bind(r.to_vec());
            }
            q.execute(&mut *tx).await.map_err(err)?;
        }
        for chunk in c.added.chunks(WRITE_CHUNK) {
            let rows = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            // Rows apply in order: a record set twice in one commit ends as its last value.
            let sql = format!(
                "INSERT INTO appstate_records \
                 (account_id, collection, index_mac, value_mac, idx, data) VALUES {rows} \
                 ON CONFLICT (account_id, collection, index_mac) DO UPDATE SET \
                 value_mac = excluded.value_mac, idx = excluded.idx, data = excluded.data"
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(self.account)
                    .bind(&c.collection)
                    .bind(r.index_mac.to_vec())
                    .bind(r.value_mac.to_vec())
                    .bind(&r.index)
                    .bind(self.seal(
                        "appstate_records",
                        record_key(&c.collection, &r.index_mac),
                        r.data.clone(),
                    ));
            }
            q.execute(&mut *tx).await.map_err(err)?;
        }
        for ch in &c.chats {
            super::account::apply_chat_change(&mut tx, self.account, ch)
                .await
                .map_err(err)?;
        }
        super::account::apply_contact_changes(&mut tx, self.account, &c.contacts)
            .await
            .map_err(err)?;
        if let Some(salt) = &c.nct_salt {
            // An `nct_salt_sync` SET or REMOVE: also ends history-sync backfill for good.
            let sealed = salt
                .as_ref()
                .map(|s| self.seal("nct_salt", "salt", s.clone()));
            sqlx::query(
                "INSERT INTO nct_salt (account_id, salt, sync_seen) VALUES (?, ?, 1) \
                 ON CONFLICT (account_id) DO UPDATE SET salt = excluded.salt, sync_seen = 1",
            )
            .bind(self.account)
            .bind(sealed)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        sqlx::query(
            "INSERT INTO appstate_collections (account_id, name, version, hash) VALUES (?, ?, ?, ?) \
             ON CONFLICT (account_id, name) DO UPDATE SET version = excluded.version, \
             hash = excluded.hash",
        )
        .bind(self.account)
        .bind(&c.collection)
        .bind(i64::try_from(c.state.version).unwrap_or(i64::MAX))
        .bind(c.state.hash.to_vec())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(cleared)
    }

    async fn reset_app_state(&self, collection: &str) -> Result<(), CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        for sql in [
            "DELETE FROM appstate_records WHERE account_id = ? AND collection = ?",
            "DELETE FROM appstate_collections WHERE account_id = ? AND name = ?",
        ] {
            sqlx::query(sql)
                .bind(self.account)
                .bind(collection)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
}
