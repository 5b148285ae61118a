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
    /// anew for its new row; a record already at `to` is kept (it is newer). Used by the
    /// per-pair reference of the tests.
    #[cfg(test)]
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
        self.learn_lids(&[(pn.to_owned(), lid.to_owned())]).await
    }

    async fn learn_lids(&self, pairs: &[(String, String)]) -> Result<(), CredsStoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        self.learn_lids_in(&mut tx, pairs).await?;
        tx.commit().await.map_err(err)
    }

    async fn lids_for(
        &self,
        pns: &[String],
    ) -> Result<std::collections::HashMap<String, String>, CredsStoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        lids_of(&mut conn, self.account, pns).await.map_err(err)
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

/// The sender part of a sender key's name (`<group>::<user>.<device>` → `<user>.<device>`),
/// spelled as migration 0023 indexes it (the index is used only for this expression).
const SENDER: &str = "substr(s.name, instr(s.name, '::') + 2)";

/// Rows of a multi-row write: SQLite binds at most 32,766 variables per statement; 300 rows of
/// three stay far below, and a batch of thousands costs tens of statements, not thousands.
const MOVE_CHUNK: usize = 300;

/// The batch being learned, one row per phone number, on the transaction's connection (a
/// temporary table: indexed, so each statement over the batch seeks instead of scanning).
const BATCH_TABLE: [&str; 5] = [
    "CREATE TEMP TABLE IF NOT EXISTS lid_batch (pos INTEGER PRIMARY KEY, \
     pn TEXT NOT NULL UNIQUE, lid TEXT NOT NULL, pn_jid TEXT NOT NULL, lid_jid TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS temp.lid_batch_by_lid ON lid_batch (lid)",
    "CREATE INDEX IF NOT EXISTS temp.lid_batch_by_pn_jid ON lid_batch (pn_jid)",
    "CREATE INDEX IF NOT EXISTS temp.lid_batch_by_lid_jid ON lid_batch (lid_jid)",
    "DELETE FROM temp.lid_batch",
];

/// The pairs a batch learns: the last pair of each phone number, in the order of those last
/// pairs. Decision: a number named twice in one batch is the LID it was named with last (the
/// batch's newest word), and what is stored under the number moves to that LID — learning the
/// pairs one by one would move it to the first and only then remap the number; history sync
/// (`messenger/history.rs` `learn_pair`) never sends a store such a batch: it stores its batch
/// before a number's second LID.
pub(crate) fn last_per_pn(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut last: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(pairs.len());
    for (i, (pn, _)) in pairs.iter().enumerate() {
        last.insert(pn.as_str(), i);
    }
    pairs
        .iter()
        .enumerate()
        .filter(|(i, (pn, _))| last.get(pn.as_str()) == Some(i))
        .map(|(_, (pn, lid))| (pn.as_str(), lid.as_str()))
        .collect()
}

/// The LIDs of the phone-number users `pns` that `lid_map` knows (one query for the set).
pub(crate) async fn lids_of(
    conn: &mut sqlx::SqliteConnection,
    account: AccountId,
    pns: &[String],
) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
    if pns.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.pn, m.lid FROM json_each(?) j CROSS JOIN lid_map m \
         ON m.account_id = ? AND m.pn = j.value",
    )
    .bind(serde_json::to_string(pns).map_err(|e| sqlx::Error::Encode(e.into()))?)
    .bind(account)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The phone-number users of the LID users `lids` that `lid_map` knows (one query).
pub(crate) async fn pns_of(
    conn: &mut sqlx::SqliteConnection,
    account: AccountId,
    lids: &[String],
) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
    if lids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.lid, m.pn FROM json_each(?) j CROSS JOIN lid_map m \
         ON m.account_id = ? AND m.lid = j.value",
    )
    .bind(serde_json::to_string(lids).map_err(|e| sqlx::Error::Encode(e.into()))?)
    .bind(account)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// One row to move: its name now, its name under the LID, and its stored value.
struct Move {
    from: String,
    to: String,
    value: Vec<u8>,
}

