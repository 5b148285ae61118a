//! Messages as the client stores them: one row per (chat, sender, id), inbound or outbound, with
//! the delivery ladder of outbound ones (`pending → server_ack → delivered → read → played`, or
//! `failed` with the server's code, or — never acked — `cancelled` when its account was
//! disconnected, `expired` when it waited past its time). Rows are written in the same unit of work as the Signal
//! state that produced or consumed them (see [`super::store::CredsStore::commit_message`]).

use crate::binary::Jid;
use crate::client::content::Kind;

/// Where a message stands. Outbound ones climb the ladder; inbound ones are `Received`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageStatus {
    /// Recorded, not yet acknowledged by the server (resent with the same id after a crash).
    Pending,
    /// The server accepted it (its ack carried no error).
    ServerAck,
    /// At least one recipient device received it.
    Delivered,
    /// The recipient read it.
    Read,
    /// The recipient played it (voice, video).
    Played,
    /// The server refused it (the code says why), or we gave up on it (not on WhatsApp, not
    /// in the group, never acked within the time allowed).
    Failed,
    /// A message we received.
    Received,
    /// Never acked, and its account was disconnected: it is not sent any more.
    Cancelled,
    /// Waited to be sent past the time allowed: it is not sent any more.
    Expired,
}

impl MessageStatus {
    /// The stable name (stored, and shown by the REST layer).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::ServerAck => "server_ack",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Played => "played",
            MessageStatus::Failed => "failed",
            MessageStatus::Received => "received",
            MessageStatus::Cancelled => "cancelled",
            MessageStatus::Expired => "expired",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<MessageStatus> {
        Some(match s {
            "pending" => MessageStatus::Pending,
            "server_ack" => MessageStatus::ServerAck,
            "delivered" => MessageStatus::Delivered,
            "read" => MessageStatus::Read,
            "played" => MessageStatus::Played,
            "failed" => MessageStatus::Failed,
            "received" => MessageStatus::Received,
            "cancelled" => MessageStatus::Cancelled,
            "expired" => MessageStatus::Expired,
            _ => return None,
        })
    }

    /// The status a receipt `type` reports (None: no ladder change, e.g. `inactive`-less
    /// types the ladder ignores, `retry`, `sender`, `peer_msg`). Baileys' mapping.
    pub fn from_receipt(kind: Option<&str>) -> Option<MessageStatus> {
        match kind {
            None | Some("inactive") => Some(MessageStatus::Delivered),
            Some("read" | "read-self") => Some(MessageStatus::Read),
            Some("played" | "played-self") => Some(MessageStatus::Played),
            _ => None,
        }
    }

    /// Whether moving from `self` to `next` is progress: the ladder only climbs, a failure
    /// only replaces an unconfirmed send, only a pending send is cancelled or expires, and
    /// nothing replaces `Received` or an end (`failed`, `cancelled`, `expired`).
    pub fn advances_to(self, next: MessageStatus) -> bool {
        use MessageStatus::*;
        match (self, next) {
            (Received, _) | (_, Received) => false,
            (Pending, Cancelled | Expired) => true,
            (Cancelled | Expired, _) | (_, Cancelled | Expired) => false,
            (Pending | ServerAck, Failed) => true,
            (Failed, _) | (_, Failed) => false,
            (a, b) => b > a,
        }
    }

