//! Persistence over one shared sqlx SQLite pool (WAL, synchronous=FULL by default) for every account:
//! tables are keyed by account, and this layer implements the traits the protocol layers define.
//! It knows SQL; the protocol layers never do.

mod account;
mod appstate;
pub mod blobs;
pub mod connections;
pub mod creds;
pub mod error;
mod groups;
mod history;
mod ids;
pub mod media;
mod messages;
pub mod outbox;
pub mod prune;
mod rows;
mod seal;
pub mod signal;
pub mod states;
pub mod webhooks;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use creds::SqliteCreds;
pub use error::StoreError;
pub use messages::CommitStats;
pub use seal::StoreKey;
pub use signal::SqliteSignalStore;
pub use states::{ConnectionCode, ConnectionStatus, DeliveryState, MediaState, OutboxState};

/// Embedded migrations (no runtime files, no proc-macro): version, description, SQL.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts and signal",
        include_str!("../../migrations/0001_accounts_signal.sql"),
    ),
    (2, "creds", include_str!("../../migrations/0002_creds.sql")),
    (
        3,
        "prekey counter",
        include_str!("../../migrations/0003_pre_key_counter.sql"),
    ),
    (
        4,
        "store meta",
        include_str!("../../migrations/0004_store_meta.sql"),
    ),
    (
        5,
        "messages",
        include_str!("../../migrations/0005_messages.sql"),
    ),
    (
        6,
        "lid map",
        include_str!("../../migrations/0006_lid_map.sql"),
    ),
    (
        7,
        "privacy tokens",
        include_str!("../../migrations/0007_privacy_tokens.sql"),
    ),
    (
        8,
        "groups",
        include_str!("../../migrations/0008_groups.sql"),
    ),
    (
        9,
        "connections and activities",
        include_str!("../../migrations/0009_connections_activities.sql"),
    ),
    (
        10,
        "outbox",
        include_str!("../../migrations/0010_outbox.sql"),
    ),
    (
        11,
        "webhooks",
        include_str!("../../migrations/0011_webhooks.sql"),
    ),
    (
        12,
        "guide views",
        include_str!("../../migrations/0012_guide_views.sql"),
    ),
    (
        13,
        "message kinds",
        include_str!("../../migrations/0013_message_kinds.sql"),
    ),
    (
        14,
        "webhook outcomes",
        include_str!("../../migrations/0014_webhook_outcomes.sql"),
    ),
    (
        15,
        "connection codes",
        include_str!("../../migrations/0015_connection_codes.sql"),
    ),
    (
        16,
        "retention",
        include_str!("../../migrations/0016_retention.sql"),
    ),
    (17, "media", include_str!("../../migrations/0017_media.sql")),
    (
        18,
        "nct salt and held sends",
        include_str!("../../migrations/0018_nct_salt_limits.sql"),
    ),
    (
        19,
        "chats and contacts",
        include_str!("../../migrations/0019_chats_contacts.sql"),
    ),
    (
        20,
        "app-state sync",
        include_str!("../../migrations/0020_appstate.sql"),
    ),
    (
        21,
        "review indexes",
        include_str!("../../migrations/0021_review_indexes.sql"),
    ),
    (
        22,
        "pending history",
        include_str!("../../migrations/0022_pending_history.sql"),
    ),
    (
        23,
        "sender keys by sender",
        include_str!("../../migrations/0023_lid_batch.sql"),
    ),
    (
        24,
        "inbound by chat",
        include_str!("../../migrations/0024_inbound_by_chat.sql"),
    ),
];

/// How every write transaction starts: it takes the write lock up front, so a transaction that
/// reads before it writes never fails with SQLITE_BUSY_SNAPSHOT when another connection wrote
/// in between (it waits its turn under the busy timeout instead).
pub(crate) const WRITE_TX: &str = "BEGIN IMMEDIATE";

/// How hard a commit is made to last (SQLite's `synchronous` under WAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Each commit waits until its WAL frames are on the disk (`FULL`): once a message's
    /// receipt or an outbox row's answer went out, no power loss takes the row back. One fsync
    /// per transaction, which the group committer shares among everything it batched.
    #[default]
    Full,
    /// Commits reach the OS and are synced at checkpoints (`NORMAL`): a process crash loses
    /// nothing, a power loss may lose the last commits although WhatsApp was told we have them.
    Normal,
}

impl Durability {
    /// Parses `full` or `normal`.
    pub fn parse(s: &str) -> Option<Durability> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Some(Durability::Full),
            "normal" => Some(Durability::Normal),
            _ => None,
        }
    }
}

/// An account's id in the database.
pub type AccountId = i64;

/// What [`Store::delete_account`] removed that others may be waiting on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemovedAccount {
    /// The sends it still had queued (their keys): requests waiting for them must hear.
    pub queued_sends: Vec<i64>,
}

