//! Messages over the shared pool, and the group committer every message write goes through: one
//! writer task takes whatever commits are waiting (from every account), runs them in one
//! transaction, each in its own savepoint (one failing row never sinks its neighbours), and
//! answers each caller after the commit. A transaction costs one fsync of the WAL under the
//! default `synchronous=FULL` (none under `NORMAL`) however many rows it carries, so batching is
//! what makes durable commits cheap (benches/README.md, `cargo bench --bench commit`).

use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::AccountId;
use super::rows::{COLUMNS, content_json, from_row, reactions_json};
use super::signal::SqliteSignalStore;
use super::webhooks::{self, NewEvent};
use crate::client::content::{Classified, classify};
use crate::client::messages::{
    Applied, Committed, MessageStatus, StatusUpdate, StoredMessage, serialized_id,
};
use crate::client::store::CredsStoreError;
use crate::signal::SignalChanges;

/// Most commits one transaction carries.
const MAX_BATCH: usize = 256;
/// Commits waiting for the writer; callers wait for room beyond it (backpressure).
const QUEUE: usize = 4096;

/// One unit of work.
pub(crate) enum Job {
    /// A message with the Signal state it advanced.
    Message {
        signal: SqliteSignalStore,
        changes: SignalChanges,
        msg: Box<StoredMessage>,
        done: oneshot::Sender<Result<Committed, String>>,
    },
    /// A status change (ack or receipt).
    Status {
        account: AccountId,
        update: StatusUpdate,
        done: oneshot::Sender<Result<Option<MessageStatus>, String>>,
    },
}

/// Handle on the writer task; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Job>,
    stats: std::sync::Arc<Counters>,
}

/// What the writer did so far.
#[derive(Debug, Default)]
struct Counters {
    transactions: std::sync::atomic::AtomicU64,
    jobs: std::sync::atomic::AtomicU64,
}

/// Group-commit figures: how many units of work went through how many transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Transactions committed (one WAL fsync each under `synchronous=FULL`).
    pub transactions: u64,
    /// Units of work (messages, status changes) they carried.
    pub jobs: u64,
}

impl Committer {
    /// Starts the writer task over `pool`; it ends when the last handle is dropped.
    pub(crate) fn start(pool: SqlitePool) -> Committer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = std::sync::Arc::new(Counters::default());
        tokio::spawn(writer(pool, rx, stats.clone()));
        Committer { tx, stats }
    }

    /// Figures so far.
    pub(crate) fn stats(&self) -> CommitStats {
        use std::sync::atomic::Ordering::Relaxed;
        CommitStats {
            transactions: self.stats.transactions.load(Relaxed),
            jobs: self.stats.jobs.load(Relaxed),
        }
    }

    /// Commits a message and its Signal changes; resolves after the transaction committed.
    pub(crate) async fn message(
        &self,
        signal: SqliteSignalStore,
        changes: SignalChanges,
        msg: StoredMessage,
    ) -> Result<Committed, CredsStoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job::Message {
                signal,
                changes,
                msg: Box::new(msg),
                done,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(CredsStoreError)
    }

    /// Records a status change; resolves after the transaction committed.
    pub(crate) async fn status(
        &self,
        account: AccountId,
        update: StatusUpdate,
    ) -> Result<Option<MessageStatus>, CredsStoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job::Status {
                account,
                update,
                done,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(CredsStoreError)
    }
}

fn gone() -> CredsStoreError {
    CredsStoreError("message writer stopped".into())
}

/// An answer computed inside the transaction, sent only once it committed.
enum Answer {
    Message(
        oneshot::Sender<Result<Committed, String>>,
        Result<Committed, String>,
    ),
    Status(
        oneshot::Sender<Result<Option<MessageStatus>, String>>,
        Result<Option<MessageStatus>, String>,
    ),
}

