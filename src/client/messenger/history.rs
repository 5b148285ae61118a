//! History sync (CLIENT-FEATURES §5): the phone's `HistorySyncNotification`s, accepted only
//! from our own account, are kept in the store's durable queue
//! ([`crate::client::history_store`]) before their message is acknowledged, and processed one
//! at a time in arrival order by one worker per client. A chunk is the inline bootstrap
//! payload, or a blob downloaded through the media download core (`WhatsApp History Keys`,
//! `md-msg-hist`) into a temporary file and verified whole before a byte of it is read; then it
//! is inflated and parsed as a stream ([`super::history_stream`]) on a blocking thread, one
//! conversation at a time, and stored in batches of a few hundred rows per transaction.
//!
//! Kept: conversations → chats (archived, pinned, mute end, unread count, marked unread,
//! name, ephemeral timer); their messages → history rows (classified like live ones, deduped
//! against live rows by (chat, sender, id), never announced as received); push names (not
//! `-`); PN ↔ LID mappings (top-level, conversations' `lidJID`/`pnJID`, inline contacts)
//! through `learn`; inline contacts → contacts; conversations' tctokens (keyed by the LID when
//! known); the NCT salt as backfill only (whatsapp-rust's rule, CLIENT-FEATURES Appendix A).
//!
//! Failure for good (bad zlib, not a `HistorySync`, too large, a hash that does not match, a
//! notification naming no file): an event and a log line, never a crash; the kept row goes.
//! A passing failure (a store error, a network error, no connection, a shutdown or a crash
//! mid-chunk) keeps the row: the chunk rests until the next round (a new connection, or a
//! timer of 1 minute doubling to 1 hour) and resumes from its start, up to
//! [`MAX_HISTORY_ATTEMPTS`] starts; the chunks after it go on meanwhile. Decision: each batch
//! commits whole; a chunk cut short keeps the batches before the cut (each is whole and valid),
//! and processing it again is safe: history rows dedupe by (chat, sender, id) (`INSERT OR
//! IGNORE` on that key), chats and contacts are upserts of the fields the chunk names, pairs
//! already known are no-ops and the NCT salt is backfill only.
//!
//! Its `hist_sync` receipt goes out once the chunk is stored, on whichever connection is up;
//! with none up it stays due in the store and goes at the next connection.

use std::sync::Arc;

use prost::Message as _;
use tokio::sync::mpsc;

use super::Messenger;
use super::history_stream::{HistoryStream, Item};
use super::receive::row_of;
use crate::binary::{Jid, Node, Server};
use crate::client::account::{ChatChange, ContactChange, HistoryBatch};
use crate::client::events::{Event, HistoryReport};
use crate::client::history_store::{MAX_HISTORY_ATTEMPTS, PendingHistory, Queued};
use crate::client::media::{Fetch, MediaSink, MediaType, fetch_verified};
use crate::client::messages::{MessageStatus, StoredMessage};
use crate::client::store::CredsStore;
use crate::proto::wa;

/// Rows (messages, chats, contacts) one transaction carries.
pub(super) const HISTORY_BATCH: usize = 500;
/// Largest downloaded (compressed) history blob.
pub(super) const MAX_HISTORY_BLOB: u64 = 512 << 20;
/// Decoded items in flight between the parser thread and the store.
const ITEMS_IN_FLIGHT: usize = 16;

/// Why a chunk was not stored.
#[derive(Debug)]
enum Stop {
    /// It cannot be stored, ever (bad bytes, not a `HistorySync`, too large, no file named):
    /// the kept notification goes.
    Bad(String),
    /// It may be stored later (store, network, no connection): the notification stays kept.
    Transient(String),
}

/// What the worker does after one kept notification.
enum Pass {
    /// Done with it (stored or given up).
    Next,
    /// A passing failure: it rests until the next round.
    Wait,
}

/// The first wait before a resting chunk is tried again without a new connection.
const HISTORY_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(60);
/// The longest such wait.
const HISTORY_RETRY_LAST: std::time::Duration = std::time::Duration::from_secs(3600);

/// Where a chunk's compressed bytes are.
enum Source {
    Inline(Vec<u8>),
    File(TempFile),
}

/// A temporary file removed on drop.
struct TempFile(std::path::PathBuf);

