//! What an account knows about its chats and contacts (issue 23): the changes history sync and
//! app-state sync make, and how the store answers for them. Chats are keyed by the canonical JID
//! messages use (the LID of a 1:1 chat once known, MESSAGING.md §4.4); contacts by the
//! canonical user JID with both the phone number and the LID kept when known.

use super::messages::StoredMessage;
use crate::binary::Jid;

/// A change to one chat: only the fields given (`Some`) change; the chat row is created when
/// it does not exist (unless `only_if_stored`). `Some(None)` clears a nullable field. `Debug`
/// shows which fields change, never the name.
#[derive(Clone, PartialEq, Eq)]
pub struct ChatChange {
    /// The chat (a PN JID is stored under its LID when the mapping is known).
    pub chat: Jid,
    /// The chat's name (groups, or a name the phone gave).
    pub name: Option<Option<String>>,
    /// Archived or not.
    pub archived: Option<bool>,
    /// Pinned since (unix seconds), or not pinned.
    pub pinned: Option<Option<u64>>,
    /// Muted until (unix ms; -1 forever), or not muted.
    pub muted_until: Option<Option<i64>>,
    /// Marked as unread by the user.
    pub marked_unread: Option<bool>,
    /// The phone's unread count.
    pub unread_count: Option<u32>,
    /// Read marker (unix seconds): inbound messages at or before it are read.
    pub read_ts: Option<Option<u64>>,
    /// Disappearing-messages timer (seconds; 0 off).
    pub ephemeral: Option<Option<u32>>,
    /// Deleted at (unix seconds), or not deleted.
    pub deleted_at: Option<Option<u64>>,
    /// Changes a chat already stored and never creates one: a flag turned off (a chat no
    /// longer archived, pinned, muted or marked unread) says nothing of a chat we never had,
    /// and must not list an empty one.
    pub only_if_stored: bool,
}

impl std::fmt::Debug for ChatChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A chat's name is personal data: whether it changes, not what it is.
        f.debug_struct("ChatChange")
            .field("chat", &self.chat.to_string())
            .field("name", &self.name.as_ref().map(|n| n.is_some()))
            .field("archived", &self.archived)
            .field("pinned", &self.pinned)
            .field("muted_until", &self.muted_until)
            .field("marked_unread", &self.marked_unread)
            .field("unread_count", &self.unread_count)
            .field("read_ts", &self.read_ts)
            .field("ephemeral", &self.ephemeral)
            .field("deleted_at", &self.deleted_at)
            .field("only_if_stored", &self.only_if_stored)
            .finish()
    }
}

/// A change to one contact: only the fields given change; the row is created when missing.
/// `Debug` shows which names change, never the names.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactChange {
    /// The contact's user JID, phone number (`…@s.whatsapp.net`) or LID (`…@lid`).
    pub jid: Jid,
    /// Full name from the address book.
    pub full_name: Option<String>,
    /// First name from the address book.
    pub first_name: Option<String>,
    /// The name the contact gave itself.
    pub push_name: Option<String>,
    /// WhatsApp username.
    pub username: Option<String>,
    /// Whether the number is on WhatsApp.
    pub on_whatsapp: Option<bool>,
    /// The address-book entry is gone (an app-state `contact` REMOVE): the full and first
    /// names are cleared before the fields above apply. The push name and username stay: they
    /// come from the contact itself, not from our address book.
    pub forget_names: bool,
}

impl std::fmt::Debug for ContactChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names (address book, push name, username) are personal data: only whether given.
        f.debug_struct("ContactChange")
            .field("jid", &self.jid.to_string())
            .field("full_name", &self.full_name.is_some())
            .field("first_name", &self.first_name.is_some())
            .field("push_name", &self.push_name.is_some())
            .field("username", &self.username.is_some())
            .field("on_whatsapp", &self.on_whatsapp)
            .field("forget_names", &self.forget_names)
            .finish()
    }
}

/// The newest message of a chat, as a chat list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastMessage {
    /// Message id.
    pub id: String,
    /// Its kind (`text`, `image`, …).
    pub kind: String,
    /// Its text or caption, cut to [`PREVIEW_CHARS`].
    pub preview: Option<String>,
    /// Unix seconds.
    pub timestamp: u64,
    /// Sent by us.
    pub from_me: bool,
}