/// The database: one pool shared by all accounts.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    sealer: seal::Sealer,
    committer: messages::Committer,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `url` (`sqlite://path` or
    /// `sqlite::memory:`) and runs migrations; key material is stored plain.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, None).await
    }

    /// Like [`Store::open`], sealing key material with `key` when given (see
    /// [`StoreKey`]). A database sealed with another key, or opened without its key, is refused
    /// here with an error that says so.
    pub async fn open_with(url: &str, key: Option<&StoreKey>) -> Result<Store, StoreError> {
        Store::open_tuned(url, key, Durability::Full).await
    }

    /// Like [`Store::open_with`], committing with `durability`.
    pub async fn open_tuned(
        url: &str,
        key: Option<&StoreKey>,
        durability: Durability,
    ) -> Result<Store, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // A small page cache per connection: the pool is shared by every account.
            .pragma("cache_size", "-2048")
            // Sealing: what a value held before it was sealed (or deleted) is zeroed, not left
            // in a free slot of the page.
            .pragma("secure_delete", if key.is_some() { "on" } else { "off" });
        let in_memory = url.contains(":memory:");
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 4 })
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        let migrator = Migrator {
            migrations: Cow::Owned(
                MIGRATIONS
                    .iter()
                    .map(|(v, d, sql)| {
                        Migration::new(
                            *v,
                            Cow::Borrowed(*d),
                            MigrationType::Simple,
                            Cow::Borrowed(*sql),
                            false,
                        )
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        migrator.run(&pool).await?;
        messages::classify_old_rows(&pool).await?;
        let sealer = seal::Sealer::new(key);
        sealer.verify(&pool).await?;
        if sealer.enabled() {
            // Frames an earlier, unsealed run left in the WAL file would keep plain values on
            // disk until overwritten: empty it.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&pool)
                .await?;
        }
        let committer = messages::Committer::start(pool.clone());
        Ok(Store {
            pool,
            sealer,
            committer,
        })
    }

    /// Whether the database answers a query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// The shared pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The account for (subaccount, agent), created on first use.
    pub async fn account(
        &self,
        subaccount_id: &str,
        agent_id: &str,
    ) -> Result<AccountId, StoreError> {
        sqlx::query(
            "INSERT INTO accounts (subaccount_id, agent_id, created_at) VALUES (?, ?, unixepoch()) \
             ON CONFLICT (subaccount_id, agent_id) DO NOTHING",
        )
        .bind(subaccount_id)
        .bind(agent_id)
        .execute(&self.pool)
        .await?;
        let id: i64 =
            sqlx::query_scalar("SELECT id FROM accounts WHERE subaccount_id = ? AND agent_id = ?")
                .bind(subaccount_id)
                .bind(agent_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(id)
    }

    /// The account for (subaccount, agent), if it was ever used.
    pub async fn find_account(
        &self,
        subaccount_id: &str,
        agent_id: &str,
    ) -> Result<Option<AccountId>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM accounts WHERE subaccount_id = ? AND agent_id = ?")
                .bind(subaccount_id)
                .bind(agent_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The account for (subaccount, agent): the existing one, or one made now if the
    /// subaccount has fewer than `max` accounts (None when it has that many already). Counting
    /// and inserting are one statement, so concurrent callers cannot pass the cap together.
    pub async fn account_within(
        &self,
        subaccount_id: &str,
        agent_id: &str,
        max: usize,
    ) -> Result<Option<AccountId>, StoreError> {
        sqlx::query(
            "INSERT INTO accounts (subaccount_id, agent_id, created_at) \
             SELECT ?, ?, unixepoch() \
             WHERE (SELECT COUNT(*) FROM accounts WHERE subaccount_id = ?) < ? \
             ON CONFLICT (subaccount_id, agent_id) DO NOTHING",
        )
        .bind(subaccount_id)
        .bind(agent_id)
        .bind(subaccount_id)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        self.find_account(subaccount_id, agent_id).await
    }

    /// Deletes an account and everything stored for it, in one transaction: every table keyed
    /// by account goes through its foreign key's cascade (keys, sessions, credentials,
    /// messages with their receipts, outbox, webhook and its events, groups, connection row,
    /// …), and the activity log, keyed by (subaccount, agent), here. None if there was none.
    pub async fn delete_account(
        &self,
        account: AccountId,
    ) -> Result<Option<RemovedAccount>, StoreError> {
        let mut tx = self.pool.begin_with(WRITE_TX).await?;
        let queued_sends: Vec<i64> =
            sqlx::query_scalar("SELECT pk FROM outbox WHERE account_id = ? AND state = 'queued'")
                .bind(account)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query(
            "DELETE FROM activities WHERE (subaccount_id, agent_id) = \
             (SELECT subaccount_id, agent_id FROM accounts WHERE id = ?)",
        )
        .bind(account)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query("DELETE FROM accounts WHERE id = ?")
            .bind(account)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((gone > 0).then_some(RemovedAccount { queued_sends }))
    }

    /// The client credentials of `account`.
    pub fn creds(&self, account: AccountId) -> SqliteCreds {
        SqliteCreds::new(
            self.pool.clone(),
            account,
            self.sealer.clone(),
            self.committer.clone(),
        )
    }

    /// The Signal stores of `account`.
    pub fn signal(&self, account: AccountId) -> SqliteSignalStore {
        SqliteSignalStore::new(self.pool.clone(), account, self.sealer.clone())
    }

    /// How many message and status writes went through how many transactions so far.
    pub fn commit_stats(&self) -> CommitStats {
        self.committer.stats()
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