/// The name a history download's temporary file starts with (and ends with `.z`).
const DOWNLOAD_PREFIX: &str = "wa-history-";
/// Age past which a download file is taken as left behind by a killed process (a download of
/// the largest blob takes far less).
const STALE_DOWNLOAD: std::time::Duration = std::time::Duration::from_secs(86_400);
/// Most directory entries one sweep reads (a shared temporary directory may be huge).
const SWEEP_ENTRIES: usize = 100_000;

/// Removes history downloads in `dir` last written longer than `older` before `now`; the count
/// removed.
fn sweep_stale_downloads(
    dir: &std::path::Path,
    older: std::time::Duration,
    now: std::time::SystemTime,
) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.take(SWEEP_ENTRIES).flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(DOWNLOAD_PREFIX) && name.ends_with(".z")) {
            continue;
        }
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > older);
        if stale && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes a download into a file.
struct FileSink(tokio::fs::File);

impl MediaSink for FileSink {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> crate::client::media::MediaFuture<'a, ()> {
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            self.0.write_all(chunk).await
        })
    }
}

/// A JID as history names it: `c.us` is the phone-number server (whatsmeow rewrites it too).
fn history_jid(s: Option<&str>) -> Option<Jid> {
    let j: Jid = s?.parse().ok()?;
    let j = if j.server == Server::LegacyUser {
        Jid::with_device(j.user, j.device, Server::User)
    } else {
        j
    };
    (!j.user.is_empty()).then_some(j)
}

/// The status a history row gets from `WebMessageInfo.status`. Decision: a message the phone
/// still had pending is the phone's to send, never ours to resend: `server_ack`.
fn status_of(from_me: bool, status: Option<i32>) -> MessageStatus {
    use wa::web_message_info::Status;
    if !from_me {
        return MessageStatus::Received;
    }
    match status.and_then(|s| Status::try_from(s).ok()) {
        Some(Status::Error) => MessageStatus::Failed,
        Some(Status::DeliveryAck) => MessageStatus::Delivered,
        Some(Status::Read) => MessageStatus::Read,
        Some(Status::Played) => MessageStatus::Played,
        _ => MessageStatus::ServerAck,
    }
}

/// The LID a pair the batch holds (not yet stored) gives phone number `pn` (the latest).
fn pending_lid<'a>(batch: &'a HistoryBatch, pn: &str) -> Option<&'a str> {
    batch
        .pairs
        .iter()
        .rev()
        .find(|(p, _)| p == pn)
        .map(|(_, l)| l.as_str())
}

/// Mute end as stored (ms; -1 forever). Checked against the references: whatsmeow never reads
/// `Conversation.muteEndTime` (field 25, uint64; only the generated proto names it), so it
/// states no unit; Baileys keeps the history `Conversation` as its chat and writes an app-state
/// `muteEndTimestamp` (ms, whatsmeow `appstate.go` reads it with `time.UnixMilli`) into the
/// same `muteEndTime` field, so it treats both as ms. Decision: ms, as app state; a value
/// below 10^12 (before 2001 as ms, after it as seconds) is taken as seconds, so a phone that
/// sends seconds is still read right; the uint64 form of -1 (and anything past i64) is forever.
fn mute_ms(v: u64) -> Option<i64> {
    match v {
        0 => None,
        v if v >= i64::MAX as u64 => Some(-1),
        v if v < 1_000_000_000_000 => Some((v as i64).saturating_mul(1000)),
        v => Some(v as i64),
    }
}

impl<S: CredsStore> Messenger<S> {
    /// A `HistorySyncNotification` in a message from our own account: kept in the store's
    /// queue for the worker (which processes kept ones in arrival order and sends the
    /// `hist_sync` receipt once the chunk is stored). False when it could not be kept (a store
    /// error, or the account's queue is full): the caller then leaves the message
    /// unacknowledged and its Signal advance uncommitted, so the server delivers it again, as
    /// for app-state keys (`on_key_share`). A message carrying none is true.
    ///
    /// Decision (receipt timing): whatsmeow `handleProtocolMessage` and Baileys send the
    /// receipt as soon as the notification is read, but nothing requires it then: whatsmeow
    /// lets an application that downloads history itself turn that receipt off and send it
    /// after its own processing (`DisableManualHistorySyncReceipt`, whatsmeow #1100). Sent at
    /// once, a crash between reading and storing would acknowledge a chunk we never kept; so
    /// it goes after the chunk is stored. The message itself is acknowledged once the
    /// notification is kept durably: a chunk cut short by a crash or a shutdown resumes from
    /// the store at the next start, and is acknowledged to the phone when stored.
    pub(super) async fn on_history_notification(&self, node: &Node, message: &wa::Message) -> bool {
        let Some(n) = message
            .protocol_message
            .as_ref()
            .and_then(|p| p.history_sync_notification.as_ref())
        else {
            return true;
        };
        let Some(id) = node.get_str("id") else {
            return true;
        };
        let bytes = zeroize::Zeroizing::new(n.encode_to_vec());
        match self.store.queue_history(&id, &bytes).await {
            Ok(Queued::New | Queued::Known) => {
                self.wake_history();
                true
            }
            Ok(Queued::Full) => {
                tracing::warn!(
                    id = %id,
                    "history queue full; the notification is left for the server to deliver again"
                );
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep a history notification; it will be redelivered");
                false
            }
        }
    }

