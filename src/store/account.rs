//! Chats and contacts of an account (migration 19): the changes history sync and app-state
//! sync make, usable inside another transaction (the app-state driver stores a collection's
//! version in the same unit as the changes it produced), and the chat list and contact reads.
//!
//! Keys: a chat by the canonical JID its messages use, a contact by its canonical user JID
//! (the LID once `lid_map` knows it, else the phone number); [`move_to_lid`] moves both when a
//! mapping is learned, in `learn_lid`'s transaction.
//!
//! Unread count (decision): the phone's count as it told us (history sync or app state, which
//! also move the read marker) plus the live inbound messages after the read marker. History
//! rows never add to it: the phone's count already covers them.

use sqlx::{Row, SqliteConnection};

use super::AccountId;
use super::creds::{SqliteCreds, err};
use super::rows::{COLUMNS, LISTED, from_row};
use crate::binary::{Jid, Server};
use crate::client::account::{
    ChatChange, ChatSummary, Contact, ContactChange, HistoryBatch, LastMessage, preview,
};
use crate::client::messages::StoredMessage;
use crate::client::store::{AccountStore, CredsStoreError};

const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// The canonical form of a user JID (its LID once known; device dropped); others as they are.
pub(crate) async fn canonical(
    conn: &mut SqliteConnection,
    account: AccountId,
    jid: &Jid,
) -> Result<Jid, sqlx::Error> {
    let jid = jid.to_non_ad();
    if jid.server != Server::User || jid.user.is_empty() {
        return Ok(jid);
    }
    let lid: Option<String> =
        sqlx::query_scalar("SELECT lid FROM lid_map WHERE account_id = ? AND pn = ?")
            .bind(account)
            .bind(&jid.user)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match lid {
        Some(l) => Jid::new(l, Server::Lid),
        None => jid,
    })
}

/// A value bound in a dynamic update.
enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

