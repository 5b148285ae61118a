//! The client's credentials for one account over the shared pool. Saving writes the creds row,
//! the Signal identity and the signed prekey in one transaction; wiping removes every key of the
//! account (logged out) but keeps the account row.

use sqlx::{Row, SqlitePool};

use super::AccountId;
use super::messages::Committer;
use super::rows::{COLUMNS, LISTED, from_row};
use super::seal::{Sealer, row};
use crate::binary::Jid;
use crate::client::messages::{Committed, MessageStatus, StatusUpdate, StoredMessage};
use crate::client::store::{Creds, CredsStore, CredsStoreError, Me, NctSalt};
use crate::signal::KeyPair;
use crate::signal::SignalChanges;
use crate::signal::store::{SignedPreKey, identity_from_bytes, identity_to_bytes};

/// One account's credentials; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteCreds {
    pub(super) pool: SqlitePool,
    pub(super) account: AccountId,
    sealer: Sealer,
    committer: Committer,
}

impl SqliteCreds {
    pub(crate) fn new(
        pool: SqlitePool,
        account: AccountId,
        sealer: Sealer,
        committer: Committer,
    ) -> SqliteCreds {
        SqliteCreds {
            pool,
            account,
            sealer,
            committer,
        }
    }

    pub(super) fn seal(&self, table: &str, key: impl std::fmt::Display, plain: Vec<u8>) -> Vec<u8> {
        self.sealer.seal(&row(table, self.account, key), plain)
    }

    pub(super) fn open(
        &self,
        table: &str,
        key: impl std::fmt::Display,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, CredsStoreError> {
        self.sealer
            .open(&row(table, self.account, key), stored)
            .map_err(err)
    }

    /// Moves sealed `record` of `table` from key `from` to key `to` (column `key`), sealed
    /// anew for its new row; a record already at `to` is kept (it is newer).
    async fn move_sealed(
        &self,
        conn: &mut sqlx::SqliteConnection,
        table: &'static str,
        key: &'static str,
        from: &str,
        record: Vec<u8>,
        to: &str,
    ) -> Result<(), CredsStoreError> {
        let plain = self.open(table, from, record)?;
        sqlx::query(&format!(
            "INSERT INTO {table} (account_id, {key}, record) VALUES (?, ?, ?) \
             ON CONFLICT (account_id, {key}) DO NOTHING"
        ))
        .bind(self.account)
        .bind(to)
        .bind(self.seal(table, to, plain))
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE account_id = ? AND {key} = ?"
        ))
        .bind(self.account)
        .bind(from)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        Ok(())
    }
}

pub(super) fn err(e: impl std::fmt::Display) -> CredsStoreError {
    CredsStoreError(e.to_string())
}

fn key32(v: Option<Vec<u8>>, what: &str) -> Result<[u8; 32], CredsStoreError> {
    v.and_then(|b| crate::util::bytes::array32(&b))
        .ok_or_else(|| CredsStoreError(format!("corrupt {what}")))
}

/// What a logout deletes: the device's keys and what contacts gave that link (their privacy
/// tokens). Messages and the PN↔LID table (facts about contacts) stay.
const TABLES: [&str; 14] = [
    "creds",
    "signal_identity",
    "signal_identities",
    "signal_pre_keys",
    "signal_signed_pre_keys",
    "signal_sessions",
    "signal_sender_keys",
    "privacy_tokens",
    "group_key_holders",
    "appstate_keys",
    "appstate_collections",
    "appstate_records",
    // The salt came to this link (app state, history): a new link learns it again.
    "nct_salt",
    // Kept history notifications hold media keys; their chunks belong to the old link.
    "pending_history",
];

impl CredsStore for SqliteCreds {
    type Signal = super::SqliteSignalStore;

    fn signal(&self) -> super::SqliteSignalStore {
        super::SqliteSignalStore::new(self.pool.clone(), self.account, self.sealer.clone())
    }