impl SqliteCreds {
    /// [`CredsStore::learn_lids`] inside the caller's transaction, set-based: a constant number
    /// of statements over the whole batch (joined through the temporary `lid_batch` table),
    /// plus one multi-row write per [`MOVE_CHUNK`] Signal rows that actually move. Same result
    /// as learning the pairs one by one (what the per-pair code did, kept as the reference in
    /// this file's tests), except for a number named twice (see [`last_per_pn`]):
    /// - a pair already known is a no-op, unless another number of the batch takes its LID;
    /// - a number's old mapping and the LID's old number go; of several numbers of the batch
    ///   naming one LID, the last keeps it, and each one's rows still move to the LID (the
    ///   earlier number's win where both had one, a row the LID already had wins over both);
    /// - each new pair moves its number's sessions, identities and group sender keys (every
    ///   device, re-sealed for their new rows), privacy token, messages, chat and contact.
    pub(crate) async fn learn_lids_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        pairs: &[(String, String)],
    ) -> Result<(), CredsStoreError> {
        let batch: Vec<[String; 4]> = last_per_pn(pairs)
            .into_iter()
            .map(|(pn, lid)| {
                [
                    pn.to_owned(),
                    lid.to_owned(),
                    Jid::new(pn, crate::binary::Server::User).to_string(),
                    Jid::new(lid, crate::binary::Server::Lid).to_string(),
                ]
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        for sql in BATCH_TABLE {
            sqlx::query(sql).execute(&mut *conn).await.map_err(err)?;
        }
        sqlx::query(
            "INSERT INTO temp.lid_batch (pos, pn, lid, pn_jid, lid_jid) \
             SELECT key, json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
             json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?)",
        )
        .bind(serde_json::to_string(&batch).map_err(err)?)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        // Known pairs change nothing, unless another number of the batch takes their LID
        // (learned one by one, that number would unmap it first).
        sqlx::query(
            "DELETE FROM temp.lid_batch AS b WHERE EXISTS (SELECT 1 FROM lid_map m \
             WHERE m.account_id = ? AND m.pn = b.pn AND m.lid = b.lid) \
             AND NOT EXISTS (SELECT 1 FROM temp.lid_batch o WHERE o.lid = b.lid AND o.pos != b.pos)",
        )
        .bind(self.account)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM temp.lid_batch")
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
        if left > 0 {
            self.learn_batch(conn).await?;
        }
        sqlx::query("DELETE FROM temp.lid_batch")
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// The writes of [`Self::learn_lids_in`] for the new pairs in `temp.lid_batch`.
    async fn learn_batch(&self, conn: &mut sqlx::SqliteConnection) -> Result<(), CredsStoreError> {
        let account = self.account;
        for sql in [
            "DELETE FROM lid_map WHERE account_id = ? AND pn IN (SELECT pn FROM temp.lid_batch)",
            "DELETE FROM lid_map WHERE account_id = ? AND lid IN (SELECT lid FROM temp.lid_batch)",
            // Of several numbers naming one LID, the last keeps it.
            "INSERT INTO lid_map (account_id, pn, lid) SELECT ?, b.pn, b.lid \
             FROM temp.lid_batch b \
             WHERE b.pos = (SELECT MAX(o.pos) FROM temp.lid_batch o WHERE o.lid = b.lid) \
             ORDER BY b.pos",
        ] {
            sqlx::query(sql)
                .bind(account)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
        }
        // Sessions `<pn>.<device>` move to `<lid>_1.<device>`: one range seek per number over
        // the primary key, rows in batch order (an earlier number's row wins a clash, as it
        // would learned first).
        let rows: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT b.pn, b.lid, s.address, s.record FROM temp.lid_batch b \
             CROSS JOIN signal_sessions s ON s.account_id = ? \
             AND s.address >= b.pn || '.' AND s.address < b.pn || '/' ORDER BY b.pos, s.address",
        )
        .bind(account)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
        let mut moves = Vec::with_capacity(rows.len());
        for (pn, lid, address, record) in rows {
            let Some(device) = address.get(pn.len() + 1..) else {
                continue;
            };
            let to = format!("{lid}_1.{device}");
            let plain = self.open("signal_sessions", &address, record)?;
            moves.push(Move {
                value: self.seal("signal_sessions", &to, plain),
                from: address,
                to,
            });
        }
        self.move_rows(conn, "signal_sessions", "address", "record", moves)
            .await?;
        // The contact's sender keys (`<group>::<address>`) follow its devices to the LID, so a
        // group message named by the LID finds the key a PN-named distribution installed. The
        // sender part is indexed (migration 0023; named, as the planner would otherwise walk
        // the account's keys to read their records): one range seek per number.
        let rows: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT b.pn, b.lid, s.name, s.record FROM temp.lid_batch b \
             CROSS JOIN signal_sender_keys s INDEXED BY signal_sender_keys_by_sender \
             ON s.account_id = ? \
             AND {SENDER} >= b.pn || '.' AND {SENDER} < b.pn || '/' ORDER BY b.pos, s.name"
        ))
        .bind(account)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
        let mut moves = Vec::with_capacity(rows.len());
        for (pn, lid, name, record) in rows {
            let Some((group, sender)) = name.split_once("::") else {
                continue;
            };
            let Some(device) = sender.get(pn.len() + 1..) else {
                continue;
            };
            if device.contains("::") {
                continue;
            }
            let to = format!("{group}::{lid}_1.{device}");
            let plain = self.open("signal_sender_keys", &name, record)?;
            moves.push(Move {
                value: self.seal("signal_sender_keys", &to, plain),
                from: name,
                to,
            });
        }
        self.move_rows(conn, "signal_sender_keys", "name", "record", moves)
            .await?;
        // Identities (public, stored plain) move the same way.
        let rows: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT b.pn, b.lid, s.address, s.identity FROM temp.lid_batch b \
             CROSS JOIN signal_identities s ON s.account_id = ? \
             AND s.address >= b.pn || '.' AND s.address < b.pn || '/' ORDER BY b.pos, s.address",
        )
        .bind(account)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
        let moves = rows
            .into_iter()
            .filter_map(|(pn, lid, address, identity)| {
                let to = format!("{lid}_1.{}", address.get(pn.len() + 1..)?);
                Some(Move {
                    from: address,
                    to,
                    value: identity,
                })
            })
            .collect();
        self.move_rows(conn, "signal_identities", "address", "identity", moves)
            .await?;
        // One contact, one conversation: a token the contact gave before we knew its LID
        // follows it (a newer one under the LID wins), and so do its messages.
        for (table, col) in [
            ("privacy_tokens", "jid"),
            ("messages", "chat"),
            ("messages", "sender"),
        ] {
            sqlx::query(&format!(
                "UPDATE OR IGNORE {table} SET {col} = \
                 (SELECT b.lid_jid FROM temp.lid_batch b WHERE b.pn_jid = {table}.{col}) \
                 WHERE account_id = ? AND {col} IN (SELECT pn_jid FROM temp.lid_batch)"
            ))
            .bind(account)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        }
        // The chat's and the contact's rows follow.
        super::account::move_batch_to_lid(conn, account)
            .await
            .map_err(err)
    }

    /// Writes each of `moves` under its new name in `table` (a row already there is kept: it
    /// is newer; of two moving to one name, the first), then deletes the old names.
    async fn move_rows(
        &self,
        conn: &mut sqlx::SqliteConnection,
        table: &str,
        key: &str,
        value: &str,
        moves: Vec<Move>,
    ) -> Result<(), CredsStoreError> {
        for chunk in moves.chunks(MOVE_CHUNK) {
            let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO {table} (account_id, {key}, {value}) VALUES {rows} \
                 ON CONFLICT (account_id, {key}) DO NOTHING"
            );
            let mut q = sqlx::query(&sql);
            for m in chunk {
                q = q.bind(self.account).bind(&m.to).bind(&m.value);
            }
            q.execute(&mut *conn).await.map_err(err)?;
        }
        if moves.is_empty() {
            return Ok(());
        }
        let from: Vec<&str> = moves.iter().map(|m| m.from.as_str()).collect();
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE account_id = ? \
             AND {key} IN (SELECT value FROM json_each(?))"
        ))
        .bind(self.account)
        .bind(serde_json::to_string(&from).map_err(err)?)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
