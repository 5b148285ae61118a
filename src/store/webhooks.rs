//! Webhooks over the shared pool: each account's webhook, and the durable queue of events to
//! deliver to it. An event row is written inside the transaction of what it announces (the
//! message commit, the status change, the connection update), so nothing committed goes
//! unannounced and nothing unannounced is committed; the service's dispatcher drains the queue.

use sqlx::{Row, SqliteConnection};
use zeroize::Zeroizing;

use super::seal::row as sealed_row;
use super::states::DeliveryState;
use super::{AccountId, Store, StoreError};

/// An inbound message was stored.
pub const MESSAGE_RECEIVED: &str = "message.received";
/// An outbound message moved up its delivery ladder (or failed).
pub const MESSAGE_STATUS: &str = "message.status";
/// The connection's status changed.
pub const CONNECTION_UPDATE: &str = "connection.update";
/// A reaction on a stored message was set, changed or removed.
pub const MESSAGE_REACTION: &str = "message.reaction";
/// A stored message's text was edited by its author.
pub const MESSAGE_EDITED: &str = "message.edited";
/// A stored message was deleted for everyone.
pub const MESSAGE_REVOKED: &str = "message.revoked";
/// A message arrived that could not be decrypted: kept as a failed `ciphertext` row while a
/// resend is asked for (a `message.received` follows if one is read).
pub const MESSAGE_UNDECRYPTABLE: &str = "message.undecryptable";
/// Every event a webhook can ask for.
pub const EVENTS: [&str; 7] = [
    MESSAGE_RECEIVED,
    MESSAGE_STATUS,
    CONNECTION_UPDATE,
    MESSAGE_REACTION,
    MESSAGE_EDITED,
    MESSAGE_REVOKED,
    MESSAGE_UNDECRYPTABLE,
];

/// How a delivery attempt failed, as a stable kind (what viewers are shown; the detail stays
/// with members).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No answer in time (connecting, sending or reading the answer).
    Timeout,
    /// No connection (name not resolved, refused, reset, TLS failed).
    Connect,
    /// The receiver's address is one webhooks may not reach (loopback, private, …).
    NotAllowed,
    /// The receiver answered with a status other than 2xx (see `last_status`).
    Status,
    /// A 2xx answer whose body broke off or was larger than any answer needs.
    Answer,
    /// The answer's reply could not be queued.
    Reply,
    /// Our side failed (storage, the event's body).
    Internal,
}

impl FailureKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::NotAllowed => "not_allowed",
            FailureKind::Status => "status",
            FailureKind::Answer => "answer",
            FailureKind::Reply => "reply",
            FailureKind::Internal => "internal",
        }
    }

    /// The kind of a stored name.
    pub fn parse(s: &str) -> Option<FailureKind> {
        Some(match s {
            "timeout" => FailureKind::Timeout,
            "connect" => FailureKind::Connect,
            "not_allowed" => FailureKind::NotAllowed,
            "status" => FailureKind::Status,
            "answer" => FailureKind::Answer,
            "reply" => FailureKind::Reply,
            "internal" => FailureKind::Internal,
            _ => return None,
        })
    }
}

/// Why the `reply` of a taken answer was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyIgnored {
    /// The answer is not a JSON object.
    NotJson,
    /// The answer has no `reply` (or it is null).
    NoReply,
    /// `reply` is not a string.
    NotText,
    /// `reply` is empty or only whitespace.
    Empty,
    /// `reply` is longer than a message may be.
    TooLong,
    /// The event is not an inbound message: there is no one to reply to.
    NotRepliable,
    /// The event's chat cannot be read back.
    NoChat,
}

impl ReplyIgnored {
    /// The stored (and shown) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyIgnored::NotJson => "not_json",
            ReplyIgnored::NoReply => "no_reply",
            ReplyIgnored::NotText => "not_text",
            ReplyIgnored::Empty => "empty",
            ReplyIgnored::TooLong => "too_long",
            ReplyIgnored::NotRepliable => "not_repliable",
            ReplyIgnored::NoChat => "no_chat",
        }
    }

    /// The reason of a stored name.
    pub fn parse(s: &str) -> Option<ReplyIgnored> {
        Some(match s {
            "not_json" => ReplyIgnored::NotJson,
            "no_reply" => ReplyIgnored::NoReply,
            "not_text" => ReplyIgnored::NotText,
            "empty" => ReplyIgnored::Empty,
            "too_long" => ReplyIgnored::TooLong,
            "not_repliable" => ReplyIgnored::NotRepliable,
            "no_chat" => ReplyIgnored::NoChat,
            _ => return None,
        })
    }
}

