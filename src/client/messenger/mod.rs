//! 1:1 messaging of one account over its live connection (MESSAGING.md §1–§2).
//!
//! Receiving: dedupe by (chat, sender, id) before decrypting; decrypt under the session's lock;
//! commit the session advance, the consumed prekey and the message row in one unit; only then
//! send the receipt (the receipt is the acknowledgement: a crash before it means the server
//! delivers again and the row dedupes it). Failures get a retry receipt, counted per message.
//!
//! Sending: devices by usync (cached per user until a devices notification), bundles for
//! devices without a session, one encryption per device under all their locks, the row
//! recorded `pending` with the Signal advance in one unit, and only then the stanza. The server's
//! ack moves the row to `server_ack` or `failed(code)`; receipts climb the ladder.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use tokio::sync::oneshot;

use super::events::{Event, EventHub};
use super::iq::IqError;
use super::messages::{Committed, MessageStatus, StatusUpdate, StoredMessage};
use super::recv::{is_me, unpad};
use super::run::{IQ_TIMEOUT, Link};
use super::store::{Creds, CredsStore, CredsStoreError, Me};
use crate::binary::{Jid, Node, Server};
use crate::proto::wa;
use crate::signal::store::{ApplyChanges, PreKeyStore};
use crate::signal::{
    CiphertextMessage, EncType, IdentityChange, IdentityTrust, PreKeyBundle, ProtocolAddress,
    SessionCipher, SignalChanges, SignalError,
};
use crate::socket::NodeSender;
use crate::stanza;
use crate::util::clock::Clock;

mod groups;
mod timelock;

pub use crate::stanza::MAX_RETRIES;
/// Devices read from one aggregated group receipt at most (a group has at most 1,024 members,
/// each with a handful of devices).
const MAX_GROUPED_RECEIPTS: usize = 8192;
/// Devices whose bundles one prekey iq asks for at most.
const PREKEY_BATCH: usize = 256;
/// Users whose device lists are cached; the cache starts over beyond it.
const DEVICE_CACHE: usize = 4096;
/// Messages whose retry counts are remembered.
const RETRY_MEMORY: usize = 1024;
/// Phone numbers whose LID (or its absence) is cached.
const LID_CACHE: usize = 16_384;
/// Mappings read from one history chunk at most.
const MAX_HISTORY_MAPPINGS: usize = 100_000;
/// Largest inflated history chunk accepted (WhatsApp's chunks are a few MB).
const MAX_HISTORY_BYTES: u64 = 64 << 20;

/// Inflates a zlib history payload into a `HistorySync`, refusing more than
/// [`MAX_HISTORY_BYTES`].
fn inflate_history(z: &[u8]) -> Option<wa::HistorySync> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(z)
        .take(MAX_HISTORY_BYTES + 1)
        .read_to_end(&mut plain)
        .ok()?;
    if plain.len() as u64 > MAX_HISTORY_BYTES {
        return None;
    }
    wa::HistorySync::decode(&plain[..]).ok()
}

/// Session addresses remembered as existing.
const SESSION_CACHE: usize = 16_384;

/// Longest privacy token accepted (WhatsApp's are a few dozen bytes).
const MAX_TOKEN_BYTES: usize = 1024;
/// How often we issue our privacy token again to a contact we write to.
const TOKEN_REISSUE: u64 = 7 * 86_400;

/// Longest text accepted for sending (WhatsApp's own limit is 65,536 characters).
pub const MAX_TEXT_BYTES: usize = 65_536;

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The client is not logged in.
    #[error("not connected")]
    NotConnected,
    /// The recipient is not on WhatsApp (usync knows no device).
    #[error("{0} is not on WhatsApp")]
    NotOnWhatsApp(String),
    /// The text is empty or too long.
    #[error("invalid text: {0}")]
    InvalidText(&'static str),
    /// The recipient is neither a user nor a group JID.
    #[error("unsupported recipient {0}")]
    UnsupportedRecipient(String),
    /// We are not a member of the group (any more).
    #[error("not a member of group {0}")]
    NotInGroup(String),
    /// An iq (usync, prekeys) failed.
    #[error(transparent)]
    Iq(#[from] IqError),
    /// Signal refused (e.g. a bundle with a bad signature).
    #[error("encryption failed: {0}")]
    Signal(#[from] SignalError),
    /// The message could not be recorded; nothing was sent.
    #[error(transparent)]
    Store(#[from] CredsStoreError),
    /// WhatsApp answered something we could not read.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The server refused the message (its ack carried an error code).
    #[error("refused by WhatsApp ({code}): {}", refusal_reason(*code))]
    Refused {
        /// The ack's error code.
        code: u16,
        /// The message id (the row is stored as failed).
        id: String,
    },
}

/// What an ack error code means (MESSAGING.md §1.7).
pub fn refusal_reason(code: u16) -> &'static str {
    match code {
        400 => {
            "bad request (mixed addressing namespaces, or a LID message from an unmigrated account)"
        }
        421 => "stale group addressing mode",
        463 => {
            "privacy token missing: the contact never wrote to this account and reach-out is restricted"
        }
        475 => "new-chat limit reached",
        479 => "malformed or inconsistent stanza",
        _ => "refused",
    }
}

/// A message the server accepted (or that is still waiting for its ack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The message id.
    pub id: String,
    /// The conversation.
    pub chat: Jid,
    /// The server's timestamp from its ack, or our clock while no ack came.
    pub timestamp: u64,
    /// `ServerAck` once the server accepted it; `Pending` if its ack is late (it is resent
    /// with the same id on the next connection).
    pub status: MessageStatus,
}

/// Counts of what went wrong or needs a look, since the client started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagingStats {
    /// Messages we could not decrypt (each attempt counts).
    pub decrypt_failures: u64,
    /// Contacts whose identity key changed.
    pub identity_changes: u64,
    /// Sends the server refused (any ack error).
    pub refused: u64,
    /// Of those, refused for a missing privacy token (463).
    pub refused_463: u64,
    /// Sent messages that stayed at `server_ack` past the configured time.
    pub stuck: u64,
    /// Times our sender key of a group was started over (a member left).
    pub group_key_rotations: u64,
    /// Group sends whose ack showed the server sees other member devices than we did.
    pub group_refreshes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    decrypt_failures: std::sync::atomic::AtomicU64,
    identity_changes: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
    refused_463: std::sync::atomic::AtomicU64,
    stuck: std::sync::atomic::AtomicU64,
    group_key_rotations: std::sync::atomic::AtomicU64,
    group_refreshes: std::sync::atomic::AtomicU64,
}

fn bump(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Sent messages watched for a receipt at most (beyond, new ones are not watched).
const WATCHED: usize = 10_000;

/// What the client handle can ask of the messenger (object-safe: the handle is not generic).
pub(super) trait Messaging: Send + Sync {
    fn send_text<'a>(
        &'a self,
        to: Jid,
        text: String,
        id: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>>;
    fn mark_read<'a>(
        &'a self,
        chat: Jid,
        sender: Jid,
        ids: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;
    fn messages<'a>(
        &'a self,
        chat: Option<Jid>,
        limit: u32,
        offset: u32,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<StoredMessage>, CredsStoreError>> + Send + 'a>>;
    fn stats(&self) -> MessagingStats;
    fn group<'a>(
        &'a self,
        call: GroupCall,
    ) -> Pin<Box<dyn Future<Output = Result<GroupReply, SendError>> + Send + 'a>>;
    fn timelock(&self) -> Option<crate::stanza::mex::ReachoutTimelock>;
    fn fetch_timelock<'a>(
        &'a self,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<crate::stanza::mex::ReachoutTimelock, SendError>>
                + Send
                + 'a,
        >,
    >;
}

