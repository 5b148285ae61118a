//! Retention: deleting what has aged past its time, one bounded batch per call, oldest first,
//! each batch its own short write transaction (the caller loops, so the writer is never held
//! for long and other writers get their turn between batches). A batch never deletes what
//! another row still needs: queued sends, webhook events not yet delivered, messages the
//! client may still resend or the outbox may still send, and reactions, edits and deletes whose
//! target is still stored. It knows SQL and ages; how long each kind is kept is the caller's.

use sqlx::Row;

use super::{AccountId, Store, StoreError};

/// Where a pass over one account's old messages has got to: the (time, pk) of the last row
/// it looked at. Rows kept back (still needed) are passed over, not looked at again in the
/// same pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageCursor {
    ts: i64,
    pk: i64,
}

impl MessageCursor {
    /// Before every row.
    pub const START: MessageCursor = MessageCursor {
        ts: i64::MIN,
        pk: i64::MIN,
    };
}

/// What one batch over old messages did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageBatch {
    /// Messages deleted (their receipts went with them).
    pub deleted: u64,
    /// Receipts deleted with them.
    pub receipts: u64,
    /// Where the next batch starts; None when the account's pass is over.
    pub next: Option<MessageCursor>,
}

/// Receipts one message batch may delete along with its messages (a message of a large group
/// has one per member device and status): the batch stops short of this, but takes at least one
/// message so a pass always moves on.
const RECEIPT_BUDGET: i64 = 5_000;

/// Whether old message `m` may go. It may not while:
/// - it is ours and not yet acked (`pending`): the client resends it with its id until acked;
/// - a queued send names its id: the outbox would find no record and transmit it again;
/// - a webhook event not yet delivered points at it (pending, or dead-lettered and so still
///   redeliverable): the event's body may still have to be made from the row;
/// - it is a reaction, edit or delete whose target is still stored: replacing the target (an
///   undecryptable placeholder by the message once it decrypts) replays what acts on it from
///   these rows, so they go with or after their target. The target is looked for among the
///   chat's rows no newer than `m` (a target precedes what acts on it; rows older than `m` the
///   pass has already pruned, so the look is short); one whose sender's clock ran ahead is
///   missed, and `m` goes first: what it did stays applied on the target.
const MAY_GO: &str = "m.status <> 'pending' \
     AND NOT (m.from_me = 1 AND EXISTS (SELECT 1 FROM outbox o WHERE o.account_id = m.account_id \
     AND o.state = 'queued' AND o.message_id = m.id)) \
     AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.message_pk = m.pk \
     AND e.state <> 'delivered') \
     AND NOT (m.target_id IS NOT NULL AND m.type IN ('reaction', 'edit', 'revoke') \
     AND EXISTS (SELECT 1 FROM messages t WHERE t.account_id = m.account_id AND t.chat = m.chat \
     AND t.ts <= m.ts AND t.id = m.target_id AND t.type NOT IN ('reaction', 'edit', 'revoke')))";

impl Store {
    /// Deletes up to `limit` finished sends (`done`, `failed`, `cancelled`, `expired`; never a
    /// queued one) accepted before `before_ms`. With them go their idempotency keys: a request
    /// retried after that is a new send. How many went.
    pub async fn prune_outbox(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        self.prune_batch(
            "DELETE FROM outbox WHERE pk IN (SELECT pk FROM outbox WHERE state <> 'queued' \
             AND created_ms < ? ORDER BY created_ms LIMIT ?)",
            before_ms,
            limit,
        )
        .await
    }

    /// Deletes up to `limit` activities logged before `before_ms`.
    pub async fn prune_activities(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        self.prune_batch(
            "DELETE FROM activities WHERE id IN (SELECT id FROM activities WHERE at_ms < ? \
             ORDER BY at_ms LIMIT ?)",
            before_ms,
            limit,
        )
        .await
    }

