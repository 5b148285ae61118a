//! What the client keeps per account, and the storage trait it needs (implemented in memory here
//! and over SQLite by the store layer).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::account::{ChatChange, ChatSummary, Contact, ContactChange, HistoryBatch};
use super::appstate_store::{AppStateStore, MemoryAppState};
use super::history_store::{MAX_PENDING_HISTORY, PendingHistory, PendingHistoryStore, Queued};
use super::messages::{Committed, GroupUpdate, MessageStatus, StatusUpdate, StoredMessage};
use crate::binary::Jid;
use crate::signal::store::SignedPreKeyStore;
use crate::signal::{
    KeyPair, LocalIdentity, MemoryStore, SignalChanges, SignalStore, SignedPreKey,
};
pub use crate::stanza::group::GroupInfo;
/// How a group's metadata is kept: the `<group>` node WhatsApp sends, and back.
pub use crate::stanza::group::{group_node as group_to_node, parse_group as group_from_node};

/// Our own identity once paired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// Device JID on the phone-number server.
    pub jid: Jid,
    /// Device JID on the LID server.
    pub lid: Option<Jid>,
    /// The phone's platform.
    pub platform: Option<String>,
    /// Business name.
    pub business_name: Option<String>,
    /// Push name (display name).
    pub push_name: Option<String>,
    /// ADVSignedDeviceIdentity with our device signature and the account key.
    pub signed_identity: Vec<u8>,
    /// The phone's identity key.
    pub account_signature_key: [u8; 32],
}

