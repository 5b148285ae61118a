//! The REST service's records over the shared pool: one connection row per (subaccount,
//! agent) that was ever connected (the guide's `whatsappconnections`), the activity log, and the
//! message history as the guide lists it (with when each row was stored). Times are unix ms.

use sqlx::Row;

use super::rows::{COLUMNS, LISTED, from_row};
use super::states::{ConnectionCode, ConnectionStatus};
use super::webhooks::{self, NewEvent};
use super::{AccountId, Store, StoreError};
use crate::client::messages::StoredMessage;

/// A connection row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    /// The account it belongs to.
    pub account: AccountId,
    /// The tenant's subaccount.
    pub subaccount_id: String,
    /// The chat agent.
    pub agent_id: String,
    /// The guide's status (always `code`'s status).
    pub status: ConnectionStatus,
    /// The precise state.
    pub code: ConnectionCode,
    /// The client's stable failure code (a stream error's code, `qr_timeout`, …), when the
    /// last state had one.
    pub reason: Option<String>,
    /// Whether a QR code was ever shown for it.
    pub qr_generated: bool,
    /// The phone number once linked.
    pub phone_number: Option<String>,
    /// The phone's platform.
    pub platform: Option<String>,
    /// The WhatsApp display name.
    pub pushname: Option<String>,
    /// Who connected it first (the JWT `sub`).
    pub created_by: Option<String>,
    /// When the row was made.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// When it last became connected.
    pub connected_at: Option<i64>,
    /// When it was last disconnected.
    pub disconnected_at: Option<i64>,
}

/// A change to a connection row: fields left None keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionUpdate {
    /// The new state (its status goes with it: the two never disagree).
    pub state: Option<ConnectionCode>,
    /// The failure code (Some(None) clears it).
    pub reason: Option<Option<String>>,
    /// A QR code was shown.
    pub qr_generated: Option<bool>,
    /// The phone number.
    pub phone_number: Option<String>,
    /// The platform.
    pub platform: Option<String>,
    /// The display name.
    pub pushname: Option<String>,
    /// It just connected (sets `connected_at`).
    pub connected: bool,
    /// It just disconnected (sets `disconnected_at`).
    pub disconnected: bool,
}

/// An activity to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Row id (ordering), assigned by the store.
    pub id: i64,
    /// The subaccount.
    pub subaccount_id: String,
    /// The agent.
    pub agent_id: String,
    /// The user who caused it, if a user did.
    pub user_id: Option<String>,
    /// `whatsapp_connected`, `whatsapp_disconnected`, `whatsapp_message_sent`,
    /// `whatsapp_message_received`.
    pub kind: String,
    /// `chat`.
    pub category: String,
    /// JSON details.
    pub details: String,
    /// When (unix ms).
    pub at_ms: i64,
}

/// A message as the history lists it: the stored row and when it was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// The message.
    pub message: StoredMessage,
    /// When the row was stored (unix ms); None for rows older than this column.
    pub created_ms: Option<i64>,
}

const CONNECTION_COLUMNS: &str = "c.account_id, a.subaccount_id, a.agent_id, c.status, c.code, \
     c.reason, c.qr_generated, c.phone_number, c.platform, c.pushname, c.created_by, c.created_at, \
     c.updated_at, c.connected_at, c.disconnected_at";

fn connection_row(r: &sqlx::sqlite::SqliteRow) -> Result<ConnectionRow, sqlx::Error> {
    Ok(ConnectionRow {
        account: r.try_get("account_id")?,
        subaccount_id: r.try_get("subaccount_id")?,
        agent_id: r.try_get("agent_id")?,
        status: r.try_get("status")?,
        code: r.try_get("code")?,
        reason: r.try_get("reason")?,
        qr_generated: r.try_get("qr_generated")?,
        phone_number: r.try_get("phone_number")?,
        platform: r.try_get("platform")?,
        pushname: r.try_get("pushname")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        connected_at: r.try_get("connected_at")?,
        disconnected_at: r.try_get("disconnected_at")?,
    })
}