/// A group operation asked through the client handle.
pub(crate) enum GroupCall {
    Info(Jid),
    Create(String, Vec<Jid>),
    Members(Jid, crate::stanza::group::MemberAction, Vec<Jid>),
    Leave(Jid),
    Subject(Jid, String),
    Updates(Jid, u32),
}

/// What a [`GroupCall`] answers.
pub(crate) enum GroupReply {
    Info(Box<crate::stanza::group::GroupInfo>),
    Members(Vec<(Jid, Option<u16>)>),
    Updates(Vec<super::messages::GroupUpdate>),
    Done,
}

/// What we need of our own account while logged in.
#[derive(Clone)]
struct Account {
    me: Me,
    registration_id: u32,
    identity: [u8; 32],
    signed: (u32, [u8; 32], [u8; 64]),
}

/// Removes an ack waiter when the attempt that registered it ends.
struct WaiterGuard<'a> {
    acks: &'a Mutex<HashMap<String, oneshot::Sender<Ack>>>,
    id: &'a str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut a) = self.acks.lock() {
            a.remove(self.id);
        }
    }
}

/// How one send attempt ended.
enum Attempt {
    /// The server answered (the wire chat it was sent to, and the ack).
    Acked(Jid, Ack),
    /// No answer in time (or no connection): the row stays pending.
    Pending(Sent),
}

/// The server's answer to one of our messages.
#[derive(Debug, Clone)]
struct Ack {
    t: Option<u64>,
    error: Option<u16>,
    /// The server's participant hash, when it differs from a group stanza's.
    phash: Option<String>,
}

/// One account's messaging state; shared by the run loop and the client handle.
pub(super) struct Messenger<S: CredsStore> {
    store: Arc<S>,
    cipher: SessionCipher<S::Signal>,
    link: Arc<Link>,
    events: Arc<EventHub>,
    clock: Arc<dyn Clock>,
    ack_timeout: Duration,
    account: Mutex<Option<Account>>,
    devices: Mutex<HashMap<Jid, Vec<u16>>>,
    acks: Mutex<HashMap<String, oneshot::Sender<Ack>>>,
    retries: Mutex<VecDeque<((Jid, String), u32)>>,
    /// Retry receipts we answered per (device, message).
    answered: Mutex<VecDeque<((Jid, String), u32)>>,
    /// Phone-number user → LID user (None: known to have none yet), a cache over the store.
    lids: Mutex<HashMap<String, Option<String>>>,
    /// When we last issued our privacy token to a contact (a cache over the store).
    issued: Mutex<HashMap<Jid, u64>>,
    /// Addresses known to have a session (sessions are never deleted while linked; the cache
    /// starts over at each login).
    sessions: Mutex<std::collections::HashSet<ProtocolAddress>>,
    /// Contacts' privacy tokens (None: none), a cache over the store.
    tokens: Mutex<HashMap<Jid, Option<Vec<u8>>>>,
    /// Group metadata, a cache over the store.
    groups: Mutex<HashMap<Jid, crate::stanza::group::GroupInfo>>,
    /// Groups whose stored metadata may be stale (the next send asks the server).
    stale_groups: Mutex<std::collections::HashSet<Jid>>,
    counters: Counters,
    /// WhatsApp refused a LID-addressed DM of ours (400): address by phone number.
    pn_only: std::sync::atomic::AtomicBool,
    /// Server-acked messages waiting for a device's receipt, since when.
    watched: Mutex<HashMap<(Jid, String), std::time::Instant>>,
    /// The account's reach-out time-lock, once known.
    timelock: Mutex<Option<crate::stanza::mex::ReachoutTimelock>>,
}

impl<S: CredsStore> Messenger<S> {
    pub(super) fn new(
        store: Arc<S>,
        link: Arc<Link>,
        events: Arc<EventHub>,
        clock: Arc<dyn Clock>,
        ack_timeout: Duration,
    ) -> Messenger<S> {
        let cipher = SessionCipher::new(store.signal(), IdentityTrust::AcceptChanges);
        Messenger {
            store,
            cipher,
            link,
            events,
            clock,
            ack_timeout,
            account: Mutex::new(None),
            devices: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            retries: Mutex::new(VecDeque::new()),
            answered: Mutex::new(VecDeque::new()),
            lids: Mutex::new(HashMap::new()),
            issued: Mutex::new(HashMap::new()),
            sessions: Mutex::new(std::collections::HashSet::new()),
            tokens: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            stale_groups: Mutex::new(std::collections::HashSet::new()),
            counters: Counters::default(),
            pn_only: std::sync::atomic::AtomicBool::new(false),
            watched: Mutex::new(HashMap::new()),
            timelock: Mutex::new(None),
        }
    }

    /// Called at login with the stored credentials.
    pub(super) async fn set_account(&self, creds: &Creds) {
        // A new login may be a new device (after a logout): nothing cached carries over.
        if let Ok(mut s) = self.sessions.lock() {
            s.clear();
        }
        if let Ok(mut t) = self.tokens.lock() {
            t.clear();
        }
        if let Some(me) = &creds.me
            && let Some(lid) = &me.lid
        {
            self.learn(&me.jid.user, &lid.user).await;
        }
        let account = creds.me.clone().map(|me| Account {
            me,
            registration_id: creds.registration_id,
            identity: creds.identity.public,
            signed: (
                creds.signed_pre_key.id,
                creds.signed_pre_key.key_pair.public,
                creds.signed_pre_key.signature,
            ),
        });
        if let Ok(mut a) = self.account.lock() {
            *a = account;
        }
    }

    // ---- LID ----

