//! The REST service's outbox over the shared pool: accepted sends, per account, in order.
//! Enqueueing is one insert that is both the idempotency record and the durable intent; a
//! retried request with the same key finds the first one. A queued send ends `done`, `failed`,
//! `cancelled` (its account was disconnected first) or `expired` (it waited past its time);
//! the last two say so with a `message.status` event in the transaction that ends them.

use sqlx::{Row, SqliteConnection};

use super::states::OutboxState;
use super::webhooks::{self, NewEvent};
use super::{AccountId, Store, StoreError};
use crate::client::messages::{MessageStatus, StatusUpdate};

/// One accepted send. `Debug` leaves out the text and the media JSON (which holds the file's
/// media key once uploaded).
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Its key in the outbox (order of acceptance).
    pub pk: i64,
    /// The account sending it.
    pub account: AccountId,
    /// The request's `Idempotency-Key`, if it had one.
    pub idem_key: Option<String>,
    /// The WhatsApp message id it keeps.
    pub message_id: String,
    /// The recipient JID.
    pub to: String,
    /// The text.
    pub body: String,
    /// Who asked.
    pub user_id: Option<String>,
    /// Where it is.
    pub state: OutboxState,
    /// The JSON answer once done or failed.
    pub result: Option<String>,
    /// When it was accepted (unix ms).
    pub created_ms: i64,
    /// For a media send: the file and how to present it (JSON, `service::media`'s shape),
    /// with the upload's result once uploaded.
    pub media: Option<String>,
    /// While held (a cold send while new chats are barred): why and until when, as JSON
    /// (`reason`, `until`); the drain skips it until the hold is released.
    pub hold: Option<String>,
}

impl std::fmt::Debug for OutboxRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRow")
            .field("pk", &self.pk)
            .field("account", &self.account)
            .field("message_id", &self.message_id)
            .field("state", &self.state)
            .field("media", &self.media.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

fn row(r: &sqlx::sqlite::SqliteRow) -> Result<OutboxRow, sqlx::Error> {
    Ok(OutboxRow {
        pk: r.try_get("pk")?,
        account: r.try_get("account_id")?,
        idem_key: r.try_get("idem_key")?,
        message_id: r.try_get("message_id")?,
        to: r.try_get("to_jid")?,
        body: r.try_get("body")?,
        user_id: r.try_get("user_id")?,
        state: r.try_get("state")?,
        result: r.try_get("result")?,
        created_ms: r.try_get("created_ms")?,
        media: r.try_get("media")?,
        hold: r.try_get("hold")?,
    })
}

const COLS: &str = "pk, account_id, idem_key, message_id, to_jid, body, user_id, state, result, \
     created_ms, media, hold";

/// What [`Store::cancel_sends`] cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cancelled {
    /// The queued sends (their keys).
    pub sends: Vec<i64>,
    /// Messages recorded but never acked.
    pub messages: usize,
    /// Queued sends whose message WhatsApp had already taken: ended `done`, not cancelled.
    pub sent: Vec<i64>,
}

/// A send to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSend<'a> {
    /// The request's `Idempotency-Key`.
    pub idem_key: Option<&'a str>,
    /// The WhatsApp id to keep.
    pub message_id: &'a str,
    /// Recipient JID.
    pub to: &'a str,
    /// Text.
    pub body: &'a str,
    /// Who asked.
    pub user_id: Option<&'a str>,
    /// Now (unix ms).
    pub now_ms: i64,
    /// For a media send: its JSON and the blob (SHA-256) it names.
    pub media: Option<(&'a str, [u8; 32])>,
}