impl Store {
    /// The connection row of `account`, made (`pending`, `connecting`, by `user`) if there is
    /// none.
    pub async fn open_connection(
        &self,
        account: AccountId,
        user: Option<&str>,
        now_ms: i64,
    ) -> Result<ConnectionRow, StoreError> {
        sqlx::query(
            "INSERT INTO connections (account_id, status, code, created_by, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(account)
        .bind(ConnectionCode::Connecting.status())
        .bind(ConnectionCode::Connecting)
        .bind(user)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.connection_by_account(account)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("connection {account} vanished")))
    }

    /// Applies `u` to `account`'s connection row (if it has one).
    pub async fn update_connection(
        &self,
        account: AccountId,
        u: &ConnectionUpdate,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (set_reason, reason) = match &u.reason {
            Some(c) => (true, c.clone()),
            None => (false, None),
        };
        let mut tx = self.pool.begin_with(super::WRITE_TX).await?;
        let before: Option<(ConnectionCode, Option<String>)> =
            sqlx::query_as("SELECT code, reason FROM connections WHERE account_id = ?")
                .bind(account)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(before) = before else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE connections SET status = COALESCE(?, status), code = COALESCE(?, code), \
             reason = CASE WHEN ? THEN ? ELSE reason END, \
             qr_generated = COALESCE(?, qr_generated), \
             phone_number = COALESCE(?, phone_number), platform = COALESCE(?, platform), \
             pushname = COALESCE(?, pushname), updated_at = ?, \
             connected_at = CASE WHEN ? THEN ? ELSE connected_at END, \
             disconnected_at = CASE WHEN ? THEN ? ELSE disconnected_at END \
             WHERE account_id = ?",
        )
        .bind(u.state.map(ConnectionCode::status))
        .bind(u.state)
        .bind(set_reason)
        .bind(reason.as_deref())
        .bind(u.qr_generated)
        .bind(u.phone_number.as_deref())
        .bind(u.platform.as_deref())
        .bind(u.pushname.as_deref())
        .bind(now_ms)
        .bind(u.connected)
        .bind(now_ms)
        .bind(u.disconnected)
        .bind(now_ms)
        .bind(account)
        .execute(&mut *tx)
        .await?;
        // A webhook hears of a change of state (or of its reason), once.
        let code = u.state.unwrap_or(before.0);
        let reason = if set_reason { reason } else { before.1.clone() };
        if (code, reason.as_deref()) != (before.0, before.1.as_deref()) {
            let data = serde_json::json!({ "code": code.as_str(), "reason": reason }).to_string();
            let e = NewEvent {
                kind: webhooks::CONNECTION_UPDATE,
                status: Some(code.status().as_str()),
                data: Some(&data),
                ..Default::default()
            };
            webhooks::enqueue(&mut tx, account, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The connection row of `account`.
    pub async fn connection_by_account(
        &self,
        account: AccountId,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c JOIN accounts a ON a.id = c.account_id \
             WHERE c.account_id = ?"
        ))
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(connection_row).transpose()?)
    }

    /// The connection of (subaccount, agent), if it was ever connected.
    pub async fn connection(
        &self,
        subaccount_id: &str,
        agent_id: &str,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c JOIN accounts a ON a.id = c.account_id \
             WHERE a.subaccount_id = ? AND a.agent_id = ?"
        ))
        .bind(subaccount_id)
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(connection_row).transpose()?)
    }

    /// Every connection of a subaccount, oldest first.
    pub async fn connections(&self, subaccount_id: &str) -> Result<Vec<ConnectionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c JOIN accounts a ON a.id = c.account_id \
             WHERE a.subaccount_id = ? ORDER BY c.created_at, c.account_id"
        ))
        .bind(subaccount_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(connection_row).collect::<Result<_, _>>()?)
    }

    /// Connections to resume at start-up: linked (credentials with an own JID stored) and not
    /// disconnected or logged out on purpose.
    pub async fn resumable_connections(&self) -> Result<Vec<ConnectionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c JOIN accounts a ON a.id = c.account_id \
             JOIN creds k ON k.account_id = c.account_id \
             WHERE k.jid IS NOT NULL AND c.code NOT IN ('disconnected', 'logged_out') \
             ORDER BY c.account_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(connection_row).collect::<Result<_, _>>()?)
    }

    /// Accounts whose row says a client is on its way (`pending` or `connected`).
    pub async fn unsettled_connections(&self) -> Result<Vec<AccountId>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT account_id FROM connections WHERE status != ? ORDER BY 1")
                .bind(ConnectionStatus::Disconnected)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Logs an activity of an agent that exists; returns its id (None once the agent was
    /// removed: a task of its ended client must not log for it after its data went).
    pub async fn add_activity(&self, a: &Activity) -> Result<Option<i64>, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO activities (subaccount_id, agent_id, user_id, kind, category, details, \
             at_ms) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts \
             WHERE subaccount_id = ? AND agent_id = ?) RETURNING id",
        )
        .bind(&a.subaccount_id)
        .bind(&a.agent_id)
        .bind(a.user_id.as_deref())
        .bind(&a.kind)
        .bind(&a.category)
        .bind(&a.details)
        .bind(a.at_ms)
        .bind(&a.subaccount_id)
        .bind(&a.agent_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// A subaccount's activities, newest first.
    pub async fn activities(
        &self,
        subaccount_id: &str,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<Activity>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, subaccount_id, agent_id, user_id, kind, category, details, at_ms \
             FROM activities WHERE subaccount_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
        )
        .bind(subaccount_id)
        .bind(i64::from(limit))
        .bind(i64::from(skip))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Activity {
                    id: r.try_get("id")?,
                    subaccount_id: r.try_get("subaccount_id")?,
                    agent_id: r.try_get("agent_id")?,
                    user_id: r.try_get("user_id")?,
                    kind: r.try_get("kind")?,
                    category: r.try_get("category")?,
                    details: r.try_get("details")?,
                    at_ms: r.try_get("at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// One chat's messages (its canonical JID), newest first, with when each was stored.
    pub async fn chat_history(
        &self,
        account: AccountId,
        chat: &crate::binary::Jid,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, created_ms FROM messages WHERE account_id = ? AND chat = ? \
             {LISTED} ORDER BY ts DESC, pk DESC LIMIT ? OFFSET ?"
        ))
        .bind(account)
        .bind(chat.to_string())
        .bind(i64::from(limit))
        .bind(i64::from(skip))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    message: from_row(r)?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// An account's messages, newest first, with when each was stored.
    pub async fn history(
        &self,
        account: AccountId,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, created_ms FROM messages WHERE account_id = ? {LISTED} \
             ORDER BY ts DESC, pk DESC LIMIT ? OFFSET ?"
        ))
        .bind(account)
        .bind(i64::from(limit))
        .bind(i64::from(skip))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    message: from_row(r)?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