/// An account's webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where events are POSTed.
    pub url: String,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: Zeroizing<Vec<u8>>,
    /// The events it gets.
    pub events: Vec<String>,
    /// Who set it.
    pub created_by: Option<String>,
    /// When it was first set (unix ms).
    pub created_at: i64,
    /// When it was last set (unix ms).
    pub updated_at: i64,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &crate::util::url::without_credentials(&self.url))
            .field("secret", &"..")
            .field("events", &self.events)
            .finish()
    }
}

/// One queued (or delivered, or dead) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// Queue order.
    pub pk: i64,
    /// The account it belongs to.
    pub account: AccountId,
    /// Its ULID (the receiver's deduplication key).
    pub id: String,
    /// One of [`EVENTS`].
    pub kind: String,
    /// The conversation it is ordered within (empty for connection events).
    pub chat: String,
    /// The message it is about.
    pub message_pk: Option<i64>,
    /// The new status (message or connection).
    pub status: Option<String>,
    /// WhatsApp's error code of a failed message.
    pub error: Option<i64>,
    /// Extra text (a connection's failure code).
    pub data: Option<String>,
    /// The body as first sent.
    pub payload: Option<String>,
    /// Where its delivery is.
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due (unix ms).
    pub next_ms: i64,
    /// When it started waiting (creation or redelivery): the dead-letter clock.
    pub since_ms: i64,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// How the last attempt failed.
    pub last_error_kind: Option<FailureKind>,
    /// Why the taken answer's reply was not sent.
    pub reply_ignored: Option<ReplyIgnored>,
    /// When it was queued (unix ms).
    pub created_ms: i64,
    /// When the receiver took it (unix ms).
    pub delivered_ms: Option<i64>,
}

fn event(r: &sqlx::sqlite::SqliteRow) -> Result<WebhookEvent, sqlx::Error> {
    Ok(WebhookEvent {
        pk: r.try_get("pk")?,
        account: r.try_get("account_id")?,
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        chat: r.try_get("chat")?,
        message_pk: r.try_get("message_pk")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
        data: r.try_get("data")?,
        payload: r.try_get("payload")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_ms: r.try_get("next_ms")?,
        since_ms: r.try_get("since_ms")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        last_error_kind: r
            .try_get::<Option<String>, _>("last_error_kind")?
            .as_deref()
            .and_then(FailureKind::parse),
        reply_ignored: r
            .try_get::<Option<String>, _>("reply_ignored")?
            .as_deref()
            .and_then(ReplyIgnored::parse),
        created_ms: r.try_get("created_ms")?,
        delivered_ms: r.try_get("delivered_ms")?,
    })
}

const COLS: &str = "pk, account_id, id, kind, chat, message_pk, status, error, data, payload, \
                    state, attempts, next_ms, since_ms, last_status, last_error, \
                    last_error_kind, reply_ignored, created_ms, delivered_ms";

/// The oldest waiting event of each (account, chat): the only one of its chat that may go (one
/// pass over the pending rows' index).
const HEADS: &str = "SELECT MIN(pk) AS head FROM webhook_events WHERE state = 'pending' \
                     GROUP BY account_id, chat";

/// The outcome of one delivery attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The event.
    pub pk: i64,
    /// `Delivered`, `Pending` (to try again at `next_ms`) or `Failed` (dead-lettered).
    pub state: DeliveryState,
    /// When the next attempt is due.
    pub next_ms: i64,
    /// The receiver's HTTP status, if it answered.
    pub http_status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// How it failed.
    pub error_kind: Option<FailureKind>,
    /// Why the answer's reply was not sent (a delivered attempt).
    pub reply_ignored: Option<ReplyIgnored>,
}