/// Characters of a last message's text a chat summary carries.
pub const PREVIEW_CHARS: usize = 100;

/// One chat as the chat list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    /// The canonical chat JID.
    pub chat: Jid,
    /// Its phone-number JID when the chat is a LID whose number is known (or a PN chat).
    pub pn: Option<Jid>,
    /// Its LID JID when known.
    pub lid: Option<Jid>,
    /// Chat name, else the contact's full name, else its push name.
    pub name: Option<String>,
    /// Archived.
    pub archived: bool,
    /// Pinned since (unix seconds).
    pub pinned: Option<u64>,
    /// Muted until (unix ms; -1 forever).
    pub muted_until: Option<i64>,
    /// Marked unread by the user.
    pub marked_unread: bool,
    /// Unread messages: the phone's count plus live inbound messages after the read marker.
    pub unread_count: u32,
    /// Disappearing-messages timer (seconds).
    pub ephemeral: Option<u32>,
    /// The newest listed message.
    pub last_message: Option<LastMessage>,
}

/// One contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The canonical JID (the LID once known).
    pub jid: Jid,
    /// Phone-number JID when known.
    pub pn: Option<Jid>,
    /// LID JID when known.
    pub lid: Option<Jid>,
    /// Full name.
    pub full_name: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Push name.
    pub push_name: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// On WhatsApp (None: unknown).
    pub on_whatsapp: Option<bool>,
    /// When the contact's privacy token (tctoken) we hold was issued (Unix seconds).
    pub token_at: Option<u64>,
    /// The contact has written to us (a live or history message from it is stored).
    pub wrote_to_us: bool,
}

impl Contact {
    /// Warm (WhatsApp's 2026 reach-out limits do not count a send to it as a new chat) when we
    /// hold its unexpired tctoken or it wrote to us; the same rule the outbox gate applies to a
    /// send (`Client::warmth`).
    pub fn warm(&self, now: u64) -> bool {
        self.wrote_to_us
            || self
                .token_at
                .is_some_and(|t| !crate::stanza::privacy::tc_token_expired(t, now))
    }
}

/// What a history chunk's batch carries to the store: written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct HistoryBatch {
    /// Chat changes.
    pub chats: Vec<ChatChange>,
    /// Contact changes.
    pub contacts: Vec<ContactChange>,
    /// Messages, stored as history rows (never announced as received).
    pub messages: Vec<StoredMessage>,
    /// PN ↔ LID pairs (bare users), learned first in the batch's transaction as
    /// [`super::store::CredsStore::learn_lid`] learns one: the batch's other rows then land
    /// under the LID.
    pub pairs: Vec<(String, String)>,
}

impl HistoryBatch {
    /// Items held.
    pub fn len(&self) -> usize {
        self.chats.len() + self.contacts.len() + self.messages.len() + self.pairs.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The preview of a text: its first [`PREVIEW_CHARS`] characters.
pub fn preview(text: &str) -> String {
    text.chars().take(PREVIEW_CHARS).collect()
}

/// Defaults name no chat or contact (the server JID): callers set the JID and the fields that
/// change, `..Default::default()` for the rest.
macro_rules! default_with_jid {
    ($t:ident, $jid:ident, $($f:ident),*) => {
        impl Default for $t {
            fn default() -> $t {
                $t { $jid: Jid::server_jid(), $($f: Default::default()),* }
            }
        }
    };
}
default_with_jid!(
    ChatChange,
    chat,
    name,
    archived,
    pinned,
    muted_until,
    marked_unread,
    unread_count,
    read_ts,
    ephemeral,
    deleted_at,
    only_if_stored
);
default_with_jid!(
    ContactChange,
    jid,
    full_name,
    first_name,
    push_name,
    username,
    on_whatsapp,
    forget_names
);
default_with_jid!(
    Contact,
    jid,
    pn,
    lid,
    full_name,
    first_name,
    push_name,
    username,
    on_whatsapp,
    token_at,
    wrote_to_us
);