impl Store {
    /// Accepts a send: a new queued row, or the row an earlier request with the same
    /// idempotency key made (second value false).
    pub async fn enqueue_send(
        &self,
        account: AccountId,
        s: &NewSend<'_>,
    ) -> Result<(OutboxRow, bool), StoreError> {
        // The new row comes back from the insert itself: read apart, it could be gone already
        // (an agent removed, a row pruned) and a send would fail that was recorded.
        let inserted = sqlx::query(&format!(
            "INSERT INTO outbox (account_id, idem_key, message_id, to_jid, body, user_id, state, \
             created_ms, media, media_blob) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) \
             ON CONFLICT (account_id, idem_key) DO NOTHING RETURNING {COLS}"
        ))
        .bind(account)
        .bind(s.idem_key)
        .bind(s.message_id)
        .bind(s.to)
        .bind(s.body)
        .bind(s.user_id)
        .bind(s.now_ms)
        .bind(s.media.map(|(m, _)| m))
        .bind(s.media.map(|(_, b)| b.to_vec()))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = inserted {
            return Ok((row(&r)?, true));
        }
        let first = sqlx::query(&format!(
            "SELECT {COLS} FROM outbox WHERE account_id = ? AND idem_key = ?"
        ))
        .bind(account)
        .bind(s.idem_key)
        .fetch_one(&self.pool)
        .await?;
        Ok((row(&first)?, false))
    }