    /// Whether it is an end no send changes any more (`failed`, `cancelled`, `expired`).
    pub fn is_end(self) -> bool {
        matches!(
            self,
            MessageStatus::Failed | MessageStatus::Cancelled | MessageStatus::Expired
        )
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Message id (as sent on the wire; never parsed).
    pub id: String,
    /// The conversation: the peer's user JID (canonical: its LID when known), or a group.
    pub chat: Jid,
    /// The author's user JID (ours for outbound).
    pub sender: Jid,
    /// Sent by this account (from this client or another of its devices).
    pub from_me: bool,
    /// Unix seconds: the server's `t` for inbound, our clock for outbound.
    pub timestamp: u64,
    /// The author's push name, when the server attached one.
    pub push_name: Option<String>,
    /// The text, or a media caption (an edit replaces it; a revoke clears it).
    pub text: Option<String>,
    /// The `Message` plaintext as it arrived (unpadded; for inbound, device-sent copies keep
    /// their envelope) or as we sent it: fields this build does not know survive in it.
    pub raw: Vec<u8>,
    /// Where it stands.
    pub status: MessageStatus,
    /// The server's error code, for `Failed`.
    pub error: Option<u16>,
    /// What it is (`Revoked` once its sender deleted it for everyone).
    pub kind: Kind,
    /// What its kind carries (a JSON object; `Null` when nothing).
    pub content: serde_json::Value,
    /// Came in a disappearing-messages envelope or with a timer.
    pub ephemeral: bool,
    /// Came as view once.
    pub view_once: bool,
    /// For reactions, edits, revokes, votes and pins: the id of the message acted on.
    pub target: Option<String>,
    /// When an edit last changed it (unix seconds).
    pub edited_at: Option<u64>,
    /// Reactions on it, one per reactor (the latest).
    pub reactions: Vec<Reaction>,
    /// For a media message: its file (written beside the row, for the downloader).
    pub media: Option<super::media_ref::MediaRef>,
    /// For a media message read back: what its file is and where it stands, as the store
    /// keeps it (`mimetype`, `size`, `sha256`, `fileName`, `seconds`, `width`, `height`,
    /// `state`, `error`); None when not read from the store.
    pub file: Option<serde_json::Value>,
}

impl StoredMessage {
    /// Whether this is the row kept for a message we could not decrypt (a failed
    /// `ciphertext`): it gives way to the message when a resend is read.
    pub fn is_placeholder(&self) -> bool {
        self.kind == Kind::Ciphertext && self.status == MessageStatus::Failed
    }

    /// Applies `m` — a reaction, edit or revoke whose target is `self` — when it is allowed:
    /// anyone in the chat may react (the newest reaction per reactor counts, an empty one
    /// removes it); only the author edits or deletes, or an admin deletes (the client marks an
    /// admin's revoke it checked, `content.admin`). Returns what changed, None when nothing did.
    pub fn apply(&mut self, m: &StoredMessage) -> Option<Applied> {
        if self.kind.is_mutation() || m.target.as_deref() != Some(self.id.as_str()) {
            return None;
        }
        match m.kind {
            Kind::Reaction if self.kind != Kind::Revoked => {
                let emoji = m.text.clone().unwrap_or_default();
                if let Some(i) = self.reactions.iter().position(|r| r.sender == m.sender) {
                    if self.reactions[i].t > m.timestamp {
                        return None;
                    }
                    self.reactions.remove(i);
                }
                if !emoji.is_empty() {
                    self.reactions.push(Reaction {
                        sender: m.sender.clone(),
                        emoji,
                        t: m.timestamp,
                    });
                }
                Some(Applied::Reacted)
            }
            Kind::Edit
                if self.kind != Kind::Revoked
                    && m.sender == self.sender
                    && self.edited_at.is_none_or(|t| t <= m.timestamp) =>
            {
                self.text = m.text.clone();
                self.edited_at = Some(m.timestamp);
                Some(Applied::Edited)
            }
            Kind::Revoke
                if self.kind != Kind::Revoked
                    && (m.sender == self.sender
                        || m.content.get("admin") == Some(&true.into())) =>
            {
                let was = self.kind;
                self.kind = Kind::Revoked;
                self.text = None;
                self.content = serde_json::json!({ "revokedType": was.as_str() });
                Some(Applied::Revoked)
            }
            _ => None,
        }
    }
}

/// A message to send, built: its protobuf, the text it shows, its kind and what the kind
/// carries, and its file. `Debug` prints no protobuf (a media key is in it).
#[derive(Clone)]
pub struct Outgoing {
    /// The `Message` to encrypt.
    pub message: crate::proto::wa::Message,
    /// The text or caption.
    pub text: Option<String>,
    /// Its kind.
    pub kind: Kind,
    /// What the kind carries (as a received one of its kind would show).
    pub details: serde_json::Value,
    /// Its file, once uploaded.
    pub media: Option<super::media_ref::MediaRef>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("kind", &self.kind)
            .field("media", &self.media)
            .finish_non_exhaustive()
    }
}

impl Outgoing {
    /// A plain text (`conversation`).
    pub fn text(text: String) -> Outgoing {
        Outgoing {
            message: crate::proto::wa::Message {
                conversation: Some(text.clone()),
                ..Default::default()
            },
            text: Some(text),
            kind: Kind::Chat,
            details: serde_json::Value::Null,
            media: None,
        }
    }

    /// Any message, classified as a received copy of it would be (kind, text, details, file);
    /// None when it is nothing a conversation shows.
    pub fn message(message: crate::proto::wa::Message) -> Option<Outgoing> {
        use prost::Message as _;
        let bytes = message.encode_to_vec();
        match super::content::classify(&bytes).ok()? {
            super::content::Classified::Stored(c) => Some(Outgoing {
                message,
                text: c.text,
                kind: c.kind,
                details: c.details,
                media: c.media.map(|m| *m),
            }),
            super::content::Classified::Protocol => None,
        }
    }
}