    async fn load(&self) -> Result<Option<Creds>, CredsStoreError> {
        let row_found = sqlx::query(
            "SELECT c.noise_private, c.adv_secret, c.signed_pre_key_id, c.jid, c.lid, c.platform, \
             c.business_name, c.push_name, c.signed_identity, c.account_signature_key, \
             i.registration_id, i.key_pair, s.record \
             FROM creds c JOIN signal_identity i ON i.account_id = c.account_id \
             JOIN signal_signed_pre_keys s ON s.account_id = c.account_id AND s.key_id = c.signed_pre_key_id \
             WHERE c.account_id = ?",
        )
        .bind(self.account)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        let Some(r) = row_found else { return Ok(None) };
        let jid: Option<String> = r.try_get("jid").map_err(err)?;
        let signed_id: i64 = r.try_get("signed_pre_key_id").map_err(err)?;
        let me = match jid {
            Some(j) => Some(Me {
                jid: j.parse::<Jid>().map_err(err)?,
                lid: r
                    .try_get::<Option<String>, _>("lid")
                    .map_err(err)?
                    .and_then(|l| l.parse().ok()),
                platform: r.try_get("platform").map_err(err)?,
                business_name: r.try_get("business_name").map_err(err)?,
                push_name: r.try_get("push_name").map_err(err)?,
                signed_identity: r
                    .try_get::<Option<Vec<u8>>, _>("signed_identity")
                    .map_err(err)?
                    .unwrap_or_default(),
                account_signature_key: key32(
                    r.try_get("account_signature_key").map_err(err)?,
                    "account key",
                )?,
            }),
            None => None,
        };
        Ok(Some(Creds {
            noise: KeyPair::from_private(key32(
                Some(self.open(
                    "creds",
                    "noise_private",
                    r.try_get("noise_private").map_err(err)?,
                )?),
                "noise key",
            )?),
            identity: identity_from_bytes(&self.open(
                "signal_identity",
                "",
                r.try_get::<Vec<u8>, _>("key_pair").map_err(err)?,
            )?)
            .map_err(err)?,
            registration_id: r.try_get::<i64, _>("registration_id").map_err(err)? as u32,
            signed_pre_key: SignedPreKey::from_bytes(&self.open(
                "signal_signed_pre_keys",
                signed_id,
                r.try_get::<Vec<u8>, _>("record").map_err(err)?,
            )?)
            .map_err(err)?,
            adv_secret: zeroize::Zeroizing::new(key32(
                Some(self.open("creds", "adv_secret", r.try_get("adv_secret").map_err(err)?)?),
                "adv secret",
            )?),
            me,
        }))
    }