    /// The LID user of phone-number user `pn`, if known.
    async fn lid_of(&self, pn: &str) -> Option<String> {
        if let Some(v) = self.lids.lock().ok().and_then(|m| m.get(pn).cloned()) {
            return v;
        }
        let found = match self.store.lid_for(pn).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "LID lookup failed");
                return None;
            }
        };
        if let Ok(mut m) = self.lids.lock() {
            if m.len() >= LID_CACHE {
                m.clear();
            }
            m.insert(pn.to_owned(), found.clone());
        }
        found
    }

    /// Records `pn` ↔ `lid` (bare users); sessions and rows move to the LID.
    async fn learn(&self, pn: &str, lid: &str) {
        if pn.is_empty() || lid.is_empty() || self.lid_of(pn).await.as_deref() == Some(lid) {
            return;
        }
        match self.store.learn_lid(pn, lid).await {
            Ok(()) => {
                if let Ok(mut t) = self.tokens.lock() {
                    // The token moved with the contact to its LID.
                    t.remove(&Jid::new(pn, Server::User));
                    t.remove(&Jid::new(lid, Server::Lid));
                }
                if let Ok(mut m) = self.lids.lock() {
                    // Another number may have had this LID: forget cached answers wholesale.
                    m.retain(|_, v| v.as_deref() != Some(lid));
                    m.insert(pn.to_owned(), Some(lid.to_owned()));
                }
                tracing::debug!(pn, lid, "learned a LID");
            }
            Err(e) => tracing::warn!(error = %e, "cannot store a LID mapping"),
        }
    }

    /// The JID we key sessions and chats by: the LID form of a phone-number JID once its LID
    /// is known (device kept), anything else as it is.
    async fn canonical(&self, jid: &Jid) -> Jid {
        if jid.server == Server::User
            && !jid.user.is_empty()
            && let Some(lid) = self.lid_of(&jid.user).await
        {
            return Jid::with_device(lid, jid.device, Server::Lid);
        }
        jid.clone()
    }

    /// Mappings a message's attributes carry (`sender_lid` on a PN sender, `sender_pn` on a
    /// LID sender, the same for a recipient).
    async fn learn_from_attrs(&self, node: &Node, from: &Jid) {
        let pair = |a: &Jid, b: Option<Jid>| -> Option<(String, String)> {
            let b = b?;
            match (a.server.clone(), b.server.clone()) {
                (Server::User, Server::Lid) => Some((a.user.clone(), b.user)),
                (Server::Lid, Server::User) => Some((b.user, a.user.clone())),
                _ => None,
            }
        };
        let from_pair = pair(from, node.get_jid("sender_lid"))
            .or_else(|| pair(from, node.get_jid("sender_pn")));
        let recipient_pair = node.get_jid("recipient").and_then(|r| {
            pair(&r, node.get_jid("peer_recipient_lid"))
                .or_else(|| pair(&r, node.get_jid("peer_recipient_pn")))
        });
        for (pn, lid) in from_pair.into_iter().chain(recipient_pair) {
            self.learn(&pn, &lid).await;
        }
    }

    /// The phone's history bootstrap names PN ↔ LID pairs of our contacts.
    async fn learn_from_history(&self, message: &wa::Message) {
        let Some(n) = message
            .protocol_message
            .as_ref()
            .and_then(|p| p.history_sync_notification.as_ref())
        else {
            return;
        };
        self.publish(Event::HistorySync {
            progress: n.progress,
            chunk: n.chunk_order,
        });
        let Some(inline) = n.initial_hist_bootstrap_inline_payload.as_deref() else {
            return;
        };
        let Some(history) = inflate_history(inline) else {
            tracing::warn!("history bootstrap does not inflate to a HistorySync");
            return;
        };
        for m in history
            .phone_number_to_lid_mappings
            .iter()
            .take(MAX_HISTORY_MAPPINGS)
        {
            let (Some(pn), Some(lid)) = (
                m.pn_jid.as_deref().and_then(|j| j.parse::<Jid>().ok()),
                m.lid_jid.as_deref().and_then(|j| j.parse::<Jid>().ok()),
            ) else {
                continue;
            };
            if pn.server == Server::User && lid.server == Server::Lid {
                self.learn(&pn.user, &lid.user).await;
            }
        }
    }

    fn account(&self) -> Option<Account> {
        self.account.lock().ok().and_then(|a| a.clone())
    }

    fn sender(&self) -> Option<NodeSender> {
        self.link.sender.lock().ok().and_then(|g| g.clone())
    }

    fn publish(&self, e: Event) {
        self.events.publish(e);
    }

    /// Handles a stanza of the messaging kinds (message, receipt, ack, notification).
    pub(super) async fn handle(&self, sender: &NodeSender, node: Node) {
        match node.tag.as_ref() {
            "message" => self.on_message(sender, &node).await,
            "receipt" => self.on_receipt(sender, &node).await,
            "ack" => self.on_ack(&node).await,
            "notification" if node.get_str("type").as_deref() == Some("w:gp2") => {
                self.on_group_notification(&node).await;
                let _ = sender.send(&stanza::ack(&node, None)).await;
            }
            "notification" if node.get_str("type").as_deref() == Some("privacy_token") => {
                self.on_privacy_token(&node).await;
            }
            "notification" if node.get_str("type").as_deref() == Some("mex") => {
                self.on_mex(&node);
            }
            "notification" => {
                if node.get_str("type").as_deref() == Some("devices")
                    && let Some(from) = node.get_jid("from")
                    && let Ok(mut d) = self.devices.lock()
                {
                    d.remove(&from.to_non_ad());
                }
            }
            _ => {}
        }
    }

    /// Flags (once) every server-acked message no device receipted within `after`.
    pub(super) fn flag_stuck(&self, after: Duration) {
        let stuck: Vec<(Jid, String)> = match self.watched.lock() {
            Ok(mut w) => {
                let old: Vec<(Jid, String)> = w
                    .iter()
                    .filter(|(_, since)| since.elapsed() >= after)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &old {
                    w.remove(k);
                }
                old
            }
            Err(_) => return,
        };
        for (chat, id) in stuck {
            bump(&self.counters.stuck);
            tracing::info!(chat = %chat, id, "message still not delivered to any device");
            self.publish(Event::Stuck { chat, id });
        }
    }

    fn stats(&self) -> MessagingStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        MessagingStats {
            decrypt_failures: c.decrypt_failures.load(Relaxed),
            identity_changes: c.identity_changes.load(Relaxed),
            refused: c.refused.load(Relaxed),
            refused_463: c.refused_463.load(Relaxed),
            stuck: c.stuck.load(Relaxed),
            group_key_rotations: c.group_key_rotations.load(Relaxed),
            group_refreshes: c.group_refreshes.load(Relaxed),
        }
    }

    /// Whether a session with `addr` exists, remembering the addresses that have one: most
    /// sends go to devices we already talk to, and each store read is a thread hand-off.
    async fn session_known(&self, addr: &ProtocolAddress) -> Result<bool, SignalError> {
        if self.sessions.lock().is_ok_and(|s| s.contains(addr)) {
            return Ok(true);
        }
        let has = self.cipher.has_session(addr).await?;
        if has && let Ok(mut s) = self.sessions.lock() {
            if s.len() >= SESSION_CACHE {
                s.clear();
            }
            s.insert(addr.clone());
        }
        Ok(has)
    }

    // ---- privacy tokens ----

    /// `<notification type="privacy_token" from=X><tokens><token jid t type="trusted_contact">`:
    /// X's token for us, attached to what we send X from now on.
    async fn on_privacy_token(&self, node: &Node) {
        let Some(from) = node.get_jid("from") else {
            return;
        };
        let contact = self.canonical(&from.to_non_ad()).await;
        let tokens = node
            .child("tokens")
            .map(|t| t.child_nodes().to_vec())
            .unwrap_or_default();
        for tok in tokens.iter().filter(|t| t.tag == "token").take(16) {
            if tok.get_str("type").as_deref() != Some("trusted_contact") {
                continue;
            }
            let (Some(bytes), Some(t)) = (
                tok.content_bytes(),
                tok.get_str("t").and_then(|t| t.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if bytes.len() > MAX_TOKEN_BYTES {
                continue;
            }
            match self.store.set_privacy_token(&contact, bytes, t).await {
                Ok(()) => {
                    // The store keeps the newest; the cache asks it again.
                    if let Ok(mut m) = self.tokens.lock() {
                        m.remove(&contact);
                    }
                    self.publish(Event::PrivacyToken {
                        jid: contact.clone(),
                    })
                }
                Err(e) => tracing::warn!(error = %e, "cannot store a privacy token"),
            }
        }
    }

    /// The token `contact` gave us, through the cache.
    async fn token_for(&self, contact: &Jid) -> Option<Vec<u8>> {
        if let Some(t) = self
            .tokens
            .lock()
            .ok()
            .and_then(|m| m.get(contact).cloned())
        {
            return t;
        }
        let t = match self.store.privacy_token(contact).await {
            Ok(t) => t.map(|(tok, _)| tok),
            Err(e) => {
                tracing::warn!(error = %e, "privacy token lookup failed");
                return None;
            }
        };
        if let Ok(mut m) = self.tokens.lock() {
            if m.len() >= LID_CACHE {
                m.clear();
            }
            m.insert(contact.clone(), t.clone());
        }
        t
    }

    /// Issues our token to `contact` (so they may write to us) unless we did within
    /// [`TOKEN_REISSUE`], as WhatsApp Web does after writing to someone.
    async fn issue_token(&self, contact: &Jid, wire: &Jid) {
        let now = self.clock.now_unix();
        // Most sends go to contacts we issued to lately: no store round trip for them.
        if let Ok(mut m) = self.issued.lock() {
            if m.get(contact)
                .is_some_and(|t| now.saturating_sub(*t) < TOKEN_REISSUE)
            {
                return;
            }
            if m.len() >= LID_CACHE {
                m.clear();
            }
            m.insert(contact.clone(), now);
        }
        match self.store.set_token_issued(contact, now).await {
            Ok(Some(last)) if now.saturating_sub(last) < TOKEN_REISSUE => {
                // Not yet due: put the earlier time back.
                let _ = self.store.set_token_issued(contact, last).await;
                if let Ok(mut m) = self.issued.lock() {
                    m.insert(contact.clone(), last);
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot record an issued privacy token");
                return;
            }
        }
        let Some(sender) = self.sender() else { return };
        let iq = Node::new("iq")
            .attr("xmlns", "privacy")
            .attr("type", "set")
            .attr("to", Jid::server_jid())
            .children(vec![Node::new("tokens").children(vec![
                Node::new("token")
                    .attr("jid", wire.to_non_ad())
                    .attr("t", now.to_string())
                    .attr("type", "trusted_contact"),
            ])]);
        if let Err(e) = self.link.iq.query(&sender, iq, IQ_TIMEOUT).await {
            tracing::debug!(error = %e, "privacy token not issued");
        }
    }

    // ---- receiving ----

    async fn on_message(&self, sender: &NodeSender, node: &Node) {
        let Some(account) = self.account() else {
            return;
        };
        let me = &account.me;
        let (Some(id), Some(from)) = (
            node.get_str("id").map(|s| s.into_owned()),
            node.get_jid("from"),
        ) else {
            // Nothing to answer it by: drop it (the reader already counted it malformed).
            return;
        };
        if from.server == Server::Group {
            return self
                .on_group_message(sender, node, &account, id, from)
                .await;
        }
        if node.get("participant").is_some()
            || from.server != Server::User && from.server != Server::Lid
        {
            // Status and broadcast lists are not handled: say so (the server stops
            // redelivering, and nothing is stored as if it were read).
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        }
        let from_me = is_me(&from, me);
        if node.get("recipient").is_some() && !from_me {
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        }
        // What the server tells us about who is who, before the session is looked up.
        self.learn_from_attrs(node, &from).await;
        let from = self.canonical(&from).await;
        let chat = match node.get_jid("recipient") {
            Some(r) => self.canonical(&r).await.to_non_ad(),
            None => from.to_non_ad(),
        };
        let author = if from_me {
            self.canonical(&me.jid).await.to_non_ad()
        } else {
            from.to_non_ad()
        };
        let peer = node.get_str("category").as_deref() == Some("peer");
        // A redelivery of what we already stored: answer it again, touch nothing.
        match self.store.has_message(&chat, &author, &id).await {
            Ok(true) => {
                let _ = sender.send(&receipt(node, from_me, peer)).await;
                return;
            }
            Ok(false) => {}
            // Unanswered, the server delivers it again.
            Err(e) => {
                tracing::warn!(error = %e, "message store unavailable");
                return;
            }
        }
        let Some(enc) = node.child_nodes().iter().find(|c| c.tag == "enc") else {
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        };
        let kind = enc.get_str("type").unwrap_or_default();
        let Some(kind) = EncType::parse(&kind) else {
            let _ = sender.send(&stanza::ack(node, Some(488))).await;
            return;
        };
        let Some(ciphertext) = enc.content_bytes() else {
            let _ = sender.send(&stanza::ack(node, Some(491))).await;
            return;
        };
        let addr = ProtocolAddress::from_jid(&from);
        let lock = self.cipher.lock_session(&addr).await;
        let decrypted = self
            .cipher
            .decrypt_staged(&lock, &addr, kind, ciphertext)
            .await;
        let (plain, changes) = match decrypted {
            Ok((d, changes)) => {
                if d.identity == IdentityChange::Changed {
                    bump(&self.counters.identity_changes);
                    self.publish(Event::IdentityChanged { jid: from.clone() });
                }
                (d.plaintext, changes)
            }
            // An old counter: we decrypted it before (its row may be a protocol message we
            // do not store). whatsmeow answers it with the receipt too.
            Err(SignalError::DuplicateMessage { .. }) => {
                drop(lock);
                let _ = sender.send(&receipt(node, from_me, peer)).await;
                return;
            }
            Err(e) => {
                drop(lock);
                self.undecryptable(sender, node, &from, &id, e.to_string(), &account)
                    .await;
                return;
            }
        };
        let message = match unpad(&plain)
            .map_err(|e| e.to_string())
            .and_then(|b| wa::Message::decode(b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(reason) => {
                // Nothing readable: nothing is stored (the session stays where it was), and
                // the retry receipt asks for the message again.
                drop(lock);
                self.undecryptable(sender, node, &from, &id, reason, &account)
                    .await;
                return;
            }
        };
        if peer && from_me {
            self.learn_from_history(&message).await;
        }
        let (message, chat) = unwrap_device_sent(message, chat, from_me);
        let chat = self.canonical(&chat).await.to_non_ad();
        let push_name = node.get_str("notify").map(|s| s.into_owned());
        let row = StoredMessage {
            id: id.clone(),
            chat: chat.clone(),
            sender: author,
            from_me,
            timestamp: node
                .get_str("t")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| self.clock.now_unix()),
            push_name: push_name.clone(),
            text: text_of(&message),
            raw: message.encode_to_vec(),
            status: if from_me {
                MessageStatus::Delivered
            } else {
                MessageStatus::Received
            },
            error: None,
        };
        // Peer messages (keys, settings, history) are protocol, not conversation: their
        // Signal advance is committed alone.
        let committed = if peer || is_protocol_only(&message) {
            self.cipher
                .store()
                .apply(&changes)
                .await
                .map(|_| Committed::Inserted)
                .map_err(|e| CredsStoreError(e.to_string()))
        } else {
            self.store.commit_message(&changes, &row).await
        };
        drop(lock);
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                // Neither the session advance nor the row landed: the redelivery decrypts.
                tracing::warn!(error = %e, "cannot store message; it will be redelivered");
                return;
            }
        };
        self.forget_retry(&from, &id);
        if from_me
            && let Some(name) = push_name.filter(|n| !n.is_empty())
            && me.push_name.as_deref() != Some(name.as_str())
        {
            self.learn_push_name(name).await;
        }
        let _ = sender.send(&receipt(node, from_me, peer)).await;
        if committed == Committed::Inserted && !peer && !is_protocol_only(&message) {
            self.publish(Event::Message(Box::new(row)));
        }
    }

    async fn learn_push_name(&self, name: String) {
        if let Err(e) = self.store.set_push_name(&name).await {
            tracing::warn!(error = %e, "cannot store push name");
            return;
        }
        if let Ok(mut a) = self.account.lock()
            && let Some(a) = a.as_mut()
        {
            a.me.push_name = Some(name.clone());
        }
        self.publish(Event::PushName { name });
    }

    /// Asks the sender to try again, up to [`MAX_RETRIES`] times, with fresh keys from the
    /// second attempt on; reports the message as undecryptable.
    async fn undecryptable(
        &self,
        sender: &NodeSender,
        node: &Node,
        from: &Jid,
        id: &str,
        reason: String,
        account: &Account,
    ) {
        tracing::warn!(from = %from, id, reason, "message not decrypted; asking for a retry");
        bump(&self.counters.decrypt_failures);
        let count = self.bump_retry(from, id);
        if count <= MAX_RETRIES {
            let keys = if count >= 2 {
                match self.cipher.store().create_pre_keys(1).await {
                    Ok(mut k) => k.pop(),
                    Err(e) => {
                        tracing::warn!(error = %e, "no prekey for the retry receipt");
                        None
                    }
                }
            } else {
                None
            };
            // A group message is retried of the group, naming the author's device.
            let group = node.get_jid("from").filter(|f| f.server == Server::Group);
            let retry = stanza::retry_receipt(
                id,
                group.as_ref().unwrap_or(from),
                count,
                node.get_str("t").as_deref(),
                account.registration_id,
                keys.as_ref().map(|k| stanza::RetryKeys {
                    identity: &account.identity,
                    pre_key: (k.id, k.key_pair.public),
                    signed: account.signed,
                    device_identity: &account.me.signed_identity,
                }),
            );
            let retry = match (group, node.get("participant")) {
                (Some(_), Some(p)) => retry.attr("participant", p.clone()),
                _ => retry,
            };
            let _ = sender.send(&retry).await;
        }
        // The retry receipt answers the message; the ack ends the server's redelivery of it.
        let _ = sender.send(&stanza::ack(node, None)).await;
        self.publish(Event::Undecryptable {
            from: from.clone(),
            id: id.to_owned(),
            reason,
        });
    }

    fn bump_retry(&self, from: &Jid, id: &str) -> u32 {
        count_up(&self.retries, from, id)
    }

    fn bump_answer(&self, from: &Jid, id: &str) -> u32 {
        count_up(&self.answered, from, id)
    }

    fn forget_retry(&self, from: &Jid, id: &str) {
        if let Ok(mut r) = self.retries.lock() {
            r.retain(|((f, i), _)| !(f == from && i == id));
        }
    }

    // ---- receipts and acks ----

    async fn on_receipt(&self, sender: &NodeSender, node: &Node) {
        let _ = sender.send(&stanza::ack(node, None)).await;
        let Some(from) = node.get_jid("from") else {
            return;
        };
        // A group receipt comes from the group and names the device in `participant`.
        let (from, group) = match (from.server == Server::Group, node.get_jid("participant")) {
            (true, Some(p)) => (p, Some(from.to_non_ad())),
            (true, None) => {
                self.on_grouped_receipt(&from.to_non_ad(), node).await;
                return;
            }
            _ => (from, None),
        };
        let kind = node.get_str("type").map(|s| s.into_owned());
        if kind.as_deref() == Some("retry") {
            if let Some(mut req) = stanza::parse_retry(node) {
                req.from = from.clone();
                let chat = match &group {
                    Some(g) => g.clone(),
                    None => self
                        .canonical(
                            &node
                                .get_jid("recipient")
                                .unwrap_or_else(|| from.to_non_ad()),
                        )
                        .await
                        .to_non_ad(),
                };
                if let Err(e) = self.answer_retry(sender, &chat, &req).await {
                    tracing::warn!(error = %e, id = req.id, "cannot answer retry receipt");
                }
            }
            return;
        }
        let Some(status) = MessageStatus::from_receipt(kind.as_deref()) else {
            return;
        };
        // Our own devices report on the chat they name; peers on their own chat.
        let chat = match group {
            Some(g) => g,
            None => self
                .canonical(&node.get_jid("recipient").unwrap_or_else(|| from.clone()))
                .await
                .to_non_ad(),
        };
        let t = node
            .get_str("t")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| self.clock.now_unix());
        for id in stanza::receipt_ids(node) {
            self.record_receipt(&chat, id, &from, status, t).await;
        }
    }

    /// A device's receipt moves `id` up the ladder (stored, then evented).
    async fn record_receipt(
        &self,
        chat: &Jid,
        id: String,
        device: &Jid,
        status: MessageStatus,
        t: u64,
    ) {
        if let Ok(mut w) = self.watched.lock() {
            w.remove(&(chat.clone(), id.clone()));
        }
        let update = StatusUpdate {
            chat: chat.clone(),
            id: id.clone(),
            device: Some(device.clone()),
            status,
            error: None,
            t,
        };
        match self.store.update_status(&update).await {
            Ok(_) => self.publish(Event::Receipt {
                chat: chat.clone(),
                id,
                device: Some(device.clone()),
                status,
                error: None,
            }),
            Err(e) => tracing::warn!(error = %e, "cannot store receipt"),
        }
    }

    /// A group's receipts aggregated by the server: `<participants key=<id>><user jid t
    /// [type]/>…` (MESSAGING.md §2.8).
    async fn on_grouped_receipt(&self, group: &Jid, node: &Node) {
        let kind = node.get_str("type").map(|s| s.into_owned());
        let now = self.clock.now_unix();
        for parts in node
            .child_nodes()
            .iter()
            .filter(|c| c.tag == "participants")
        {
            let Some(id) = parts.get_str("key").map(|k| k.into_owned()) else {
                continue;
            };
            for user in parts
                .child_nodes()
                .iter()
                .filter(|u| u.tag == "user")
                .take(MAX_GROUPED_RECEIPTS)
            {
                let Some(device) = user.get_jid("jid") else {
                    continue;
                };
                let kind = user
                    .get_str("type")
                    .map(|s| s.into_owned())
                    .or(kind.clone());
                let Some(status) = MessageStatus::from_receipt(kind.as_deref()) else {
                    continue;
                };
                let t = user
                    .get_str("t")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(now);
                self.record_receipt(group, id.clone(), &device, status, t)
                    .await;
            }
        }
    }

    async fn on_ack(&self, node: &Node) {
        if node.get_str("class").as_deref() != Some("message") {
            return;
        }
        let (Some(id), Some(to)) = (
            node.get_str("id").map(|s| s.into_owned()),
            node.get_jid("from"),
        ) else {
            return;
        };
        let ack = Ack {
            t: node.get_str("t").and_then(|t| t.parse().ok()),
            error: node.get_str("error").and_then(|e| e.parse().ok()),
            phash: node.get_str("phash").map(|p| p.into_owned()),
        };
        // A send waiting for it decides (it may fall back to another addressing first).
        let waiter = self.acks.lock().ok().and_then(|mut a| a.remove(&id));
        let ack = match waiter {
            Some(w) => match w.send(ack) {
                Ok(()) => return,
                Err(ack) => ack,
            },
            None => ack,
        };
        let chat = self.canonical(&to).await.to_non_ad();
        self.record_ack(&chat, &id, &ack).await;
    }

    /// Moves a sent message to `server_ack` or `failed(code)` and says so.
    async fn record_ack(&self, chat: &Jid, id: &str, ack: &Ack) {
        let (status, error) = match ack.error {
            Some(code) if code != 0 => {
                bump(&self.counters.refused);
                if code == 463 {
                    bump(&self.counters.refused_463);
                    // A 463 may be the account's reach-out time-lock: learn its state (Baileys
                    // means to, but its branch sits behind the tctoken one for the same code).
                    self.refresh_timelock().await;
                }
                (MessageStatus::Failed, Some(code))
            }
            _ => (MessageStatus::ServerAck, None),
        };
        let update = StatusUpdate {
            chat: chat.clone(),
            id: id.to_owned(),
            device: None,
            status,
            error,
            t: ack.t.unwrap_or_else(|| self.clock.now_unix()),
        };
        match self.store.update_status(&update).await {
            Ok(Some(s)) => {
                // Watched for a receipt unless one came first (it can overtake the ack).
                if s == MessageStatus::ServerAck
                    && let Ok(mut w) = self.watched.lock()
                    && w.len() < WATCHED
                {
                    w.insert((chat.clone(), id.to_owned()), std::time::Instant::now());
                }
                self.publish(Event::Receipt {
                    chat: chat.clone(),
                    id: id.to_owned(),
                    device: None,
                    status: s,
                    error,
                })
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot store ack"),
        }
    }

    // ---- sending ----

    /// Device lists of `users` (bare user JIDs), from the cache or one usync query.
    async fn devices(
        &self,
        sender: &NodeSender,
        users: &[Jid],
    ) -> Result<HashMap<Jid, Vec<u16>>, SendError> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        if let Ok(cache) = self.devices.lock() {
            for u in users {
                match cache.get(u) {
                    Some(d) => {
                        out.insert(u.clone(), d.clone());
                    }
                    None => missing.push(u.clone()),
                }
            }
        }
        if !missing.is_empty() {
            let sid = self.link.iq.next_id();
            let answer = self
                .link
                .iq
                .query(
                    sender,
                    stanza::usync_devices_query(&missing, &sid),
                    IQ_TIMEOUT,
                )
                .await?;
            let found = stanza::parse_usync(&answer);
            for u in &found {
                if let Some(lid) = &u.lid
                    && u.user.server == Server::User
                {
                    self.learn(&u.user.user, &lid.user).await;
                }
            }
            if let Ok(mut cache) = self.devices.lock() {
                if cache.len() + found.len() > DEVICE_CACHE {
                    cache.clear();
                }
                for u in &found {
                    if !u.devices.is_empty() {
                        cache.insert(u.user.clone(), u.devices.clone());
                    }
                }
            }
            for u in found {
                if !u.devices.is_empty() {
                    out.insert(u.user, u.devices);
                }
            }
        }
        Ok(out)
    }

    /// Sends `text` to the user `to`.
    pub(super) async fn send_text(
        &self,
        to: Jid,
        text: String,
        id: Option<String>,
    ) -> Result<Sent, SendError> {
        if id.as_ref().is_some_and(|i| !valid_message_id(i)) {
            return Err(SendError::InvalidText(
                "the message id must be 1–64 letters or digits",
            ));
        }
        if text.is_empty() {
            return Err(SendError::InvalidText("empty"));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(SendError::InvalidText("longer than 65,536 bytes"));
        }
        if to.server == Server::Group && !to.user.is_empty() {
            return self.send_group_text(to, text, id).await;
        }
        if !matches!(to.server, Server::User | Server::Lid) || to.user.is_empty() {
            return Err(SendError::UnsupportedRecipient(to.to_string()));
        }
        let account = self.account().ok_or(SendError::NotConnected)?;
        // A first message to a number learns its LID (usync) before the row is keyed.
        if to.server == Server::User && self.lid_of(&to.user).await.is_none() {
            let sender = self.sender().ok_or(SendError::NotConnected)?;
            self.devices(&sender, &[to.to_non_ad()]).await?;
        }
        let chat = self.canonical(&to).await.to_non_ad();
        let now = self.clock.now_unix();
        let message = wa::Message {
            conversation: Some(text.clone()),
            ..Default::default()
        };
        let row = StoredMessage {
            id: id.unwrap_or_else(|| stanza::message_id(now, &account.me.jid.user)),
            chat: chat.clone(),
            sender: self.canonical(&account.me.jid).await.to_non_ad(),
            from_me: true,
            timestamp: now,
            push_name: account.me.push_name.clone(),
            text: Some(text),
            raw: message.encode_to_vec(),
            status: MessageStatus::Pending,
            error: None,
        };
        self.send_row(&account, row, true).await
    }

    /// The chat as addressed on the wire, and our own user in the same namespace: the LID
    /// when both ends have one (whatsmeow's rule: sending to the PN is what draws most 463s),
    /// else the phone number. One stanza never mixes the two (the server 400s it).
    async fn wire_chat(&self, chat: &Jid, me: &Me, force_pn: bool) -> (Jid, Jid) {
        let own_pn = me.jid.to_non_ad();
        match (&me.lid, chat.server == Server::Lid, force_pn) {
            (Some(own_lid), true, false) => (chat.clone(), own_lid.to_non_ad()),
            (_, true, _) => match self.store.pn_for(&chat.user).await {
                Ok(Some(pn)) => (Jid::new(pn, Server::User), own_pn),
                // No phone number known: LID it is (the server decides).
                _ => (
                    chat.clone(),
                    me.lid.as_ref().map(Jid::to_non_ad).unwrap_or(own_pn),
                ),
            },
            _ => (chat.clone(), own_pn),
        }
    }

    /// Encrypts `row` for every device of its chat and of our own account, records it (when
    /// `record`) with the Signal advance, sends it and waits for the server's ack. A LID
    /// send refused with 400 is sent once more to the phone number, with the same id.
    async fn send_row(
        &self,
        account: &Account,
        row: StoredMessage,
        record: bool,
    ) -> Result<Sent, SendError> {
        let first = self.send_once(account, &row, record, false).await?;
        let (wire, ack) = match first {
            Attempt::Acked(wire, ack) => (wire, ack),
            Attempt::Pending(sent) => return Ok(sent),
        };
        let ack = if ack.error == Some(400) && wire.server == Server::Lid {
            tracing::info!(
                id = row.id,
                "LID send refused (400); sending to the phone number"
            );
            // The account is not migrated to LID chats: phone numbers from now on.
            self.pn_only
                .store(true, std::sync::atomic::Ordering::Relaxed);
            match self.send_once(account, &row, false, true).await? {
                Attempt::Acked(_, ack) => ack,
                Attempt::Pending(sent) => return Ok(sent),
            }
        } else {
            ack
        };
        self.record_ack(&row.chat, &row.id, &ack).await;
        if ack.error.is_none_or(|c| c == 0) {
            self.issue_token(&row.chat, &wire).await;
        }
        match ack.error {
            Some(code) if code != 0 => Err(SendError::Refused { code, id: row.id }),
            _ => Ok(Sent {
                id: row.id,
                chat: row.chat,
                timestamp: ack.t.unwrap_or(row.timestamp),
                status: MessageStatus::ServerAck,
            }),
        }
    }

    /// One encryption and stanza for `row`.
    async fn send_once(
        &self,
        account: &Account,
        row: &StoredMessage,
        record: bool,
        force_pn: bool,
    ) -> Result<Attempt, SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let me = &account.me;
        let force_pn = force_pn || self.pn_only.load(std::sync::atomic::Ordering::Relaxed);
        let (wire, own_user) = self.wire_chat(&row.chat, me, force_pn).await;
        let devices = self
            .devices(&sender, &[wire.clone(), own_user.clone()])
            .await?;
        let theirs = devices
            .get(&wire)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| SendError::NotOnWhatsApp(wire.to_string()))?;
        let mut targets: Vec<(Jid, bool)> = theirs
            .iter()
            .map(|d| {
                (
                    Jid::with_device(wire.user.clone(), *d, wire.server.clone()),
                    false,
                )
            })
            .collect();
        if wire != own_user {
            for d in devices.get(&own_user).into_iter().flatten() {
                if *d != me.jid.device {
                    targets.push((
                        Jid::with_device(own_user.user.clone(), *d, own_user.server.clone()),
                        true,
                    ));
                }
            }
        }
        targets.retain(|(j, _)| !(j.user == own_user.user && j.device == me.jid.device));
        let message = wa::Message::decode(&row.raw[..]).unwrap_or_default();
        let plain = message.encode_to_vec();
        let dsm = wa::Message {
            device_sent_message: Some(Box::new(wa::DeviceSentMessage {
                destination_jid: Some(wire.to_string()),
                message: Some(Box::new(message.clone())),
                phash: None,
            })),
            message_context_info: message.message_context_info.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let bodies: Vec<(Jid, &[u8])> = targets
            .iter()
            .map(|(j, own)| (j.clone(), if *own { &dsm[..] } else { &plain[..] }))
            .collect();
        let (encs, changes, locks) = self.encrypt_for(&sender, &bodies).await?;
        if encs.iter().all(|(j, _)| j.user != wire.user) {
            return Err(SendError::NotOnWhatsApp(wire.to_string()));
        }
        // The advance and the row land before a byte leaves: a crash after this resends the
        // same id with new keys, never the same key twice.
        if record {
            self.store.commit_message(&changes, row).await?;
        } else {
            self.cipher
                .store()
                .apply(&changes)
                .await
                .map_err(SignalError::from)?;
        }
        drop(locks);
        tracing::debug!(id = row.id, devices = encs.len(), "sending");
        let mut node = stanza::message_stanza(&row.id, &wire, encs, &me.signed_identity);
        // The contact's token to us: without it WhatsApp may refuse a first contact (463).
        if let Some(token) = self.token_for(&row.chat).await
            && let crate::binary::Content::Children(c) = &mut node.content
        {
            c.push(Node::new("tctoken").bytes(token));
        }
        Ok(match self.transmit(&sender, &node, row).await {
            Ok(ack) => Attempt::Acked(wire, ack),
            Err(pending) => Attempt::Pending(pending),
        })
    }

    /// Sends `node` (the stanza of `row`) and waits for the server's ack; Err(pending) when
    /// there is no answer in time or no connection (the row stays pending and is resent).
    async fn transmit(
        &self,
        sender: &NodeSender,
        node: &Node,
        row: &StoredMessage,
    ) -> Result<Ack, Sent> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut a) = self.acks.lock() {
            a.insert(row.id.clone(), tx);
        }
        // However this attempt ends (answered, timed out, or its caller gone), its waiter goes.
        let _waiter = WaiterGuard {
            acks: &self.acks,
            id: &row.id,
        };
        let pending = Sent {
            id: row.id.clone(),
            chat: row.chat.clone(),
            timestamp: row.timestamp,
            status: MessageStatus::Pending,
        };
        if sender.send(node).await.is_err() {
            // Recorded as pending: the next connection sends it.
            return Err(pending);
        }
        match tokio::time::timeout(self.ack_timeout, rx).await {
            Ok(Ok(ack)) => Ok(ack),
            _ => Err(pending),
        }
    }

    /// Encrypts each body (padded here) for its device under the locks of all their sessions,
    /// first fetching bundles for devices without one (devices the server has no keys for
    /// are skipped: they cannot receive). Nothing is stored: the caller commits the changes
    /// (with its row) before dropping the locks and sending.
    async fn encrypt_for(
        &self,
        sender: &NodeSender,
        targets: &[(Jid, &[u8])],
    ) -> Result<
        (
            Vec<(Jid, CiphertextMessage)>,
            SignalChanges,
            Vec<crate::signal::cipher::SessionLock>,
        ),
        SendError,
    > {
        // Sessions are keyed by the LID whatever the wire namespace.
        let mut addrs = Vec::with_capacity(targets.len());
        for (j, _) in targets {
            addrs.push(ProtocolAddress::from_jid(&self.canonical(j).await));
        }
        let mut need = Vec::new();
        for ((j, _), a) in targets.iter().zip(&addrs) {
            if !self.session_known(a).await? {
                need.push(j.clone());
            }
        }
        // A first send to a large group needs hundreds of bundles: asked in bounded batches.
        let mut bundles = std::collections::BTreeMap::new();
        for chunk in need.chunks(PREKEY_BATCH) {
            let answer = self
                .link
                .iq
                .query(sender, stanza::prekey_query(chunk), IQ_TIMEOUT)
                .await?;
            bundles.append(&mut stanza::parse_bundles(&answer));
        }
        let locks = self.cipher.lock_sessions(&addrs).await;
        let mut changes = SignalChanges::default();
        let mut encs = Vec::with_capacity(targets.len());
        for ((jid, body), addr) in targets.iter().zip(&addrs) {
            let key = addr.to_string();
            let lock = locks
                .iter()
                .find(|l| l.key() == key)
                .ok_or(SignalError::NoSession)?;
            let bundle = if need.contains(jid) {
                match bundles.get(jid) {
                    Some(b) => Some(b),
                    // The server knows no keys for it (406): it cannot receive; skip it.
                    None => continue,
                }
            } else {
                None
            };
            let (ct, change, c) = self
                .cipher
                .encrypt_staged(lock, addr, bundle, &stanza::pad(body.to_vec()))
                .await?;
            if change == Some(IdentityChange::Changed) {
                bump(&self.counters.identity_changes);
                self.publish(Event::IdentityChanged { jid: jid.clone() });
            }
            changes.extend(c);
            encs.push((jid.clone(), ct));
        }
        Ok((encs, changes, locks))
    }

    /// Sends again what was recorded but never acknowledged (after a crash or a drop), with
    /// the same ids.
    pub(super) async fn resend_pending(&self) {
        let Some(account) = self.account() else {
            return;
        };
        let pending = match self.store.pending_messages().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending messages");
                return;
            }
        };
        for row in pending {
            let id = row.id.clone();
            let sent = if row.chat.server == Server::Group {
                self.send_group_row(&account, row, false).await
            } else {
                self.send_row(&account, row, false).await
            };
            match sent {
                Ok(_) => {}
                Err(SendError::Refused { code, .. }) => {
                    tracing::warn!(id, code, "pending message refused on resend");
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, "pending message not resent");
                    return;
                }
            }
        }
    }

    /// Resends message `req.id` to the device that could not decrypt it (MESSAGING.md §2.7).
    async fn answer_retry(
        &self,
        sender: &NodeSender,
        chat: &Jid,
        req: &stanza::RetryRequest,
    ) -> Result<(), SendError> {
        if req.count >= MAX_RETRIES {
            return Ok(());
        }
        // Whatever counts a peer claims, one message is resent to one device at most
        // MAX_RETRIES times: retry receipts cannot make us encrypt (and fetch keys) forever.
        if self.bump_answer(&req.from, &req.id) > MAX_RETRIES {
            return Ok(());
        }
        let account = self.account().ok_or(SendError::NotConnected)?;
        let Some(row) = self.store.sent_message(chat, &req.id).await? else {
            tracing::debug!(id = req.id, "retry for a message we do not have");
            return Ok(());
        };
        if chat.server == Server::Group {
            return self.answer_group_retry(sender, &account, &row, req).await;
        }
        let addr = ProtocolAddress::from_jid(&self.canonical(&req.from).await);
        let own = is_me(&req.from, &account.me);
        let bundle = self.retry_bundle(sender, req, &addr).await?;
        let message = wa::Message::decode(&row.raw[..]).unwrap_or_default();
        let body = if own {
            wa::Message {
                device_sent_message: Some(Box::new(wa::DeviceSentMessage {
                    destination_jid: Some(chat.to_string()),
                    message: Some(Box::new(message)),
                    phash: None,
                })),
                ..Default::default()
            }
        } else {
            message
        }
        .encode_to_vec();
        let lock = self.cipher.lock_session(&addr).await;
        let (ct, _, changes) = self
            .cipher
            .encrypt_staged(&lock, &addr, bundle.as_ref(), &stanza::pad(body))
            .await?;
        self.cipher
            .store()
            .apply(&changes)
            .await
            .map_err(SignalError::from)?;
        drop(lock);
        let t = row.timestamp.to_string();
        let stanza = stanza::retry_stanza(
            &row.id,
            &req.from,
            &ct,
            req.count,
            Some(&t),
            &account.me.signed_identity,
        );
        let _ = sender.send(&stanza).await;
        Ok(())
    }

    /// The keys to resend with for a retry receipt (MESSAGING.md §2.7): those it carried, else
    /// a fetched bundle when there is no session or this is a second attempt or later (the
    /// session itself may be what fails), else none (the session as it is).
    async fn retry_bundle(
        &self,
        sender: &NodeSender,
        req: &stanza::RetryRequest,
        addr: &ProtocolAddress,
    ) -> Result<Option<PreKeyBundle>, SendError> {
        Ok(match &req.keys {
            Some(k) => Some(k.clone()),
            None if !self.cipher.has_session(addr).await? || req.count >= 2 => {
                let answer = self
                    .link
                    .iq
                    .query(
                        sender,
                        stanza::prekey_query(std::slice::from_ref(&req.from)),
                        IQ_TIMEOUT,
                    )
                    .await?;
                stanza::parse_bundles(&answer).remove(&req.from)
            }
            None => None,
        })
    }

    /// Sends read receipts for `ids` of `sender` in `chat`.
    pub(super) async fn mark_read(
        &self,
        chat: Jid,
        author: Jid,
        ids: Vec<String>,
    ) -> Result<(), SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let Some((first, rest)) = ids.split_first() else {
            return Ok(());
        };
        let mut n = Node::new("receipt")
            .attr("id", first.clone())
            .attr("to", chat.to_non_ad())
            .attr("type", "read")
            .attr("t", self.clock.now_unix().to_string());
        if author.to_non_ad() != chat.to_non_ad() {
            n = n.attr("participant", author.to_non_ad());
        }
        if !rest.is_empty() {
            n = n.children(vec![
                Node::new("list").children(
                    rest.iter()
                        .map(|i| Node::new("item").attr("id", i.clone()))
                        .collect(),
                ),
            ]);
        }
        sender.send(&n).await.map_err(|_| SendError::NotConnected)?;
        Ok(())
    }
}