    /// The send an earlier request with idempotency key `key` made.
    pub async fn find_send(
        &self,
        account: AccountId,
        key: &str,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {COLS} FROM outbox WHERE account_id = ? AND idem_key = ?"
        ))
        .bind(account)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// The oldest queued send of `account`.
    pub async fn next_send(&self, account: AccountId) -> Result<Option<OutboxRow>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {COLS} FROM outbox WHERE account_id = ? AND state = 'queued' \
             AND hold IS NULL ORDER BY pk LIMIT 1"
        ))
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// Holds queued send `pk` (`hold`: JSON with `reason` and `until`): the drain skips it
    /// until [`Store::release_holds`].
    pub async fn hold_send(&self, pk: i64, hold: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET hold = ? WHERE pk = ? AND state = 'queued'")
            .bind(hold)
            .bind(pk)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `account`'s held sends, (key, when accepted in unix ms), oldest first; at most 1,000
    /// a call (the drain calls again).
    pub async fn held_sends(&self, account: AccountId) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT pk, created_ms FROM outbox WHERE account_id = ? AND state = 'queued' \
             AND hold IS NOT NULL ORDER BY pk LIMIT 1000",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Releases every held send of `account` (its limits lifted); returns how many.
    pub async fn release_holds(&self, account: AccountId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET hold = NULL WHERE account_id = ? AND state = 'queued' \
             AND hold IS NOT NULL",
        )
        .bind(account)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The send `pk`.
    pub async fn send_row(&self, pk: i64) -> Result<Option<OutboxRow>, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLS} FROM outbox WHERE pk = ?"))
            .bind(pk)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// Ends a queued send in `state`, with its JSON answer.
    pub async fn finish_send(
        &self,
        pk: i64,
        state: OutboxState,
        result: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET state = ?, result = ? WHERE pk = ? AND state = 'queued'")
            .bind(state)
            .bind(result)
            .bind(pk)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Rewrites a queued media send's JSON (its upload's result, once uploaded: a restart then
    /// sends what was uploaded instead of uploading again).
    pub async fn set_send_media(&self, pk: i64, media: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET media = ? WHERE pk = ? AND state = 'queued'")
            .bind(media)
            .bind(pk)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Accounts with queued sends (to start their drains at start-up).
    pub async fn accounts_with_queued_sends(&self) -> Result<Vec<AccountId>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT account_id FROM outbox WHERE state = 'queued'")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Cancels everything `account` still had to send, in one transaction: its queued sends
    /// become `cancelled`, its messages recorded but never acked become `cancelled` (through
    /// the status path), and each says so with a `message.status` event.
    pub async fn cancel_sends(&self, account: AccountId) -> Result<Cancelled, StoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await?;
        // A queued row whose message WhatsApp already took (acked before a crash kept the drain
        // from saying so) was sent: it ends `done` with the message's status, not `cancelled`.
        let settled: Vec<(i64, String, String, String, MessageStatus, i64)> = sqlx::query_as(
            "SELECT o.pk, o.message_id, o.to_jid, o.body, m.status, m.ts FROM outbox o \
             JOIN messages m ON m.account_id = o.account_id AND m.id = o.message_id \
             AND m.from_me = 1 \
             WHERE o.account_id = ? AND o.state = 'queued' \
             AND m.status IN ('server_ack', 'delivered', 'read', 'played')",
        )
        .bind(account)
        .fetch_all(&mut *tx)
        .await?;
        for (pk, id, to, body, status, timestamp) in &settled {
            let result = match to.parse::<crate::binary::Jid>() {
                Ok(j) => serde_json::json!({
                    "messageId": crate::client::messages::serialized_id(&j, id, true),
                    "to": j.c_us(),
                    "message": body,
                    "timestamp": timestamp,
                    "status": status.as_str(),
                }),
                Err(_) => serde_json::json!({ "status": status.as_str() }),
            };
            sqlx::query("UPDATE outbox SET state = ?, result = ? WHERE pk = ?")
                .bind(OutboxState::Done)
                .bind(result.to_string())
                .bind(pk)
                .execute(&mut *tx)
                .await?;
        }
        let queued: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT pk, message_id, to_jid FROM outbox WHERE account_id = ? AND state = 'queued'",
        )
        .bind(account)
        .fetch_all(&mut *tx)
        .await?;
        let pending: Vec<(String, String)> = sqlx::query_as(
            "SELECT chat, id FROM messages WHERE account_id = ? AND from_me = 1 \
             AND status = 'pending'",
        )
        .bind(account)
        .fetch_all(&mut *tx)
        .await?;
        let t = crate::util::clock::now_ms() / 1000;
        for (chat, id) in &pending {
            let Ok(chat) = chat.parse() else { continue };
            let update = StatusUpdate {
                chat,
                id: id.clone(),
                device: None,
                status: MessageStatus::Cancelled,
                error: None,
                t,
            };
            super::messages::set_status(&mut tx, account, &update).await?;
        }
        let result = ended_json(
            "cancelled",
            "the connection was disconnected before it was sent",
        );
        for (pk, message_id, to) in &queued {
            // A send whose message is recorded is told of by that message's own event.
            if !pending.iter().any(|(_, id)| id == message_id) {
                unsent_event(&mut tx, account, to, message_id, "cancelled").await?;
            }
            sqlx::query("UPDATE outbox SET state = 'cancelled', result = ? WHERE pk = ?")
                .bind(&result)
                .bind(pk)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Cancelled {
            sends: queued.into_iter().map(|(pk, _, _)| pk).collect(),
            messages: pending.len(),
            sent: settled.into_iter().map(|(pk, ..)| pk).collect(),
        })
    }

    /// Ends queued send `pk`, never sent, as `expired`, with its `message.status` event, in
    /// one transaction. False when it is no longer queued or its message is recorded (then
    /// the message's own status tells, and the send is not a sender's to expire).
    pub async fn expire_send(&self, pk: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await?;
        let row: Option<(AccountId, String, String)> = sqlx::query_as(
            "SELECT account_id, message_id, to_jid FROM outbox WHERE pk = ? AND state = 'queued'",
        )
        .bind(pk)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((account, message_id, to)) = row else {
            return Ok(false);
        };
        let recorded: Option<i64> = sqlx::query_scalar(
            "SELECT pk FROM messages WHERE account_id = ? AND id = ? AND from_me = 1",
        )
        .bind(account)
        .bind(&message_id)
        .fetch_optional(&mut *tx)
        .await?;
        if recorded.is_some() {
            return Ok(false);
        }
        sqlx::query("UPDATE outbox SET state = 'expired', result = ? WHERE pk = ?")
            .bind(ended_json(
                "expired",
                "it waited to be sent past WA_GATEWAY_SEND_TTL",
            ))
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        unsent_event(&mut tx, account, &to, &message_id, "expired").await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The JSON answer of a send that ended unsent.
fn ended_json(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}

/// The `message.status` event of a send that ended before its message was recorded: no
/// message row to point at, so it carries the recipient and the id it would have had.
async fn unsent_event(
    conn: &mut SqliteConnection,
    account: AccountId,
    to: &str,
    message_id: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    let data = serde_json::json!({ "to": to, "id": message_id }).to_string();
    webhooks::enqueue(
        conn,
        account,
        NewEvent {
            kind: webhooks::MESSAGE_STATUS,
            chat: to,
            status: Some(status),
            data: Some(&data),
            ..Default::default()
        },
    )
    .await
}
