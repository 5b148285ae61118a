//! Messaging of one account over its live connection (MESSAGING.md): the shared state and the
//! dispatch of messaging stanzas; each concern has its own file — `send` (1:1 sends), `resend`
//! (the one owner of messages sent and never acked), `receive`, `receipts` (acks, receipts,
//! read marks), `retries`, `groups`, `lid`, `tokens`
//! (privacy tokens), `history` (the bootstrap's mappings), `timelock`. It knows the client's
//! store traits, never SQL or HTTP.
//!
//! Receiving: dedupe by (chat, sender, id) before decrypting; decrypt under the session's lock;
//! commit the session advance, the consumed prekey and the message row in one unit; only then
//! send the receipt (the receipt is the acknowledgement: a crash before it means the server
//! delivers again and the row dedupes it). Failures get a retry receipt, counted per message.
//!
//! Sending: devices by usync (cached per user until a devices notification), bundles for
//! devices without a session, one encryption per device under all their locks, the row
//! recorded `pending` with the Signal advance in one unit, and only then the stanza. The server's
//! ack (told by (chat, id)) moves the row to `server_ack` or `failed(code)`; receipts climb the
//! ladder. One attempt per message at a time; a recorded id is never transmitted by a new send,
//! and what stays `pending` is the resend loop's alone.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::{Event, EventHub};
use super::link::Link;
use super::messages::StoredMessage;
use super::store::{Creds, CredsStore, CredsStoreError, Me};
use crate::binary::{Jid, Node};
use crate::signal::{IdentityTrust, ProtocolAddress, SessionCipher};
use crate::socket::NodeSender;
use crate::stanza;
use crate::util::clock::Clock;

mod appstate;
mod error;
mod groups;
mod history;
mod history_stream;
mod lid;
mod media;
mod peer;
mod receipts;
mod receive;
mod resend;
mod retries;
mod send;
mod timelock;
mod tokens;

pub use appstate::{ChatAction, MAX_ACTIONS_PER_EVENT};
pub use error::{SendError, refusal_reason};
pub use history::{MAX_ON_DEMAND_COUNT, ON_DEMAND_COUNT};
pub use media::RetryTarget;
use receive::receipt;
use send::Ack;
pub use send::{Sent, valid_message_id};
pub use tokens::{AttachedToken, Warmth};

pub use crate::stanza::MAX_RETRIES;
/// Phone numbers whose LID (or its absence) is cached.
const LID_CACHE: usize = 16_384;
/// 463-refused sends remembered for their status webhooks (see `Messenger::refused_463`).
const REFUSED_463_KEPT: usize = 256;

/// Longest text accepted for sending (WhatsApp's own limit is 65,536 characters).
pub const MAX_TEXT_BYTES: usize = 65_536;

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

/// What the client handle can ask of the messenger (object-safe: the handle is not generic).
pub(super) trait Messaging: Send + Sync {
    fn send_text<'a>(
        &'a self,
        to: Jid,
        text: String,
        id: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>>;
    fn send_content<'a>(
        &'a self,
        to: Jid,
        out: super::messages::Outgoing,
        id: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>>;
    fn media_conn<'a>(
        &'a self,
        refresh: bool,
    ) -> Pin<Box<dyn Future<Output = Result<stanza::media::MediaConnInfo, SendError>> + Send + 'a>>;
    fn media_retry<'a>(
        &'a self,
        target: RetryTarget,
        ciphertext: Vec<u8>,
        iv: [u8; 12],
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<stanza::media::MediaRetryNotice, SendError>> + Send + 'a>>;
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
    fn request_history<'a>(
        &'a self,
        chat: Jid,
        count: u32,
    ) -> Pin<Box<dyn Future<Output = Result<String, SendError>> + Send + 'a>>;
    fn account_store<'a>(
        &'a self,
        call: AccountCall,
    ) -> Pin<Box<dyn Future<Output = Result<AccountReply, CredsStoreError>> + Send + 'a>>;
    fn group<'a>(
        &'a self,
        call: GroupCall,
    ) -> Pin<Box<dyn Future<Output = Result<GroupReply, SendError>> + Send + 'a>>;
    fn timelock(&self) -> Option<crate::stanza::mex::ReachoutTimelock>;
    fn chat_action<'a>(
        &'a self,
        chat: Jid,
        action: ChatAction,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;
    fn capping(&self) -> Option<crate::stanza::mex::NewChatCapping>;
    fn token_went(&self, id: &str) -> Option<bool>;
    fn warmth<'a>(&'a self, to: Jid) -> Pin<Box<dyn Future<Output = Warmth> + Send + 'a>>;
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