    /// Wakes the history worker: a notification was kept (kept chunks that failed for the
    /// moment still rest; see [`Messenger::history_loop`]).
    pub(in crate::client) fn wake_history(&self) {
        if let Ok(t) = self.history_tx.lock()
            && let Some(t) = t.as_ref()
        {
            // Full: a wake is pending already, and one pass serves both.
            let _ = t.try_send(());
        }
    }

    /// Wakes the history worker for a new round: a connection came up, so kept chunks that
    /// failed for the moment are tried again and due receipts go out.
    pub(in crate::client) fn wake_history_round(&self) {
        self.history_round
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake_history();
    }

    /// The worker: on each wake, sends the `hist_sync` receipts that are due, then processes
    /// the kept notifications in arrival order; ends when the messenger is gone.
    ///
    /// Pacing (why attempts mean something): a chunk that fails for the moment rests until
    /// the next round — a new connection, or a timer of 1 minute doubling to 1 hour while
    /// some rest — and the chunks after it go on meanwhile. Wakes by new notifications do not
    /// retry a resting chunk, so a burst of them cannot use up its attempts in seconds.
    pub(super) async fn history_loop(
        me: std::sync::Weak<Messenger<S>>,
        mut wake: mpsc::Receiver<()>,
    ) {
        let mut chunks = 0u64;
        let mut resting: std::collections::HashSet<String> = Default::default();
        let mut backoff = HISTORY_RETRY_FIRST;
        loop {
            let woke = if resting.is_empty() {
                wake.recv().await.is_some()
            } else {
                match tokio::time::timeout(backoff, wake.recv()).await {
                    Ok(w) => w.is_some(),
                    Err(_) => {
                        // The timer's round.
                        resting.clear();
                        backoff = (backoff * 2).min(HISTORY_RETRY_LAST);
                        true
                    }
                }
            };
            if !woke {
                return;
            }
            let Some(m) = me.upgrade() else { return };
            if m.history_round
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                resting.clear();
            }
            m.send_due_history_receipts().await;
            let mut after = 0i64;
            let mut worked = false;
            loop {
                let row = match m.store.next_history(after).await {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the kept history notifications");
                        break;
                    }
                };
                after = row.seq;
                if resting.contains(&row.id) {
                    continue;
                }
                worked = true;
                chunks += 1;
                let id = row.id.clone();
                if let Pass::Wait = m.take_history(row).await {
                    resting.insert(id);
                }
            }
            if resting.is_empty() {
                backoff = HISTORY_RETRY_FIRST;
            }
            if worked {
                m.publish(Event::HistorySyncIdle { chunks });
            }
        }
    }

    /// Processes one kept notification: stored (receipt due, sent if a connection is up),
    /// given up (the row goes, with an event), or kept for the next wake.
    async fn take_history(&self, row: PendingHistory) -> Pass {
        // Counted before the work: a chunk that kills the process is counted too.
        let attempts = match self.store.history_attempt(&row.id).await {
            Ok(0) => return Pass::Next,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count a history attempt");
                return Pass::Wait;
            }
        };
        let n = match wa::HistorySyncNotification::decode(&row.notification[..]) {
            Ok(n) => n,
            Err(e) => {
                self.give_up_history(&row.id, None, format!("a kept notification: {e}"))
                    .await;
                return Pass::Next;
            }
        };
        let chunk = n.chunk_order;
        if attempts > MAX_HISTORY_ATTEMPTS {
            self.give_up_history(
                &row.id,
                chunk,
                format!("given up after {MAX_HISTORY_ATTEMPTS} attempts"),
            )
            .await;
            return Pass::Next;
        }
        match self.process_history(n).await {
            Ok(()) => {
                match self.store.history_stored(&row.id).await {
                    Ok(()) => self.send_history_receipt(&row.id).await,
                    // Left unstored: processed again later, which the store dedupes.
                    Err(e) => tracing::warn!(error = %e, "cannot mark a history chunk stored"),
                }
                Pass::Next
            }
            Err(Stop::Bad(reason)) => {
                self.give_up_history(&row.id, chunk, reason).await;
                Pass::Next
            }
            Err(Stop::Transient(reason)) if attempts >= MAX_HISTORY_ATTEMPTS => {
                self.give_up_history(
                    &row.id,
                    chunk,
                    format!("{reason} (given up after {attempts} attempts)"),
                )
                .await;
                Pass::Next
            }
            Err(Stop::Transient(reason)) => {
                tracing::warn!(
                    chunk,
                    attempts,
                    reason,
                    "history chunk not stored; it will be tried again"
                );
                self.publish(Event::HistorySyncFailed {
                    chunk,
                    reason,
                    will_retry: true,
                });
                Pass::Wait
            }
        }
    }

    /// Drops a kept notification for good, with an event. The phone gets no `hist_sync`
    /// receipt for it.
    async fn give_up_history(&self, id: &str, chunk: Option<u32>, reason: String) {
        tracing::warn!(chunk, reason, "history chunk not used");
        if let Err(e) = self.store.forget_history(id).await {
            tracing::warn!(error = %e, "cannot forget a history notification");
        }
        self.publish(Event::HistorySyncFailed {
            chunk,
            reason,
            will_retry: false,
        });
    }

    /// The `hist_sync` receipt of message `id`, on whichever connection is up now (it names
    /// the message, not the connection it came on); the row goes once it is sent. With no
    /// connection up it stays due for the next one.
    async fn send_history_receipt(&self, id: &str) {
        let (Some(account), Some(sender)) = (self.account(), self.sender()) else {
            return;
        };
        let receipt = Node::new("receipt")
            .attr("id", id.to_owned())
            .attr("type", "hist_sync")
            .attr("to", account.me.jid.to_non_ad());
        if sender.send(&receipt).await.is_ok()
            && let Err(e) = self.store.forget_history(id).await
        {
            // Sent again at the next connection: the phone takes a repeat as it is.
            tracing::warn!(error = %e, "cannot forget a receipted history notification");
        }
    }

    /// Sends every `hist_sync` receipt that is due (chunks stored while no connection was
    /// up, or before a crash), when a connection is up.
    async fn send_due_history_receipts(&self) {
        if self.sender().is_none() {
            return;
        }
        match self.store.history_receipts_due().await {
            Ok(ids) => {
                for id in ids {
                    self.send_history_receipt(&id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the due history receipts"),
        }
    }

    /// Processes one notification: Ok when its chunk was stored whole.
    async fn process_history(&self, n: wa::HistorySyncNotification) -> Result<(), Stop> {
        let chunk = n.chunk_order;
        let source = match n.initial_hist_bootstrap_inline_payload.clone() {
            Some(b) => Source::Inline(b),
            None => Source::File(self.download_history(&n).await?),
        };
        let limits = self.history_limits;
        let (tx, mut rx) = mpsc::channel(ITEMS_IN_FLIGHT);
        let parser = tokio::task::spawn_blocking(move || {
            let reader: Box<dyn std::io::Read> = match &source {
                Source::Inline(b) => Box::new(&b[..]),
                Source::File(f) => match std::fs::File::open(&f.0) {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Stop::Transient(format!(
                            "reading the download: {e}"
                        ))));
                        return;
                    }
                },
            };
            for item in HistoryStream::new(reader, limits) {
                // What the stream refuses (inflate, decode, size) is in the bytes: for good.
                if tx
                    .blocking_send(item.map_err(|e| Stop::Bad(e.to_string())))
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut report = HistoryReport {
            sync_type: n.sync_type,
            chunk,
            progress: n.progress,
            ..HistoryReport::default()
        };
        let mut batch = HistoryBatch::default();
        let mut failed = None;
        while let Some(item) = rx.recv().await {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let r = match item {
                Item::SyncType(t) => {
                    report.sync_type.get_or_insert(t);
                    Ok(())
                }
                Item::ChunkOrder(c) => {
                    report.chunk.get_or_insert(c);
                    Ok(())
                }
                Item::Progress(p) => {
                    report.progress.get_or_insert(p);
                    Ok(())
                }
                Item::Conversation(c) => {
                    report.conversations += 1;
                    self.add_conversation(*c, &mut batch, &mut report).await
                }
                Item::Pushname(p) => {
                    if let (Some(jid), Some(name)) = (
                        history_jid(p.id.as_deref()),
                        p.pushname.filter(|n| n != "-"),
                    ) && matches!(jid.server, Server::User | Server::Lid)
                    {
                        report.push_names += 1;
                        batch.contacts.push(ContactChange {
                            jid: jid.to_non_ad(),
                            push_name: Some(name),
                            ..ContactChange::default()
                        });
                    }
                    Ok(())
                }
                Item::Mapping(m) => {
                    report.mappings += 1;
                    self.learn_pair(
                        m.pn_jid.as_deref(),
                        m.lid_jid.as_deref(),
                        &mut batch,
                        &mut report,
                    )
                    .await
                }
                Item::Contact(c) => {
                    let r = self
                        .learn_pair(
                            c.pn_jid.as_deref(),
                            c.lid_jid.as_deref(),
                            &mut batch,
                            &mut report,
                        )
                        .await;
                    let jid = history_jid(c.lid_jid.as_deref())
                        .or_else(|| history_jid(c.pn_jid.as_deref()));
                    if let Some(jid) = jid {
                        report.contacts += 1;
                        batch.contacts.push(ContactChange {
                            jid: jid.to_non_ad(),
                            full_name: c.full_name.filter(|s| !s.is_empty()),
                            first_name: c.first_name.filter(|s| !s.is_empty()),
                            username: c.username.filter(|s| !s.is_empty()),
                            on_whatsapp: Some(true),
                            ..ContactChange::default()
                        });
                    }
                    r
                }
                Item::NctSalt(salt) => {
                    if !salt.is_empty() {
                        // Backfill only: never over a salt app state set, never after a
                        // REMOVE (whatsapp-rust `SetNctSaltFromHistorySync`).
                        match self.store.backfill_nct_salt(&salt).await {
                            Ok(applied) => {
                                tracing::debug!(applied, "history sync carried an NCT salt")
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot store the NCT salt"),
                        }
                    }
                    Ok(())
                }
                Item::Skipped(field, len) => {
                    report.skipped += 1;
                    tracing::warn!(field, len, "history item over the size cap, skipped");
                    self.publish(Event::HistorySyncFailed {
                        chunk,
                        reason: format!("a history item of {len} bytes (field {field}) skipped"),
                        will_retry: false,
                    });
                    Ok(())
                }
            };
            // What fails here is the store: passing.
            if let Err(e) = r {
                failed = Some(Stop::Transient(e));
                break;
            }
            if batch.len() >= HISTORY_BATCH
                && let Err(e) = self.flush_history(&mut batch, &mut report).await
            {
                failed = Some(Stop::Transient(e));
                break;
            }
        }
        drop(rx);
        let _ = parser.await;
        if failed.is_none()
            && let Err(e) = self.flush_history(&mut batch, &mut report).await
        {
            failed = Some(Stop::Transient(e));
        }
        match failed {
            Some(e) => Err(e),
            None => {
                tracing::info!(?report, "history chunk stored");
                self.publish(Event::HistorySync(Box::new(report)));
                Ok(())
            }
        }
    }

    /// Downloads a notification's blob into a temporary file, verified whole. A
    /// notification naming no file, and bytes that fail a check, are [`Stop::Bad`]; the
    /// network, the connection and the temporary file are [`Stop::Transient`].
    async fn download_history(&self, n: &wa::HistorySyncNotification) -> Result<TempFile, Stop> {
        let bad = |s: &str| Stop::Bad(s.to_owned());
        let tmp = |e: std::io::Error| Stop::Transient(format!("a temporary file: {e}"));
        let key: [u8; 32] = n
            .media_key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad("the notification names no media key"))?;
        let sha: [u8; 32] = n
            .file_sha256
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad("the notification names no file hash"))?;
        let enc: Option<[u8; 32]> = n.file_enc_sha256.as_deref().and_then(|k| k.try_into().ok());
        let path = n
            .direct_path
            .clone()
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| bad("the notification names no path"))?;
        let cdn = self
            .cdn()
            .map_err(|e| Stop::Transient(format!("download: {e}")))?;
        let conn = self
            .media_conn(false)
            .await
            .map_err(|e| Stop::Transient(format!("download: {e}")))?;
        let file = TempFile(std::env::temp_dir().join(format!(
            "{DOWNLOAD_PREFIX}{}.z",
            crate::util::hex::encode(&rand::random::<[u8; 12]>())
        )));
        let mut sink = FileSink(tokio::fs::File::create(&file.0).await.map_err(tmp)?);
        let fetch = Fetch {
            ty: MediaType::History,
            key,
            file_sha256: sha,
            file_enc_sha256: enc,
            path: &path,
            declared: n.file_length,
        };
        fetch_verified(&cdn, &conn.hosts, &fetch, MAX_HISTORY_BLOB, &mut sink)
            .await
            .map_err(|e| {
                // Gone from the CDN: no media retry brings a history blob back.
                if e.is_permanent() || matches!(e, crate::client::media::MediaFailure::Gone) {
                    Stop::Bad(format!("download: {e}"))
                } else {
                    Stop::Transient(format!("download: {e}"))
                }
            })?;
        use tokio::io::AsyncWriteExt;
        sink.0.flush().await.map_err(tmp)?;
        Ok(file)
    }

    /// Stores what the batch holds (one transaction) and empties it.
    async fn flush_history(
        &self,
        batch: &mut HistoryBatch,
        report: &mut HistoryReport,
    ) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let stored = self
            .store
            .store_history(batch)
            .await
            .map_err(|e| e.to_string())?;
        report.stored += stored as u64;
        self.learned_many(&batch.pairs);
        *batch = HistoryBatch::default();
        Ok(())
    }

    /// Learns a PN ↔ LID pair history names with the batch: stored first in the batch's
    /// transaction (one for all its pairs, not one each), so its rows land under the LID.
    /// Rows the batch already holds under the phone number move to the LID now.
    ///
    /// A number the batch already maps to another LID (review): the batch is stored first, so
    /// the rows it moved stay with the LID they were named with then, and the new pair (the
    /// number's newest LID: the store keeps the last, `CredsStore::learn_lids`) comes in the
    /// next batch. A batch thus never names a number twice, and a stored batch means the same
    /// whichever rule the store applies to repeats.
    async fn learn_pair(
        &self,
        pn: Option<&str>,
        lid: Option<&str>,
        batch: &mut HistoryBatch,
        report: &mut HistoryReport,
    ) -> Result<(), String> {
        let (Some(pn), Some(lid)) = (history_jid(pn), history_jid(lid)) else {
            return Ok(());
        };
        if pn.server != Server::User || lid.server != Server::Lid {
            return Ok(());
        }
        let (pn, lid) = (pn.to_non_ad(), lid.to_non_ad());
        let known = match pending_lid(batch, &pn.user) {
            Some(l) if l == lid.user => Some(l.to_owned()),
            Some(_) => {
                self.flush_history(batch, report).await?;
                self.lid_of(&pn.user).await
            }
            None => self.lid_of(&pn.user).await,
        };
        if known.as_deref() == Some(lid.user.as_str()) {
            return Ok(());
        }
        for m in &mut batch.messages {
            if m.chat == pn {
                m.chat = lid.clone();
            }
            if m.sender == pn {
                m.sender = lid.clone();
            }
        }
        batch.pairs.push((pn.user, lid.user));
        Ok(())
    }

    /// [`Messenger::canonical`], counting the pairs the batch will learn.
    async fn canonical_in(&self, jid: &Jid, batch: &HistoryBatch) -> Jid {
        if jid.server == Server::User
            && let Some(lid) = pending_lid(batch, &jid.user)
        {
            return Jid::with_device(lid, jid.device, Server::Lid);
        }
        self.canonical(jid).await
    }

    /// A conversation's chat state, messages and token into the batch.
    async fn add_conversation(
        &self,
        c: wa::Conversation,
        batch: &mut HistoryBatch,
        report: &mut HistoryReport,
    ) -> Result<(), String> {
        let Some(id) = history_jid(c.id.as_deref()) else {
            return Ok(());
        };
        if !matches!(id.server, Server::User | Server::Lid | Server::Group) {
            // Status and broadcast lists are not chats here.
            return Ok(());
        }
        // The conversation names both forms of a 1:1 contact.
        let pn = history_jid(c.pn_jid.as_deref())
            .or_else(|| (id.server == Server::User).then(|| id.clone()));
        let lid = history_jid(c.lid_jid.as_deref())
            .or_else(|| (id.server == Server::Lid).then(|| id.clone()));
        if let (Some(pn), Some(lid)) = (&pn, &lid) {
            self.learn_pair(Some(&pn.to_string()), Some(&lid.to_string()), batch, report)
                .await?;
        }
        let chat = self.canonical_in(&id, batch).await.to_non_ad();
        batch.chats.push(ChatChange {
            chat: chat.clone(),
            name: c
                .name
                .clone()
                .or(c.display_name.clone())
                .filter(|n| !n.is_empty())
                .map(Some),
            archived: Some(c.archived.unwrap_or(false)),
            pinned: Some(c.pinned.filter(|p| *p > 0).map(u64::from)),
            muted_until: Some(c.mute_end_time.and_then(mute_ms)),
            marked_unread: Some(c.marked_as_unread.unwrap_or(false)),
            unread_count: c.unread_count,
            ephemeral: c.ephemeral_expiration.map(|e| (e > 0).then_some(e)),
            ..ChatChange::default()
        });
        if let (Some(token), Some(t)) = (c.tc_token.as_deref(), c.tc_token_timestamp)
            && !token.is_empty()
            && token.len() <= super::tokens::MAX_TOKEN_BYTES
            && id.server != Server::Group
        {
            match self.store.set_privacy_token(&chat, token, t).await {
                Ok(()) => {
                    if let Ok(mut m) = self.tokens.lock() {
                        m.remove(&chat);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot store a history tctoken"),
            }
        }
        let me = self.account().map(|a| a.me);
        let own = match &me {
            Some(me) => Some(self.canonical_in(&me.jid, batch).await.to_non_ad()),
            None => None,
        };
        for hm in c.messages {
            let Some(w) = hm.message else { continue };
            report.messages += 1;
            let Some(row) = self.history_row(&chat, w, own.as_ref(), batch).await else {
                continue;
            };
            batch.messages.push(row);
            if batch.len() >= HISTORY_BATCH {
                self.flush_history(batch, report).await?;
            }
        }
        Ok(())
    }

    /// A history message as the row a live one would make; None for protocol payloads,
    /// stubs and what names no id.
    async fn history_row(
        &self,
        chat: &Jid,
        w: wa::WebMessageInfo,
        own: Option<&Jid>,
        batch: &HistoryBatch,
    ) -> Option<StoredMessage> {
        let key = w.key?;
        let id = key.id.filter(|i| !i.is_empty())?;
        let message = w.message?;
        let from_me = key.from_me.unwrap_or(false);
        let sender = if from_me {
            own?.clone()
        } else if chat.server == Server::Group {
            let p = history_jid(key.participant.as_deref().or(w.participant.as_deref()))?;
            self.canonical_in(&p, batch).await.to_non_ad()
        } else {
            chat.clone()
        };
        let raw = message.encode_to_vec();
        let base = StoredMessage {
            id,
            chat: chat.clone(),
            sender,
            from_me,
            timestamp: w.message_timestamp.unwrap_or(0),
            push_name: w.push_name.filter(|p| !p.is_empty()),
            status: status_of(from_me, w.status),
            ..StoredMessage::default()
        };
        row_of(&raw, base)
    }

    /// The CDN client history downloads use (the shared one, or made on first use).
    pub(super) fn cdn(&self) -> Result<crate::client::cdn::Cdn, crate::client::cdn::CdnError> {
        if let Some(c) = self.cdn.get() {
            return Ok(c.clone());
        }
        let made = crate::client::cdn::Cdn::new(self.tls.clone())?;
        Ok(self.cdn.get_or_init(|| made).clone())
    }
}

/// Starts the history worker of `m` (ends when the messenger is dropped). It first runs at
/// the first connection ([`Messenger::wake_history`] from `after_login`): what an earlier run
/// kept resumes then, before what arrives on that connection (arrival order).
pub(super) fn start_worker<S: CredsStore>(m: &Arc<Messenger<S>>, span: &tracing::Span) {
    use tracing::Instrument as _;
    // Downloads a killed process left behind (its chunk is downloaded again under a new name
    // when it resumes). Only old ones: another process may be downloading into the same
    // directory now.
    tokio::task::spawn_blocking(|| {
        sweep_stale_downloads(
            &std::env::temp_dir(),
            STALE_DOWNLOAD,
            std::time::SystemTime::now(),
        )
    });
    // One pending wake is enough: a pass reads everything kept.
    let (tx, rx) = mpsc::channel(1);
    if let Ok(mut t) = m.history_tx.lock() {
        *t = Some(tx);
    }
    tokio::spawn(Messenger::history_loop(Arc::downgrade(m), rx).instrument(span.clone()));
}

/// Messages an on-demand request asks for unless told (whatsmeow's recommendation).
pub const ON_DEMAND_COUNT: u32 = 50;
/// Most messages one on-demand request may ask for.
pub const MAX_ON_DEMAND_COUNT: u32 = 500;

impl<S: CredsStore> Messenger<S> {
    /// Asks our phone for up to `count` messages of `chat` older than the oldest we store
    /// (`HISTORY_SYNC_ON_DEMAND`, CLIENT-FEATURES §5.4); the answer arrives later as a
    /// history notification with `syncType = ON_DEMAND`. Returns the request's message id.
    pub(in crate::client) async fn request_history(
        &self,
        chat: Jid,
        count: u32,
    ) -> Result<String, super::SendError> {
        use wa::peer_data_operation_request_message::HistorySyncOnDemandRequest;
        let account = self.account().ok_or(super::SendError::NotConnected)?;
        let chat = self.canonical(&chat).await.to_non_ad();
        let anchor = self.store.oldest_message(&chat).await?;
        let request = wa::Message {
            protocol_message: Some(Box::new(wa::ProtocolMessage {
                r#type: Some(wa::protocol_message::Type::PeerDataOperationRequestMessage as i32),
                peer_data_operation_request_message: Some(wa::PeerDataOperationRequestMessage {
                    peer_data_operation_request_type: Some(
                        wa::PeerDataOperationRequestType::HistorySyncOnDemand as i32,
                    ),
                    history_sync_on_demand_request: Some(HistorySyncOnDemandRequest {
                        chat_jid: Some(chat.to_string()),
                        oldest_msg_id: anchor.as_ref().map(|m| m.id.clone()),
                        oldest_msg_from_me: anchor.as_ref().map(|m| m.from_me),
                        on_demand_msg_count: Some(count.clamp(1, MAX_ON_DEMAND_COUNT) as i32),
                        // Seconds despite the name (whatsmeow, Baileys; Appendix A).
                        oldest_msg_timestamp_ms: anchor
                            .as_ref()
                            .map(|m| i64::try_from(m.timestamp).unwrap_or(i64::MAX)),
                        account_lid: account.me.lid.as_ref().map(|l| l.to_non_ad().to_string()),
                        support_inline_response: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.send_peer(&request).await
    }
}

#[cfg(test)]
mod tests {
    use super::{DOWNLOAD_PREFIX, STALE_DOWNLOAD, mute_ms, sweep_stale_downloads};

    #[test]
    fn only_old_history_downloads_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        let make = |name: &str, age: std::time::Duration| {
            let path = dir.path().join(name);
            let f = std::fs::File::create(&path).unwrap();
            f.set_modified(now - age).unwrap();
            path
        };
        let hour = std::time::Duration::from_secs(3600);
        let old = make(&format!("{DOWNLOAD_PREFIX}aa.z"), STALE_DOWNLOAD + hour);
        let fresh = make(&format!("{DOWNLOAD_PREFIX}bb.z"), hour);
        let other = make("someone-else.z", STALE_DOWNLOAD + hour);
        assert_eq!(sweep_stale_downloads(dir.path(), STALE_DOWNLOAD, now), 1);
        assert!(!old.exists(), "left behind by a killed process: swept");
        assert!(fresh.exists(), "maybe another process's download now: kept");
        assert!(other.exists(), "not ours: kept");
    }

    #[test]
    fn a_history_mute_end_reads_as_ms_and_seconds_as_seconds() {
        // ms, as app state's muteEndTimestamp (Baileys writes that into muteEndTime).
        assert_eq!(mute_ms(1_700_000_000_000), Some(1_700_000_000_000));
        // Seconds (below 10^12) are scaled.
        assert_eq!(mute_ms(1_700_000_000), Some(1_700_000_000_000));
        // Not muted; forever (-1 as uint64, or past i64).
        assert_eq!(mute_ms(0), None);
        assert_eq!(mute_ms(u64::MAX), Some(-1));
    }
}