    /// Deletes up to `limit` group changes WhatsApp dated before `before_s` (unix seconds). A
    /// notification of one that WhatsApp delivers again after that counts as new.
    pub async fn prune_group_updates(&self, before_s: i64, limit: u32) -> Result<u64, StoreError> {
        self.prune_batch(
            "DELETE FROM group_updates WHERE rowid IN (SELECT rowid FROM group_updates \
             WHERE t < ? ORDER BY t LIMIT ?)",
            before_s,
            limit,
        )
        .await
    }

    /// Deletes up to `limit` webhook events delivered before `before_ms`.
    pub async fn prune_webhook_events(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.prune_events("delivered", "delivered_ms", before_ms, limit)
            .await
    }

    /// Deletes up to `limit` dead-lettered webhook events that died (`next_ms` is set to that
    /// moment) before `before_ms`: they can no longer be redelivered. Pending ones are never
    /// pruned.
    pub async fn prune_dead_webhook_events(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.prune_events("failed", "next_ms", before_ms, limit)
            .await
    }

    /// Events in `state` whose `at` column is before `before_ms`, oldest first.
    async fn prune_events(
        &self,
        state: &'static str,
        at: &'static str,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.prune_batch(
            &format!(
                "DELETE FROM webhook_events WHERE pk IN (SELECT pk FROM webhook_events \
                 WHERE state = '{state}' AND {at} < ? ORDER BY {at} LIMIT ?)"
            ),
            before_ms,
            limit,
        )
        .await
    }

    async fn prune_batch(&self, sql: &str, before: i64, limit: u32) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql)
            .bind(before)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Every account (each pass over messages goes account by account, along its index).
    pub async fn account_ids(&self) -> Result<Vec<AccountId>, StoreError> {
        Ok(sqlx::query_scalar("SELECT id FROM accounts ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Looks at up to `limit` messages of `account` dated before `before_s` (their own time,
    /// unix seconds), from `from` on, and deletes those no other row still needs (see
    /// `MAY_GO`) with their receipts, in one transaction. A message that is kept stays until a
    /// later pass finds it free. A redelivery of a message after it was pruned is stored as new.
    pub async fn prune_messages(
        &self,
        account: AccountId,
        before_s: i64,
        from: MessageCursor,
        limit: u32,
    ) -> Result<MessageBatch, StoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await?;
        let rows = sqlx::query(&format!(
            "SELECT m.pk, m.ts, ({MAY_GO}) AS may_go, \
             (SELECT COUNT(*) FROM message_receipts r WHERE r.message_pk = m.pk) AS receipts \
             FROM messages m WHERE m.account_id = ? AND m.ts < ? AND (m.ts, m.pk) > (?, ?) \
             ORDER BY m.ts, m.pk LIMIT ?"
        ))
        .bind(account)
        .bind(before_s)
        .bind(from.ts)
        .bind(from.pk)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let full = rows.len() >= limit.max(1) as usize;
        let (mut doomed, mut receipts, mut last, mut short) = (Vec::new(), 0i64, None, false);
        for r in &rows {
            let pk: i64 = r.try_get("pk")?;
            if r.try_get::<bool, _>("may_go")? {
                let n: i64 = r.try_get("receipts")?;
                if !doomed.is_empty() && receipts.saturating_add(n) > RECEIPT_BUDGET {
                    short = true;
                    break;
                }
                doomed.push(pk);
                receipts = receipts.saturating_add(n);
            }
            last = Some(MessageCursor {
                ts: r.try_get("ts")?,
                pk,
            });
        }
        let deleted = if doomed.is_empty() {
            0
        } else {
            // Receipts go through the foreign key's cascade, in this statement.
            sqlx::query("DELETE FROM messages WHERE pk IN (SELECT value FROM json_each(?))")
                .bind(serde_json::to_string(&doomed).unwrap_or_else(|_| "[]".into()))
                .execute(&mut *tx)
                .await?
                .rows_affected()
        };
        tx.commit().await?;
        Ok(MessageBatch {
            deleted,
            receipts: u64::try_from(receipts).unwrap_or(0),
            next: last.filter(|_| full || short),
        })
    }
}
