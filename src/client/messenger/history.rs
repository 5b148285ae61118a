//! History sync (CLIENT-FEATURES §5): the phone's `HistorySyncNotification`s, accepted only
//! from our own account, are queued and processed one at a time in arrival order by one
//! worker per client. A chunk is the inline bootstrap payload, or a blob downloaded through the
//! media download core (`WhatsApp History Keys`, `md-msg-hist`) into a temporary file and
//! verified whole before a byte of it is read; then it is inflated and parsed as a stream
//! ([`super::history_stream`]) on a blocking thread, one conversation at a time, and stored in
//! batches of a few hundred rows per transaction.
//!
//! Kept: conversations → chats (archived, pinned, mute end, unread count, marked unread,
//! name, ephemeral timer); their messages → history rows (classified like live ones, deduped
//! against live rows by (chat, sender, id), never announced as received); push names (not
//! `-`); PN ↔ LID mappings (top-level, conversations' `lidJID`/`pnJID`, inline contacts)
//! through `learn`; inline contacts → contacts; conversations' tctokens (keyed by the LID when
//! known); the NCT salt as backfill only (whatsapp-rust's rule, CLIENT-FEATURES Appendix A).
//!
//! Failure (download, bad zlib, not a `HistorySync`, too large): an event and a log line,
//! never a crash. Decision: each batch commits whole; a chunk that fails midway keeps the
//! batches before the failure (each is whole and valid: rows dedupe, so the phone sending the
//! chunk again fills in the rest), and nothing of the failing batch.

use std::sync::Arc;

use prost::Message as _;
use tokio::sync::mpsc;

use super::Messenger;
use super::history_stream::{HistoryStream, Item};
use super::receive::row_of;
use crate::binary::{Jid, Node, Server};
use crate::client::account::{ChatChange, ContactChange, HistoryBatch};
use crate::client::events::{Event, HistoryReport};
use crate::client::media::{Fetch, MediaSink, MediaType, fetch_verified};
use crate::client::messages::{MessageStatus, StoredMessage};
use crate::client::store::CredsStore;
use crate::proto::wa;

/// Rows (messages, chats, contacts) one transaction carries.
pub(super) const HISTORY_BATCH: usize = 500;
/// Largest downloaded (compressed) history blob.
pub(super) const MAX_HISTORY_BLOB: u64 = 512 << 20;
/// Notifications waiting for the worker; the reader waits beyond it.
pub(super) const HISTORY_QUEUE: usize = 64;
/// Decoded items in flight between the parser thread and the store.
const ITEMS_IN_FLIGHT: usize = 16;

/// One notification to process.
pub(super) struct HistoryJob {
    /// The notification.
    pub n: wa::HistorySyncNotification,
    /// Its `hist_sync` receipt, sent once the chunk is stored.
    pub receipt: Option<Node>,
}

/// Where a chunk's compressed bytes are.
enum Source {
    Inline(Vec<u8>),
    File(TempFile),
}