/// The keys and identity of one account's companion device.
#[derive(Clone)]
pub struct Creds {
    /// Long-term Noise key (its public half is in the QR code).
    pub noise: KeyPair,
    /// Signal identity.
    pub identity: KeyPair,
    /// Signal registration id.
    pub registration_id: u32,
    /// Current signed prekey.
    pub signed_pre_key: SignedPreKey,
    /// ADV secret (in the QR code; keys the pair-success HMAC); wiped on drop.
    pub adv_secret: zeroize::Zeroizing<[u8; 32]>,
    /// Set once paired.
    pub me: Option<Me>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key pairs print only their public halves; the ADV secret not at all.
        f.debug_struct("Creds")
            .field("noise", &self.noise)
            .field("identity", &self.identity)
            .field("registration_id", &self.registration_id)
            .field("signed_pre_key", &self.signed_pre_key.id)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Creds {
    /// Fresh credentials for a new device (signed prekey id 1, as all references do).
    pub fn generate(now_ms: u64) -> Creds {
        let identity = KeyPair::generate();
        let signed_pre_key = SignedPreKey::generate(1, &identity, now_ms);
        Creds {
            noise: KeyPair::generate(),
            identity,
            // Signal's usual range 1..=16380.
            registration_id: 1 + rand::random::<u32>() % 16380,
            signed_pre_key,
            adv_secret: zeroize::Zeroizing::new(rand::random()),
            me: None,
        }
    }
}

/// Storage failed; the message names the backend's error (never key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential store: {0}")]
pub struct CredsStoreError(pub String);

/// Where a client keeps one account: its credentials, Signal state and messages. Writes that
/// belong together go in one call (a message and the Signal state it advanced); fields change
/// one at a time rather than by rewriting a possibly stale copy.
///
/// The trait is generic (`impl Future` methods), not object-safe: a service holds many
/// [`super::Client`]s, which are not generic, over one store type and one shared pool.
pub trait CredsStore:
    GroupStore + AccountStore + AppStateStore + PendingHistoryStore + Send + Sync + 'static
{
    /// The account's Signal stores (sessions, peer identities, prekeys); they share the identity
    /// and prekeys with these credentials.
    type Signal: SignalStore + Clone + 'static;
    /// A handle on the account's Signal stores.
    fn signal(&self) -> Self::Signal;
    /// The stored credentials, if any.
    fn load(&self) -> impl Future<Output = Result<Option<Creds>, CredsStoreError>> + Send;
    /// Stores (replaces) the credentials.
    fn save(&self, creds: &Creds) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Deletes the credentials, every key of the account, the privacy tokens contacts gave
    /// it and the history notifications kept for the worker (logged out). Messages and
    /// PN↔LID mappings stay.
    fn wipe(&self) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Changes our push name only.
    fn set_push_name(&self, name: &str)
    -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Whether a message (chat, sender, id) is stored.
    fn has_message(
        &self,
        chat: &Jid,
        sender: &Jid,
        id: &str,
    ) -> impl Future<Output = Result<bool, CredsStoreError>> + Send;
    /// Stores `msg` and applies `changes` in one transaction: either both land or neither.
    /// A message already stored is left alone (the changes still apply). A reaction, edit or
    /// revoke is applied to its target in the same unit ([`StoredMessage::apply`]), now if the
    /// target is stored, else when it arrives.
    fn commit_message(
        &self,
        changes: &SignalChanges,
        msg: &StoredMessage,
    ) -> impl Future<Output = Result<Committed, CredsStoreError>> + Send;
    /// Records a receipt or ack; returns the message's new status when it moved up the ladder.
    fn update_status(
        &self,
        update: &StatusUpdate,
    ) -> impl Future<Output = Result<Option<MessageStatus>, CredsStoreError>> + Send;
    /// Our outbound message `id` in `chat`.
    fn sent_message(
        &self,
        chat: &Jid,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredMessage>, CredsStoreError>> + Send;
    /// Messages newest first (one chat, or all), skipping `offset`; edits and revokes are not
    /// listed (they show through their target).
    fn messages(
        &self,
        chat: Option<&Jid>,
        limit: u32,
        offset: u32,
    ) -> impl Future<Output = Result<Vec<StoredMessage>, CredsStoreError>> + Send;
    /// Outbound messages still pending (recorded, never acknowledged), oldest first.
    fn pending_messages(
        &self,
    ) -> impl Future<Output = Result<Vec<StoredMessage>, CredsStoreError>> + Send;
    /// Records that phone-number user `pn` is LID user `lid` (bare user parts), and moves
    /// what was keyed by the phone number to the LID in one unit: Signal sessions, identities
    /// and group sender keys of every device, the conversation's rows (and its messages in
    /// groups) and the contact's privacy token. A known pair is a no-op; a new LID for a known
    /// number replaces the old one.
    fn learn_lid(
        &self,
        pn: &str,
        lid: &str,
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Learns many pairs as [`CredsStore::learn_lid`] learns one, in one unit (a snapshot
    /// or a history chunk names thousands: one transaction, not one each), in order. A number
    /// named twice is the LID it was named with last (decision; what is stored under the number
    /// moves to that LID).
    fn learn_lids(
        &self,
        pairs: &[(String, String)],
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// The LID user of phone-number user `pn`, if known.
    fn lid_for(
        &self,
        pn: &str,
    ) -> impl Future<Output = Result<Option<String>, CredsStoreError>> + Send;
    /// The LID users of the phone-number users `pns` that are known (one lookup for the set:
    /// a snapshot names thousands); numbers without a LID are absent.
    fn lids_for(
        &self,
        pns: &[String],
    ) -> impl Future<Output = Result<HashMap<String, String>, CredsStoreError>> + Send;
    /// The phone-number user of LID user `lid`, if known.
    fn pn_for(
        &self,
        lid: &str,
    ) -> impl Future<Output = Result<Option<String>, CredsStoreError>> + Send;
    /// Stores the privacy token contact `jid` issued to us (a newer one replaces an older).
    fn set_privacy_token(
        &self,
        jid: &Jid,
        token: &[u8],
        t: u64,
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// The privacy token contact `jid` issued to us, with its time.
    fn privacy_token(
        &self,
        jid: &Jid,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, u64)>, CredsStoreError>> + Send;
    /// Records when we issued our token to `jid`; returns the previous time.
    fn set_token_issued(
        &self,
        jid: &Jid,
        t: u64,
    ) -> impl Future<Output = Result<Option<u64>, CredsStoreError>> + Send;
    /// The account's NCT salt (keys the cstoken, CLIENT-FEATURES §1), if one is held.
    fn nct_salt(&self) -> impl Future<Output = Result<Option<NctSalt>, CredsStoreError>> + Send;
    /// Applies an `nct_salt_sync` app-state mutation: SET (Some) stores the salt, REMOVE
    /// (None) clears it; both record that the mutation was seen, which ends history-sync
    /// backfill for good (an empty SET is ignored by the caller, as whatsapp-rust does).
    fn set_nct_salt(
        &self,
        salt: Option<&[u8]>,
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Offers the salt a history sync carried. Applied (true) only if no salt is stored and
    /// no `nct_salt_sync` mutation was ever seen. Decision (CLIENT-FEATURES Appendix A):
    /// whatsapp-rust's rule (WA Web `storeNctSaltFromHistorySync`), not whatsmeow's overwrite,
    /// so an old history blob never replaces a synced salt nor resurrects a removed one.
    fn backfill_nct_salt(
        &self,
        salt: &[u8],
    ) -> impl Future<Output = Result<bool, CredsStoreError>> + Send;
    /// Whether `chat` (a 1:1 chat, keyed as rows are) ever wrote to us: a stored message of
    /// that chat not from us. Makes the contact warm (reach-out limits do not apply).
    fn wrote_to_us(&self, chat: &Jid)
    -> impl Future<Output = Result<bool, CredsStoreError>> + Send;
}

/// The NCT salt: a secret (it keys every cstoken we send), so its `Debug` shows only its
/// length and it is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct NctSalt(pub zeroize::Zeroizing<Vec<u8>>);

impl NctSalt {
    /// Wraps salt bytes.
    pub fn new(bytes: &[u8]) -> NctSalt {
        NctSalt(zeroize::Zeroizing::new(bytes.to_vec()))
    }

    /// The salt bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for NctSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NctSalt({} bytes, redacted)", self.0.len())
    }
}

/// What the client keeps about the account's chats and contacts (history sync, app-state sync,
/// push names); each call is one transaction.
pub trait AccountStore: Send + Sync {
    /// Applies chat and contact changes in one transaction (only the given fields change).
    fn apply_account_changes(
        &self,
        chats: &[ChatChange],
        contacts: &[ContactChange],
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Stores a history chunk's batch in one transaction: its PN ↔ LID pairs first (as
    /// [`CredsStore::learn_lids`]), then chats, contacts, and messages as history rows (deduped against stored rows by (chat, sender, id), never announced);
    /// returns how many messages were new.
    fn store_history(
        &self,
        batch: &HistoryBatch,
    ) -> impl Future<Output = Result<usize, CredsStoreError>> + Send;
    /// Chats, pinned first (newest pin first), then by their newest message.
    fn chats(
        &self,
        limit: u32,
        skip: u32,
    ) -> impl Future<Output = Result<Vec<ChatSummary>, CredsStoreError>> + Send;
    /// Contacts by name.
    fn contacts(
        &self,
        limit: u32,
        skip: u32,
    ) -> impl Future<Output = Result<Vec<Contact>, CredsStoreError>> + Send;
    /// One contact, by its phone-number or LID user JID.
    fn contact(
        &self,
        jid: &Jid,
    ) -> impl Future<Output = Result<Option<Contact>, CredsStoreError>> + Send;
    /// The oldest stored message of `chat` (the anchor of an on-demand history request).
    fn oldest_message(
        &self,
        chat: &Jid,
    ) -> impl Future<Output = Result<Option<StoredMessage>, CredsStoreError>> + Send;
}

/// What the client keeps about the groups it is in: their metadata, which member devices hold
/// our current sender key, and the membership and subject changes it was told of.
pub trait GroupStore: Send + Sync {
    /// The stored metadata of `group`.
    fn group(
        &self,
        group: &Jid,
    ) -> impl Future<Output = Result<Option<GroupInfo>, CredsStoreError>> + Send;
    /// Stores (replaces) a group's metadata.
    fn set_group(
        &self,
        info: &GroupInfo,
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Devices (as the group addresses them) that hold our current sender key for `group`.
    fn key_holders(
        &self,
        group: &Jid,
    ) -> impl Future<Output = Result<Vec<Jid>, CredsStoreError>> + Send;
    /// Marks `devices` as holding our current sender key (after the server acked it to them).
    fn mark_key_holders(
        &self,
        group: &Jid,
        devices: &[Jid],
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Unmarks `device` (it asked for a retry: it may have lost our key).
    fn forget_key_holder(
        &self,
        group: &Jid,
        device: &Jid,
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Starts our sender key for `group` over: applies `changes` (the reset key) and unmarks
    /// every holder in one unit, so no device is believed to hold a key it never got.
    fn reset_group_key(
        &self,
        group: &Jid,
        changes: &SignalChanges,
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
    /// Stores a group change; false when it was stored before (a redelivered notification).
    fn record_group_update(
        &self,
        update: &GroupUpdate,
    ) -> impl Future<Output = Result<bool, CredsStoreError>> + Send;
    /// A group's changes, newest first.
    fn group_updates(
        &self,
        group: &Jid,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<GroupUpdate>, CredsStoreError>> + Send;
}

/// Credentials in memory, with the Signal stores and messages beside them (tests, benches).
pub struct MemoryCreds {
    creds: Mutex<Option<Creds>>,
    signal: Arc<MemoryStore>,
    messages: Mutex<Vec<StoredMessage>>,
    /// (pn user, lid user).
    lids: Mutex<Vec<(String, String)>>,
    /// Contact → (their token to us, its time, when we issued ours).
    tokens: Mutex<std::collections::HashMap<Jid, TokenRow>>,
    groups: Mutex<MemoryGroups>,
    appstate: Mutex<MemoryAppState>,
    account: Mutex<MemoryAccount>,
    /// The NCT salt, and whether an `nct_salt_sync` mutation was ever seen.
    nct: Mutex<(Option<NctSalt>, bool)>,
    /// Kept history notifications: (row, receipt due), in arrival order.
    pending_history: Mutex<Vec<(PendingHistory, bool)>>,
    /// The last sequence number a kept history notification got.
    pending_seq: std::sync::atomic::AtomicI64,
}

/// Chats and contacts in memory.
#[derive(Default)]
struct MemoryAccount {
    chats: std::collections::HashMap<Jid, ChatRow>,
    contacts: std::collections::HashMap<Jid, Contact>,
    /// (chat, sender, id) of history rows.
    history: std::collections::HashSet<(Jid, Jid, String)>,
}

/// A chat's stored state (the fields of [`ChatChange`], applied).
#[derive(Clone, Default)]
struct ChatRow {
    name: Option<String>,
    archived: bool,
    pinned: Option<u64>,
    muted_until: Option<i64>,
    marked_unread: bool,
    unread_count: u32,
    read_ts: Option<u64>,
    ephemeral: Option<u32>,
    deleted_at: Option<u64>,
}

impl ChatRow {
    fn apply(&mut self, c: &ChatChange) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &c.$f { self.$f = v.clone(); } )* };
        }
        set!(
            name,
            archived,
            pinned,
            muted_until,
            marked_unread,
            unread_count,
            read_ts,
            ephemeral,
            deleted_at
        );
    }
}

/// Fills the given fields of `c` into `row`.
fn merge_contact(row: &mut Contact, c: &ContactChange) {
    if c.forget_names {
        row.full_name = None;
        row.first_name = None;
    }
    macro_rules! set {
        ($($f:ident),*) => { $( if c.$f.is_some() { row.$f = c.$f.clone(); } )* };
    }
    set!(full_name, first_name, push_name, username, on_whatsapp);
}

/// Group state in memory.
#[derive(Default)]
struct MemoryGroups {
    info: std::collections::HashMap<Jid, GroupInfo>,
    holders: std::collections::HashMap<Jid, std::collections::BTreeSet<Jid>>,
    updates: Vec<GroupUpdate>,
}

/// A contact's privacy-token row.
#[derive(Clone, Default)]
struct TokenRow {
    token: Option<(Vec<u8>, u64)>,
    issued: Option<u64>,
}

impl std::fmt::Debug for MemoryCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let linked = self.creds.lock().map(|c| c.is_some()).unwrap_or(false);
        f.debug_struct("MemoryCreds")
            .field("has_creds", &linked)
            .field("signal", &self.signal)
            .finish()
    }
}

impl Default for MemoryCreds {
    fn default() -> MemoryCreds {
        MemoryCreds {
            creds: Mutex::new(None),
            signal: Arc::new(MemoryStore::empty()),
            messages: Mutex::new(Vec::new()),
            lids: Mutex::new(Vec::new()),
            tokens: Mutex::new(std::collections::HashMap::new()),
            groups: Mutex::new(MemoryGroups::default()),
            appstate: Mutex::new(MemoryAppState::default()),
            account: Mutex::new(MemoryAccount::default()),
            nct: Mutex::new((None, false)),
            pending_history: Mutex::new(Vec::new()),
            pending_seq: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

fn poisoned<T>(_: T) -> CredsStoreError {
    CredsStoreError("poisoned".into())
}

fn signal_err(e: crate::signal::StoreError) -> CredsStoreError {
    CredsStoreError(e.to_string())
}

impl MemoryCreds {
    /// The canonical form of a user JID: its LID when the mapping is known.
    fn canonical_user(&self, jid: &Jid) -> Result<Jid, CredsStoreError> {
        let jid = jid.to_non_ad();
        if jid.server == crate::binary::Server::User {
            let lids = self.lids.lock().map_err(poisoned)?;
            if let Some((_, l)) = lids.iter().find(|(p, _)| p == &jid.user) {
                return Ok(Jid::new(l.clone(), crate::binary::Server::Lid));
            }
        }
        Ok(jid)
    }

    /// Both forms of a user JID, when known.
    fn both(&self, jid: &Jid) -> Result<(Option<Jid>, Option<Jid>), CredsStoreError> {
        use crate::binary::Server;
        let lids = self.lids.lock().map_err(poisoned)?;
        Ok(match jid.server {
            Server::Lid => (
                lids.iter()
                    .find(|(_, l)| l == &jid.user)
                    .map(|(p, _)| Jid::new(p.clone(), Server::User)),
                Some(jid.clone()),
            ),
            Server::User => (
                Some(jid.clone()),
                lids.iter()
                    .find(|(p, _)| p == &jid.user)
                    .map(|(_, l)| Jid::new(l.clone(), Server::Lid)),
            ),
            _ => (None, None),
        })
    }

    fn apply_contact(
        &self,
        acc: &mut MemoryAccount,
        c: &ContactChange,
    ) -> Result<(), CredsStoreError> {
        let key = self.canonical_user(&c.jid)?;
        let (pn, lid) = self.both(&key)?;
        let bare_remove = c.forget_names
            && c.full_name.is_none()
            && c.first_name.is_none()
            && c.push_name.as_deref().is_none_or(|p| p == "-")
            && c.username.is_none()
            && c.on_whatsapp.is_none();
        if bare_remove && !acc.contacts.contains_key(&key) {
            // A REMOVE of a contact we do not know creates nothing.
            return Ok(());
        }
        let row = acc.contacts.entry(key.clone()).or_insert_with(|| Contact {
            jid: key.clone(),
            ..Contact::default()
        });
        row.pn = pn;
        row.lid = lid;
        merge_contact(row, c);
        Ok(())
    }

    /// Prekeys held.
    pub fn pre_key_count(&self) -> usize {
        self.signal.pre_key_count()
    }
}

impl CredsStore for MemoryCreds {
    type Signal = Arc<MemoryStore>;

    fn signal(&self) -> Arc<MemoryStore> {
        self.signal.clone()
    }

    async fn load(&self) -> Result<Option<Creds>, CredsStoreError> {
        Ok(self.creds.lock().map_err(poisoned)?.clone())
    }

    async fn save(&self, creds: &Creds) -> Result<(), CredsStoreError> {
        let identity = LocalIdentity {
            key_pair: creds.identity.clone(),
            registration_id: creds.registration_id,
        };
        // New keys (a new device): the Signal state of the old ones is void.
        if self.signal.identity().map(|i| i.key_pair.public) != Some(identity.key_pair.public) {
            self.signal.reset(Some(identity));
        }
        self.signal
            .store_signed_pre_key(&creds.signed_pre_key)
            .await
            .map_err(signal_err)?;
        *self.creds.lock().map_err(poisoned)? = Some(creds.clone());
        Ok(())
    }

    async fn wipe(&self) -> Result<(), CredsStoreError> {
        self.signal.reset(None);
        *self.creds.lock().map_err(poisoned)? = None;
        self.tokens.lock().map_err(poisoned)?.clear();
        *self.nct.lock().map_err(poisoned)? = (None, false);
        // The sender keys went with the Signal state: nobody holds ours any more.
        self.groups.lock().map_err(poisoned)?.holders.clear();
        // A new link gets a new key share and syncs from a snapshot.
        self.appstate.lock().map_err(poisoned)?.wipe();
        // Kept notifications hold media keys, and their chunks belong to the old link.
        self.pending_history.lock().map_err(poisoned)?.clear();
        Ok(())
    }

    async fn set_push_name(&self, name: &str) -> Result<(), CredsStoreError> {
        if let Some(me) = self
            .creds
            .lock()
            .map_err(poisoned)?
            .as_mut()
            .and_then(|c| c.me.as_mut())
        {
            me.push_name = Some(name.to_owned());
        }
        Ok(())
    }

    async fn has_message(
        &self,
        chat: &Jid,
        sender: &Jid,
        id: &str,
    ) -> Result<bool, CredsStoreError> {
        Ok(self
            .messages
            .lock()
            .map_err(poisoned)?
            .iter()
            .any(|m| m.id == id && &m.chat == chat && &m.sender == sender && !m.is_placeholder()))
    }

    async fn commit_message(
        &self,
        changes: &SignalChanges,
        msg: &StoredMessage,
    ) -> Result<Committed, CredsStoreError> {
        // Both under the message lock: a reader never sees one without the other.
        let mut msgs = self.messages.lock().map_err(poisoned)?;
        self.signal.apply_now(changes).map_err(signal_err)?;
        if let Some(i) = msgs
            .iter()
            .position(|m| m.id == msg.id && m.chat == msg.chat && m.sender == msg.sender)
        {
            // A row kept for an undecryptable message gives way to the message, once read.
            if !msgs[i].is_placeholder() || msg.is_placeholder() {
                return Ok(Committed::Duplicate);
            }
            msgs.remove(i);
        }
        let mut msg = msg.clone();
        if msg.kind.is_mutation() {
            if let Some(target) = msgs.iter_mut().find(|t| {
                t.chat == msg.chat && Some(&t.id) == msg.target.as_ref() && !t.kind.is_mutation()
            }) {
                target.apply(&msg);
            }
        } else {
            // What arrived before its target applies now, in the order it arrived.
            let early: Vec<StoredMessage> = msgs
                .iter()
                .filter(|m| {
                    m.chat == msg.chat && m.kind.is_mutation() && m.target.as_ref() == Some(&msg.id)
                })
                .cloned()
                .collect();
            for m in &early {
                msg.apply(m);
            }
        }
        msgs.push(msg);
        Ok(Committed::Inserted)
    }

    async fn update_status(
        &self,
        u: &StatusUpdate,
    ) -> Result<Option<MessageStatus>, CredsStoreError> {
        let mut msgs = self.messages.lock().map_err(poisoned)?;
        let Some(m) = msgs
            .iter_mut()
            .find(|m| m.from_me && m.id == u.id && m.chat == u.chat)
        else {
            return Ok(None);
        };
        if !m.status.advances_to(u.status) {
            return Ok(None);
        }
        m.status = u.status;
        m.error = u.error;
        Ok(Some(u.status))
    }

    async fn sent_message(
        &self,
        chat: &Jid,
        id: &str,
    ) -> Result<Option<StoredMessage>, CredsStoreError> {
        Ok(self
            .messages
            .lock()
            .map_err(poisoned)?
            .iter()
            .find(|m| m.from_me && m.id == id && &m.chat == chat)
            .cloned())
    }

    async fn messages(
        &self,
        chat: Option<&Jid>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<StoredMessage>, CredsStoreError> {
        Ok(self
            .messages
            .lock()
            .map_err(poisoned)?
            .iter()
            .rev()
            .filter(|m| m.kind.is_listed() && chat.is_none_or(|c| &m.chat == c))
            .skip(offset as usize)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn pending_messages(&self) -> Result<Vec<StoredMessage>, CredsStoreError> {
        Ok(self
            .messages
            .lock()
            .map_err(poisoned)?
            .iter()
            .filter(|m| m.status == MessageStatus::Pending)
            .cloned()
            .collect())
    }

    async fn learn_lid(&self, pn: &str, lid: &str) -> Result<(), CredsStoreError> {
        let mut msgs = self.messages.lock().map_err(poisoned)?;
        let mut lids = self.lids.lock().map_err(poisoned)?;
        if lids.iter().any(|(p, l)| p == pn && l == lid) {
            return Ok(());
        }
        lids.retain(|(p, l)| p != pn && l != lid);
        lids.push((pn.to_owned(), lid.to_owned()));
        // Account state locks take the LID list after theirs: never hold it across them.
        drop(lids);
        self.signal
            .move_addresses(pn, &format!("{lid}_1"))
            .map_err(signal_err)?;
        let (pn_jid, lid_jid) = (
            Jid::new(pn, crate::binary::Server::User),
            Jid::new(lid, crate::binary::Server::Lid),
        );
        if let Ok(mut t) = self.tokens.lock()
            && let Some(row) = t.remove(&pn_jid)
        {
            t.entry(lid_jid.clone()).or_insert(row);
        }
        for m in msgs.iter_mut() {
            if m.chat == pn_jid {
                m.chat = lid_jid.clone();
            }
            if m.sender == pn_jid {
                m.sender = lid_jid.clone();
            }
        }
        // The chat and the contact follow (a row under the LID wins; its empty fields are
        // filled from the PN row's).
        let mut acc = self.account.lock().map_err(poisoned)?;
        if let Some(row) = acc.chats.remove(&pn_jid) {
            acc.chats.entry(lid_jid.clone()).or_insert(row);
        }
        let old = acc.contacts.remove(&pn_jid);
        let row = acc
            .contacts
            .entry(lid_jid.clone())
            .or_insert_with(|| Contact {
                jid: lid_jid.clone(),
                ..Contact::default()
            });
        if let Some(old) = old {
            macro_rules! fill {
                ($($f:ident),*) => { $( if row.$f.is_none() { row.$f = old.$f; } )* };
            }
            fill!(full_name, first_name, push_name, username, on_whatsapp);
        }
        row.pn = Some(pn_jid.clone());
        row.lid = Some(lid_jid.clone());
        let history: Vec<_> = acc.history.drain().collect();
        for (c, snd, id) in history {
            let c = if c == pn_jid { lid_jid.clone() } else { c };
            let snd = if snd == pn_jid { lid_jid.clone() } else { snd };
            acc.history.insert((c, snd, id));
        }
        Ok(())
    }

    async fn learn_lids(&self, pairs: &[(String, String)]) -> Result<(), CredsStoreError> {
        // Memory has no transactions: each pair lands as it is learned. A number named twice
        // is its last LID, as the SQLite store decides.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(pairs.len());
        for (i, (pn, _)) in pairs.iter().enumerate() {
            last.insert(pn, i);
        }
        for (i, (pn, lid)) in pairs.iter().enumerate() {
            if last.get(pn.as_str()) == Some(&i) {
                self.learn_lid(pn, lid).await?;
            }
        }
        Ok(())
    }

    async fn lids_for(&self, pns: &[String]) -> Result<HashMap<String, String>, CredsStoreError> {
        let wanted: std::collections::HashSet<&str> = pns.iter().map(String::as_str).collect();
        Ok(self
            .lids
            .lock()
            .map_err(poisoned)?
            .iter()
            .filter(|(p, _)| wanted.contains(p.as_str()))
            .cloned()
            .collect())
    }

    async fn lid_for(&self, pn: &str) -> Result<Option<String>, CredsStoreError> {
        Ok(self
            .lids
            .lock()
            .map_err(poisoned)?
            .iter()
            .find(|(p, _)| p == pn)
            .map(|(_, l)| l.clone()))
    }

    async fn pn_for(&self, lid: &str) -> Result<Option<String>, CredsStoreError> {
        Ok(self
            .lids
            .lock()
            .map_err(poisoned)?
            .iter()
            .find(|(_, l)| l == lid)
            .map(|(p, _)| p.clone()))
    }

    async fn set_privacy_token(
        &self,
        jid: &Jid,
        token: &[u8],
        t: u64,
    ) -> Result<(), CredsStoreError> {
        let mut m = self.tokens.lock().map_err(poisoned)?;
        let row = m.entry(jid.clone()).or_default();
        if row.token.as_ref().is_none_or(|(_, old)| *old <= t) {
            row.token = Some((token.to_vec(), t));
        }
        Ok(())
    }

    async fn privacy_token(&self, jid: &Jid) -> Result<Option<(Vec<u8>, u64)>, CredsStoreError> {
        Ok(self
            .tokens
            .lock()
            .map_err(poisoned)?
            .get(jid)
            .and_then(|r| r.token.clone()))
    }

    async fn set_token_issued(&self, jid: &Jid, t: u64) -> Result<Option<u64>, CredsStoreError> {
        let mut m = self.tokens.lock().map_err(poisoned)?;
        Ok(m.entry(jid.clone()).or_default().issued.replace(t))
    }

    async fn nct_salt(&self) -> Result<Option<NctSalt>, CredsStoreError> {
        Ok(self.nct.lock().map_err(poisoned)?.0.clone())
    }

    async fn set_nct_salt(&self, salt: Option<&[u8]>) -> Result<(), CredsStoreError> {
        *self.nct.lock().map_err(poisoned)? = (salt.map(NctSalt::new), true);
        Ok(())
    }

    async fn backfill_nct_salt(&self, salt: &[u8]) -> Result<bool, CredsStoreError> {
        let mut g = self.nct.lock().map_err(poisoned)?;
        if g.0.is_some() || g.1 || salt.is_empty() {
            return Ok(false);
        }
        g.0 = Some(NctSalt::new(salt));
        Ok(true)
    }

    async fn wrote_to_us(&self, chat: &Jid) -> Result<bool, CredsStoreError> {
        Ok(self
            .messages
            .lock()
            .map_err(poisoned)?
            .iter()
            .any(|m| !m.from_me && &m.chat == chat))
    }
}

impl AccountStore for MemoryCreds {
    async fn apply_account_changes(
        &self,
        chats: &[ChatChange],
        contacts: &[ContactChange],
    ) -> Result<(), CredsStoreError> {
        let mut acc = self.account.lock().map_err(poisoned)?;
        for c in chats {
            let key = self.canonical_user(&c.chat)?;
            if c.only_if_stored {
                if let Some(row) = acc.chats.get_mut(&key) {
                    row.apply(c);
                }
            } else {
                acc.chats.entry(key).or_default().apply(c);
            }
        }
        for c in contacts {
            self.apply_contact(&mut acc, c)?;
        }
        Ok(())
    }

    async fn store_history(&self, batch: &HistoryBatch) -> Result<usize, CredsStoreError> {
        self.learn_lids(&batch.pairs).await?;
        self.apply_account_changes(&batch.chats, &batch.contacts)
            .await?;
        let mut msgs = self.messages.lock().map_err(poisoned)?;
        let mut acc = self.account.lock().map_err(poisoned)?;
        let mut new = 0;
        for m in &batch.messages {
            if msgs
                .iter()
                .any(|o| o.id == m.id && o.chat == m.chat && o.sender == m.sender)
            {
                continue;
            }
            acc.history
                .insert((m.chat.clone(), m.sender.clone(), m.id.clone()));
            msgs.push(m.clone());
            new += 1;
        }
        Ok(new)
    }

    async fn chats(&self, limit: u32, skip: u32) -> Result<Vec<ChatSummary>, CredsStoreError> {
        use super::account::{LastMessage, preview};
        let msgs = self.messages.lock().map_err(poisoned)?;
        let acc = self.account.lock().map_err(poisoned)?;
        let mut ids: Vec<Jid> = acc.chats.keys().cloned().collect();
        for m in msgs.iter() {
            if !ids.contains(&m.chat) {
                ids.push(m.chat.clone());
            }
        }
        let mut out = Vec::new();
        for chat in ids {
            let row = acc.chats.get(&chat).cloned().unwrap_or_default();
            if row.deleted_at.is_some() {
                continue;
            }
            let last = msgs
                .iter()
                .filter(|m| m.chat == chat && m.kind.is_listed())
                .max_by_key(|m| m.timestamp);
            let live_unread = msgs
                .iter()
                .filter(|m| {
                    m.chat == chat
                        && !m.from_me
                        && m.kind.is_listed()
                        && row.read_ts.is_none_or(|r| m.timestamp > r)
                        && !acc
                            .history
                            .contains(&(m.chat.clone(), m.sender.clone(), m.id.clone()))
                })
                .count() as u32;
            let (pn, lid) = self.both(&chat)?;
            let contact = acc.contacts.get(&chat);
            out.push(ChatSummary {
                name: row
                    .name
                    .clone()
                    .or_else(|| contact.and_then(|c| c.full_name.clone()))
                    .or_else(|| contact.and_then(|c| c.push_name.clone())),
                chat,
                pn,
                lid,
                archived: row.archived,
                pinned: row.pinned,
                muted_until: row.muted_until,
                marked_unread: row.marked_unread,
                unread_count: row.unread_count + live_unread,
                ephemeral: row.ephemeral,
                last_message: last.map(|m| LastMessage {
                    id: m.id.clone(),
                    kind: m.kind.as_str().to_owned(),
                    preview: m.text.as_deref().map(preview),
                    timestamp: m.timestamp,
                    from_me: m.from_me,
                }),
            });
        }
        out.sort_by(|a, b| {
            (
                b.pinned.is_some(),
                b.pinned,
                b.last_message.as_ref().map(|m| m.timestamp),
            )
                .cmp(&(
                    a.pinned.is_some(),
                    a.pinned,
                    a.last_message.as_ref().map(|m| m.timestamp),
                ))
        });
        Ok(out
            .into_iter()
            .skip(skip as usize)
            .take(limit as usize)
            .collect())
    }

    async fn contacts(&self, limit: u32, skip: u32) -> Result<Vec<Contact>, CredsStoreError> {
        let acc = self.account.lock().map_err(poisoned)?;
        let mut all: Vec<Contact> = acc.contacts.values().cloned().collect();
        all.sort_by(|a, b| {
            (&a.full_name, &a.push_name, &a.jid).cmp(&(&b.full_name, &b.push_name, &b.jid))
        });
        Ok(all
            .into_iter()
            .skip(skip as usize)
            .take(limit as usize)
            .collect())
    }

    async fn contact(&self, jid: &Jid) -> Result<Option<Contact>, CredsStoreError> {
        let key = self.canonical_user(jid)?;
        Ok(self
            .account
            .lock()
            .map_err(poisoned)?
            .contacts
            .get(&key)
            .cloned())
    }

    async fn oldest_message(&self, chat: &Jid) -> Result<Option<StoredMessage>, CredsStoreError> {
        Ok(self
            .messages
            .lock()
            .map_err(poisoned)?
            .iter()
            .filter(|m| &m.chat == chat && m.kind.is_listed())
            .min_by_key(|m| m.timestamp)
            .cloned())
    }
}

impl GroupStore for MemoryCreds {
    async fn group(&self, group: &Jid) -> Result<Option<GroupInfo>, CredsStoreError> {
        Ok(self
            .groups
            .lock()
            .map_err(poisoned)?
            .info
            .get(group)
            .cloned())
    }

    async fn set_group(&self, info: &GroupInfo) -> Result<(), CredsStoreError> {
        self.groups
            .lock()
            .map_err(poisoned)?
            .info
            .insert(info.jid.clone(), info.clone());
        Ok(())
    }

    async fn key_holders(&self, group: &Jid) -> Result<Vec<Jid>, CredsStoreError> {
        let g = self.groups.lock().map_err(poisoned)?;
        Ok(g.holders
            .get(group)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn mark_key_holders(&self, group: &Jid, devices: &[Jid]) -> Result<(), CredsStoreError> {
        self.groups
            .lock()
            .map_err(poisoned)?
            .holders
            .entry(group.clone())
            .or_default()
            .extend(devices.iter().cloned());
        Ok(())
    }

    async fn forget_key_holder(&self, group: &Jid, device: &Jid) -> Result<(), CredsStoreError> {
        if let Some(h) = self.groups.lock().map_err(poisoned)?.holders.get_mut(group) {
            h.remove(device);
        }
        Ok(())
    }

    async fn reset_group_key(
        &self,
        group: &Jid,
        changes: &SignalChanges,
    ) -> Result<(), CredsStoreError> {
        let mut g = self.groups.lock().map_err(poisoned)?;
        self.signal.apply_now(changes).map_err(signal_err)?;
        g.holders.remove(group);
        Ok(())
    }

    async fn record_group_update(&self, update: &GroupUpdate) -> Result<bool, CredsStoreError> {
        let mut g = self.groups.lock().map_err(poisoned)?;
        if g.updates
            .iter()
            .any(|u| u.group == update.group && u.id == update.id && u.seq == update.seq)
        {
            return Ok(false);
        }
        g.updates.push(update.clone());
        Ok(true)
    }

    async fn group_updates(
        &self,
        group: &Jid,
        limit: u32,
    ) -> Result<Vec<GroupUpdate>, CredsStoreError> {
        let g = self.groups.lock().map_err(poisoned)?;
        Ok(g.updates
            .iter()
            .rev()
            .filter(|u| &u.group == group)
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

impl AppStateStore for MemoryCreds {
    async fn add_app_state_keys(
        &self,
        keys: &[super::appstate_store::AppStateKey],
    ) -> Result<usize, CredsStoreError> {
        Ok(self.appstate.lock().map_err(poisoned)?.add_keys(keys))
    }

    async fn app_state_key(
        &self,
        id: &[u8],
    ) -> Result<Option<super::appstate_store::AppStateKey>, CredsStoreError> {
        Ok(self.appstate.lock().map_err(poisoned)?.key(id))
    }

    async fn latest_app_state_key(
        &self,
    ) -> Result<Option<super::appstate_store::AppStateKey>, CredsStoreError> {
        Ok(self.appstate.lock().map_err(poisoned)?.latest_key())
    }

    async fn app_state_version(
        &self,
        collection: &str,
    ) -> Result<Option<super::appstate_store::CollectionVersion>, CredsStoreError> {
        Ok(self.appstate.lock().map_err(poisoned)?.version(collection))
    }

    async fn value_macs(
        &self,
        collection: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<std::collections::HashMap<[u8; 32], [u8; 32]>, CredsStoreError> {
        Ok(self
            .appstate
            .lock()
            .map_err(poisoned)?
            .value_macs(collection, index_macs))
    }

    async fn app_state_records(
        &self,
        collection: &str,
        index_prefix: &[&str],
    ) -> Result<Vec<super::appstate_store::AppStateRecord>, CredsStoreError> {
        Ok(self
            .appstate
            .lock()
            .map_err(poisoned)?
            .records(collection, index_prefix))
    }

    async fn commit_app_state(
        &self,
        commit: &super::appstate_store::AppStateCommit,
    ) -> Result<Vec<ChatChange>, CredsStoreError> {
        // A snapshot's absent flag records clear their flags first; its own records then set
        // theirs.
        let dropped = self
            .appstate
            .lock()
            .map_err(poisoned)?
            .flags_dropped(commit);
        self.apply_account_changes(&dropped, &[]).await?;
        self.apply_account_changes(&commit.chats, &commit.contacts)
            .await?;
        if let Some(salt) = &commit.nct_salt {
            self.set_nct_salt(salt.as_deref()).await?;
        }
        self.appstate.lock().map_err(poisoned)?.commit(commit);
        Ok(dropped)
    }

    async fn reset_app_state(&self, collection: &str) -> Result<(), CredsStoreError> {
        self.appstate.lock().map_err(poisoned)?.reset(collection);
        Ok(())
    }
}

impl PendingHistoryStore for MemoryCreds {
    async fn queue_history(
        &self,
        id: &str,
        notification: &[u8],
    ) -> Result<Queued, CredsStoreError> {
        let mut rows = self.pending_history.lock().map_err(poisoned)?;
        if rows.iter().any(|(r, _)| r.id == id) {
            return Ok(Queued::Known);
        }
        if rows.len() >= MAX_PENDING_HISTORY {
            return Ok(Queued::Full);
        }
        // Never reused (as SQLite's AUTOINCREMENT): a pass reading `after` a sequence must
        // not skip a row kept meanwhile under a number a forgotten row had.
        let seq = self
            .pending_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        rows.push((
            PendingHistory {
                seq,
                id: id.to_owned(),
                notification: zeroize::Zeroizing::new(notification.to_vec()),
                attempts: 0,
            },
            false,
        ));
        Ok(Queued::New)
    }

    async fn next_history(&self, after: i64) -> Result<Option<PendingHistory>, CredsStoreError> {
        let rows = self.pending_history.lock().map_err(poisoned)?;
        Ok(rows
            .iter()
            .find(|(r, due)| !due && r.seq > after)
            .map(|(r, _)| r.clone()))
    }

    async fn history_attempt(&self, id: &str) -> Result<u32, CredsStoreError> {
        let mut rows = self.pending_history.lock().map_err(poisoned)?;
        Ok(match rows.iter_mut().find(|(r, _)| r.id == id) {
            Some((r, _)) => {
                r.attempts = r.attempts.saturating_add(1);
                r.attempts
            }
            None => 0,
        })
    }

    async fn history_stored(&self, id: &str) -> Result<(), CredsStoreError> {
        let mut rows = self.pending_history.lock().map_err(poisoned)?;
        if let Some((r, due)) = rows.iter_mut().find(|(r, _)| r.id == id) {
            r.notification = zeroize::Zeroizing::new(Vec::new());
            *due = true;
        }
        Ok(())
    }

    async fn history_receipts_due(&self) -> Result<Vec<String>, CredsStoreError> {
        let rows = self.pending_history.lock().map_err(poisoned)?;
        Ok(rows
            .iter()
            .filter(|(_, due)| *due)
            .map(|(r, _)| r.id.clone())
            .collect())
    }

    async fn forget_history(&self, id: &str) -> Result<(), CredsStoreError> {
        let mut rows = self.pending_history.lock().map_err(poisoned)?;
        rows.retain(|(r, _)| r.id != id);
        Ok(())
    }
}
