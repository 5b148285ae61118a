//! Group state of one account over the shared pool: metadata (the `<group>` node, encoded with
//! the binary codec, so what is stored reads back exactly as WhatsApp sent it), the devices
//! holding our sender key per group, and the group changes we were told of.

use sqlx::Row;

use super::creds::{SqliteCreds, err};
use crate::binary::{Jid, decode_node, encode_node};
use crate::client::messages::GroupUpdate;
use crate::client::store::{
    CredsStore, CredsStoreError, GroupInfo, GroupStore, group_from_node, group_to_node,
};
use crate::signal::SignalChanges;

fn t64(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

impl GroupStore for SqliteCreds {
    async fn group(&self, group: &Jid) -> Result<Option<GroupInfo>, CredsStoreError> {
        let blob: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT info FROM groups WHERE account_id = ? AND jid = ?")
                .bind(self.account)
                .bind(group.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        let Some(blob) = blob else { return Ok(None) };
        let node = decode_node(&blob.into()).map_err(err)?;
        group_from_node(&node)
            .map(Some)
            .ok_or_else(|| CredsStoreError(format!("corrupt group row {group}")))
    }

    async fn set_group(&self, info: &GroupInfo) -> Result<(), CredsStoreError> {
        let mut blob = Vec::new();
        encode_node(&group_to_node(info), &mut blob).map_err(err)?;
        sqlx::query(
            "INSERT INTO groups (account_id, jid, info, updated) VALUES (?, ?, ?, \
             CAST(strftime('%s','now') AS INTEGER)) ON CONFLICT (account_id, jid) DO UPDATE \
             SET info = excluded.info, updated = excluded.updated",
        )
        .bind(self.account)
        .bind(info.jid.to_string())
        .bind(blob)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn key_holders(&self, group: &Jid) -> Result<Vec<Jid>, CredsStoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT device FROM group_key_holders WHERE account_id = ? AND group_jid = ?",
        )
        .bind(self.account)
        .bind(group.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(rows.iter().filter_map(|d| d.parse().ok()).collect())
    }

    async fn mark_key_holders(&self, group: &Jid, devices: &[Jid]) -> Result<(), CredsStoreError> {
        if devices.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        for d in devices {
            sqlx::query(
                "INSERT OR IGNORE INTO group_key_holders (account_id, group_jid, device) \
                 VALUES (?, ?, ?)",
            )
            .bind(self.account)
            .bind(group.to_string())
            .bind(d.to_string())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn forget_key_holder(&self, group: &Jid, device: &Jid) -> Result<(), CredsStoreError> {
        sqlx::query(
            "DELETE FROM group_key_holders WHERE account_id = ? AND group_jid = ? AND device = ?",
        )
        .bind(self.account)
        .bind(group.to_string())
        .bind(device.to_string())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn reset_group_key(
        &self,
        group: &Jid,
        changes: &SignalChanges,
    ) -> Result<(), CredsStoreError> {
        let mut tx = self.pool.begin_with(super::WRITE_TX).await.map_err(err)?;
        self.signal()
            .apply_in(&mut tx, changes)
            .await
            .map_err(err)?;
        sqlx::query("DELETE FROM group_key_holders WHERE account_id = ? AND group_jid = ?")
            .bind(self.account)
            .bind(group.to_string())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn record_group_update(&self, u: &GroupUpdate) -> Result<bool, CredsStoreError> {
        let participants = u
            .participants
            .iter()
            .map(Jid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let done = sqlx::query(
            "INSERT OR IGNORE INTO group_updates (account_id, group_jid, id, seq, author, t, \
             action, participants, subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(self.account)
        .bind(u.group.to_string())
        .bind(&u.id)
        .bind(i64::from(u.seq))
        .bind(u.author.as_ref().map(Jid::to_string))
        .bind(t64(u.t))
        .bind(&u.action)
        .bind(participants)
        .bind(&u.subject)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn group_updates(
        &self,
        group: &Jid,
        limit: u32,
    ) -> Result<Vec<GroupUpdate>, CredsStoreError> {
        let rows = sqlx::query(
            "SELECT id, seq, author, t, action, participants, subject FROM group_updates \
             WHERE account_id = ? AND group_jid = ? ORDER BY t DESC, rowid DESC LIMIT ?",
        )
        .bind(self.account)
        .bind(group.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let participants: String = r.try_get("participants").map_err(err)?;
                Ok(GroupUpdate {
                    group: group.clone(),
                    id: r.try_get("id").map_err(err)?,
                    seq: u32::try_from(r.try_get::<i64, _>("seq").map_err(err)?).unwrap_or(0),
                    author: r
                        .try_get::<Option<String>, _>("author")
                        .map_err(err)?
                        .and_then(|a| a.parse().ok()),
                    t: r.try_get::<i64, _>("t").map_err(err)?.max(0) as u64,
                    action: r.try_get("action").map_err(err)?,
                    participants: participants
                        .split(',')
                        .filter_map(|p| p.parse().ok())
                        .collect(),
                    subject: r.try_get("subject").map_err(err)?,
                })
            })
            .collect()
    }
}