/// A temporary file removed on drop.
struct TempFile(std::path::PathBuf);

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
    /// A `HistorySyncNotification` in a message from our own account: queued for the worker
    /// (one at a time, in arrival order), which sends its `hist_sync` receipt once the chunk
    /// is stored.
    ///
    /// Decision (receipt timing): whatsmeow `handleProtocolMessage` and Baileys send the
    /// receipt as soon as the notification is read, but nothing requires it then: whatsmeow
    /// lets an application that downloads history itself turn that receipt off and send it
    /// after its own processing (`DisableManualHistorySyncReceipt`, whatsmeow #1100). Sent at
    /// once, a crash between queueing and storing would acknowledge a chunk we never kept (the
    /// message itself is acknowledged either way, so the server does not deliver it again);
    /// so it goes after the chunk is stored, and a chunk that fails or is cut short by a crash
    /// or a shutdown stays unacknowledged to the phone.
    pub(super) async fn on_history_notification(&self, node: &Node, message: &wa::Message) {
        let Some(n) = message
            .protocol_message
            .as_ref()
            .and_then(|p| p.history_sync_notification.clone())
        else {
            return;
        };
        let receipt = match (node.get_str("id"), self.account()) {
            (Some(id), Some(account)) => Some(
                Node::new("receipt")
                    .attr("id", id.into_owned())
                    .attr("type", "hist_sync")
                    .attr("to", account.me.jid.to_non_ad()),
            ),
            _ => None,
        };
        let queue = self.history_tx.lock().ok().and_then(|t| t.clone());
        match queue {
            Some(q) => {
                if q.send(HistoryJob { n, receipt }).await.is_err() {
                    tracing::warn!("history worker stopped; chunk dropped");
                }
            }
            None => tracing::warn!("no history worker; chunk dropped"),
        }
    }

    /// The worker: processes queued notifications one at a time until the messenger is gone.
    pub(super) async fn history_loop(
        me: std::sync::Weak<Messenger<S>>,
        mut rx: mpsc::Receiver<HistoryJob>,
    ) {
        let mut chunks = 0u64;
        while let Some(job) = rx.recv().await {
            let Some(m) = me.upgrade() else { return };
            let stored = m.process_history(job.n).await;
            // On whichever connection is up now: the receipt names the message, not the
            // connection it came on.
            if stored && let (Some(receipt), Some(sender)) = (job.receipt, m.sender()) {
                let _ = sender.send(&receipt).await;
            }
            chunks += 1;
            if rx.is_empty() {
                m.publish(Event::HistorySyncIdle { chunks });
            }
        }
    }

    /// Processes one notification; true when its chunk was stored whole.
    async fn process_history(&self, n: wa::HistorySyncNotification) -> bool {
        let chunk = n.chunk_order;
        let fail = |reason: String| {
            tracing::warn!(chunk, reason, "history chunk not used");
            self.publish(Event::HistorySyncFailed { chunk, reason });
        };
        let source = match n.initial_hist_bootstrap_inline_payload.clone() {
            Some(b) => Source::Inline(b),
            None => match self.download_history(&n).await {
                Ok(f) => Source::File(f),
                Err(e) => {
                    fail(e);
                    return false;
                }
            },
        };
        let limits = self.history_limits;
        let (tx, mut rx) = mpsc::channel(ITEMS_IN_FLIGHT);
        let parser = tokio::task::spawn_blocking(move || {
            let reader: Box<dyn std::io::Read> = match &source {
                Source::Inline(b) => Box::new(&b[..]),
                Source::File(f) => match std::fs::File::open(&f.0) {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(format!("reading the download: {e}")));
                        return;
                    }
                },
            };
            for item in HistoryStream::new(reader, limits) {
                if tx.blocking_send(item.map_err(|e| e.to_string())).is_err() {
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
                    });
                    Ok(())
                }
            };
            if let Err(e) = r {
                failed = Some(e);
                break;
            }
            if batch.len() >= HISTORY_BATCH
                && let Err(e) = self.flush_history(&mut batch, &mut report).await
            {
                failed = Some(e);
                break;
            }
        }
        drop(rx);
        let _ = parser.await;
        if failed.is_none()
            && let Err(e) = self.flush_history(&mut batch, &mut report).await
        {
            failed = Some(e);
        }
        match failed {
            Some(e) => {
                fail(e);
                false
            }
            None => {
                tracing::info!(?report, "history chunk stored");
                self.publish(Event::HistorySync(Box::new(report)));
                true
            }
        }
    }

    /// Downloads a notification's blob into a temporary file, verified whole.
    async fn download_history(&self, n: &wa::HistorySyncNotification) -> Result<TempFile, String> {
        let key: [u8; 32] = n
            .media_key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or("the notification names no media key")?;
        let sha: [u8; 32] = n
            .file_sha256
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or("the notification names no file hash")?;
        let enc: Option<[u8; 32]> = n.file_enc_sha256.as_deref().and_then(|k| k.try_into().ok());
        let path = n
            .direct_path
            .clone()
            .filter(|p| p.starts_with('/'))
            .ok_or("the notification names no path")?;
        let cdn = self.cdn().map_err(|e| e.to_string())?;
        let conn = self.media_conn(false).await.map_err(|e| e.to_string())?;
        let file = TempFile(std::env::temp_dir().join(format!(
            "wa-history-{}.z",
            crate::util::hex::encode(&rand::random::<[u8; 12]>())
        )));
        let mut sink = FileSink(
            tokio::fs::File::create(&file.0)
                .await
                .map_err(|e| format!("a temporary file: {e}"))?,
        );
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
            .map_err(|e| format!("download: {e}"))?;
        use tokio::io::AsyncWriteExt;
        sink.0
            .flush()
            .await
            .map_err(|e| format!("a temporary file: {e}"))?;
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

/// Starts the history worker of `m` (ends when the messenger is dropped).
pub(super) fn start_worker<S: CredsStore>(m: &Arc<Messenger<S>>, span: &tracing::Span) {
    use tracing::Instrument as _;
    let (tx, rx) = mpsc::channel(HISTORY_QUEUE);
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
    use super::mute_ms;

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
