//! Both names of the users a page of rows mentions: WhatsApp addresses one person by phone
//! number and by LID (MESSAGING.md §4), rows keep whichever the message came with, and every
//! answer and webhook names both. One query per page, not one per row.

use super::{AccountId, Store, StoreError};

/// At most this many users are asked in one page (a page holds at most a few hundred rows and
/// their reactions; more is a caller's mistake, answered in part, never an unbounded query).
const MAX_USERS: usize = 4096;

impl Store {
    /// The (phone number, LID) pairs `account` knows among `pns` (phone-number users) and
    /// `lids` (LID users), bare user parts, in one query.
    pub async fn lid_pairs(
        &self,
        account: AccountId,
        pns: &[String],
        lids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if pns.is_empty() && lids.is_empty() {
            return Ok(Vec::new());
        }
        let list = |v: &[String]| {
            serde_json::to_string(&v[..v.len().min(MAX_USERS)]).unwrap_or_else(|_| "[]".into())
        };
        Ok(sqlx::query_as(
            "SELECT pn, lid FROM lid_map WHERE account_id = ? AND \
             (pn IN (SELECT value FROM json_each(?)) OR lid IN (SELECT value FROM json_each(?)))",
        )
        .bind(account)
        .bind(list(pns))
        .bind(list(lids))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The JSON results of `account`'s sends with these WhatsApp message ids, by id (one
    /// query): a failed send's explanation (`error.code`, `remedy`, `until`) for its message
    /// row; None for a send whose outbox row has no result yet (the drain is finishing it).
    /// An id with no outbox row (pruned, or never one) is absent.
    pub async fn send_results(
        &self,
        account: AccountId,
        message_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Option<String>>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Default::default());
        }
        let list = serde_json::to_string(&message_ids[..message_ids.len().min(MAX_USERS)])
            .unwrap_or_else(|_| "[]".into());
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT message_id, result FROM outbox WHERE account_id = ? \
             AND message_id IN (SELECT value FROM json_each(?))",
        )
        .bind(account)
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }
}