impl<S: CredsStore> Messaging for Messenger<S> {
    fn send_text<'a>(
        &'a self,
        to: Jid,
        text: String,
        id: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>> {
        Box::pin(Messenger::send_text(self, to, text, id))
    }

    fn mark_read<'a>(
        &'a self,
        chat: Jid,
        sender: Jid,
        ids: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(Messenger::mark_read(self, chat, sender, ids))
    }

    fn messages<'a>(
        &'a self,
        chat: Option<Jid>,
        limit: u32,
        offset: u32,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<StoredMessage>, CredsStoreError>> + Send + 'a>>
    {
        Box::pin(async move {
            let chat = match chat {
                Some(c) => Some(self.canonical(&c).await.to_non_ad()),
                None => None,
            };
            self.store.messages(chat.as_ref(), limit, offset).await
        })
    }

    fn stats(&self) -> MessagingStats {
        Messenger::stats(self)
    }

    fn timelock(&self) -> Option<crate::stanza::mex::ReachoutTimelock> {
        self.timelock.lock().ok()?.clone()
    }

    fn fetch_timelock<'a>(
        &'a self,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<crate::stanza::mex::ReachoutTimelock, SendError>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(Messenger::fetch_timelock(self))
    }

    fn group<'a>(
        &'a self,
        call: GroupCall,
    ) -> Pin<Box<dyn Future<Output = Result<GroupReply, SendError>> + Send + 'a>> {
        Box::pin(async move {
            let sender = || self.sender().ok_or(SendError::NotConnected);
            Ok(match call {
                GroupCall::Info(g) => {
                    GroupReply::Info(Box::new(self.group_info(&sender()?, &g, true).await?))
                }
                GroupCall::Create(subject, members) => {
                    GroupReply::Info(Box::new(self.create_group(&subject, &members).await?))
                }
                GroupCall::Members(g, action, members) => {
                    GroupReply::Members(self.change_members(&g, action, &members).await?)
                }
                GroupCall::Leave(g) => {
                    self.leave_group(&g).await?;
                    GroupReply::Done
                }
                GroupCall::Subject(g, subject) => {
                    self.set_group_subject(&g, &subject).await?;
                    GroupReply::Done
                }
                GroupCall::Updates(g, limit) => {
                    GroupReply::Updates(self.store.group_updates(&g, limit).await?)
                }
            })
        })
    }
}