    async fn save(&self, c: &Creds) -> Result<(), CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        sqlx::query(
            "INSERT INTO signal_identity (account_id, registration_id, key_pair) VALUES (?, ?, ?) \
             ON CONFLICT (account_id) DO UPDATE SET registration_id = excluded.registration_id, key_pair = excluded.key_pair",
        )
        .bind(self.account)
        .bind(i64::from(c.registration_id))
        .bind(self.seal("signal_identity", "", identity_to_bytes(&c.identity)))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "INSERT INTO signal_signed_pre_keys (account_id, key_id, record) VALUES (?, ?, ?) \
             ON CONFLICT (account_id, key_id) DO UPDATE SET record = excluded.record",
        )
        .bind(self.account)
        .bind(i64::from(c.signed_pre_key.id))
        .bind(self.seal(
            "signal_signed_pre_keys",
            c.signed_pre_key.id,
            c.signed_pre_key.to_bytes(),
        ))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let me = c.me.as_ref();
        sqlx::query(
            "INSERT INTO creds (account_id, noise_private, adv_secret, signed_pre_key_id, jid, lid, platform, \
             business_name, push_name, signed_identity, account_signature_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (account_id) DO UPDATE SET noise_private = excluded.noise_private, \
             adv_secret = excluded.adv_secret, signed_pre_key_id = excluded.signed_pre_key_id, jid = excluded.jid, \
             lid = excluded.lid, platform = excluded.platform, business_name = excluded.business_name, \
             push_name = excluded.push_name, signed_identity = excluded.signed_identity, \
             account_signature_key = excluded.account_signature_key",
        )
        .bind(self.account)
        .bind(self.seal("creds", "noise_private", c.noise.private.to_vec()))
        .bind(self.seal("creds", "adv_secret", c.adv_secret.to_vec()))
        .bind(i64::from(c.signed_pre_key.id))
        .bind(me.map(|m| m.jid.to_string()))
        .bind(me.and_then(|m| m.lid.as_ref().map(Jid::to_string)))
        .bind(me.and_then(|m| m.platform.clone()))
        .bind(me.and_then(|m| m.business_name.clone()))
        .bind(me.and_then(|m| m.push_name.clone()))
        .bind(me.map(|m| m.signed_identity.clone()))
        .bind(me.map(|m| m.account_signature_key.to_vec()))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn wipe(&self) -> Result<(), CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        for t in TABLES {
            sqlx::query(&format!("DELETE FROM {t} WHERE account_id = ?"))
                .bind(self.account)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        // A new device starts its own sequence.
        sqlx::query("UPDATE accounts SET next_pre_key_id = 1 WHERE id = ?")
            .bind(self.account)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn set_push_name(&self, name: &str) -> Result<(), CredsStoreError> {
        sqlx::query("UPDATE creds SET push_name = ? WHERE account_id = ?")
            .bind(name)
            .bind(self.account)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn has_message(
        &self,
        chat: &Jid,
        sender: &Jid,
        id: &str,
    ) -> Result<bool, CredsStoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE account_id = ? AND chat = ? AND sender = ? AND id = ? \
             AND NOT (type = 'ciphertext' AND status = 'failed')",
        )
        .bind(self.account)
        .bind(chat.to_string())
        .bind(sender.to_string())
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        Ok(n > 0)
    }

    async fn commit_message(
        &self,
        changes: &SignalChanges,
        msg: &StoredMessage,
    ) -> Result<Committed, CredsStoreError> {
        self.committer
            .message(self.signal(), changes.clone(), msg.clone())
            .await
    }

    async fn update_status(
        &self,
        update: &StatusUpdate,
    ) -> Result<Option<MessageStatus>, CredsStoreError> {
        self.committer.status(self.account, update.clone()).await
    }

    async fn sent_message(
        &self,
        chat: &Jid,
        id: &str,
    ) -> Result<Option<StoredMessage>, CredsStoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE account_id = ? AND chat = ? AND id = ? AND from_me = 1"
        ))
        .bind(self.account)
        .bind(chat.to_string())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(from_row).transpose().map_err(err)
    }

    async fn messages(
        &self,
        chat: Option<&Jid>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<StoredMessage>, CredsStoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE account_id = ? {} {LISTED} \
             ORDER BY ts DESC, pk DESC LIMIT ? OFFSET ?",
            if chat.is_some() { "AND chat = ?" } else { "" }
        );
        let mut q = sqlx::query(&sql).bind(self.account);
        if let Some(c) = chat {
            q = q.bind(c.to_string());
        }
        let rows = q
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter()
            .map(from_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn pending_messages(&self) -> Result<Vec<StoredMessage>, CredsStoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE account_id = ? AND status = 'pending' ORDER BY pk"
        ))
        .bind(self.account)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(from_row)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn learn_lid(&self, pn: &str, lid: &str) -> Result<(), CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        self.learn_lid_in(&mut tx, pn, lid).await?;
        tx.commit().await.map_err(err)
    }

    async fn learn_lids(&self, pairs: &[(String, String)]) -> Result<(), CredsStoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        for (pn, lid) in pairs {
            self.learn_lid_in(&mut tx, pn, lid).await?;
        }
        tx.commit().await.map_err(err)
    }

    async fn lid_for(&self, pn: &str) -> Result<Option<String>, CredsStoreError> {
        sqlx::query_scalar("SELECT lid FROM lid_map WHERE account_id = ? AND pn = ?")
            .bind(self.account)
            .bind(pn)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn pn_for(&self, lid: &str) -> Result<Option<String>, CredsStoreError> {
        sqlx::query_scalar("SELECT pn FROM lid_map WHERE account_id = ? AND lid = ?")
            .bind(self.account)
            .bind(lid)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn set_privacy_token(
        &self,
        jid: &Jid,
        token: &[u8],
        t: u64,
    ) -> Result<(), CredsStoreError> {
        // A token older than the one held never replaces it.
        sqlx::query(
            "INSERT INTO privacy_tokens (account_id, jid, token, token_t) VALUES (?, ?, ?, ?) \
             ON CONFLICT (account_id, jid) DO UPDATE SET token = excluded.token, \
             token_t = excluded.token_t \
             WHERE privacy_tokens.token_t IS NULL OR privacy_tokens.token_t <= excluded.token_t",
        )
        .bind(self.account)
        .bind(jid.to_string())
        .bind(token)
        .bind(i64::try_from(t).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn privacy_token(&self, jid: &Jid) -> Result<Option<(Vec<u8>, u64)>, CredsStoreError> {
        let row: Option<(Option<Vec<u8>>, Option<i64>)> = sqlx::query_as(
            "SELECT token, token_t FROM privacy_tokens WHERE account_id = ? AND jid = ?",
        )
        .bind(self.account)
        .bind(jid.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        Ok(row.and_then(|(tok, t)| Some((tok?, t.unwrap_or(0).max(0) as u64))))
    }

    async fn set_token_issued(&self, jid: &Jid, t: u64) -> Result<Option<u64>, CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        let old: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT issued_t FROM privacy_tokens WHERE account_id = ? AND jid = ?",
        )
        .bind(self.account)
        .bind(jid.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "INSERT INTO privacy_tokens (account_id, jid, issued_t) VALUES (?, ?, ?) \
             ON CONFLICT (account_id, jid) DO UPDATE SET issued_t = excluded.issued_t",
        )
        .bind(self.account)
        .bind(jid.to_string())
        .bind(i64::try_from(t).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(old.flatten().map(|t| t.max(0) as u64))
    }

    async fn nct_salt(&self) -> Result<Option<NctSalt>, CredsStoreError> {
        let row: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT salt FROM nct_salt WHERE account_id = ?")
                .bind(self.account)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        match row.flatten() {
            Some(sealed) => {
                let plain = zeroize::Zeroizing::new(self.open("nct_salt", "salt", sealed)?);
                Ok(Some(NctSalt::new(&plain)))
            }
            None => Ok(None),
        }
    }

    async fn set_nct_salt(&self, salt: Option<&[u8]>) -> Result<(), CredsStoreError> {
        let sealed = salt.map(|s| self.seal("nct_salt", "salt", s.to_vec()));
        sqlx::query(
            "INSERT INTO nct_salt (account_id, salt, sync_seen) VALUES (?, ?, 1) \
             ON CONFLICT (account_id) DO UPDATE SET salt = excluded.salt, sync_seen = 1",
        )
        .bind(self.account)
        .bind(sealed)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn backfill_nct_salt(&self, salt: &[u8]) -> Result<bool, CredsStoreError> {
        if salt.is_empty() {
            return Ok(false);
        }
        let sealed = self.seal("nct_salt", "salt", salt.to_vec());
        // One statement decides and writes: no salt and no mutation seen, or nothing.
        let done = sqlx::query(
            "INSERT INTO nct_salt (account_id, salt, sync_seen) VALUES (?, ?, 0) \
             ON CONFLICT (account_id) DO UPDATE SET salt = excluded.salt \
             WHERE nct_salt.salt IS NULL AND nct_salt.sync_seen = 0",
        )
        .bind(self.account)
        .bind(sealed)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn wrote_to_us(&self, chat: &Jid) -> Result<bool, CredsStoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM messages WHERE account_id = ? AND chat = ? AND from_me = 0 LIMIT 1",
        )
        .bind(self.account)
        .bind(chat.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        Ok(found.is_some())
    }
}

impl SqliteCreds {
    /// [`CredsStore::learn_lid`] inside the caller's transaction (one pair of a batch).
    pub(crate) async fn learn_lid_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        pn: &str,
        lid: &str,
    ) -> Result<(), CredsStoreError> {
        let known: Option<String> =
            sqlx::query_scalar("SELECT lid FROM lid_map WHERE account_id = ? AND pn = ?")
                .bind(self.account)
                .bind(pn)
                .fetch_optional(&mut *conn)
                .await
                .map_err(err)?;
        if known.as_deref() == Some(lid) {
            return Ok(());
        }
        sqlx::query("DELETE FROM lid_map WHERE account_id = ? AND (pn = ? OR lid = ?)")
            .bind(self.account)
            .bind(pn)
            .bind(lid)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        sqlx::query("INSERT INTO lid_map (account_id, pn, lid) VALUES (?, ?, ?)")
            .bind(self.account)
            .bind(pn)
            .bind(lid)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        // Sessions move to the LID address of each device; sealed records are sealed anew for
        // their new row.
        let prefix = format!("{pn}.");
        let to_name = format!("{lid}_1");
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT address, record FROM signal_sessions WHERE account_id = ? \
             AND substr(address, 1, length(?)) = ?",
        )
        .bind(self.account)
        .bind(&prefix)
        .bind(&prefix)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
        for (address, record) in rows {
            let device = &address[prefix.len()..];
            let target = format!("{to_name}.{device}");
            self.move_sealed(
                conn,
                "signal_sessions",
                "address",
                &address,
                record,
                &target,
            )
            .await?;
        }
        // The contact's sender keys (`<group>::<address>`) follow its devices to the LID, so a
        // group message named by the LID finds the key a PN-named distribution installed.
        let needle = format!("::{prefix}");
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT name, record FROM signal_sender_keys WHERE account_id = ? \
             AND instr(name, ?) > 0",
        )
        .bind(self.account)
        .bind(&needle)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
        for (name, record) in rows {
            let Some((group, device)) = name.split_once(&needle) else {
                continue;
            };
            if device.contains("::") {
                continue;
            }
            let target = format!("{group}::{to_name}.{device}");
            self.move_sealed(conn, "signal_sender_keys", "name", &name, record, &target)
                .await?;
        }
        sqlx::query(
            "UPDATE OR IGNORE signal_identities SET address = ? || substr(address, length(?) + 1) \
             WHERE account_id = ? AND substr(address, 1, length(?) + 1) = ? || '.'",
        )
        .bind(&to_name)
        .bind(pn)
        .bind(self.account)
        .bind(pn)
        .bind(pn)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        sqlx::query(
            "DELETE FROM signal_identities WHERE account_id = ? \
             AND substr(address, 1, length(?) + 1) = ? || '.'",
        )
        .bind(self.account)
        .bind(pn)
        .bind(pn)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        // One contact, one conversation.
        let (pn_jid, lid_jid) = (
            Jid::new(pn, crate::binary::Server::User).to_string(),
            Jid::new(lid, crate::binary::Server::Lid).to_string(),
        );
        // A token the contact gave before we knew its LID follows it (a newer one under the
        // LID wins).
        sqlx::query("UPDATE OR IGNORE privacy_tokens SET jid = ? WHERE account_id = ? AND jid = ?")
            .bind(&lid_jid)
            .bind(self.account)
            .bind(&pn_jid)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        for col in ["chat", "sender"] {
            sqlx::query(&format!(
                "UPDATE OR IGNORE messages SET {col} = ? WHERE account_id = ? AND {col} = ?"
            ))
            .bind(&lid_jid)
            .bind(self.account)
            .bind(&pn_jid)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        }
        // The chat's and the contact's rows follow.
        super::account::move_to_lid(conn, self.account, pn, lid)
            .await
            .map_err(err)?;
        Ok(())
    }
}
