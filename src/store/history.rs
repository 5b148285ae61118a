//! The kept history-sync notifications of one account over the shared pool (migration 0022):
//! the history worker's durable queue. The notification is sealed like key material (it holds
//! the blob's media key), its row's identity (account, message id) as associated data.

use sqlx::Row;

use super::creds::{SqliteCreds, err};
use crate::client::history_store::{
    MAX_PENDING_HISTORY, PendingHistory, PendingHistoryStore, Queued,
};
use crate::client::store::CredsStoreError;

/// The table, as sealing names it.
const TABLE: &str = "pending_history";

impl PendingHistoryStore for SqliteCreds {
    async fn queue_history(
        &self,
        id: &str,
        notification: &[u8],
    ) -> Result<Queued, CredsStoreError> {
        let sealed = self.seal(TABLE, id, notification.to_vec());
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        // Counting and inserting are one statement under the write lock: the cap holds.
        let done = sqlx::query(
            "INSERT INTO pending_history (account_id, msg_id, notification, created_at) \
             SELECT ?, ?, ?, unixepoch() \
             WHERE (SELECT COUNT(*) FROM pending_history WHERE account_id = ?) < ? \
             ON CONFLICT (account_id, msg_id) DO NOTHING",
        )
        .bind(self.account)
        .bind(id)
        .bind(sealed)
        .bind(self.account)
        .bind(i64::try_from(MAX_PENDING_HISTORY).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let queued = if done.rows_affected() > 0 {
            Queued::New
        } else {
            let known: Option<i64> = sqlx::query_scalar(
                "SELECT seq FROM pending_history WHERE account_id = ? AND msg_id = ?",
            )
            .bind(self.account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            if known.is_some() {
                Queued::Known
            } else {
                Queued::Full
            }
        };
        tx.commit().await.map_err(err)?;
        Ok(queued)
    }

    async fn next_history(&self, after: i64) -> Result<Option<PendingHistory>, CredsStoreError> {
        let row = sqlx::query(
            "SELECT seq, msg_id, notification, attempts FROM pending_history \
             WHERE account_id = ? AND receipt_due = 0 AND seq > ? ORDER BY seq LIMIT 1",
        )
        .bind(self.account)
        .bind(after)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        let Some(r) = row else { return Ok(None) };
        let id: String = r.try_get("msg_id").map_err(err)?;
        let stored: Option<Vec<u8>> = r.try_get("notification").map_err(err)?;
        let notification = self.open(TABLE, &id, stored.unwrap_or_default())?;
        let attempts: i64 = r.try_get("attempts").map_err(err)?;
        Ok(Some(PendingHistory {
            seq: r.try_get("seq").map_err(err)?,
            id,
            notification: zeroize::Zeroizing::new(notification),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        }))
    }

    async fn history_attempt(&self, id: &str) -> Result<u32, CredsStoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE pending_history SET attempts = attempts + 1 \
             WHERE account_id = ? AND msg_id = ? RETURNING attempts",
        )
        .bind(self.account)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn history_stored(&self, id: &str) -> Result<(), CredsStoreError> {
        sqlx::query(
            "UPDATE pending_history SET receipt_due = 1, notification = NULL \
             WHERE account_id = ? AND msg_id = ?",
        )
        .bind(self.account)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn history_receipts_due(&self) -> Result<Vec<String>, CredsStoreError> {
        sqlx::query_scalar(
            "SELECT msg_id FROM pending_history WHERE account_id = ? AND receipt_due = 1 \
             ORDER BY seq",
        )
        .bind(self.account)
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }

    async fn forget_history(&self, id: &str) -> Result<(), CredsStoreError> {
        sqlx::query("DELETE FROM pending_history WHERE account_id = ? AND msg_id = ?")
            .bind(self.account)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}
