//! Messages as the client stores them: one row per (chat, sender, id), inbound or outbound, with
//! the delivery ladder of outbound ones (`pending → server_ack → delivered → read → played`, or
//! `failed` with the server's code, or — never acked — `cancelled` when its account was
//! disconnected, `expired` when it waited past its time). Rows are written in the same unit of work as the Signal
//! state that produced or consumed them (see [`super::store::CredsStore::commit_message`]).

use crate::binary::Jid;

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
    /// The text, for text messages.
    pub text: Option<String>,
    /// The `Message` protobuf as received or sent (unpadded).
    pub raw: Vec<u8>,
    /// Where it stands.
    pub status: MessageStatus,
    /// The server's error code, for `Failed`.
    pub error: Option<u16>,
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