async fn writer(pool: SqlitePool, mut rx: mpsc::Receiver<Job>, stats: std::sync::Arc<Counters>) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        stats.jobs.fetch_add(batch.len() as u64, Relaxed);
        stats.transactions.fetch_add(1, Relaxed);
        let answers = run_batch(&pool, batch.drain(..)).await;
        match answers {
            Ok(answers) => {
                for a in answers {
                    match a {
                        Answer::Message(done, r) => {
                            let _ = done.send(r);
                        }
                        Answer::Status(done, r) => {
                            let _ = done.send(r);
                        }
                    }
                }
            }
            Err((e, answers)) => {
                // The transaction did not commit: nothing of the batch is stored.
                let e = format!("commit failed: {e}");
                for a in answers {
                    match a {
                        Answer::Message(done, _) => {
                            let _ = done.send(Err(e.clone()));
                        }
                        Answer::Status(done, _) => {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

type BatchResult = Result<Vec<Answer>, (sqlx::Error, Vec<Answer>)>;

async fn run_batch(pool: &SqlitePool, jobs: impl Iterator<Item = Job>) -> BatchResult {
    let mut answers = Vec::new();
    let mut tx = match pool.begin_with(super::WRITE_TX).await {
        Ok(tx) => tx,
        Err(e) => {
            for j in jobs {
                answers.push(unanswered(j));
            }
            return Err((e, answers));
        }
    };
    for job in jobs {
        // A savepoint per job: a failure rolls back that job only.
        let mut sp = match sqlx::Connection::begin(&mut *tx).await {
            Ok(sp) => sp,
            Err(e) => {
                answers.push(failed(job, &e));
                continue;
            }
        };
        match job {
            Job::Message {
                signal,
                changes,
                msg,
                done,
            } => {
                let r = async {
                    signal.apply_in(&mut sp, &changes).await?;
                    insert(&mut sp, signal.account(), &msg, false).await
                }
                .await;
                let r = match r {
                    Ok(c) => sp.commit().await.map(|_| c),
                    Err(e) => Err(e),
                };
                answers.push(Answer::Message(done, r.map_err(|e| e.to_string())));
            }
            Job::Status {
                account,
                update,
                done,
            } => {
                let r = match set_status(&mut sp, account, &update).await {
                    Ok(c) => sp.commit().await.map(|_| c),
                    Err(e) => Err(e),
                };
                answers.push(Answer::Status(done, r.map_err(|e| e.to_string())));
            }
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(answers),
        Err(e) => Err((e, answers)),
    }
}

fn unanswered(job: Job) -> Answer {
    match job {
        Job::Message { done, .. } => Answer::Message(done, Err(String::new())),
        Job::Status { done, .. } => Answer::Status(done, Err(String::new())),
    }
}

fn failed(job: Job, e: &sqlx::Error) -> Answer {
    match job {
        Job::Message { done, .. } => Answer::Message(done, Err(e.to_string())),
        Job::Status { done, .. } => Answer::Status(done, Err(e.to_string())),
    }
}

/// Inserts `msg` unless its (chat, sender, id) is stored. A reaction, edit or revoke is applied
/// to its target when the target is stored (else when the target arrives: inserting a message
/// applies what already acts on it), in the same transaction, with the event each raises.
/// A `history` row (the phone's history sync) raises no event and its file is not fetched on
/// its own (`skipped`: fetched when asked for).
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    account: AccountId,
    msg: &StoredMessage,
    history: bool,
) -> Result<Committed, sqlx::Error> {
    // A row kept for a message we could not decrypt gives way to the message once it is read
    // (a second failure leaves it as it is).
    let done: Option<i64> = sqlx::query_scalar(
        "INSERT INTO messages (account_id, chat, sender, id, from_me, ts, push_name, body, raw, \
         status, error, type, content, ephemeral, view_once, target_id, edited_at, reactions, \
         history, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
         CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) \
         ON CONFLICT (account_id, chat, sender, id) DO UPDATE SET from_me = excluded.from_me, \
         ts = excluded.ts, push_name = excluded.push_name, body = excluded.body, \
         raw = excluded.raw, status = excluded.status, error = excluded.error, \
         type = excluded.type, content = excluded.content, ephemeral = excluded.ephemeral, \
         view_once = excluded.view_once, target_id = excluded.target_id, \
         edited_at = excluded.edited_at, reactions = excluded.reactions \
         WHERE messages.type = 'ciphertext' AND messages.status = 'failed' \
         AND NOT (excluded.type = 'ciphertext' AND excluded.status = 'failed') \
         RETURNING pk",
    )
    .bind(account)
    .bind(msg.chat.to_string())
    .bind(msg.sender.to_string())
    .bind(&msg.id)
    .bind(msg.from_me)
    .bind(i64::try_from(msg.timestamp).unwrap_or(i64::MAX))
    .bind(msg.push_name.as_deref())
    .bind(msg.text.as_deref())
    .bind(&msg.raw)
    .bind(msg.status.as_str())
    .bind(msg.error.map(i64::from))
    .bind(msg.kind.as_str())
    .bind(content_json(&msg.content))
    .bind(msg.ephemeral)
    .bind(msg.view_once)
    .bind(msg.target.as_deref())
    .bind(msg.edited_at.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
    .bind(reactions_json(&msg.reactions))
    .bind(history)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(pk) = done else {
        return Ok(Committed::Duplicate);
    };
    let chat = msg.chat.to_string();
    if msg.kind.is_mutation() {
        if let Some(target) = &msg.target
            && let Some((target_pk, mut row)) = target_row(conn, account, &chat, target).await?
            && let Some(applied) = row.apply(msg)
        {
            if history {
                write_applied(conn, target_pk, &row).await?;
            } else {
                save_applied(conn, account, target_pk, &row, msg, applied).await?;
            }
        }
        return Ok(Committed::Inserted);
    }
    if let Some(media) = &msg.media {
        super::media::insert(conn, account, pk, msg, media).await?;
        if history {
            sqlx::query(
                "UPDATE message_media SET state = 'skipped' WHERE message_pk = ? AND state = 'pending'",
            )
            .bind(pk)
            .execute(&mut *conn)
            .await?;
        }
    }
    if history {
        // History: announced long ago on the phone; what acts on it applies silently.
        let early = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE account_id = ? AND chat = ? AND target_id = ? \
             AND type IN ('reaction', 'edit', 'revoke') ORDER BY ts, pk"
        ))
        .bind(account)
        .bind(&chat)
        .bind(&msg.id)
        .fetch_all(&mut *conn)
        .await?;
        let mut row = msg.clone();
        for m in early {
            let m = from_row(&m)?;
            if row.apply(&m).is_some() {
                write_applied(conn, pk, &row).await?;
            }
        }
        return Ok(Committed::Inserted);
    }
    if msg.is_placeholder() {
        // Announced as what it is; `message.received` (and its activity line) waits for the
        // message, once a resend is read. What acts on it waits too.
        let e = NewEvent {
            kind: webhooks::MESSAGE_UNDECRYPTABLE,
            chat: &chat,
            message_pk: Some(pk),
            ..Default::default()
        };
        webhooks::enqueue(conn, account, e).await?;
        return Ok(Committed::Inserted);
    }
    if !msg.from_me {
        let e = NewEvent {
            kind: webhooks::MESSAGE_RECEIVED,
            chat: &chat,
            message_pk: Some(pk),
            ..Default::default()
        };
        webhooks::enqueue(conn, account, e).await?;
        // The activity log's line for it, in the same unit (no slow reader of the client's
        // events can lose it).
        let details = serde_json::json!({
            "messageId": serialized_id(&msg.chat, &msg.id, false),
            "from": msg.sender.c_us(),
        })
        .to_string();
        sqlx::query(
            "INSERT INTO activities (subaccount_id, agent_id, user_id, kind, category, details, \
             at_ms) SELECT subaccount_id, agent_id, NULL, 'whatsapp_message_received', 'chat', ?, \
             CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM accounts WHERE id = ?",
        )
        .bind(details)
        .bind(account)
        .execute(&mut *conn)
        .await?;
    }
    // What arrived before its target (rare: the server keeps a chat's order) applies now.
    let early = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM messages WHERE account_id = ? AND chat = ? AND target_id = ? \
         AND type IN ('reaction', 'edit', 'revoke') ORDER BY ts, pk"
    ))
    .bind(account)
    .bind(&chat)
    .bind(&msg.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut row = msg.clone();
    for m in early {
        let m = from_row(&m)?;
        if let Some(applied) = row.apply(&m) {
            save_applied(conn, account, pk, &row, &m, applied).await?;
        }
    }
    Ok(Committed::Inserted)
}

/// The message `id` of `chat` a reaction, edit or revoke acts on (never another of those).
async fn target_row(
    conn: &mut SqliteConnection,
    account: AccountId,
    chat: &str,
    id: &str,
) -> Result<Option<(i64, StoredMessage)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT pk, {COLUMNS} FROM messages WHERE account_id = ? AND chat = ? AND id = ? \
         AND type NOT IN ('reaction', 'edit', 'revoke') ORDER BY pk LIMIT 1"
    ))
    .bind(account)
    .bind(chat)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| Ok((r.try_get("pk")?, from_row(&r)?)))
        .transpose()
}