/// Whether a caller-chosen message id can go on the wire: what the reference clients make
/// (hex, upper-case letters) fits, and nothing that would need escaping.
pub fn valid_message_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Counts one more for (device, message) in a bounded memory of counts; a poisoned memory
/// counts as exhausted.
fn count_up(memory: &Mutex<VecDeque<((Jid, String), u32)>>, from: &Jid, id: &str) -> u32 {
    let Ok(mut r) = memory.lock() else {
        return u32::MAX;
    };
    let key = (from.clone(), id.to_owned());
    if let Some((_, n)) = r.iter_mut().find(|(k, _)| *k == key) {
        *n += 1;
        return *n;
    }
    if r.len() == RETRY_MEMORY {
        r.pop_front();
    }
    r.push_back((key, 1));
    1
}

/// A copy our other device sent: the content is inside, the chat is its destination.
fn unwrap_device_sent(message: wa::Message, chat: Jid, from_me: bool) -> (wa::Message, Jid) {
    if !from_me {
        return (message, chat);
    }
    match message.device_sent_message {
        Some(dsm) => {
            let dest = dsm
                .destination_jid
                .as_deref()
                .and_then(|d| d.parse::<Jid>().ok())
                .map(|j| j.to_non_ad())
                .unwrap_or(chat);
            (dsm.message.map(|m| *m).unwrap_or_default(), dest)
        }
        None => (message, chat),
    }
}

