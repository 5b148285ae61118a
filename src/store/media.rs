//! Media files of messages: the reference each media message carries (written with the
//! message), where its file stands, and which blobs rows still use.

use sqlx::{Row, SqliteConnection};

use super::states::MediaState;
use super::{AccountId, Store, StoreError};
use crate::client::content::Kind;
use crate::client::media_ref::MediaRef;
use crate::client::messages::{MessageStatus, StoredMessage};

/// A media message's file as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaRow {
    /// The message's row.
    pub message_pk: i64,
    /// Its account.
    pub account: AccountId,
    /// The WhatsApp message id.
    pub message_id: String,
    /// The chat (as stored).
    pub chat: String,
    /// The author (as stored).
    pub sender: String,
    /// Sent by this account.
    pub from_me: bool,
    /// The file's reference.
    pub reference: MediaRef,
    /// Where the file stands.
    pub state: MediaState,
    /// Why it failed, or was skipped.
    pub error: Option<String>,
    /// Download attempts so far.
    pub attempts: u32,
}

impl std::fmt::Debug for MediaRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRow")
            .field("message_pk", &self.message_pk)
            .field("message_id", &self.message_id)
            .field("reference", &self.reference)
            .field("state", &self.state)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

const COLS: &str = "mm.message_pk, mm.account_id, m.id, m.chat, m.sender, m.from_me, mm.kind, \
     mm.mimetype, mm.file_name, mm.size, mm.sha256, mm.enc_sha256, mm.media_key, \
     mm.direct_path, mm.url, mm.seconds, mm.width, mm.height, mm.state, mm.error, mm.attempts";

fn arr32(v: Option<Vec<u8>>) -> Option<[u8; 32]> {
    v.and_then(|v| v.try_into().ok())
}