async fn record_attempt(
    conn: &mut SqliteConnection,
    a: &Attempt,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_events SET state = ?, attempts = attempts + 1, next_ms = ?, \
         last_status = ?, last_error = ?, last_error_kind = ?, reply_ignored = ?, \
         delivered_ms = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_ms END \
         WHERE pk = ? AND state = 'pending'",
    )
    .bind(a.state)
    .bind(a.next_ms)
    .bind(a.http_status)
    .bind(a.error.as_deref())
    .bind(a.error_kind.map(FailureKind::as_str))
    .bind(a.reply_ignored.map(ReplyIgnored::as_str))
    .bind(a.state)
    .bind(now)
    .bind(a.pk)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An event to queue.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NewEvent<'a> {
    pub kind: &'a str,
    pub chat: &'a str,
    pub message_pk: Option<i64>,
    pub status: Option<&'a str>,
    pub error: Option<i64>,
    pub data: Option<&'a str>,
}

use crate::util::clock::now_ms_i64 as now_ms;

/// Queues `e` for `account` on `conn` (inside the caller's transaction) if the account has a
/// webhook that wants it; a no-op otherwise.
pub(crate) async fn enqueue(
    conn: &mut SqliteConnection,
    account: AccountId,
    e: NewEvent<'_>,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO webhook_events (account_id, id, kind, chat, message_pk, status, error, data, \
         next_ms, since_ms, created_ms) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM webhooks \
         WHERE account_id = ? AND instr(',' || events || ',', ',' || ? || ',') > 0",
    )
    .bind(account)
    .bind(crate::util::ids::ulid())
    .bind(e.kind)
    .bind(e.chat)
    .bind(e.message_pk)
    .bind(e.status)
    .bind(e.error)
    .bind(e.data)
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(account)
    .bind(e.kind)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Sets (or replaces) `account`'s webhook. Events already queued go to the new URL.
    pub async fn set_webhook(
        &self,
        account: AccountId,
        url: &str,
        secret: &[u8],
        events: &[&str],
        user: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let secret = self
            .sealer
            .seal(&sealed_row("webhooks", account, ""), secret.to_vec());
        sqlx::query(
            "INSERT INTO webhooks (account_id, url, secret, events, created_by, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (account_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
             events = excluded.events, updated_at = excluded.updated_at",
        )
        .bind(account)
        .bind(url)
        .bind(secret)
        .bind(events.join(","))
        .bind(user)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `account`'s webhook.
    pub async fn webhook(&self, account: AccountId) -> Result<Option<Webhook>, StoreError> {
        let Some(r) = sqlx::query(
            "SELECT url, secret, events, created_by, created_at, updated_at FROM webhooks \
             WHERE account_id = ?",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let secret: Vec<u8> = r.try_get("secret")?;
        let secret = Zeroizing::new(
            self.sealer
                .open(&sealed_row("webhooks", account, ""), secret)?,
        );
        let events: String = r.try_get("events")?;
        Ok(Some(Webhook {
            url: r.try_get("url")?,
            secret,
            events: events
                .split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            created_by: r.try_get("created_by")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }))
    }

    /// Removes `account`'s webhook and the events still waiting for it (delivered and
    /// dead-lettered ones stay for the record). Whether there was one.
    pub async fn delete_webhook(&self, account: AccountId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await?;
        let gone = sqlx::query("DELETE FROM webhooks WHERE account_id = ?")
            .bind(account)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM webhook_events WHERE account_id = ? AND state = 'pending'")
            .bind(account)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone > 0)
    }

    /// Claims up to `limit` events due at `now_ms`: each the oldest waiting event of its
    /// (account, chat) — delivering them all at once keeps every chat in order — and at most
    /// `per_account` of one account, so one busy or slow receiver cannot take every turn. A
    /// claimed event is held back until `lease_ms` (its attempt under way; if the process dies,
    /// it is due again then). Accounts in `skip` (those with their share in flight already)
    /// get none. In `pk` order.
    pub async fn claim_webhook_events(
        &self,
        now_ms: i64,
        per_account: u32,
        limit: u32,
        lease_ms: i64,
        skip: &[AccountId],
    ) -> Result<Vec<WebhookEvent>, StoreError> {
        let skip = serde_json::to_string(skip).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(&format!(
            "UPDATE webhook_events SET next_ms = ? WHERE pk IN (\
             SELECT pk FROM (SELECT e.pk, ROW_NUMBER() OVER \
             (PARTITION BY e.account_id ORDER BY e.pk) AS turn FROM ({HEADS}) h \
             JOIN webhook_events e ON e.pk = h.head WHERE e.next_ms <= ? \
             AND e.account_id NOT IN (SELECT value FROM json_each(?))) \
             WHERE turn <= ? ORDER BY pk LIMIT ?) RETURNING {COLS}"
        ))
        .bind(lease_ms)
        .bind(now_ms)
        .bind(skip)
        .bind(per_account)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows.iter().map(event).collect::<Result<Vec<_>, _>>()?;
        events.sort_by_key(|e| e.pk);
        Ok(events)
    }

    /// Whether any account has a webhook.
    pub async fn any_webhook(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhooks)")
            .fetch_one(&self.pool)
            .await?)
    }

    /// When the next event that may go (the oldest waiting one of its chat) is due.
    pub async fn next_webhook_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT MIN(e.next_ms) FROM ({HEADS}) h JOIN webhook_events e ON e.pk = h.head"
        ))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Fixes the bodies of several events at once (one transaction).
    pub async fn set_webhook_payloads(&self, payloads: &[(i64, String)]) -> Result<(), StoreError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(super::WRITE_TX).await?;
        for (pk, payload) in payloads {
            sqlx::query("UPDATE webhook_events SET payload = ? WHERE pk = ? AND payload IS NULL")
                .bind(payload)
                .bind(pk)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records attempts (one transaction): each event `delivered`, or still `pending` until its
    /// `next_ms`, or `failed` (dead-lettered).
    pub async fn webhook_attempts(&self, attempts: &[Attempt]) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.pool.begin_with(super::WRITE_TX).await?;
        for a in attempts {
            record_attempt(&mut tx, a, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Messages by row key, with the time each row was stored (one query).
    pub async fn messages_by_pks(
        &self,
        pks: &[i64],
    ) -> Result<
        std::collections::HashMap<i64, (crate::client::messages::StoredMessage, Option<i64>)>,
        StoreError,
    > {
        let mut out = std::collections::HashMap::new();
        if pks.is_empty() {
            return Ok(out);
        }
        let list = serde_json::to_string(pks).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(&format!(
            "SELECT pk, {}, created_ms FROM messages WHERE pk IN (SELECT value FROM json_each(?))",
            super::rows::COLUMNS
        ))
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            out.insert(
                r.try_get("pk")?,
                (super::rows::from_row(&r)?, r.try_get("created_ms")?),
            );
        }
        Ok(out)
    }

    /// `account`'s events in `state` (all when None), newest first.
    pub async fn webhook_events(
        &self,
        account: AccountId,
        state: Option<DeliveryState>,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<WebhookEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM webhook_events WHERE account_id = ? AND (? IS NULL OR state = ?) \
             ORDER BY pk DESC LIMIT ? OFFSET ?"
        ))
        .bind(account)
        .bind(state)
        .bind(state)
        .bind(limit)
        .bind(skip)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(event).collect::<Result<_, _>>()?)
    }

    /// Queues `account`'s event `id` again (same id, same body), due now with a fresh
    /// dead-letter clock. The event, if `account` has it and it is not waiting already.
    pub async fn redeliver_webhook_event(
        &self,
        account: AccountId,
        id: &str,
    ) -> Result<Option<WebhookEvent>, StoreError> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE webhook_events SET state = 'pending', attempts = 0, next_ms = ?, since_ms = ?, \
             delivered_ms = NULL WHERE account_id = ? AND id = ? AND state <> 'pending' \
             RETURNING {COLS}"
        ))
        .bind(now)
        .bind(now)
        .bind(account)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(event).transpose()?)
    }

    /// `account`'s event `id`.
    pub async fn webhook_event(
        &self,
        account: AccountId,
        id: &str,
    ) -> Result<Option<WebhookEvent>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM webhook_events WHERE account_id = ? AND id = ?"
        ))
        .bind(account)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(event).transpose()?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_webhook_debug_shows_no_userinfo_query_or_secret() {
        let w = super::Webhook {
            url: "https://user:pw@hooks.example/in?token=abc#frag".into(),
            secret: zeroize::Zeroizing::new(b"0123456789abcdef-secret".to_vec()),
            events: vec![],
            created_by: None,
            created_at: 0,
            updated_at: 0,
        };
        let d = format!("{w:?}");
        for leak in ["pw", "user", "abc", "frag", "0123456789abcdef"] {
            assert!(!d.contains(leak), "{leak} in {d}");
        }
        assert!(d.contains("hooks.example/in"), "{d}");
    }
}