/// Writes the target `pk` as a reaction, edit or revoke left it (now `row`).
async fn write_applied(
    conn: &mut SqliteConnection,
    pk: i64,
    row: &StoredMessage,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET body = ?, type = ?, content = ?, edited_at = ?, reactions = ? \
         WHERE pk = ?",
    )
    .bind(row.text.as_deref())
    .bind(row.kind.as_str())
    .bind(content_json(&row.content))
    .bind(row.edited_at.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
    .bind(reactions_json(&row.reactions))
    .bind(pk)
    .execute(&mut *conn)
    .await?;
    if row.kind == crate::client::content::Kind::Revoked {
        // Deleted for everyone: its file is served no more (failed is final, so a fetch under
        // way cannot store it again), the file row's keys go, and its blob (no longer named by
        // a stored file) leaves with the next sweep. The message's raw protobuf is kept as
        // received, as every revoked row's is.
        sqlx::query(
            "UPDATE message_media SET state = 'failed', error = 'revoked by its sender',              media_key = NULL, direct_path = NULL, url = NULL WHERE message_pk = ?",
        )
        .bind(pk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes what `by` changed on the target `pk` (now `row`) and queues the event it raises.
async fn save_applied(
    conn: &mut SqliteConnection,
    account: AccountId,
    pk: i64,
    row: &StoredMessage,
    by: &StoredMessage,
    applied: Applied,
) -> Result<(), sqlx::Error> {
    write_applied(conn, pk, row).await?;
    let data = serde_json::json!({
        "id": by.id,
        "by": by.sender.to_string(),
        "fromMe": by.from_me,
        "text": by.text,
        "t": by.timestamp,
        "admin": by.content.get("admin").and_then(|a| a.as_bool()).unwrap_or(false),
    })
    .to_string();
    let chat = row.chat.to_string();
    let e = NewEvent {
        kind: applied.event(),
        chat: &chat,
        message_pk: Some(pk),
        data: Some(&data),
        ..Default::default()
    };
    webhooks::enqueue(conn, account, e).await
}

/// Records the receipt row and moves the message up the ladder when it is progress.
pub(super) async fn set_status(
    conn: &mut SqliteConnection,
    account: AccountId,
    u: &StatusUpdate,
) -> Result<Option<MessageStatus>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT pk, status FROM messages WHERE account_id = ? AND chat = ? AND id = ? AND from_me = 1",
    )
    .bind(account)
    .bind(u.chat.to_string())
    .bind(&u.id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let pk: i64 = row.try_get("pk")?;
    let current = MessageStatus::parse(row.try_get("status")?).unwrap_or(MessageStatus::Pending);
    let t = i64::try_from(u.t).unwrap_or(i64::MAX);
    if let Some(device) = &u.device {
        sqlx::query(
            "INSERT INTO message_receipts (message_pk, device, status, t) VALUES (?, ?, ?, ?) \
             ON CONFLICT (message_pk, device, status) DO NOTHING",
        )
        .bind(pk)
        .bind(device.to_string())
        .bind(u.status.as_str())
        .bind(t)
        .execute(&mut *conn)
        .await?;
    }
    if !current.advances_to(u.status) {
        return Ok(None);
    }
    sqlx::query("UPDATE messages SET status = ?, error = ? WHERE pk = ?")
        .bind(u.status.as_str())
        .bind(u.error.map(i64::from))
        .bind(pk)
        .execute(&mut *conn)
        .await?;
    let chat = u.chat.to_string();
    let e = NewEvent {
        kind: webhooks::MESSAGE_STATUS,
        chat: &chat,
        message_pk: Some(pk),
        status: Some(u.status.as_str()),
        error: u.error.map(i64::from),
        ..Default::default()
    };
    webhooks::enqueue(conn, account, e).await?;
    Ok(Some(u.status))
}

/// Gives rows stored before message kinds existed (migration 13) their kind, content and
/// envelopes from the plaintext they kept; once per database, in batches.
pub(crate) async fn classify_old_rows(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    const DONE: &str = "message_kinds_backfilled";
    let done: Option<i64> = sqlx::query_scalar("SELECT 1 FROM store_meta WHERE name = ?")
        .bind(DONE)
        .fetch_optional(pool)
        .await?;
    if done.is_some() {
        return Ok(());
    }
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT pk, raw FROM messages WHERE pk > ? AND content IS NULL ORDER BY pk LIMIT 500",
        )
        .bind(after)
        .fetch_all(pool)
        .await?;
        let Some((last, _)) = rows.last() else { break };
        after = *last;
        let mut tx = pool.begin_with(super::WRITE_TX).await?;
        let mut mutations = Vec::new();
        for (pk, raw) in &rows {
            let Ok(Classified::Stored(c)) = classify(raw) else {
                continue;
            };
            if c.kind.is_mutation() {
                mutations.push(*pk);
            }
            // The text too: a caption or a reaction's emoji was not kept by the old decoder.
            sqlx::query(
                "UPDATE messages SET type = ?, content = ?, ephemeral = ?, view_once = ?, \
                 target_id = ?, body = COALESCE(?, body) WHERE pk = ?",
            )
            .bind(c.kind.as_str())
            .bind(content_json(&c.details))
            .bind(c.ephemeral)
            .bind(c.view_once)
            .bind(c.target.map(|t| t.id))
            .bind(c.text)
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        }
        // An old reaction (stored as a text row then) now acts on its message, as one that
        // arrives does; no event: it is history, announced long ago.
        for pk in mutations {
            let r = sqlx::query(&format!(
                "SELECT account_id, {COLUMNS} FROM messages WHERE pk = ?"
            ))
            .bind(pk)
            .fetch_one(&mut *tx)
            .await?;
            let account: AccountId = r.try_get("account_id")?;
            let by = from_row(&r)?;
            let Some(target) = by.target.clone() else {
                continue;
            };
            let chat = by.chat.to_string();
            if let Some((target_pk, mut row)) = target_row(&mut tx, account, &chat, &target).await?
                && row.apply(&by).is_some()
            {
                write_applied(&mut tx, target_pk, &row).await?;
            }
        }
        tx.commit().await?;
    }
    sqlx::query("INSERT INTO store_meta (name, value) VALUES (?, X'01')")
        .bind(DONE)
        .execute(pool)
        .await?;
    Ok(())
}