fn int(v: Option<u64>) -> Val {
    Val::Int(v.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
}

/// Applies `c` to its chat (created when missing); only the given fields change.
pub(crate) async fn apply_chat_change(
    conn: &mut SqliteConnection,
    account: AccountId,
    c: &ChatChange,
) -> Result<(), sqlx::Error> {
    let chat = canonical(conn, account, &c.chat).await?.to_string();
    // A flag turned off changes a stored chat only (the UPDATE below finds none otherwise).
    if !c.only_if_stored {
        sqlx::query(&format!(
            "INSERT INTO chats (account_id, jid, updated_ms) VALUES (?, ?, {NOW_MS}) \
             ON CONFLICT (account_id, jid) DO NOTHING"
        ))
        .bind(account)
        .bind(&chat)
        .execute(&mut *conn)
        .await?;
    }
    let mut sets: Vec<(&str, Val)> = Vec::new();
    if let Some(v) = &c.name {
        sets.push(("name", Val::Text(v.clone())));
    }
    if let Some(v) = c.archived {
        sets.push(("archived", Val::Int(Some(v.into()))));
    }
    if let Some(v) = c.pinned {
        sets.push(("pinned_at", int(v)));
    }
    if let Some(v) = c.muted_until {
        sets.push(("muted_until", Val::Int(v)));
    }
    if let Some(v) = c.marked_unread {
        sets.push(("marked_unread", Val::Int(Some(v.into()))));
    }
    if let Some(v) = c.unread_count {
        sets.push(("unread_count", Val::Int(Some(v.into()))));
    }
    if let Some(v) = c.read_ts {
        sets.push(("read_ts", int(v)));
    }
    if let Some(v) = c.ephemeral {
        sets.push(("ephemeral", Val::Int(v.map(i64::from))));
    }
    if let Some(v) = c.deleted_at {
        sets.push(("deleted_at", int(v)));
    }
    if sets.is_empty() {
        return Ok(());
    }
    let cols: Vec<String> = sets.iter().map(|(c, _)| format!("{c} = ?")).collect();
    let sql = format!(
        "UPDATE chats SET {}, updated_ms = {NOW_MS} WHERE account_id = ? AND jid = ?",
        cols.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for (_, v) in sets {
        q = match v {
            Val::Int(i) => q.bind(i),
            Val::Text(t) => q.bind(t),
        };
    }
    q.bind(account).bind(&chat).execute(&mut *conn).await?;
    Ok(())
}

/// Contact rows per multi-row statement: nine values each, far below SQLite's 32,766
/// variables, and a snapshot of 20,000 contacts costs a hundred statements, not 60,000.
const CONTACT_CHUNK: usize = 200;

/// What a batch's changes to one contact come to, applied in order.
#[derive(Default)]
struct ContactRow {
    jid: String,
    pn: Option<String>,
    lid: Option<String>,
    full_name: Option<String>,
    first_name: Option<String>,
    push_name: Option<String>,
    username: Option<String>,
    on_whatsapp: Option<bool>,
    /// The address-book names are cleared before the names above apply.
    forget_names: bool,
    /// The row exists afterwards: some change carried a field (a bare REMOVE of a contact we
    /// do not know creates nothing).
    insert: bool,
}

impl ContactRow {
    /// `c` after what is already folded in.
    fn fold(&mut self, c: &ContactChange) {
        if c.forget_names {
            self.forget_names = true;
            self.full_name = c.full_name.clone();
            self.first_name = c.first_name.clone();
        } else {
            self.full_name = c.full_name.clone().or(self.full_name.take());
            self.first_name = c.first_name.clone().or(self.first_name.take());
        }
        // A push name of `-` is no name (whatsmeow `handleHistoricalPushNames`).
        let push = c.push_name.clone().filter(|p| p != "-");
        let any = !c.forget_names
            || c.full_name.is_some()
            || c.first_name.is_some()
            || push.is_some()
            || c.username.is_some()
            || c.on_whatsapp.is_some();
        self.insert |= any;
        self.push_name = push.or(self.push_name.take());
        self.username = c.username.clone().or(self.username.take());
        self.on_whatsapp = c.on_whatsapp.or(self.on_whatsapp);
    }
}

/// Applies `changes` in order, each to its contact (keyed by its canonical JID, created when
/// missing); only the given fields change, after `forget_names` cleared the address-book
/// names. Set-based: two `lid_map` queries for the batch, then one multi-row statement per
/// [`CONTACT_CHUNK`] contacts. A contact's changes are folded first (same result as applying
/// them one by one), so each statement names a contact once. A REMOVE (`forget_names`, no
/// field) of a contact we do not know leaves no row (review: it used to insert an empty one).
pub(crate) async fn apply_contact_changes(
    conn: &mut SqliteConnection,
    account: AccountId,
    changes: &[ContactChange],
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let users = |server: Server, jids: &mut dyn Iterator<Item = &Jid>| -> Vec<String> {
        let set: std::collections::BTreeSet<&str> = jids
            .filter(|j| j.server == server && !j.user.is_empty())
            .map(|j| j.user.as_str())
            .collect();
        set.into_iter().map(str::to_owned).collect()
    };
    let lids = super::creds::lids_of(
        conn,
        account,
        &users(Server::User, &mut changes.iter().map(|c| &c.jid)),
    )
    .await?;
    // The canonical key of each change: the LID once known (device dropped).
    let keys: Vec<Jid> = changes
        .iter()
        .map(|c| {
            let jid = c.jid.to_non_ad();
            match lids.get(&jid.user) {
                Some(l) if jid.server == Server::User && !jid.user.is_empty() => {
                    Jid::new(l.clone(), Server::Lid)
                }
                _ => jid,
            }
        })
        .collect();
    let pns = super::creds::pns_of(conn, account, &users(Server::Lid, &mut keys.iter())).await?;
    let mut rows: Vec<ContactRow> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (c, key) in changes.iter().zip(&keys) {
        let jid = key.to_string();
        let i = *at.entry(jid.clone()).or_insert_with(|| {
            let (pn, lid) = match key.server {
                Server::Lid => (pns.get(&key.user).cloned(), Some(key.user.clone())),
                Server::User => (Some(key.user.clone()), None),
                _ => (None, None),
            };
            rows.push(ContactRow {
                jid,
                pn,
                lid,
                ..ContactRow::default()
            });
            rows.len() - 1
        });
        rows[i].fold(c);
    }
    let (upserts, forgets): (Vec<ContactRow>, Vec<ContactRow>) =
        rows.into_iter().partition(|r| r.insert);
    let (clearing, keeping): (Vec<ContactRow>, Vec<ContactRow>) =
        upserts.into_iter().partition(|r| r.forget_names);
    for (set, forget) in [(keeping, false), (clearing, true)] {
        // Names: kept unless given; after a REMOVE, what was given (maybe none).
        let name = |col: &str| {
            if forget {
                format!("{col} = excluded.{col}")
            } else {
                format!("{col} = COALESCE(excluded.{col}, {col})")
            }
        };
        for chunk in set.chunks(CONTACT_CHUNK) {
            let values = vec![format!("(?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW_MS})"); chunk.len()];
            let sql = format!(
                "INSERT INTO contacts (account_id, jid, pn, lid, full_name, first_name, \
                 push_name, username, on_whatsapp, updated_ms) VALUES {} \
                 ON CONFLICT (account_id, jid) DO UPDATE SET pn = COALESCE(excluded.pn, pn), \
                 lid = COALESCE(excluded.lid, lid), {}, {}, \
                 push_name = COALESCE(excluded.push_name, push_name), \
                 username = COALESCE(excluded.username, username), \
                 on_whatsapp = COALESCE(excluded.on_whatsapp, on_whatsapp), \
                 updated_ms = excluded.updated_ms",
                values.join(", "),
                name("full_name"),
                name("first_name"),
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(account)
                    .bind(&r.jid)
                    .bind(&r.pn)
                    .bind(&r.lid)
                    .bind(&r.full_name)
                    .bind(&r.first_name)
                    .bind(&r.push_name)
                    .bind(&r.username)
                    .bind(r.on_whatsapp);
            }
            q.execute(&mut *conn).await?;
        }
    }
    if !forgets.is_empty() {
        // Bare REMOVEs: the names of contacts we know go; nothing is created.
        let jids: Vec<&str> = forgets.iter().map(|r| r.jid.as_str()).collect();
        sqlx::query(&format!(
            "UPDATE contacts SET full_name = NULL, first_name = NULL, updated_ms = {NOW_MS} \
             WHERE account_id = ? AND jid IN (SELECT value FROM json_each(?))"
        ))
        .bind(account)
        .bind(serde_json::to_string(&jids).map_err(|e| sqlx::Error::Encode(e.into()))?)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Both forms of a user JID, when known (from `lid_map`).
async fn both(
    conn: &mut SqliteConnection,
    account: AccountId,
    jid: &Jid,
) -> Result<(Option<Jid>, Option<Jid>), sqlx::Error> {
    Ok(match jid.server {
        Server::Lid => {
            let pn: Option<String> =
                sqlx::query_scalar("SELECT pn FROM lid_map WHERE account_id = ? AND lid = ?")
                    .bind(account)
                    .bind(&jid.user)
                    .fetch_optional(&mut *conn)
                    .await?;
            (pn.map(|p| Jid::new(p, Server::User)), Some(jid.clone()))
        }
        Server::User => {
            let lid: Option<String> =
                sqlx::query_scalar("SELECT lid FROM lid_map WHERE account_id = ? AND pn = ?")
                    .bind(account)
                    .bind(&jid.user)
                    .fetch_optional(&mut *conn)
                    .await?;
            (Some(jid.clone()), lid.map(|l| Jid::new(l, Server::Lid)))
        }
        _ => (None, None),
    })
}

/// Moves the chats and the contacts of the phone numbers in `temp.lid_batch` to their LIDs,
/// inside `learn_lids`' transaction: a constant number of statements for the batch. A row
/// already under the LID wins; a contact's empty fields are filled from the PN row's (in batch
/// order: of two numbers of the batch naming one LID, the earlier fills first), and the LID
/// row names the number that keeps the LID (the last, as `lid_map`).
pub(crate) async fn move_batch_to_lid(
    conn: &mut SqliteConnection,
    account: AccountId,
) -> Result<(), sqlx::Error> {
    for sql in [
        "UPDATE OR IGNORE chats SET jid = \
         (SELECT b.lid_jid FROM temp.lid_batch b WHERE b.pn_jid = chats.jid) \
         WHERE account_id = ? AND jid IN (SELECT pn_jid FROM temp.lid_batch)",
        "DELETE FROM chats WHERE account_id = ? AND jid IN (SELECT pn_jid FROM temp.lid_batch)",
        // `WHERE true`: SQLite's upsert after a join needs it to parse.
        "INSERT INTO contacts (account_id, jid, pn, lid, full_name, first_name, push_name, \
         username, on_whatsapp, updated_ms) SELECT c.account_id, b.lid_jid, b.pn, b.lid, \
         c.full_name, c.first_name, c.push_name, c.username, c.on_whatsapp, c.updated_ms \
         FROM temp.lid_batch b CROSS JOIN contacts c ON c.account_id = ? AND c.jid = b.pn_jid \
         WHERE true ORDER BY b.pos ON CONFLICT (account_id, jid) DO UPDATE SET \
         full_name = COALESCE(contacts.full_name, excluded.full_name), \
         first_name = COALESCE(contacts.first_name, excluded.first_name), \
         push_name = COALESCE(contacts.push_name, excluded.push_name), \
         username = COALESCE(contacts.username, excluded.username), \
         on_whatsapp = COALESCE(contacts.on_whatsapp, excluded.on_whatsapp)",
        "DELETE FROM contacts WHERE account_id = ? AND jid IN (SELECT pn_jid FROM temp.lid_batch)",
        "UPDATE contacts SET (pn, lid) = (SELECT b.pn, b.lid FROM temp.lid_batch b \
         WHERE b.lid_jid = contacts.jid ORDER BY b.pos DESC LIMIT 1) \
         WHERE account_id = ? AND jid IN (SELECT lid_jid FROM temp.lid_batch)",
    ] {
        sqlx::query(sql).bind(account).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves the chat and the contact of phone number `pn` to LID `lid` (bare users), inside
/// `learn_lid`'s transaction. A row already under the LID wins; a contact's empty fields are
/// filled from the PN row's. The per-pair reference of the tests ([`move_batch_to_lid`] is
/// what the product runs).
#[cfg(test)]
pub(crate) async fn move_to_lid(
    conn: &mut SqliteConnection,
    account: AccountId,
    pn: &str,
    lid: &str,
) -> Result<(), sqlx::Error> {
    let (pn_jid, lid_jid) = (
        Jid::new(pn, Server::User).to_string(),
        Jid::new(lid, Server::Lid).to_string(),
    );
    sqlx::query("UPDATE OR IGNORE chats SET jid = ? WHERE account_id = ? AND jid = ?")
        .bind(&lid_jid)
        .bind(account)
        .bind(&pn_jid)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM chats WHERE account_id = ? AND jid = ?")
        .bind(account)
        .bind(&pn_jid)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO contacts (account_id, jid, pn, lid, full_name, first_name, push_name, \
         username, on_whatsapp, updated_ms) SELECT account_id, ?, ?, ?, full_name, first_name, \
         push_name, username, on_whatsapp, updated_ms FROM contacts WHERE account_id = ? \
         AND jid = ? ON CONFLICT (account_id, jid) DO UPDATE SET \
         full_name = COALESCE(contacts.full_name, excluded.full_name), \
         first_name = COALESCE(contacts.first_name, excluded.first_name), \
         push_name = COALESCE(contacts.push_name, excluded.push_name), \
         username = COALESCE(contacts.username, excluded.username), \
         on_whatsapp = COALESCE(contacts.on_whatsapp, excluded.on_whatsapp)",
    )
    .bind(&lid_jid)
    .bind(pn)
    .bind(lid)
    .bind(account)
    .bind(&pn_jid)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM contacts WHERE account_id = ? AND jid = ?")
        .bind(account)
        .bind(&pn_jid)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE contacts SET pn = ?, lid = ? WHERE account_id = ? AND jid = ?")
        .bind(pn)
        .bind(lid)
        .bind(account)
        .bind(&lid_jid)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What tells a contact's warmth (see [`Contact::warm`]), as columns over `contacts c`: rows
/// are keyed by the canonical JID (the LID once known) like tokens and messages.
const WARMTH: &str = "(SELECT p.token_t FROM privacy_tokens p WHERE p.account_id = c.account_id \
     AND p.jid = c.jid AND p.token IS NOT NULL) AS token_at, \
     EXISTS (SELECT 1 FROM messages m WHERE m.account_id = c.account_id AND m.chat = c.jid \
     AND m.from_me = 0) AS wrote_to_us";

fn contact_of(r: &sqlx::sqlite::SqliteRow) -> Result<Contact, sqlx::Error> {
    let jid: String = r.try_get("jid")?;
    let jid: Jid = jid
        .parse()
        .map_err(|_| sqlx::Error::Decode(format!("stored JID {jid:?} does not parse").into()))?;
    Ok(Contact {
        jid,
        pn: r
            .try_get::<Option<String>, _>("pn")?
            .map(|p| Jid::new(p, Server::User)),
        lid: r
            .try_get::<Option<String>, _>("lid")?
            .map(|l| Jid::new(l, Server::Lid)),
        full_name: r.try_get("full_name")?,
        first_name: r.try_get("first_name")?,
        push_name: r.try_get("push_name")?,
        username: r.try_get("username")?,
        on_whatsapp: r.try_get("on_whatsapp")?,
        token_at: r
            .try_get::<Option<i64>, _>("token_at")?
            .map(|t| t.max(0) as u64),
        wrote_to_us: r.try_get("wrote_to_us")?,
    })
}

impl AccountStore for SqliteCreds {
    async fn apply_account_changes(
        &self,
        chats: &[ChatChange],
        contacts: &[ContactChange],
    ) -> Result<(), CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        for c in chats {
            apply_chat_change(&mut tx, self.account, c)
                .await
                .map_err(err)?;
        }
        apply_contact_changes(&mut tx, self.account, contacts)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn store_history(&self, batch: &HistoryBatch) -> Result<usize, CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        self.learn_lids_in(&mut tx, &batch.pairs).await?;
        for c in &batch.chats {
            apply_chat_change(&mut tx, self.account, c)
                .await
                .map_err(err)?;
        }
        apply_contact_changes(&mut tx, self.account, &batch.contacts)
            .await
            .map_err(err)?;
        let mut new = 0;
        for m in &batch.messages {
            let c = super::messages::insert(&mut tx, self.account, m, true)
                .await
                .map_err(err)?;
            if c == crate::client::messages::Committed::Inserted {
                new += 1;
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(new)
    }

    async fn chats(&self, limit: u32, skip: u32) -> Result<Vec<ChatSummary>, CredsStoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        // Every chat with a row or a message; pinned first, then by the newest message. The
        // chat ids and each chat's newest time come from the (account, chat, ts) index (an
        // index-only walk and one seek per chat); the live unread count (inbound, live, after
        // the read marker) is counted for the page's chats only, after the LIMIT.
        let rows = sqlx::query(
            "WITH ids AS (SELECT jid FROM chats WHERE account_id = ?1 \
             UNION SELECT DISTINCT chat FROM messages WHERE account_id = ?1), \
             list AS (SELECT ids.jid AS jid, c.name, c.archived, c.pinned_at, c.muted_until, \
             c.marked_unread, c.unread_count, c.read_ts, c.ephemeral, c.deleted_at, \
             (SELECT MAX(ts) FROM messages m WHERE m.account_id = ?1 AND m.chat = ids.jid) \
              AS last_ts \
             FROM ids LEFT JOIN chats c ON c.account_id = ?1 AND c.jid = ids.jid), \
             page AS (SELECT * FROM list WHERE deleted_at IS NULL \
             ORDER BY pinned_at IS NULL, pinned_at DESC, last_ts DESC, jid LIMIT ?2 OFFSET ?3) \
             SELECT page.*, ct.full_name, ct.push_name, \
             (SELECT COUNT(*) FROM messages m WHERE m.account_id = ?1 AND m.chat = page.jid \
              AND m.ts > COALESCE(page.read_ts, -1) AND m.from_me = 0 AND m.history = 0 \
              AND m.type NOT IN ('edit', 'revoke', 'reaction')) AS live_unread \
             FROM page LEFT JOIN contacts ct ON ct.account_id = ?1 AND ct.jid = page.jid \
             ORDER BY page.pinned_at IS NULL, page.pinned_at DESC, page.last_ts DESC, page.jid",
        )
        .bind(self.account)
        .bind(i64::from(limit))
        .bind(i64::from(skip))
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let jid: String = r.try_get("jid").map_err(err)?;
            let Ok(chat) = jid.parse::<Jid>() else {
                continue;
            };
            let last = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM messages WHERE account_id = ? AND chat = ? {LISTED} \
                 AND type != 'reaction' ORDER BY ts DESC, pk DESC LIMIT 1"
            ))
            .bind(self.account)
            .bind(&jid)
            .fetch_optional(&mut *conn)
            .await
            .map_err(err)?;
            let last = last.as_ref().map(from_row).transpose().map_err(err)?;
            let (pn, lid) = both(&mut conn, self.account, &chat).await.map_err(err)?;
            let get_i = |c: &str| r.try_get::<Option<i64>, _>(c).map_err(err);
            let stored_unread = get_i("unread_count")?.unwrap_or(0).max(0);
            let live = get_i("live_unread")?.unwrap_or(0).max(0);
            out.push(ChatSummary {
                name: r
                    .try_get::<Option<String>, _>("name")
                    .map_err(err)?
                    .or(r.try_get("full_name").map_err(err)?)
                    .or(r.try_get("push_name").map_err(err)?),
                chat,
                pn,
                lid,
                archived: get_i("archived")?.unwrap_or(0) != 0,
                pinned: get_i("pinned_at")?.map(|p| p.max(0) as u64),
                muted_until: get_i("muted_until")?,
                marked_unread: get_i("marked_unread")?.unwrap_or(0) != 0,
                unread_count: u32::try_from(stored_unread + live).unwrap_or(u32::MAX),
                ephemeral: get_i("ephemeral")?
                    .and_then(|e| u32::try_from(e).ok())
                    .filter(|e| *e > 0),
                last_message: last.map(|m: StoredMessage| LastMessage {
                    id: m.id,
                    kind: m.kind.as_str().to_owned(),
                    preview: m.text.as_deref().map(preview),
                    timestamp: m.timestamp,
                    from_me: m.from_me,
                }),
            });
        }
        Ok(out)
    }

    async fn contacts(&self, limit: u32, skip: u32) -> Result<Vec<Contact>, CredsStoreError> {
        let rows = sqlx::query(&format!(
            "SELECT c.*, {WARMTH} FROM contacts c WHERE c.account_id = ? \
             ORDER BY COALESCE(c.full_name, c.push_name) IS NULL, \
             COALESCE(c.full_name, c.push_name), c.jid LIMIT ? OFFSET ?"
        ))
        .bind(self.account)
        .bind(i64::from(limit))
        .bind(i64::from(skip))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(contact_of)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn contact(&self, jid: &Jid) -> Result<Option<Contact>, CredsStoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let key = canonical(&mut conn, self.account, jid).await.map_err(err)?;
        let row = sqlx::query(&format!(
            "SELECT c.*, {WARMTH} FROM contacts c WHERE c.account_id = ? AND c.jid = ?"
        ))
        .bind(self.account)
        .bind(key.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(err)?;
        row.as_ref().map(contact_of).transpose().map_err(err)
    }

    async fn oldest_message(&self, chat: &Jid) -> Result<Option<StoredMessage>, CredsStoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE account_id = ? AND chat = ? {LISTED} \
             ORDER BY ts, pk LIMIT 1"
        ))
        .bind(self.account)
        .bind(chat.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(from_row).transpose().map_err(err)
    }
}