impl Default for StoredMessage {
    /// An empty inbound text row; construction sites name what they know and take the rest.
    fn default() -> StoredMessage {
        StoredMessage {
            id: String::new(),
            chat: Jid::new("", crate::binary::Server::User),
            sender: Jid::new("", crate::binary::Server::User),
            from_me: false,
            timestamp: 0,
            push_name: None,
            text: None,
            raw: Vec::new(),
            status: MessageStatus::Received,
            error: None,
            kind: Kind::Chat,
            content: serde_json::Value::Null,
            ephemeral: false,
            view_once: false,
            target: None,
            edited_at: None,
            reactions: Vec::new(),
            media: None,
            file: None,
        }
    }
}

/// A message's serialized key as whatsapp-web.js writes it: `<fromMe>_<chat>_<id>`, the chat
/// in its `…@c.us` form.
pub fn serialized_id(chat: &Jid, id: &str, from_me: bool) -> String {
    format!("{from_me}_{}_{id}", chat.c_us())
}

/// A reaction on a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// Who reacted (user JID, canonical).
    pub sender: Jid,
    /// The emoji.
    pub emoji: String,
    /// When (unix seconds).
    pub t: u64,
}

/// What a reaction, edit or revoke did to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A reaction was set, changed or removed.
    Reacted,
    /// The text was replaced.
    Edited,
    /// The message was deleted for everyone.
    Revoked,
}

impl Applied {
    /// The webhook event it raises (`message.reaction`, `message.edited`, `message.revoked`).
    pub fn event(self) -> &'static str {
        match self {
            Applied::Reacted => "message.reaction",
            Applied::Edited => "message.edited",
            Applied::Revoked => "message.revoked",
        }
    }
}

/// What committing a message found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The row is new.
    Inserted,
    /// A row with the same (chat, sender, id) exists; it was left as it was.
    Duplicate,
}

/// A status change to record for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The conversation.
    pub chat: Jid,
    /// The message id.
    pub id: String,
    /// The device that reported it (None for the server's ack).
    pub device: Option<Jid>,
    /// The new status.
    pub status: MessageStatus,
    /// The server's error code, for `Failed`.
    pub error: Option<u16>,
    /// When (the receipt's or ack's `t`).
    pub t: u64,
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;

    #[test]
    fn the_ladder_only_climbs_and_failure_only_replaces_unconfirmed_sends() {
        assert!(Pending.advances_to(ServerAck));
        assert!(ServerAck.advances_to(Read));
        assert!(Delivered.advances_to(Played));
        assert!(!Read.advances_to(Delivered));
        assert!(!Delivered.advances_to(Delivered));
        assert!(Pending.advances_to(Failed));
        assert!(ServerAck.advances_to(Failed));
        assert!(!Delivered.advances_to(Failed));
        assert!(!Failed.advances_to(Delivered));
        assert!(!Received.advances_to(Read));
        for s in [
            Pending, ServerAck, Delivered, Read, Played, Failed, Received, Cancelled, Expired,
        ] {
            assert_eq!(super::MessageStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn only_a_pending_send_is_cancelled_or_expires_and_ends_stay_ends() {
        for end in [Cancelled, Expired] {
            assert!(Pending.advances_to(end));
            for before in [ServerAck, Delivered, Read, Failed, Received] {
                assert!(!before.advances_to(end), "{before:?} → {end:?}");
            }
            // A late ack or receipt does not revive it.
            for after in [ServerAck, Delivered, Read, Failed] {
                assert!(!end.advances_to(after), "{end:?} → {after:?}");
            }
            assert!(end.is_end());
        }
        assert!(Failed.is_end() && !Pending.is_end() && !ServerAck.is_end());
    }
}

/// A change to a group we are in (from a `w:gp2` notification), as stored and evented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUpdate {
    /// The group.
    pub group: Jid,
    /// The notification id (with `seq`, unique per group).
    pub id: String,
    /// Which change of the notification this is (0-based).
    pub seq: u32,
    /// Who made it, when told.
    pub author: Option<Jid>,
    /// Server time.
    pub t: u64,
    /// `create`, `add`, `remove`, `promote`, `demote`, `leave`, `subject`, `addressing`.
    pub action: String,
    /// The members it concerns.
    pub participants: Vec<Jid>,
    /// The new subject (`create`, `subject`) or addressing mode (`addressing`).
    pub subject: Option<String>,
}