fn u32_of(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn media_row(r: &sqlx::sqlite::SqliteRow) -> Result<MediaRow, sqlx::Error> {
    let kind: String = r.try_get("kind")?;
    Ok(MediaRow {
        message_pk: r.try_get("message_pk")?,
        account: r.try_get("account_id")?,
        message_id: r.try_get("id")?,
        chat: r.try_get("chat")?,
        sender: r.try_get("sender")?,
        from_me: r.try_get("from_me")?,
        reference: MediaRef {
            kind: Kind::parse(&kind).unwrap_or(Kind::Document),
            media_key: arr32(r.try_get("media_key")?),
            direct_path: r.try_get("direct_path")?,
            url: r.try_get("url")?,
            file_sha256: arr32(r.try_get("sha256")?),
            file_enc_sha256: arr32(r.try_get("enc_sha256")?),
            file_length: r
                .try_get::<Option<i64>, _>("size")?
                .and_then(|v| u64::try_from(v).ok()),
            mimetype: r.try_get("mimetype")?,
            file_name: r.try_get("file_name")?,
            seconds: u32_of(r.try_get("seconds")?),
            width: u32_of(r.try_get("width")?),
            height: u32_of(r.try_get("height")?),
        },
        state: r.try_get("state")?,
        error: r.try_get("error")?,
        attempts: u32_of(r.try_get("attempts")?).unwrap_or(0),
    })
}

/// Writes the file reference of the message just inserted as `pk`, in its transaction. What we
/// sent ourselves is `stored` (the sender had the file: the outbox's blob); what arrived is
/// `pending` when it can be fetched, else `failed` with the reason.
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    account: AccountId,
    pk: i64,
    msg: &StoredMessage,
    media: &MediaRef,
) -> Result<(), sqlx::Error> {
    // Our own send names a blob this account's outbox holds; anything else (a copy our phone
    // sent, whatever hash it claims) is fetched and verified like a received file.
    let ours: bool = match (
        msg.from_me && msg.status != MessageStatus::Received,
        media.file_sha256,
    ) {
        (true, Some(sha)) => {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE account_id = ? AND media_blob = ?)",
            )
            .bind(account)
            .bind(sha.to_vec())
            .fetch_one(&mut *conn)
            .await?
        }
        _ => false,
    };
    let (state, error) = if ours {
        (MediaState::Stored, None)
    } else if media.downloadable() {
        (MediaState::Pending, None)
    } else {
        (
            MediaState::Failed,
            Some("the message names no complete file (key, path or hashes missing)"),
        )
    };
    sqlx::query(
        "INSERT INTO message_media (message_pk, account_id, kind, mimetype, file_name, size, \
         sha256, enc_sha256, media_key, direct_path, url, seconds, width, height, state, error, \
         updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (message_pk) DO NOTHING",
    )
    .bind(pk)
    .bind(account)
    .bind(media.kind.as_str())
    .bind(media.mimetype.as_deref())
    .bind(media.file_name.as_deref())
    .bind(media.file_length.and_then(|l| i64::try_from(l).ok()))
    .bind(media.file_sha256.map(|h| h.to_vec()))
    .bind(media.file_enc_sha256.map(|h| h.to_vec()))
    .bind(media.media_key.map(|k| k.to_vec()))
    .bind(media.direct_path.as_deref())
    .bind(media.url.as_deref())
    .bind(media.seconds.map(i64::from))
    .bind(media.width.map(i64::from))
    .bind(media.height.map(i64::from))
    .bind(state)
    .bind(error)
    .bind(crate::util::clock::now_ms_i64())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Files of `account` waiting to be fetched, after row `after_pk`, oldest first.
    pub async fn pending_media(
        &self,
        account: AccountId,
        after_pk: i64,
        limit: u32,
    ) -> Result<Vec<MediaRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM message_media mm JOIN messages m ON m.pk = mm.message_pk \
             WHERE mm.account_id = ? AND mm.state = 'pending' AND mm.message_pk > ? \
             ORDER BY mm.message_pk LIMIT ?"
        ))
        .bind(account)
        .bind(after_pk)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(media_row).collect::<Result<_, _>>()?)
    }

    /// The files of `account`'s messages with id `message_id`, earliest first (ids are the
    /// sender's choice, so one id may name messages in several chats; a few are enough to pick
    /// from).
    pub async fn media_of(
        &self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Vec<MediaRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM message_media mm JOIN messages m ON m.pk = mm.message_pk \
             WHERE m.account_id = ? AND m.id = ? ORDER BY m.pk LIMIT 16"
        ))
        .bind(account)
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(media_row).collect::<Result<_, _>>()?)
    }

    /// The file of message row `pk`.
    pub async fn media_at(&self, pk: i64) -> Result<Option<MediaRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM message_media mm JOIN messages m ON m.pk = mm.message_pk \
             WHERE mm.message_pk = ?"
        ))
        .bind(pk)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(media_row).transpose()?)
    }

    /// Records where a file now stands (`error` for failed or skipped), counting an attempt
    /// when `attempted`.
    pub async fn set_media_state(
        &self,
        pk: i64,
        state: MediaState,
        error: Option<&str>,
        attempted: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            // Failed is final: a fetch that ends after the message was revoked (or given up)
            // does not bring its file back.
            "UPDATE message_media SET state = ?, error = ?, attempts = attempts + ?, \
             updated_ms = ? WHERE message_pk = ? AND state <> 'failed'",
        )
        .bind(state)
        .bind(error)
        .bind(i64::from(attempted))
        .bind(crate::util::clock::now_ms_i64())
        .bind(pk)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The CDN path the phone gave on a media retry (the old one had expired).
    pub async fn set_media_path(&self, pk: i64, direct_path: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE message_media SET direct_path = ?, updated_ms = ? \
             WHERE message_pk = ? AND state <> 'failed'",
        )
        .bind(direct_path)
        .bind(crate::util::clock::now_ms_i64())
        .bind(pk)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `account` holds blob `sha256`: a file of its own it stored, or one it sends.
    pub async fn account_holds_blob(
        &self,
        account: AccountId,
        sha256: &[u8; 32],
    ) -> Result<bool, StoreError> {
        let held: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM message_media WHERE account_id = ?1 AND sha256 = ?2 \
             AND state = 'stored') \
             OR EXISTS (SELECT 1 FROM outbox WHERE account_id = ?1 AND media_blob = ?2)",
        )
        .bind(account)
        .bind(sha256.as_slice())
        .fetch_one(&self.pool)
        .await?;
        Ok(held != 0)
    }

    /// Whether any row (a stored message file, a send) still names blob `sha256`.
    pub async fn blob_in_use(&self, sha256: &[u8; 32]) -> Result<bool, StoreError> {
        let used: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM message_media WHERE sha256 = ?1 AND state = 'stored') \
             OR EXISTS (SELECT 1 FROM outbox WHERE media_blob = ?1)",
        )
        .bind(sha256.as_slice())
        .fetch_one(&self.pool)
        .await?;
        Ok(used != 0)
    }
}

impl Store {
    /// The key that signs media download links (32 random bytes made on first use and kept in
    /// `store_meta`, sealed like other keys when a store key is set): links stay good across
    /// restarts and are made by no one else.
    pub async fn media_link_key(&self) -> Result<zeroize::Zeroizing<[u8; 32]>, StoreError> {
        const NAME: &str = "media_link_key";
        const AD: &[u8] = b"store_meta\0media_link_key";
        let fresh: [u8; 32] = rand::random();
        sqlx::query("INSERT INTO store_meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(NAME)
            .bind(self.sealer.seal(AD, fresh.to_vec()))
            .execute(&self.pool)
            .await?;
        let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM store_meta WHERE name = ?")
            .bind(NAME)
            .fetch_one(&self.pool)
            .await?;
        let open = self.sealer.open(AD, stored)?;
        let key: [u8; 32] = open[..]
            .try_into()
            .map_err(|_| StoreError::Corrupt("media link key is not 32 bytes".into()))?;
        Ok(zeroize::Zeroizing::new(key))
    }

    /// When `account` was made (unix seconds): with its id, an identity no later account has,
    /// since SQLite may give a deleted account's id to the next one made.
    pub async fn account_created(&self, account: AccountId) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT created_at FROM accounts WHERE id = ?")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The (subaccount, agent) of an account.
    pub async fn account_names(
        &self,
        account: AccountId,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT subaccount_id, agent_id FROM accounts WHERE id = ?")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