/// A read of the account's chats and contacts through the client handle.
pub(crate) enum AccountCall {
    Chats(u32, u32),
    Contacts(u32, u32),
    Contact(Jid),
}

/// What an [`AccountCall`] answers.
pub(crate) enum AccountReply {
    Chats(Vec<super::account::ChatSummary>),
    Contacts(Vec<super::account::Contact>),
    Contact(Box<Option<super::account::Contact>>),
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

/// One account's messaging state; shared by the run loop and the client handle.
pub(super) struct Messenger<S: CredsStore> {
    store: Arc<S>,
    cipher: SessionCipher<S::Signal>,
    link: Arc<Link>,
    events: Arc<EventHub>,
    clock: Arc<dyn Clock>,
    ack_timeout: Duration,
    /// When a message not acked is tried again, and when it is given up.
    resend_after: Duration,
    give_up_after: Duration,
    account: Mutex<Option<Account>>,
    devices: Mutex<HashMap<Jid, Vec<u16>>>,
    /// Ack waiters by (chat as on the wire, id): an id is unique per chat, not across chats.
    acks: Mutex<HashMap<(Jid, String), send::Waiter>>,
    /// Messages (chat, id) being sent right now: one attempt at a time per message.
    sending: Mutex<std::collections::HashSet<(Jid, String)>>,
    /// When each message not acked is tried again.
    resends: Mutex<resend::Schedule>,
    /// Wakes the resend loop (a send ended without an ack).
    resend_wake: tokio::sync::Notify,
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
    /// Contacts' privacy tokens with their times (None: none), a cache over the store.
    tokens: Mutex<HashMap<Jid, Option<tokens::HeldToken>>>,
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
    /// The account's new-chat message capping, once known.
    capping: Mutex<Option<crate::stanza::mex::NewChatCapping>>,
    /// The `media_conn` answer, once asked.
    media_conn: Mutex<media::MediaConnCache>,
    /// Media retries waiting for the phone's answer.
    media_retries: Mutex<media::RetryWaiters>,
    /// Wakes the history worker (set when it starts; the queue itself is in the store).
    history_tx: Mutex<Option<tokio::sync::mpsc::Sender<()>>>,
    /// A connection came up since the history worker's last pass: resting chunks go again.
    history_round: std::sync::atomic::AtomicBool,
    /// App-state sync: what to sync next, keys and recoveries asked.
    appsync: appstate::AppSync,
    /// What one history stream may cost.
    history_limits: history_stream::Limits,
    /// The CDN client for history downloads (the shared one, or made on first use).
    cdn: std::sync::OnceLock<super::cdn::Cdn>,
    /// What the socket trusts (the CDN trusts the same).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Push names last stored per contact (a cache: a name is written when it changes).
    push_names: Mutex<HashMap<Jid, String>>,
    /// Sends WhatsApp refused with 463 lately (message id → whether a privacy token went),
    /// so their status webhook, rendered before the outbox records the send's result, names
    /// the right cause. Bounded: cleared at [`REFUSED_463_KEPT`].
    refused_463: Mutex<HashMap<String, bool>>,
}

impl<S: CredsStore> Messenger<S> {
    pub(super) fn new(
        store: Arc<S>,
        link: Arc<Link>,
        events: Arc<EventHub>,
        clock: Arc<dyn Clock>,
        opts: &super::run::MessagingOptions,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Messenger<S> {
        let cipher = SessionCipher::new(store.signal(), IdentityTrust::AcceptChanges);
        Messenger {
            store,
            cipher,
            link,
            events,
            clock,
            ack_timeout: opts.ack_timeout,
            resend_after: opts.resend_after,
            give_up_after: opts.give_up_after,
            account: Mutex::new(None),
            devices: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            sending: Mutex::new(std::collections::HashSet::new()),
            resends: Mutex::new(resend::Schedule::new(opts.resend_after)),
            resend_wake: tokio::sync::Notify::new(),
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
            capping: Mutex::new(None),
            media_conn: Mutex::new(media::MediaConnCache::default()),
            media_retries: Mutex::new(HashMap::new()),
            history_tx: Mutex::new(None),
            history_round: std::sync::atomic::AtomicBool::new(false),
            appsync: appstate::AppSync::default(),
            history_limits: history_stream::Limits::default(),
            cdn: match &opts.cdn {
                Some(c) => std::sync::OnceLock::from(c.clone()),
                None => std::sync::OnceLock::new(),
            },
            tls,
            push_names: Mutex::new(HashMap::new()),
            refused_463: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the messenger's background workers (history sync, app-state sync).
    pub(super) fn start_workers(self: &Arc<Self>, span: &tracing::Span) {
        history::start_worker(self, span);
        appstate::start_worker(self, span);
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
                let stored = self.on_privacy_token(&node).await;
                if stored {
                    let _ = sender.send(&stanza::ack(&node, None)).await;
                }
            }
            "notification" if node.get_str("type").as_deref() == Some("mediaretry") => {
                self.on_media_retry(&node);
            }
            "notification" if node.get_str("type").as_deref() == Some("mex") => {
                self.on_mex(&node);
            }
            "notification" if node.get_str("type").as_deref() == Some("server_sync") => {
                self.on_server_sync(&node);
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

    fn send_content<'a>(
        &'a self,
        to: Jid,
        out: super::messages::Outgoing,
        id: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>> {
        Box::pin(Messenger::send_content(self, to, out, id))
    }

    fn media_conn<'a>(
        &'a self,
        refresh: bool,
    ) -> Pin<Box<dyn Future<Output = Result<stanza::media::MediaConnInfo, SendError>> + Send + 'a>>
    {
        Box::pin(Messenger::media_conn(self, refresh))
    }

    fn media_retry<'a>(
        &'a self,
        target: RetryTarget,
        ciphertext: Vec<u8>,
        iv: [u8; 12],
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<stanza::media::MediaRetryNotice, SendError>> + Send + 'a>>
    {
        Box::pin(Messenger::media_retry(self, target, ciphertext, iv, wait))
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

    fn request_history<'a>(
        &'a self,
        chat: Jid,
        count: u32,
    ) -> Pin<Box<dyn Future<Output = Result<String, SendError>> + Send + 'a>> {
        Box::pin(Messenger::request_history(self, chat, count))
    }

    fn account_store<'a>(
        &'a self,
        call: AccountCall,
    ) -> Pin<Box<dyn Future<Output = Result<AccountReply, CredsStoreError>> + Send + 'a>> {
        Box::pin(async move {
            Ok(match call {
                AccountCall::Chats(limit, skip) => {
                    AccountReply::Chats(self.store.chats(limit, skip).await?)
                }
                AccountCall::Contacts(limit, skip) => {
                    AccountReply::Contacts(self.store.contacts(limit, skip).await?)
                }
                AccountCall::Contact(jid) => {
                    AccountReply::Contact(Box::new(self.store.contact(&jid).await?))
                }
            })
        })
    }

    fn timelock(&self) -> Option<crate::stanza::mex::ReachoutTimelock> {
        self.timelock.lock().ok()?.clone()
    }

    fn chat_action<'a>(
        &'a self,
        chat: Jid,
        action: ChatAction,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(async move { self.send_chat_action(&chat, action).await })
    }

    fn capping(&self) -> Option<crate::stanza::mex::NewChatCapping> {
        self.capping.lock().ok()?.clone()
    }

    fn warmth<'a>(&'a self, to: Jid) -> Pin<Box<dyn Future<Output = Warmth> + Send + 'a>> {
        Box::pin(Messenger::warmth(self, to))
    }

    fn token_went(&self, id: &str) -> Option<bool> {
        self.refused_463.lock().ok()?.get(id).copied()
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
