//! The REST service's outbox over the shared pool: accepted sends, per account, in order.
//! Enqueueing is one insert that is both the idempotency record and the durable intent; a
//! retried request with the same key finds the first one.

use sqlx::Row;

use super::{AccountId, Store, StoreError};

/// One accepted send.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `queued`, `done` or `failed`.
    pub state: String,
    /// The JSON answer once done or failed.
    pub result: Option<String>,
    /// When it was accepted (unix ms).
    pub created_ms: i64,
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
    })
}

const COLS: &str =
    "pk, account_id, idem_key, message_id, to_jid, body, user_id, state, result, created_ms";

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
             created_ms) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?) \
             ON CONFLICT (account_id, idem_key) DO NOTHING RETURNING {COLS}"
        ))
        .bind(account)
        .bind(s.idem_key)
        .bind(s.message_id)
        .bind(s.to)
        .bind(s.body)
        .bind(s.user_id)
        .bind(s.now_ms)
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
             ORDER BY pk LIMIT 1"
        ))
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// The send `pk`.
    pub async fn send_row(&self, pk: i64) -> Result<Option<OutboxRow>, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLS} FROM outbox WHERE pk = ?"))
            .bind(pk)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// Ends a queued send: `done` or `failed`, with its JSON answer.
    pub async fn finish_send(&self, pk: i64, state: &str, result: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET state = ?, result = ? WHERE pk = ? AND state = 'queued'")
            .bind(state)
            .bind(result)
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
}
