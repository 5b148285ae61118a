//! A message row as SQL reads and writes it: the columns, how a row becomes a
//! [`StoredMessage`], and the stored forms of its JSON parts. Shared by the message writer, the
//! history readers and the webhook renderer, so none of them needs another.

use sqlx::Row;

use crate::binary::Jid;
use crate::client::content::Kind;
use crate::client::messages::{MessageStatus, Reaction, StoredMessage};

/// The stored form of a row's content (NULL for none).
pub(crate) fn content_json(v: &serde_json::Value) -> Option<String> {
    (!v.is_null()).then(|| v.to_string())
}

/// The stored form of a row's reactions (NULL for none).
pub(crate) fn reactions_json(r: &[Reaction]) -> Option<String> {
    (!r.is_empty()).then(|| {
        serde_json::Value::Array(
            r.iter()
                .map(|r| serde_json::json!({ "sender": r.sender.to_string(), "emoji": r.emoji, "t": r.t }))
                .collect(),
        )
        .to_string()
    })
}

/// Reads [`reactions_json`] back (entries that do not parse are skipped).
fn reactions_of(s: Option<&str>) -> Vec<Reaction> {
    let Some(v) = s.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return Vec::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(Reaction {
                sender: r.get("sender")?.as_str()?.parse().ok()?,
                emoji: r.get("emoji")?.as_str()?.to_owned(),
                t: r.get("t")?.as_u64()?,
            })
        })
        .collect()
}

fn jid(s: &str) -> Result<Jid, sqlx::Error> {
    s.parse()
        .map_err(|_| sqlx::Error::Decode(format!("stored JID {s:?} does not parse").into()))
}

/// A row as a [`StoredMessage`].
pub(crate) fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<StoredMessage, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(StoredMessage {
        id: r.try_get("id")?,
        chat: jid(r.try_get("chat")?)?,
        sender: jid(r.try_get("sender")?)?,
        from_me: r.try_get("from_me")?,
        timestamp: r.try_get::<i64, _>("ts")?.max(0) as u64,
        push_name: r.try_get("push_name")?,
        text: r.try_get("body")?,
        raw: r.try_get("raw")?,
        status: MessageStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status:?}").into()))?,
        error: r
            .try_get::<Option<i64>, _>("error")?
            .and_then(|e| u16::try_from(e).ok()),
        kind: {
            let t: String = r.try_get("type")?;
            Kind::parse(&t).unwrap_or(Kind::Unknown)
        },
        content: r
            .try_get::<Option<String>, _>("content")?
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or(serde_json::Value::Null),
        ephemeral: r.try_get("ephemeral")?,
        view_once: r.try_get("view_once")?,
        target: r.try_get("target_id")?,
        edited_at: r
            .try_get::<Option<i64>, _>("edited_at")?
            .map(|t| t.max(0) as u64),
        reactions: reactions_of(r.try_get::<Option<String>, _>("reactions")?.as_deref()),
        // The file's reference (its key) is read through the media queries; readers get what
        // it is and where it stands.
        media: None,
        file: r
            .try_get::<Option<String>, _>("file")?
            .and_then(|f| serde_json::from_str(&f).ok()),
    })
}

/// The condition history listings add: edits and revokes show through their target.
pub(crate) const LISTED: &str = "AND type NOT IN ('edit', 'revoke')";

/// The columns [`from_row`] reads.
pub(crate) const COLUMNS: &str = "id, chat, sender, from_me, ts, push_name, body, raw, status, \
     error, type, content, ephemeral, view_once, target_id, edited_at, reactions, \
     (SELECT json_object('mimetype', mm.mimetype, 'size', mm.size, 'sha256', lower(hex(mm.sha256)), \
     'fileName', mm.file_name, 'seconds', mm.seconds, 'width', mm.width, 'height', mm.height, \
     'state', mm.state, 'error', mm.error) FROM message_media mm \
     WHERE mm.message_pk = messages.pk) AS file";