impl SqliteCreds {
    /// The per-pair learning this file did before batches were set-based, kept as the
    /// reference the set-based path is checked against (one pair, in the caller's
    /// transaction).
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

#[cfg(test)]
mod tests {
    //! The set-based batch learning against the per-pair reference it replaced.

    use super::*;
    use crate::store::{Store, StoreKey};

    /// Everything learning a LID touches, per account, with sealed values opened (so a value
    /// sealed for the wrong row fails here).
    #[derive(Debug, PartialEq, Eq)]
    struct Dump {
        lid_map: Vec<(String, String)>,
        sessions: Vec<(String, Vec<u8>)>,
        sender_keys: Vec<(String, Vec<u8>)>,
        identities: Vec<(String, Vec<u8>)>,
        tokens: Vec<(String, Vec<u8>)>,
        messages: Vec<(String, String, String)>,
        chats: Vec<(String, Option<String>)>,
        contacts: Vec<ContactDump>,
    }

    /// A contact's jid, pn, lid and full name.
    type ContactDump = (String, Option<String>, Option<String>, Option<String>);

    async fn dump(c: &SqliteCreds) -> Dump {
        let a = c.account;
        let pool = &c.pool;
        let pairs = |sql: &'static str| async move {
            sqlx::query_as::<_, (String, Vec<u8>)>(sql)
                .bind(a)
                .fetch_all(pool)
                .await
                .unwrap()
        };
        let open = |table: &str, rows: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
            rows.into_iter()
                .map(|(k, v)| {
                    let plain = c.open(table, &k, v).expect("opens under its row name");
                    (k, plain)
                })
                .collect()
        };
        Dump {
            lid_map: sqlx::query_as("SELECT pn, lid FROM lid_map WHERE account_id = ? ORDER BY pn")
                .bind(a)
                .fetch_all(pool)
                .await
                .unwrap(),
            sessions: open(
                "signal_sessions",
                pairs(
                    "SELECT address, record FROM signal_sessions WHERE account_id = ? \
                     ORDER BY address",
                )
                .await,
            ),
            sender_keys: open(
                "signal_sender_keys",
                pairs(
                    "SELECT name, record FROM signal_sender_keys WHERE account_id = ? \
                     ORDER BY name",
                )
                .await,
            ),
            identities: pairs(
                "SELECT address, identity FROM signal_identities WHERE account_id = ? \
                 ORDER BY address",
            )
            .await,
            tokens: pairs(
                "SELECT jid, token FROM privacy_tokens WHERE account_id = ? ORDER BY jid",
            )
            .await,
            messages: sqlx::query_as(
                "SELECT chat, sender, id FROM messages WHERE account_id = ? ORDER BY id",
            )
            .bind(a)
            .fetch_all(pool)
            .await
            .unwrap(),
            chats: sqlx::query_as("SELECT jid, name FROM chats WHERE account_id = ? ORDER BY jid")
                .bind(a)
                .fetch_all(pool)
                .await
                .unwrap(),
            contacts: sqlx::query_as(
                "SELECT jid, pn, lid, full_name FROM contacts WHERE account_id = ? ORDER BY jid",
            )
            .bind(a)
            .fetch_all(pool)
            .await
            .unwrap(),
        }
    }

    const P1: &str = "15550001"; // changes LID
    const P10: &str = "155500010"; // shares P1's prefix, not in the batch
    const P2: &str = "15550002"; // takes a LID another number had
    const P9: &str = "15550009"; // had that LID
    const P3: &str = "15550003"; // named twice
    const P4: &str = "15550004"; // not in the batch
    const P5: &str = "15550005"; // known pair, repeated
    const P6: &str = "15550006"; // P6 and P7 name one LID
    const P7: &str = "15550007";

    fn pn(u: &str) -> String {
        Jid::new(u, crate::binary::Server::User).to_string()
    }

    fn lid(u: &str) -> String {
        Jid::new(u, crate::binary::Server::Lid).to_string()
    }

    /// The same state in account `c`: mappings, Signal rows (sealed), tokens, messages,
    /// chats, contacts.
    async fn seed(c: &SqliteCreds) {
        let a = c.account;
        for (p, l) in [(P1, "801"), (P9, "802"), (P5, "805")] {
            sqlx::query("INSERT INTO lid_map (account_id, pn, lid) VALUES (?, ?, ?)")
                .bind(a)
                .bind(p)
                .bind(l)
                .execute(&c.pool)
                .await
                .unwrap();
        }
        let sessions = [
            format!("{P1}.0"),
            format!("{P1}.3"),
            format!("{P10}.0"),
            format!("{P2}.0"),
            format!("{P3}.0"),
            format!("{P3}.1"),
            format!("{P4}.0"),
            format!("{P5}.0"),
            format!("{P6}.0"),
            format!("{P7}.0"),
            // Already under P1's new LID (newer: kept).
            "901_1.3".to_owned(),
        ];
        for s in &sessions {
            for (table, key, value) in [
                ("signal_sessions", "address", "record"),
                ("signal_identities", "address", "identity"),
            ] {
                let plain = format!("{table} {s}").into_bytes();
                let v = if table == "signal_sessions" {
                    c.seal(table, s, plain)
                } else {
                    plain
                };
                sqlx::query(&format!(
                    "INSERT INTO {table} (account_id, {key}, {value}) VALUES (?, ?, ?)"
                ))
                .bind(a)
                .bind(s)
                .bind(v)
                .execute(&c.pool)
                .await
                .unwrap();
            }
        }
        for name in [
            format!("g1@g.us::{P1}.0"),
            format!("g2@g.us::{P1}.3"),
            format!("g1@g.us::{P10}.0"),
            format!("g1@g.us::{P2}.0"),
            format!("g1@g.us::{P4}.0"),
            format!("g1@g.us::{P6}.0"),
            format!("g1@g.us::{P7}.0"),
        ] {
            sqlx::query(
                "INSERT INTO signal_sender_keys (account_id, name, record) VALUES (?, ?, ?)",
            )
            .bind(a)
            .bind(&name)
            .bind(c.seal(
                "signal_sender_keys",
                &name,
                format!("key {name}").into_bytes(),
            ))
            .execute(&c.pool)
            .await
            .unwrap();
        }
        for (jid, tok) in [
            (pn(P1), "t1"),
            (pn(P6), "t6"),
            (pn(P4), "t4"),
            (lid("902"), "t902"),
        ] {
            sqlx::query("INSERT INTO privacy_tokens (account_id, jid, token) VALUES (?, ?, ?)")
                .bind(a)
                .bind(jid)
                .bind(tok.as_bytes())
                .execute(&c.pool)
                .await
                .unwrap();
        }
        for (i, (chat, sender)) in [
            (pn(P1), pn(P1)),
            ("g1@g.us".to_owned(), pn(P2)),
            (pn(P3), pn(P3)),
            (pn(P4), pn(P4)),
            (pn(P7), pn(P7)),
        ]
        .into_iter()
        .enumerate()
        {
            sqlx::query(
                "INSERT INTO messages (account_id, chat, sender, id, from_me, ts, raw, status) \
                 VALUES (?, ?, ?, ?, 0, 1, x'', 'received')",
            )
            .bind(a)
            .bind(chat)
            .bind(sender)
            .bind(format!("m{i}"))
            .execute(&c.pool)
            .await
            .unwrap();
        }
        for (jid, name) in [
            (pn(P1), "chat 1"),
            (pn(P3), "chat 3"),
            (lid("906"), "chat 906"),
        ] {
            sqlx::query(
                "INSERT INTO chats (account_id, jid, name, updated_ms) VALUES (?, ?, ?, 0)",
            )
            .bind(a)
            .bind(jid)
            .bind(name)
            .execute(&c.pool)
            .await
            .unwrap();
        }
        for (jid, name) in [
            (pn(P1), Some("One")),
            (pn(P6), Some("Six")),
            (pn(P7), Some("Seven")),
            (lid("906"), None),
        ] {
            sqlx::query(
                "INSERT INTO contacts (account_id, jid, full_name, updated_ms) VALUES (?, ?, ?, 0)",
            )
            .bind(a)
            .bind(jid)
            .bind(name)
            .execute(&c.pool)
            .await
            .unwrap();
        }
    }

    fn batch() -> Vec<(String, String)> {
        [
            (P1, "901"),
            (P2, "802"),
            (P3, "903"),
            (P5, "805"),
            (P3, "913"),
            (P6, "906"),
            (P7, "906"),
        ]
        .iter()
        .map(|(p, l)| (p.to_string(), l.to_string()))
        .collect()
    }

    #[tokio::test]
    async fn set_based_learning_moves_what_learning_pair_by_pair_moved() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("wa.db").display());
        let store = Store::open_with(&url, Some(&StoreKey::generate()))
            .await
            .unwrap();
        let reference = store.creds(store.account("s", "per-pair").await.unwrap());
        let batched = store.creds(store.account("s", "batch").await.unwrap());
        seed(&reference).await;
        seed(&batched).await;
        let before = dump(&batched).await;
        assert_eq!(before, dump(&reference).await);

        // The reference: each pair in turn, over the batch as the decision reads it (the last
        // pair of a number named twice).
        let mut tx = reference
            .pool
            .begin_with(crate::store::WRITE_TX)
            .await
            .unwrap();
        for (p, l) in last_per_pn(&batch()) {
            reference.learn_lid_in(&mut tx, p, l).await.unwrap();
        }
        tx.commit().await.unwrap();
        batched.learn_lids(&batch()).await.unwrap();
        let got = dump(&batched).await;
        assert_eq!(got, dump(&reference).await, "set-based == per pair");

        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let keys =
            |rows: &[(String, Vec<u8>)]| rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
        // P1 changed LID, P2 took 802 from P9, P3 is its last LID, P5 stays, 906 is P7's.
        assert_eq!(
            got.lid_map,
            [
                (P1, "901"),
                (P2, "802"),
                (P3, "913"),
                (P5, "805"),
                (P7, "906")
            ]
            .map(|(p, l)| (p.to_owned(), l.to_owned()))
        );
        // Every device of each new number moved; P10 (same prefix), P4 (not in the batch) and
        // P5 (known pair) stayed.
        let moved_sessions = s(&[
            "155500010.0",
            "15550004.0",
            "15550005.0",
            "802_1.0",
            "901_1.0",
            "901_1.3",
            "906_1.0",
            "913_1.0",
            "913_1.1",
        ]);
        assert_eq!(keys(&got.sessions), moved_sessions);
        assert_eq!(keys(&got.identities), moved_sessions);
        let value = |rows: &[(String, Vec<u8>)], k: &str| {
            String::from_utf8(rows.iter().find(|r| r.0 == k).unwrap().1.clone()).unwrap()
        };
        // The record already under the LID wins; of two numbers naming one LID, the first.
        assert_eq!(value(&got.sessions, "901_1.3"), "signal_sessions 901_1.3");
        assert_eq!(
            value(&got.sessions, "901_1.0"),
            format!("signal_sessions {P1}.0")
        );
        assert_eq!(
            value(&got.sessions, "906_1.0"),
            format!("signal_sessions {P6}.0")
        );
        assert_eq!(
            value(&got.sessions, "913_1.1"),
            format!("signal_sessions {P3}.1")
        );
        assert_eq!(
            keys(&got.sender_keys),
            s(&[
                "g1@g.us::155500010.0",
                "g1@g.us::15550004.0",
                "g1@g.us::802_1.0",
                "g1@g.us::901_1.0",
                "g1@g.us::906_1.0",
                "g2@g.us::901_1.3",
            ])
        );
        assert_eq!(
            value(&got.sender_keys, "g1@g.us::906_1.0"),
            format!("key g1@g.us::{P6}.0")
        );
        assert_eq!(
            got.tokens,
            vec![
                (pn(P4), b"t4".to_vec()),
                (lid("901"), b"t1".to_vec()),
                (lid("902"), b"t902".to_vec()),
                (lid("906"), b"t6".to_vec()),
            ]
        );
        assert_eq!(
            got.messages,
            vec![
                (lid("901"), lid("901"), "m0".to_owned()),
                ("g1@g.us".to_owned(), lid("802"), "m1".to_owned()),
                (lid("913"), lid("913"), "m2".to_owned()),
                (pn(P4), pn(P4), "m3".to_owned()),
                (lid("906"), lid("906"), "m4".to_owned()),
            ]
        );
        assert_eq!(
            got.chats,
            vec![
                (lid("901"), Some("chat 1".into())),
                (lid("906"), Some("chat 906".into())),
                (lid("913"), Some("chat 3".into())),
            ]
        );
        // The LID row's empty name is filled by the first number; it names the last.
        assert_eq!(
            got.contacts,
            vec![
                (
                    lid("901"),
                    Some(P1.into()),
                    Some("901".into()),
                    Some("One".into())
                ),
                (
                    lid("906"),
                    Some(P7.into()),
                    Some("906".into()),
                    Some("Six".into())
                ),
            ]
        );

        // Learning the same batch again changes nothing.
        batched.learn_lids(&batch()).await.unwrap();
        assert_eq!(dump(&batched).await, got);
    }

    #[tokio::test]
    async fn a_batch_of_contact_changes_lands_as_the_changes_one_by_one() {
        use crate::client::account::ContactChange;
        use crate::client::store::AccountStore;
        let store = Store::open("sqlite::memory:").await.unwrap();
        let one = store.creds(store.account("s", "one").await.unwrap());
        let many = store.creds(store.account("s", "many").await.unwrap());
        let user = |u: &str| Jid::new(u, crate::binary::Server::User);
        let lid_jid = |u: &str| Jid::new(u, crate::binary::Server::Lid);
        let name = |jid: Jid, n: &str| ContactChange {
            jid,
            full_name: Some(n.into()),
            ..ContactChange::default()
        };
        let remove = |jid: Jid| ContactChange {
            jid,
            forget_names: true,
            ..ContactChange::default()
        };
        // Over two chunks, with one contact named by number and LID, REMOVEs before and after
        // a name, a push name of "-", and bare REMOVEs of contacts nobody knows.
        let mut changes: Vec<ContactChange> = (0..450)
            .map(|i| name(user(&format!("4930{i:04}")), &format!("N{i}")))
            .collect();
        changes.extend([
            name(user(P1), "One"),
            ContactChange {
                jid: Jid::with_device(P1, 3, crate::binary::Server::User),
                first_name: Some("Uno".into()),
                push_name: Some("-".into()),
                on_whatsapp: Some(true),
                ..ContactChange::default()
            },
            remove(lid_jid("801")),
            ContactChange {
                jid: lid_jid("801"),
                first_name: Some("Again".into()),
                push_name: Some("p1".into()),
                ..ContactChange::default()
            },
            name(user(P2), "Two"),
            remove(user(P2)),
            remove(user(P4)),
            remove(lid_jid("999")),
            remove(user("49300007")),
        ]);
        for c in [&one, &many] {
            c.learn_lid(P1, "801").await.unwrap();
        }
        for c in &changes {
            one.apply_account_changes(&[], std::slice::from_ref(c))
                .await
                .unwrap();
        }
        many.apply_account_changes(&[], &changes).await.unwrap();
        let all = |c: SqliteCreds| async move { c.contacts(1000, 0).await.unwrap() };
        let (by_one, by_many) = (all(one).await, all(many).await);
        assert_eq!(by_many, by_one);
        assert_eq!(
            by_many.len(),
            452,
            "450 + P1 + P2; the bare REMOVEs created nothing"
        );
        let p1 = by_many.iter().find(|c| c.jid == lid_jid("801")).unwrap();
        assert_eq!(
            (
                p1.pn.clone(),
                p1.full_name.as_deref(),
                p1.first_name.as_deref(),
                p1.push_name.as_deref(),
                p1.on_whatsapp
            ),
            (Some(user(P1)), None, Some("Again"), Some("p1"), Some(true))
        );
        let p2 = by_many.iter().find(|c| c.jid == user(P2)).unwrap();
        assert_eq!(
            p2.full_name, None,
            "named, then removed: the row stays, nameless"
        );
        let removed = by_many.iter().find(|c| c.jid == user("49300007")).unwrap();
        assert_eq!(removed.full_name, None);
        assert!(
            !by_many
                .iter()
                .any(|c| c.jid == user(P4) || c.jid == lid_jid("999"))
        );
    }

    #[test]
    fn a_number_named_twice_is_its_last_lid() {
        let pairs = batch();
        let got = last_per_pn(&pairs);
        assert_eq!(
            got,
            vec![
                (P1, "901"),
                (P2, "802"),
                (P5, "805"),
                (P3, "913"),
                (P6, "906"),
                (P7, "906")
            ]
        );
    }
}