/// The text of a text message.
fn text_of(m: &wa::Message) -> Option<String> {
    m.conversation.clone().or_else(|| {
        m.extended_text_message
            .as_ref()
            .and_then(|e| e.text.clone())
    })
}

/// A message with no content of its own (protocol messages, bare key distributions).
fn is_protocol_only(m: &wa::Message) -> bool {
    m.conversation.is_none()
        && m.extended_text_message.is_none()
        && m.image_message.is_none()
        && m.document_message.is_none()
        && m.audio_message.is_none()
        && m.video_message.is_none()
        && m.reaction_message.is_none()
}

/// The delivery receipt for a message we stored (or had stored): `peer_msg` between our own
/// devices, `sender` for what another of our devices sent, plain delivery otherwise (we
/// announce ourselves available, so no `inactive`).
fn receipt(node: &Node, from_me: bool, peer: bool) -> Node {
    let mut n = Node::new("receipt");
    if let Some(id) = node.get("id") {
        n = n.attr("id", id.clone());
    }
    if let Some(from) = node.get("from") {
        n = n.attr("to", from.clone());
    }
    if let Some(p) = node.get("participant") {
        n = n.attr("participant", p.clone());
    }
    if peer {
        n = n.attr("type", "peer_msg");
    } else if from_me {
        n = n.attr("type", "sender");
        if let Some(r) = node.get("recipient") {
            n = n.attr("recipient", r.clone());
        }
    }
    n
}
